// patgate: a little progressive enhancement. Every form works without this file.
//
// - <details data-menu>: closes on a click outside, on Escape, and when another one opens.
// - [data-dialog-open="id"]: opens <dialog id="id"> instead of following the link or
//   submitting the form (without JavaScript those go to a confirmation page).
// - <form data-collect="name" data-collect-from="form-id"> (in a dialog): carries the boxes
//   named "name" that are checked in the other form.
// - [data-select-all="name"]: (un)checks every box named "name" of its form.
// - select[data-autosubmit]: submits its form when changed; [data-hide-with-js] is hidden.
// - form[data-strip-empty]: empty fields are left out of the query string.
// - [data-copy-target="id"]: copies the text (or value) of element "id" to the clipboard.
// - [data-show-if="name=value|other"]: shown only while the field "name" of its form has one
//   of the values (without JavaScript it is always shown).
// - [data-remove-with-js] is removed (e.g. a no-JavaScript "Choose" button);
//   [data-show-with-js] is shown (e.g. a Copy button).
// - select[data-swap-url][data-swap-param]: when it changes, the page at
//   data-swap-url?param=value is fetched and every [data-swap][id] of the form is replaced by
//   the element of the same id there (the no-JavaScript fallback submits the form instead).
"use strict";

(function () {
  function menus() {
    return document.querySelectorAll("details[data-menu]");
  }

  function closeMenus(except) {
    menus().forEach(function (menu) {
      if (menu !== except) menu.open = false;
    });
  }

  document.addEventListener("click", function (event) {
    var inMenu = event.target.closest("details[data-menu]");
    closeMenus(inMenu);
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var open = document.querySelector("details[data-menu][open]");
    if (open) {
      open.open = false;
      var summary = open.querySelector("summary");
      if (summary) summary.focus();
    }
  });

  // ---- dialogs ----

  function checkedValues(form, name) {
    var boxes = form.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
    return Array.prototype.filter
      .call(boxes, function (box) { return box.checked; })
      .map(function (box) { return box.value; });
  }

  function collect(dialog) {
    var form = dialog.querySelector("form[data-collect]");
    if (!form) return;
    var name = form.getAttribute("data-collect");
    var source = document.getElementById(form.getAttribute("data-collect-from"));
    form.querySelectorAll("input[data-collected]").forEach(function (input) { input.remove(); });
    var values = source ? checkedValues(source, name) : [];
    values.forEach(function (value) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      input.setAttribute("data-collected", "");
      form.appendChild(input);
    });
    var summary = form.querySelector("[data-collect-summary]");
    if (summary && values.length) {
      var text = values.length === 1
        ? summary.getAttribute("data-singular")
        : summary.getAttribute("data-plural").replace("{n}", String(values.length));
      summary.textContent = text;
    }
    var empty = form.querySelector("[data-collect-empty]");
    if (empty) empty.hidden = values.length > 0;
    if (summary) summary.hidden = values.length === 0;
    var submit = form.querySelector('button[type="submit"]');
    if (submit) submit.disabled = values.length === 0;
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog-open]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-dialog-open"));
      if (!dialog || typeof dialog.showModal !== "function") return; // fall back: follow/submit
      event.preventDefault();
      closeMenus(null);
      collect(dialog);
      dialog.showModal();
      var field = dialog.querySelector("textarea, input:not([type=hidden])");
      if (field) field.focus();
      return;
    }
    var closer = event.target.closest("[data-dialog-close]");
    if (closer) {
      var open = closer.closest("dialog");
      if (open) open.close();
    }
  });

  // ---- selecting rows ----

  function updateSelection(form) {
    var all = form.querySelector("[data-select-all]");
    if (!all) return;
    var name = all.getAttribute("data-select-all");
    var boxes = form.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
    var checked = checkedValues(form, name).length;
    all.checked = checked > 0 && checked === boxes.length;
    all.indeterminate = checked > 0 && checked < boxes.length;
    var count = form.querySelector("[data-selected-count]");
    if (count) count.textContent = checked ? checked + " selected" : "";
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    var form = target.form;
    if (target.matches("[data-select-all]") && form) {
      var name = target.getAttribute("data-select-all");
      form.querySelectorAll('input[type="checkbox"][name="' + name + '"]').forEach(function (box) {
        box.checked = target.checked;
      });
    }
    if (target.matches('input[type="checkbox"]') && form) updateSelection(form);
    if (target.matches("select[data-autosubmit]") && form) {
      if (typeof form.requestSubmit === "function") form.requestSubmit();
      else form.submit();
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches("form[data-strip-empty]")) return;
    form.querySelectorAll("select, input").forEach(function (field) {
      if (field.name && field.value === "") field.disabled = true;
    });
  });

  // Pages restored from the back/forward cache show fields as they were left.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-strip-empty] [disabled]").forEach(function (field) {
      field.disabled = false;
    });
  });

  // ---- copy buttons ----

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    if (!source || !navigator.clipboard) return;
    var text = "value" in source ? source.value : source.textContent;
    var before = button.textContent;
    function say(label) {
      button.textContent = label;
      setTimeout(function () { button.textContent = before; }, 2000);
    }
    navigator.clipboard.writeText(text.trim()).then(function () {
      say(button.getAttribute("data-copied-label") || "Copied!");
    }, function () {
      // No clipboard access (permissions, an unfocused page): select it for Ctrl+C instead.
      if (typeof source.select === "function") source.select();
      say("Press Ctrl+C to copy");
    });
  });

  // ---- fields shown for some values of another field ----

  function fieldValue(scope, name) {
    var fields = scope.querySelectorAll("[name]");
    for (var i = 0; i < fields.length; i++) {
      var field = fields[i];
      if (field.name !== name) continue;
      if (field.type === "radio" || field.type === "checkbox") {
        if (field.checked) return field.value;
      } else {
        return field.value;
      }
    }
    return "";
  }

  function applyShowIf() {
    document.querySelectorAll("[data-show-if]").forEach(function (element) {
      var rule = element.getAttribute("data-show-if");
      var at = rule.indexOf("=");
      var scope = element.closest("form") || document;
      var values = rule.slice(at + 1).split("|");
      element.hidden = values.indexOf(fieldValue(scope, rule.slice(0, at))) === -1;
    });
  }

  document.addEventListener("change", applyShowIf);

  // ---- parts of a form that depend on a choice, fetched again when it changes ----

  var swapRound = 0;

  function fallBackToSubmit(select) {
    var form = select.form;
    var button = document.createElement("input");
    button.type = "hidden";
    button.name = "choose_" + select.getAttribute("data-swap-param");
    button.value = "1";
    form.appendChild(button);
    form.submit();
  }

  document.addEventListener("change", function (event) {
    var select = event.target;
    if (!select.matches || !select.matches("select[data-swap-url]") || !select.form) return;
    var form = select.form;
    var params = new URLSearchParams();
    params.set(select.getAttribute("data-swap-param"), select.value);
    var round = ++swapRound;
    form.setAttribute("aria-busy", "true");
    fetch(select.getAttribute("data-swap-url") + "?" + params.toString(), {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        if (round !== swapRound) return; // a later choice is on its way
        var fresh = new DOMParser().parseFromString(html, "text/html");
        form.querySelectorAll("[data-swap][id]").forEach(function (element) {
          var replacement = fresh.getElementById(element.id);
          if (replacement) element.replaceWith(document.importNode(replacement, true));
        });
        form.removeAttribute("aria-busy");
        applyShowIf();
      })
      .catch(function () {
        if (round === swapRound) fallBackToSubmit(select);
      });
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-hide-with-js]").forEach(function (element) {
      element.hidden = true;
    });
    document.querySelectorAll("[data-remove-with-js]").forEach(function (element) {
      element.remove();
    });
    document.querySelectorAll("[data-show-with-js]").forEach(function (element) {
      element.hidden = false;
    });
    applyShowIf();
    document.querySelectorAll("form").forEach(updateSelection);
  });
})();
