"""The seed's procedures, click by click by visible label, in a real Chromium (SPEC §9).

Each test drives patgate served for real; what the owner decides is then checked where it
matters: the creator's token over the REST API, and the stored request (a service read).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.context import CLI_ACTOR
from patgate.orgs import services as orgs
from patgate.repos import services as repos
from patgate.tokens import services as tokens
from web.ui.conftest import Clients, Site, csrf_token, sign_in

browser = pytest.mark.browser

Shot = Callable[[Page, str], None]


def api_status(site: Site, secret: str, path: str) -> int:
    answer = httpx.get(
        f"{site.server.api}{path}",
        headers={"Authorization": f"Bearer {secret}", "Accept": "application/vnd.github+json"},
    )
    return answer.status_code


def request_of(site: Site, request_id: int) -> tuple[str, str | None]:
    request = site.run(approvals.get_request, request_id)
    return request.state, request.decision_reason


def go_to_pending_requests(page: Page, org: str) -> None:
    """Steps 1-3: profile photo → Your organizations → Settings (next to the organization) →
    left sidebar, under Personal access tokens → Pending requests."""
    page.get_by_label("View profile and more").click()
    page.get_by_role("menuitem", name="Your organizations").click()
    page.get_by_role("listitem").filter(has_text=org).get_by_role("link", name="Settings").click()
    sidebar = page.get_by_role("navigation", name="Organization settings")
    section = sidebar.get_by_role("group", name="Personal access tokens")
    section.get_by_role("link", name="Pending requests").click()
    expect(page.get_by_role("heading", name="Pending requests", exact=True)).to_be_visible()


def request_rows(page: Page) -> Locator:
    return page.get_by_role("list", name="Pending requests").get_by_role("listitem")


def visible_requests(page: Page) -> set[str]:
    return set(
        page.get_by_role("list", name="Pending requests").get_by_role("link").all_inner_texts()
    )


@browser
def test_an_owner_denies_then_approves_by_the_seed_steps(
    site: Site, page: Page, screenshot: Shot
) -> None:
    denied = site.world.token(
        name="ci-deploy",
        repositories="all",
        permissions={"contents": "read", "issues": "write"},
        reason="Deploys the API from CI",
    )
    approved = site.world.token(
        name="release-bot", repositories=["private-api"], permissions={"contents": "read"}
    )
    assert denied.request.state == approved.request.state == "pending"

    page.goto(f"{site.url}/login")
    screenshot(page, "login")
    sign_in(page, site.url, "olivia")
    page.get_by_label("View profile and more").click()
    screenshot(page, "profile-menu")
    page.keyboard.press("Escape")
    go_to_pending_requests(page, "acme")
    expect(request_rows(page)).to_have_count(2)
    screenshot(page, "pending-requests")

    # 4-5: the token's name opens its review: repositories, permissions, justification, expiry.
    page.get_by_role("link", name="ci-deploy").click()
    expect(page.get_by_role("heading", name="ci-deploy")).to_be_visible()
    expect(page.get_by_text("Deploys the API from CI")).to_be_visible()
    expect(page.get_by_text("All repositories")).to_be_visible()
    permissions = page.get_by_role("list", name="Repository permissions")
    expect(permissions.get_by_role("listitem").filter(has_text="Issues")).to_contain_text(
        "Read and write"
    )
    expect(page.get_by_text(re.compile(r"Expires on"))).to_be_visible()
    screenshot(page, "request-review")

    # 6-7: Deny opens the confirmation box; an optional reason; Deny.
    page.get_by_role("button", name="Deny").click()
    dialog = page.get_by_role("dialog", name="Deny access for ci-deploy?")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Reason (optional)").fill("Deploy with the GitHub App instead")
    screenshot(page, "request-deny-dialog")
    dialog.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("status")).to_contain_text("Denied access for ci-deploy")
    assert visible_requests(page) == {"release-bot"}

    assert request_of(site, denied.request.id) == ("denied", "Deploy with the GitHub App instead")
    assert api_status(site, denied.secret, "/repos/acme/public-site") == 200
    assert api_status(site, denied.secret, "/repos/acme/private-api") == 404

    # The other request: Approve, and its token reads the private repository.
    assert api_status(site, approved.secret, "/repos/acme/private-api") == 404
    page.get_by_role("link", name="release-bot").click()
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Approved access for release-bot")
    expect(page.get_by_role("heading", name="No pending requests")).to_be_visible()
    screenshot(page, "pending-requests-empty")
    assert request_of(site, approved.request.id) == ("approved", None)
    assert api_status(site, approved.secret, "/repos/acme/private-api") == 200
    assert api_status(site, approved.secret, "/repos/acme/private-ops") == 404  # not selected

    # An edit that asks for more opens a new request; its review marks what it adds/upgrades.
    with site.server.runtime.unit_of_work() as ctx:
        tokens.update_fine_grained(
            ctx,
            tokens.get_fine_grained(ctx, approved.token.id),
            repositories=repos.resolve_names(
                ctx, orgs.get_org(ctx, "acme"), ["private-api", "private-ops"]
            ),
            permissions={"contents": "write", "issues": "read"},
            reason="Also publishes the ops runbooks",
            actor=CLI_ACTOR,
        )
    page.get_by_role("link", name="Pending requests").click()
    page.get_by_role("link", name="release-bot").click()
    repositories = page.get_by_role("list", name="Selected repositories")
    expect(repositories.get_by_role("listitem").filter(has_text="private-ops")).to_contain_text(
        "added"
    )
    expect(repositories.get_by_role("listitem").filter(has_text="private-api")).not_to_contain_text(
        "added"
    )
    permissions = page.get_by_role("list", name="Repository permissions")
    expect(permissions.get_by_role("listitem").filter(has_text="Contents")).to_contain_text(
        "upgraded"
    )
    expect(permissions.get_by_role("listitem").filter(has_text="Issues")).to_contain_text("added")
    expect(permissions.get_by_role("listitem").filter(has_text="Metadata")).not_to_contain_text(
        "added"
    )
    screenshot(page, "request-review-edit")
    # The approved grant keeps working while the edit waits.
    assert api_status(site, approved.secret, "/repos/acme/private-api") == 200

    # The revoked grant: Active tokens → select → token selected... → Revoke... → Revoke.
    page.get_by_role("link", name="Active tokens").click()
    page.get_by_role("checkbox", name="Select release-bot").check()
    screenshot(page, "active-tokens")
    page.get_by_text("token selected...").click()
    page.get_by_role("menuitem", name="Revoke...").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status")).to_contain_text("Revoked access for 1 token")
    assert api_status(site, approved.secret, "/repos/acme/private-api") == 404
    assert api_status(site, approved.secret, "/repos/acme/public-site") == 200

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Filter audit logs").fill("action:personal_access_token.request_denied")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading", name=re.compile("^1 event"))).to_be_visible()
    page.get_by_label("Filter audit logs").fill("")
    page.get_by_role("button", name="Search").click()
    screenshot(page, "audit-log")


def add_members(site: Site, *logins: str) -> None:
    with site.server.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        for login in logins:
            user = accounts.create_user(ctx, login, email=f"{login}@example.com")
            orgs.add_member(ctx, org, user, actor=CLI_ACTOR)


def bulk_world(site: Site) -> dict[str, int]:
    """Five pending requests from three members, with different repositories and permissions."""
    add_members(site, "lee", "kim")
    made = {
        "mona-issues": site.world.token(
            "mona", name="mona-issues", repositories=["private-api"],
            permissions={"issues": "write"},
        ),
        "mona-contents": site.world.token(
            "mona", name="mona-contents", repositories="all", permissions={"contents": "read"}
        ),
        "lee-ops": site.world.token(
            "lee", name="lee-ops", repositories=["private-ops"], permissions={"issues": "write"}
        ),
        "lee-api-read": site.world.token(
            "lee", name="lee-api-read", repositories=["private-api"],
            permissions={"issues": "read"},
        ),
        "kim-all": site.world.token(
            "kim", name="kim-all", repositories="all", permissions={"issues": "write"}
        ),
    }  # fmt: skip
    return {name: issued.request.id for name, issued in made.items()}


@browser
def test_the_bulk_procedure_filters_then_approves_and_denies_the_selected(
    site: Site, page: Page, screenshot: Shot
) -> None:
    ids = bulk_world(site)
    everyone = set(ids)

    sign_in(page, site.url, "olivia")
    go_to_pending_requests(page, "acme")
    assert visible_requests(page) == everyone
    select_all = page.get_by_role("checkbox", name="Select all requests on this page")
    select_all.check()
    expect(page.get_by_text("5 selected")).to_be_visible()
    for name in everyone:
        expect(page.get_by_role("checkbox", name=f"Select {name}")).to_be_checked()
    select_all.uncheck()
    expect(page.get_by_role("checkbox", checked=True)).to_have_count(0)

    # 4: each filter narrows the list (server-side, GET parameters).
    page.get_by_label("Owner", exact=True).select_option("mona")
    expect(page).to_have_url(re.compile(r"owner=mona"))
    assert visible_requests(page) == {"mona-issues", "mona-contents"}
    screenshot(page, "pending-requests-filtered")
    page.get_by_label("Owner", exact=True).select_option("")
    expect(page).not_to_have_url(re.compile(r"owner="))
    assert visible_requests(page) == everyone

    page.get_by_label("Repository", exact=True).select_option("private-api")
    expect(page).to_have_url(re.compile(r"repository=private-api"))
    # Tokens that selected it, and every token with access to all repositories.
    assert visible_requests(page) == {"mona-issues", "lee-api-read", "mona-contents", "kim-all"}
    page.get_by_label("Repository", exact=True).select_option("")

    page.get_by_label("Permissions", exact=True).select_option("issues_write")
    expect(page).to_have_url(re.compile(r"permission=issues_write"))
    assert visible_requests(page) == {"mona-issues", "lee-ops", "kim-all"}

    # 5-6: select, request selected... → Approve... (the filter is kept afterwards).
    page.get_by_role("checkbox", name="Select mona-issues").check()
    page.get_by_role("checkbox", name="Select lee-ops").check()
    expect(page.get_by_text("2 selected")).to_be_visible()
    page.get_by_text("request selected...").click()
    screenshot(page, "pending-requests-bulk-menu")
    page.get_by_role("menuitem", name="Approve...").click()
    dialog = page.get_by_role("dialog", name="Approve selected requests")
    expect(dialog).to_contain_text("for 2 tokens")
    dialog.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Approved 2 requests.")
    expect(page).to_have_url(re.compile(r"permission=issues_write"))
    assert visible_requests(page) == {"kim-all"}

    # Deny... with a reason, on the unfiltered list.
    page.get_by_role("link", name="Clear filters").click()
    assert visible_requests(page) == {"mona-contents", "lee-api-read", "kim-all"}
    page.get_by_role("checkbox", name="Select lee-api-read").check()
    page.get_by_role("checkbox", name="Select kim-all").check()
    page.get_by_text("request selected...").click()
    page.get_by_role("menuitem", name="Deny...").click()
    dialog = page.get_by_role("dialog", name="Deny selected requests")
    dialog.get_by_label("Reason (optional)").fill("Ask for one repository at a time")
    dialog.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("status")).to_contain_text("Denied 2 requests.")
    assert visible_requests(page) == {"mona-contents"}

    states = {name: request_of(site, request_id) for name, request_id in ids.items()}
    assert states == {
        "mona-issues": ("approved", None),
        "lee-ops": ("approved", None),
        "lee-api-read": ("denied", "Ask for one repository at a time"),
        "kim-all": ("denied", "Ask for one repository at a time"),
        "mona-contents": ("pending", None),  # never selected: untouched
    }


@browser
def test_the_forms_work_without_javascript(
    site: Site, page_without_js: Page, screenshot: Shot
) -> None:
    page = page_without_js
    ids = bulk_world(site)
    one = site.world.token(name="solo", repositories=["private-api"], reason="One-off export")

    sign_in(page, site.url, "olivia")
    go_to_pending_requests(page, "acme")  # the profile menu is a <details>: no script needed

    # Deny: the confirmation box is a page of its own.
    page.get_by_role("link", name="solo").click()
    page.get_by_role("button", name="Deny").click()
    expect(page).to_have_url(re.compile(rf"/personal-access-token-requests/{one.request.id}/deny$"))
    page.get_by_label("Reason (optional)").fill("Not needed any more")
    screenshot(page, "request-deny-no-js")
    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("status")).to_contain_text("Denied access for solo")
    assert request_of(site, one.request.id) == ("denied", "Not needed any more")

    # Filters with the Filter button; bulk decisions through a confirmation page.
    page.get_by_label("Owner", exact=True).select_option("kim")
    page.get_by_role("button", name="Filter").click()
    assert visible_requests(page) == {"kim-all"}
    page.get_by_role("link", name="Clear filters").click()
    page.get_by_role("checkbox", name="Select mona-contents").check()
    page.get_by_role("checkbox", name="Select kim-all").check()
    page.get_by_text("request selected...").click()
    page.get_by_role("menuitem", name="Deny...").click()
    expect(page.get_by_role("heading", name="Deny access to acme for 2 tokens?")).to_be_visible()
    page.get_by_label("Reason (optional)").fill("Too broad")
    screenshot(page, "pending-requests-confirm-no-js")
    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("status")).to_contain_text("Denied 2 requests.")
    assert request_of(site, ids["mona-contents"]) == ("denied", "Too broad")
    assert request_of(site, ids["kim-all"]) == ("denied", "Too broad")
    assert request_of(site, ids["lee-ops"])[0] == "pending"


@browser
def test_the_opt_in_prompt_on_every_page_of_the_section_sets_three_policies_at_once(
    site: Site, page: Page, screenshot: Shot
) -> None:
    with site.server.runtime.unit_of_work() as ctx:
        olivia = accounts.get_user(ctx, "olivia")
        orgs.create_org(ctx, "globex", owner=olivia, actor=CLI_ACTOR)

    sign_in(page, site.url, "olivia")
    go_to_pending_requests(page, "globex")  # the seed's way in
    prompt = page.get_by_role("region", name="Opt in to fine-grained personal access tokens")
    expect(prompt).to_be_visible()
    screenshot(page, "opt-in-prompt")
    section = page.get_by_role("group", name="Personal access tokens")
    for name in ("Active tokens", "Settings", "Pending requests"):
        section.get_by_role("link", name=name).click()
        expect(prompt).to_be_visible()

    prompt.get_by_label("Allow access via fine-grained personal access tokens").check()
    prompt.get_by_label("Do not require administrator approval", exact=True).check()
    prompt.get_by_label("Restrict access via personal access tokens (classic)").check()
    prompt.get_by_role("button", name="Opt in").click()
    expect(page.get_by_role("status")).to_contain_text("globex is opted in")
    expect(page.get_by_role("heading", name="Pending requests", exact=True)).to_be_visible()

    policies = site.run(lambda ctx, _: orgs.effective_policies(ctx, orgs.get_org(ctx, "globex")))
    assert (policies.opted_in, policies.fine_grained, policies.approval, policies.classic) == (
        True, "allow", "not_required", "restrict",
    )  # fmt: skip
    for name in ("Active tokens", "Settings", "Pending requests"):
        section.get_by_role("link", name=name).click()
        expect(prompt).to_have_count(0)
    section.get_by_role("link", name="Settings").click()
    expect(page.get_by_label("Do not require administrator approval", exact=True)).to_be_checked()
    screenshot(page, "pat-settings")

    # The Settings form saves the policies and the maximum lifetimes.
    page.get_by_label("Maximum lifetime of fine-grained personal access tokens").fill("90")
    page.get_by_label("Require administrator approval", exact=True).check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("settings saved")
    policies = site.run(lambda ctx, _: orgs.effective_policies(ctx, orgs.get_org(ctx, "globex")))
    assert (policies.approval, policies.fine_grained_max_lifetime_days) == ("required", 90)


@browser
def test_enterprise_forced_policies_are_read_only_and_a_crafted_post_cannot_change_them(
    site: Site, clients: Clients, page: Page, screenshot: Shot
) -> None:
    with site.server.runtime.unit_of_work() as ctx:
        olivia = accounts.get_user(ctx, "olivia")
        enterprise = orgs.create_enterprise(ctx, "initech-corp", name="Initech")
        orgs.set_enterprise_policy(
            ctx, enterprise, actor=CLI_ACTOR, classic="restrict",
            fine_grained_max_lifetime=(True, 30),
        )  # fmt: skip
        orgs.create_org(ctx, "initech", owner=olivia, enterprise=enterprise, actor=CLI_ACTOR)

    def initech() -> orgs.EffectivePolicies:
        return site.run(lambda ctx, _: orgs.effective_policies(ctx, orgs.get_org(ctx, "initech")))

    sign_in(page, site.url, "olivia")
    go_to_pending_requests(page, "initech")
    prompt = page.get_by_role("region", name="Opt in to fine-grained personal access tokens")
    forced = prompt.get_by_label("Restrict access via personal access tokens (classic)")
    expect(forced).to_be_checked()
    expect(forced).to_be_disabled()
    expect(prompt.get_by_text("Set by the enterprise")).to_be_visible()

    # A crafted opt-in (valid session and CSRF token) that tries to allow classic tokens.
    client = clients("olivia")
    settings_url = "/organizations/initech/settings/personal-access-tokens"
    token = csrf_token(client.get(settings_url).text)
    crafted = client.post(
        settings_url + "/opt-in",
        data={"authenticity_token": token, "fine_grained": "allow", "approval": "required",
              "classic": "allow"},
    )  # fmt: skip
    assert crafted.status_code == 403, crafted.text
    assert "Set by the enterprise" in crafted.text
    assert (initech().opted_in, initech().classic) == (False, "restrict")

    prompt.get_by_role("button", name="Opt in").click()
    expect(page.get_by_role("status")).to_contain_text("initech is opted in")
    assert (initech().opted_in, initech().classic) == (True, "restrict")

    page.get_by_role("group", name="Personal access tokens").get_by_role(
        "link", name="Settings"
    ).click()
    for label in (
        "Allow access via personal access tokens (classic)",
        "Restrict access via personal access tokens (classic)",
        "Maximum lifetime of fine-grained personal access tokens",
    ):
        expect(page.get_by_label(label)).to_be_disabled()
    expect(
        page.get_by_label("Maximum lifetime of fine-grained personal access tokens")
    ).to_have_value("30")
    expect(page.get_by_role("group", name="Personal access tokens (classic)")).to_contain_text(
        "Set by the enterprise"
    )
    expect(
        page.get_by_label("Maximum lifetime of fine-grained personal access tokens")
    ).to_have_accessible_name(re.compile("Set by the enterprise"))
    expect(
        page.get_by_label("Maximum lifetime of personal access tokens (classic)")
    ).to_be_enabled()
    screenshot(page, "pat-settings-enterprise")

    token = csrf_token(client.get(settings_url).text)
    for field, value in (("classic", "allow"), ("fine_grained_max_lifetime", "366")):
        crafted = client.post(settings_url, data={"authenticity_token": token, field: value})
        assert crafted.status_code == 403, (field, crafted.text)
    after = initech()
    assert (after.classic, after.fine_grained_max_lifetime_days) == ("restrict", 30)
    # The same session may change what the enterprise leaves to the organization.
    allowed = client.post(
        settings_url, data={"authenticity_token": token, "approval": "not_required"}
    )
    assert allowed.status_code == 303, allowed.text
    assert initech().approval == "not_required"


def test_pending_requests_are_paginated_fifty_at_a_time(site: Site, clients: Clients) -> None:
    add_members(site, "ann", "bob", "cyd")
    for login in ("ann", "bob", "cyd"):
        for n in range(40):
            site.world.token(login, name=f"{login}-{n:02d}", repositories="all")
    client = clients("olivia")
    url = "/organizations/acme/settings/personal-access-token-requests"

    pages = [client.get(url, params={"page": n}) for n in (1, 2, 3)]

    counts = [p.text.count('name="request_ids" value=') for p in pages]
    assert counts == [50, 50, 20]
    assert "120 pending requests" in pages[0].text
    assert 'rel="next"' in pages[0].text and 'rel="next"' not in pages[2].text
    filtered = client.get(url, params={"owner": "bob", "page": 1})
    assert filtered.text.count('name="request_ids" value=') == 40
    beyond = client.get(url, params={"page": 9})
    assert "This page is empty" in beyond.text


def test_the_audit_log_filters_by_phrase_and_says_what_is_wrong_next_to_the_field(
    site: Site, clients: Clients
) -> None:
    site.world.token(name="ci")
    client = clients("olivia")
    url = "/organizations/acme/settings/audit-log"

    everything = client.get(url)
    created = client.get(url, params={"phrase": "action:personal_access_token.create"})
    wrong = client.get(url, params={"phrase": "colour:blue"})

    assert everything.status_code == created.status_code == wrong.status_code == 200
    assert re.search(r"\b5 events\b", everything.text), everything.text
    assert "1 event matching" in created.text
    assert 'id="phrase-error">phrase key &#39;colour&#39; is not one of' in wrong.text
    assert "0 events" in wrong.text


def test_errors_are_shown_next_to_the_field_and_change_nothing(
    site: Site, clients: Clients
) -> None:
    issued = site.world.token(name="ci")
    client = clients("olivia")
    settings_url = "/organizations/acme/settings/personal-access-tokens"
    token = csrf_token(client.get(settings_url).text)
    before = site.run(orgs.effective_policies)

    lifetime = client.post(
        settings_url,
        data={"authenticity_token": token, "approval": "not_required",
              "fine_grained_max_lifetime": "400"},
    )  # fmt: skip
    deny_url = f"/organizations/acme/settings/personal-access-token-requests/{issued.request.id}"
    reason = client.post(
        deny_url + "/deny", data={"authenticity_token": token, "reason": "x" * 1025}
    )

    assert lifetime.status_code == 422
    assert re.search(r'id="fine_grained_max_lifetime-error">[^<]*between 1 and 366', lifetime.text)
    assert site.run(orgs.effective_policies) == before  # approval not switched either
    assert reason.status_code == 422
    assert 'id="reason-error">The reason can be at most 1024 characters long.' in reason.text
    assert request_of(site, issued.request.id) == ("pending", None)
