"""Validate response bodies against GitHub's official OpenAPI description (the PAT subset).

The description lives outside the repository, at ``../shared/openapi/github-pat-subset.json``
relative to the repository root. It is OpenAPI 3.0.3, so ``nullable: true`` is rewritten once into
JSON Schema type unions before anything is validated with jsonschema's Draft 2020-12 validator.

Formats are not asserted (GitHub's ``date-time`` accepts more than GitHub sends); use
:func:`assert_github_timestamp` for the exact ``YYYY-MM-DDTHH:MM:SSZ`` form.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = [
    "SPEC_PATH",
    "assert_github_timestamp",
    "document",
    "response_examples",
    "schema",
    "validate_against",
    "validate_response",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO_ROOT.parent / "shared" / "openapi" / "github-pat-subset.json"

_BASE_URI = "urn:patgate:github-openapi"
_API_PREFIX = "/api/v3"
_MAX_ERRORS = 10
_MAX_MESSAGE = 300
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
# Keywords whose values are sample data rather than schemas: never rewritten.
_DATA_KEYS = frozenset({"example", "examples", "value", "default", "enum", "const", "x-github"})
# Keywords whose values map arbitrary names (which may be e.g. "default") to objects.
_NAME_MAPS = frozenset(
    {
        "properties",
        "patternProperties",
        "dependentSchemas",
        "$defs",
        "definitions",
        "paths",
        "components",
        "schemas",
        "responses",
        "content",
        "headers",
        "parameters",
        "requestBodies",
    }
)


@cache
def document() -> dict[str, Any]:
    """The description exactly as published (do not mutate it)."""
    with SPEC_PATH.open(encoding="utf-8") as fh:
        return json.load(fh)


def _nullable_to_union(node: Any, names: bool = False) -> Any:
    """Return a copy of ``node`` with OpenAPI 3.0 ``nullable: true`` as JSON Schema unions.

    ``names`` is true when ``node`` maps names to objects (``properties``, ``responses``...).
    """
    if isinstance(node, list):
        return [_nullable_to_union(item) for item in node]
    if not isinstance(node, dict):
        return node
    if names:
        return {key: _nullable_to_union(value) for key, value in node.items()}
    out = {
        key: value if key in _DATA_KEYS else _nullable_to_union(value, key in _NAME_MAPS)
        for key, value in node.items()
    }
    if out.get("nullable") is not True:
        return out
    del out["nullable"]
    kind = out.get("type")
    if kind is None:
        # e.g. {"nullable": true, "anyOf": [...]}: no type to widen, so wrap the whole schema.
        return {"anyOf": [out, {"type": "null"}]}
    kinds = kind if isinstance(kind, list) else [kind]
    if "null" not in kinds:
        out["type"] = [*kinds, "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


@cache
def _converted() -> dict[str, Any]:
    doc = document()
    if not str(doc.get("openapi", "")).startswith("3.0"):
        # OpenAPI 3.1 is JSON Schema 2020-12 already.
        return doc
    return _nullable_to_union(doc)


@cache
def _registry() -> Registry:
    resource = Resource(contents=_converted(), specification=DRAFT202012)
    return Registry().with_resource(_BASE_URI, resource)


@cache
def _validator(pointer: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{_BASE_URI}#{pointer}"}, registry=_registry())


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _at(pointer: str) -> Any:
    node: Any = _converted()
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _follow(pointer: str) -> tuple[str, Any]:
    """Follow a chain of local ``$ref``s starting at ``pointer``; return the final location."""
    seen: set[str] = set()
    node = _at(pointer)
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/") or ref in seen:
            raise AssertionError(f"cannot follow $ref {ref!r} at {pointer}")
        seen.add(ref)
        pointer = ref[1:]
        node = _at(pointer)
    return pointer, node


def _operation_pointer(method: str, path_template: str) -> str:
    path_template = path_template.removeprefix(_API_PREFIX)
    paths = document()["paths"]
    if path_template not in paths:
        raise AssertionError(
            f"{path_template!r} is not in the OpenAPI subset; known paths: {sorted(paths)}"
        )
    method = method.lower()
    if method not in paths[path_template]:
        raise AssertionError(f"{method.upper()} {path_template} is not in the OpenAPI subset")
    return f"/paths/{_escape(path_template)}/{method}"


def _response_pointer(method: str, path_template: str, status: int) -> str | None:
    """Where the operation's response for ``status`` is (after ``$ref``s), None if undeclared."""
    op = _operation_pointer(method, path_template)
    responses = _at(f"{op}/responses")
    for key in (str(status), f"{status // 100}XX", "default"):
        if key in responses:
            pointer, _ = _follow(f"{op}/responses/{_escape(key)}")
            return pointer
    return None


def _describe(errors: list[ValidationError]) -> list[str]:
    """One line per error; the errors of one ``required`` keyword become a single line."""
    lines: list[str] = []
    done: set[tuple[str, int]] = set()
    for error in errors:
        if error.validator == "required" and isinstance(error.instance, dict):
            key = (error.json_path, id(error.validator_value))
            if key in done:
                continue
            done.add(key)
            missing = [name for name in error.validator_value if name not in error.instance]
            message = f"missing required properties {missing}"
        else:
            message = error.message
            if len(message) > _MAX_MESSAGE:
                message = message[: _MAX_MESSAGE - 3] + "..."
        lines.append(f"  at {error.json_path}: {message}")
    return lines


