"""patgate's own OpenAPI 3.0 document, served at ``/api/v3/openapi.json``.

Assembled when first asked for, from:

* the route table of the running app (every API route, every method but HEAD);
* GitHub's description of the operations patgate shares with GitHub (operation ids,
  parameters, responses and the schemas they reference), vendored next to this module as
  ``github-pat-subset.json`` — :func:`vendor` cut it from ``shared/openapi`` and a test keeps
  the two equal;
* the JSON schemas of the pydantic models that validate request bodies (``BODIES`` of each
  route module), rewritten from JSON Schema 2020-12 into OpenAPI 3.0's dialect.

Operations GitHub's subset does not cover get patgate's own operation id, their path
parameters, a response schema where one of GitHub's components fits, and ``basic-error`` /
``validation-error`` for errors.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from patgate.web.api import apps as apps_api
from patgate.web.api import governance, resources

VENDORED = Path(__file__).with_name("github-pat-subset.json")
API_PREFIX = "/api/v3"
DOCUMENT_PATH = "/openapi.json"

_SCHEMA_REF = "#/components/schemas/"
_CONVERTOR = re.compile(r"\{([^}:]+)(?::([^}]+))?\}")
_DROPPED_KEYS = frozenset({"example", "examples", "externalDocs", "x-github"})
_NAME_MAPS = frozenset(
    {"properties", "schemas", "parameters", "responses", "headers", "paths", "content"}
)

_REQUEST_REPOS_ALIAS = (
    "/organizations/{org_id}/personal-access-token-requests/{pat_request_id}/repositories"
)
_GRANT_REPOS_ALIAS = "/organizations/{org_id}/personal-access-tokens/{pat_id}/repositories"

# Responses of patgate's own operations (those GitHub's subset does not describe).
_OWN_RESPONSES: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("GET", "/app/installations"): (
        "200",
        {"type": "array", "items": {"$ref": _SCHEMA_REF + "installation"}},
    ),
    ("GET", _REQUEST_REPOS_ALIAS): (
        "200",
        {"type": "array", "items": {"$ref": _SCHEMA_REF + "minimal-repository"}},
    ),
    ("GET", _GRANT_REPOS_ALIAS): (
        "200",
        {"type": "array", "items": {"$ref": _SCHEMA_REF + "minimal-repository"}},
    ),
    ("GET", "/orgs/{org}/repos"): (
        "200",
        {"type": "array", "items": {"$ref": _SCHEMA_REF + "minimal-repository"}},
    ),
    ("GET", "/orgs/{org}/members"): (
        "200",
        {"type": "array", "items": {"$ref": _SCHEMA_REF + "simple-user"}},
    ),
    ("GET", "/repos/{owner}/{repo}/issues"): (
        "200",
        {"type": "array", "items": {"type": "object"}},
    ),
    ("POST", "/repos/{owner}/{repo}/issues"): ("201", {"type": "object"}),
    ("GET", "/openapi.json"): ("200", {"type": "object"}),
}
_PAGED = {
    ("GET", "/app/installations"),
    ("GET", _REQUEST_REPOS_ALIAS),
    ("GET", _GRANT_REPOS_ALIAS),
    ("GET", "/orgs/{org}/repos"),
    ("GET", "/orgs/{org}/members"),
    ("GET", "/orgs/{org}/audit-log"),
    ("GET", "/repos/{owner}/{repo}/issues"),
}


def bodies() -> dict[tuple[str, str], type[BaseModel]]:
    """The pydantic model of each request body, by (method, path template)."""
    return {**governance.BODIES, **apps_api.BODIES, **resources.BODIES}


# ---- GitHub's subset, vendored ----------------------------------------------------------


def _strip(node: Any, names: bool = False) -> Any:
    if isinstance(node, list):
        return [_strip(item) for item in node]
    if not isinstance(node, dict):
        return node
    if names:
        return {key: _strip(value) for key, value in node.items()}
    return {
        key: _strip(value, key in _NAME_MAPS)
        for key, value in node.items()
        if key not in _DROPPED_KEYS
    }


def vendor(subset: dict[str, Any]) -> dict[str, Any]:
    """What patgate keeps of GitHub's description: its paths and components, without the
    examples (large, and no part of the contract)."""
    components = {
        kind: _strip(entries, True)
        for kind, entries in subset["components"].items()
        if kind != "examples"
    }
    return {
        "info": {"source": subset["info"]["title"], "version": subset["info"]["version"]},
        "paths": _strip(subset["paths"], True),
        "components": components,
    }


def write_vendored(subset_path: str | Path, target: Path = VENDORED) -> None:
    """Refresh the vendored copy from ``shared/openapi/github-pat-subset.json``."""
    subset = json.loads(Path(subset_path).read_text(encoding="utf-8"))
    target.write_text(json.dumps(vendor(subset), indent=1) + "\n", encoding="utf-8")


@cache
def vendored() -> dict[str, Any]:
    with VENDORED.open(encoding="utf-8") as fh:
        return json.load(fh)


# ---- pydantic → OpenAPI 3.0 -------------------------------------------------------------


def _openapi_30(node: Any, names: bool = False) -> Any:
    """JSON Schema 2020-12 as pydantic writes it → OpenAPI 3.0: ``anyOf [X, null]`` becomes
    ``X`` + ``nullable``, ``const`` an ``enum``; ``$defs`` are lifted by the caller."""
    if isinstance(node, list):
        return [_openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    if names:
        return {key: _openapi_30(value) for key, value in node.items()}
    node = {key: value for key, value in node.items() if key != "$defs"}
    any_of = node.get("anyOf")
    if isinstance(any_of, list) and {"type": "null"} in any_of:
        rest = [option for option in any_of if option != {"type": "null"}]
        del node["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            node = {**rest[0], **node}
        elif len(rest) == 1:
            node["allOf"] = rest
        else:
            node["anyOf"] = rest
        node["nullable"] = True
    out = {key: _openapi_30(value, key in _NAME_MAPS) for key, value in node.items()}
    if "const" in out:
        out["enum"] = [out.pop("const")]
    return out


def model_schemas(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    """Component schemas for ``models``, named by their titles (and their nested models)."""
    found: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=_SCHEMA_REF + "{model}")
        for name, nested in schema.pop("$defs", {}).items():
            found[name] = _openapi_30(nested)
        found[_title(model)] = _openapi_30(schema)
    return found


def _title(model: type[BaseModel]) -> str:
    return str(model.model_config.get("title") or model.__name__)


# ---- the route table --------------------------------------------------------------------


def api_route_table(routes: Iterable[BaseRoute]) -> list[tuple[str, str, Route]]:
    """``(METHOD, /path/{template}, route)`` for every API route (HEAD left out), with
    Starlette's convertors (``{number:int}``) dropped from the template."""
    table = []
    for route in routes:
        if isinstance(route, Mount):
            continue
        if not isinstance(route, Route):
            continue
        template = _CONVERTOR.sub(lambda m: "{" + m.group(1) + "}", route.path)
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                table.append((method, template, route))
    return table


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    params = []
    for match in _CONVERTOR.finditer(route.path):
        name, convertor = match.group(1), match.group(2)
        kind = "integer" if convertor == "int" or name.endswith("_id") else "string"
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": kind}})
    return params


