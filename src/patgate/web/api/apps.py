"""The GitHub App endpoints that need the app's JWT: who the app is, where it is installed,
and installation access tokens (``ghs_``) for the eight governance endpoints.

Who may call these is a matter of authentication, not of ``decide()``: they act on no
organization's resource, only on the calling app's own objects (every query is scoped by its
id), and GitHub answers any other caller — a PAT, an installation token, nobody — with
``401 A JSON web token could not be decoded``, never a 403. So the routes check that the
principal is an :class:`AppPrincipal` and nothing else.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from patgate import representations as rep
from patgate.accounts.models import Account
from patgate.approvals.payloads import repository_json, urls, user_json
from patgate.apps import services as apps
from patgate.apps.models import App, Installation
from patgate.authz.decision import AppPrincipal
from patgate.context import Context
from patgate.db import MAX_ID
from patgate.errors import NotFound
from patgate.orgs import services as orgs
from patgate.web.api.paging import link_header, page_of
from patgate.web.deps import Call, api_call, parse_body, parse_json_body
from patgate.web.errors import HTTPProblem

JWT_REQUIRED = "A JSON web token could not be decoded"


class AccessTokenRequest(BaseModel):
    """Body of ``POST /app/installations/{installation_id}/access_tokens`` (all optional)."""

    model_config = ConfigDict(extra="ignore", title="create-installation-access-token")

    repositories: list[StrictStr] | None = Field(
        default=None, description="Names of repositories the token should be narrowed to."
    )
    repository_ids: list[StrictInt] | None = Field(
        default=None, description="Ids of repositories the token should be narrowed to."
    )
    permissions: dict[str, Literal["read", "write", "admin"]] | None = Field(
        default=None,
        description="Permissions the token should have: at most the installation's.",
    )


# ---- representations --------------------------------------------------------------------


def app_json(ctx: Context, app: App) -> dict[str, Any]:
    """GitHub's ``integration``."""
    _, web = urls(ctx)
    html = f"{web}/apps/{app.slug}"
    return {
        "id": app.id,
        "slug": app.slug,
        "node_id": rep.node_id("Integration", app.id),
        "client_id": app.client_id,
        "owner": user_json(ctx, ctx.session.get(Account, app.owner_id)),
        "name": app.name,
        "description": app.description,
        "external_url": html,
        "html_url": html,
        "created_at": rep.timestamp(app.created_at),
        "updated_at": rep.timestamp(app.updated_at),
        "permissions": dict(app.permissions),
        "events": list(app.events.get("events", [])),
        "installations_count": apps.installation_count(ctx, app),
    }


def installation_json(ctx: Context, installation: Installation, app: App) -> dict[str, Any]:
    """GitHub's ``installation`` (on an organization, with every repository)."""
    api, web = urls(ctx)
    org = ctx.session.get(Account, installation.org_id)
    assert org is not None
    return {
        "id": installation.id,
        "client_id": app.client_id,
        "account": user_json(ctx, org),
        "repository_selection": "all",
        "access_tokens_url": f"{api}/app/installations/{installation.id}/access_tokens",
        "repositories_url": f"{api}/installation/repositories",
        "html_url": f"{web}/organizations/{org.login}/settings/installations/{installation.id}",
        "app_id": app.id,
        "app_slug": app.slug,
        "target_id": org.id,
        "target_type": "Organization",
        "permissions": dict(installation.permissions),
        "events": list(installation.events.get("events", [])),
        "created_at": rep.timestamp(installation.created_at),
        "updated_at": rep.timestamp(installation.updated_at),
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": None,
    }


# ---- routes -----------------------------------------------------------------------------


def _app(call: Call) -> App:
    if not isinstance(call.principal, AppPrincipal):
        raise HTTPProblem(401, JWT_REQUIRED)
    return apps.get_app(call.ctx, call.principal.app_id)


def get_authenticated_app(request: Request) -> Response:
    """Get the authenticated app."""
    with api_call(request) as call:
        return JSONResponse(app_json(call.ctx, _app(call)))


def list_installations(request: Request) -> Response:
    """List installations for the authenticated app."""
    with api_call(request) as call:
        app = _app(call)
        page = page_of(request)
        installations, total = apps.installations_of(
            call.ctx, app, page=page.number, per_page=page.size
        )
        link = link_header(request, page, total)
        return JSONResponse(
            [installation_json(call.ctx, i, app) for i in installations],
            headers={"Link": link} if link else None,
        )


def get_org_installation(request: Request) -> Response:
    """Get an organization installation for the authenticated app."""
    with api_call(request) as call:
        app = _app(call)
        org = orgs.get_org(call.ctx, request.path_params["org"])
        installation = apps.find_installation(call.ctx, app, org)
        if installation is None:
            raise NotFound("installation of", org.login)
        return JSONResponse(installation_json(call.ctx, installation, app))


def _create_access_token(request: Request, raw: bytes) -> Response:
    with api_call(request) as call:
        app = _app(call)
        raw_id = request.path_params["installation_id"]
        if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 18 or int(raw_id) > MAX_ID:
            raise NotFound("installation", raw_id)
        installation = apps.get_installation(call.ctx, app, int(raw_id))
        body = parse_body(
            AccessTokenRequest, parse_json_body(raw, required=False), resource="InstallationToken"
        )
        token, secret = apps.create_installation_token(
            call.ctx,
            installation,
            permissions=dict(body.permissions) if body.permissions is not None else None,
            repositories=body.repositories,
            repository_ids=body.repository_ids,
        )
        narrowed = apps.token_repositories(call.ctx, token)
        answer: dict[str, Any] = {
            "token": secret,
            "expires_at": rep.timestamp(token.expires_at),
            "permissions": dict(token.permissions),
            "repository_selection": "all" if narrowed is None else "selected",
        }
        if narrowed is not None:
            owner = call.ctx.session.get(Account, installation.org_id)
            assert owner is not None
            answer["repositories"] = [repository_json(call.ctx, r, owner) for r in narrowed]
        return JSONResponse(answer, status_code=201)


async def create_access_token(request: Request) -> Response:
    """Create an installation access token for an app."""
    # The body is read here and parsed once the caller is known to be the app (401 first).
    raw = await request.body()
    return await run_in_threadpool(_create_access_token, request, raw)


routes = [
    Route("/app", get_authenticated_app, methods=["GET"]),
    Route("/app/installations", list_installations, methods=["GET"]),
    Route("/orgs/{org}/installation", get_org_installation, methods=["GET"]),
    Route(
        "/app/installations/{installation_id}/access_tokens",
        create_access_token,
        methods=["POST"],
    ),
]

BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("POST", "/app/installations/{installation_id}/access_tokens"): AccessTokenRequest,
}