def _label(pointer: str) -> str:
    node = _at(pointer)
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        return node["$ref"]
    return "#" + pointer


def _check(pointer: str, body: Any, context: str) -> None:
    errors = list(_validator(pointer).iter_errors(body))
    if not errors:
        return
    errors.sort(key=lambda error: (len(error.path), error.json_path, error.message))
    lines = _describe(errors)
    shown = lines[:_MAX_ERRORS]
    if len(lines) > _MAX_ERRORS:
        shown.append(f"  ... and {len(lines) - _MAX_ERRORS} more")
    raise AssertionError("\n".join([f"{context}: body does not match {_label(pointer)}", *shown]))


def validate_response(method: str, path_template: str, status: int, body: Any) -> None:
    """Assert that ``body`` (parsed JSON, or None) is what GitHub documents for the operation.

    ``path_template`` is the OpenAPI path key, e.g. ``/repos/{owner}/{repo}`` (a leading
    ``/api/v3`` is tolerated). An undeclared status is checked against ``basic-error``; a declared
    status without content (204) requires an empty body (None, ``""`` or ``b""``).
    """
    context = f"{method.upper()} {path_template} -> {status}"
    pointer = _response_pointer(method, path_template, status)
    if pointer is None:
        _check("/components/schemas/basic-error", body, f"{context} (undeclared status)")
        return
    content = _at(pointer).get("content")
    if not content:
        if body not in (None, "", b""):
            raise AssertionError(f"{context}: expected no content, got {body!r:.200}")
        return
    if "application/json" not in content:
        raise AssertionError(f"{context}: no application/json content declared ({list(content)})")
    schema_pointer = f"{pointer}/content/application~1json/schema"
    if "schema" not in content["application/json"]:
        return
    _check(schema_pointer, body, context)


def validate_against(name: str, body: Any) -> None:
    """Assert that ``body`` matches the component schema ``name`` (e.g. ``simple-user``)."""
    if name not in document()["components"]["schemas"]:
        raise AssertionError(f"no component schema named {name!r}")
    _check(f"/components/schemas/{_escape(name)}", body, name)


def _inline(node: Any, stack: tuple[str, ...], names: bool = False) -> Any:
    if isinstance(node, list):
        return [_inline(item, stack) for item in node]
    if not isinstance(node, dict):
        return node
    if names:
        return {key: _inline(value, stack) for key, value in node.items()}
    if "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise AssertionError(f"cannot inline non-local $ref {ref!r}")
        if ref in stack:
            raise AssertionError(f"recursive $ref {ref!r} cannot be inlined")
        pointer, target = _follow(ref[1:])
        inlined = _inline(target, (*stack, ref, f"#{pointer}"))
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        if siblings:  # JSON Schema 2020-12 applies keywords next to $ref as well
            return {"allOf": [inlined, _inline(siblings, stack)]}
        return inlined
    return {
        key: value if key in _DATA_KEYS else _inline(value, stack, key in _NAME_MAPS)
        for key, value in node.items()
    }


@cache
def _inlined(name: str) -> dict[str, Any]:
    return _inline(_at(f"/components/schemas/{_escape(name)}"), ())


def schema(name: str) -> dict[str, Any]:
    """Component schema ``name`` as a standalone JSON Schema (2020-12).

    Every ``$ref`` is inlined and ``nullable`` is already rewritten, so the result can be passed
    straight to ``jsonschema.validate``. A fresh copy is returned each time.
    """
    if name not in document()["components"]["schemas"]:
        raise KeyError(f"no component schema named {name!r}")
    return copy.deepcopy(_inlined(name))


def response_examples(method: str, path_template: str, status: int) -> dict[str, Any]:
    """The examples the description embeds for a response, by name, ``$ref``s resolved.

    Returns the example *values* (``{"default": [...]}``), from ``examples`` or ``example``.
    """
    pointer = _response_pointer(method, path_template, status)
    if pointer is None:
        raise AssertionError(f"{method.upper()} {path_template} declares no {status} response")
    media = (_at(pointer).get("content") or {}).get("application/json", {})
    found: dict[str, Any] = {}
    if "example" in media:
        found["example"] = copy.deepcopy(media["example"])
    for key in media.get("examples", {}):
        _, example = _follow(f"{pointer}/content/application~1json/examples/{_escape(key)}")
        if "value" in example:
            found[key] = copy.deepcopy(example["value"])
    return found


def assert_github_timestamp(value: Any) -> None:
    """Assert ``value`` is a timestamp as GitHub writes it: ``YYYY-MM-DDTHH:MM:SSZ``."""
    if not isinstance(value, str) or _TIMESTAMP.fullmatch(value) is None:
        raise AssertionError(f"{value!r} is not a GitHub timestamp (YYYY-MM-DDTHH:MM:SSZ)")