def _error(name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _SCHEMA_REF + name}}},
    }


def _operation(method: str, path: str, route: Route, body: type[BaseModel] | None) -> Any:
    github = vendored()["paths"].get(path, {}).get(method.lower())
    if github is not None:
        operation = copy.deepcopy(github)
        operation.pop("requestBody", None)
    else:
        name = getattr(route.endpoint, "__name__", "operation").strip("_").replace("_", "-")
        status, schema = _OWN_RESPONSES.get((method, path), ("200", {"type": "object"}))
        operation = {
            "summary": (route.endpoint.__doc__ or name).strip().splitlines()[0],
            "operationId": f"patgate/{name}",
            "parameters": _path_parameters(route),
            "responses": {
                status: {
                    "description": "Response",
                    "content": {"application/json": {"schema": schema}},
                }
            },
        }
        if (method, path) in _PAGED:
            operation["parameters"] += [
                {"$ref": "#/components/parameters/per-page"},
                {"$ref": "#/components/parameters/page"},
            ]
            operation["responses"][status]["headers"] = {
                "Link": {"$ref": "#/components/headers/link"}
            }
        operation["responses"]["404"] = _error("basic-error", "Resource not found")
        operation["responses"]["403"] = _error("basic-error", "Forbidden")
        if method != "GET":
            operation["responses"]["422"] = _error("validation-error", "Validation failed")
    responses = operation["responses"]
    responses.setdefault("400", _error("basic-error", "Bad request (JSON or API version)"))
    responses.setdefault("401", _error("basic-error", "Requires authentication"))
    if body is not None:
        optional = all(not f.is_required() for f in body.model_fields.values())
        operation["requestBody"] = {
            "required": not optional,
            "content": {"application/json": {"schema": {"$ref": _SCHEMA_REF + _title(body)}}},
        }
    return operation


def build_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The document for the API routes ``routes`` (the children of the ``/api/v3`` mount)."""
    models = bodies()
    paths: dict[str, dict[str, Any]] = {}
    for method, path, route in api_route_table(routes):
        paths.setdefault(path, {})[method.lower()] = _operation(
            method, path, route, models.get((method, path))
        )
    github = vendored()
    components = copy.deepcopy(github["components"])
    components["schemas"].update(model_schemas(models.values()))
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "patgate REST API",
            "version": _version(),
            "description": (
                "GitHub-compatible fine-grained personal access tokens governed by "
                f"organizations. Shared operations follow {github['info']['source']} "
                f"{github['info']['version']}."
            ),
        },
        "servers": [{"url": API_PREFIX}],
        "paths": dict(sorted(paths.items())),
        "components": components,
    }


def _version() -> str:
    try:
        return metadata.version("patgate")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0"


def _api_routes(request: Request) -> list[BaseRoute]:
    for route in request.app.routes:
        if isinstance(route, Mount) and route.path == API_PREFIX:
            return list(route.routes)
    return []


def get_document(request: Request) -> Response:
    """patgate's OpenAPI document."""
    document = getattr(request.app.state, "openapi_document", None)
    if document is None:
        document = build_document(_api_routes(request))
        request.app.state.openapi_document = document
    return JSONResponse(document)


routes = [Route(DOCUMENT_PATH, get_document, methods=["GET"])]
