"""The eight REST endpoints through which GitHub Apps govern fine-grained personal access
tokens (``orgs/*-pat-*`` in GitHub's OpenAPI description), and the ``/organizations/{org_id}``
aliases of the two repository lists.

Each route authenticates, asks ``decide()`` (installation tokens with the permission only:
``Actions.LIST_REQUESTS`` ...), then reads its query or body and calls the approvals services,
which do the work in the call's one transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from patgate.accounts.models import User
from patgate.approvals import services as approvals
from patgate.approvals.payloads import grant_item, repository_json, request_item
from patgate.authz.decision import Action, Actions
from patgate.db import MAX_ID
from patgate.errors import InvalidInput, NotFound
from patgate.orgs import services as orgs
from patgate.orgs.models import Organization
from patgate.repos import services as repos
from patgate.web.api.paging import link_header, page_of
from patgate.web.deps import Call, api_call, parse_body, parse_json_body

MAX_OWNERS = 10
MAX_TOKEN_IDS = 50
REQUEST_RESOURCE = "PatRequest"
GRANT_RESOURCE = "PatGrant"


# ---- bodies -----------------------------------------------------------------------------

Reason = Annotated[StrictStr, Field(max_length=approvals.MAX_REASON)]
Ids = Annotated[list[StrictInt], Field(min_length=1, max_length=approvals.MAX_BULK)]


class ReviewRequest(BaseModel):
    """Body of ``POST /orgs/{org}/personal-access-token-requests/{pat_request_id}``."""

    model_config = ConfigDict(extra="ignore", title="review-pat-grant-request")

    action: Literal["approve", "deny"] = Field(description="Action to apply to the request.")
    reason: Reason | None = Field(
        default=None,
        description="Reason for approving or denying the request. Max 1024 characters.",
    )


class ReviewRequests(ReviewRequest):
    """Body of ``POST /orgs/{org}/personal-access-token-requests``."""

    model_config = ConfigDict(title="review-pat-grant-requests-in-bulk")

    pat_request_ids: Ids = Field(
        description="Unique identifiers of the requests (1 to 100).",
    )


class RevokeGrant(BaseModel):
    """Body of ``POST /orgs/{org}/personal-access-tokens/{pat_id}``."""

    model_config = ConfigDict(extra="ignore", title="update-pat-access")

    action: Literal["revoke"] = Field(
        description="Action to apply to the fine-grained personal access token."
    )


class RevokeGrants(RevokeGrant):
    """Body of ``POST /orgs/{org}/personal-access-tokens``."""

    model_config = ConfigDict(title="update-pat-accesses")

    pat_ids: Ids = Field(description="The ids of the grants (``pat_id``), 1 to 100.")


# ---- query ------------------------------------------------------------------------------


def _multi(query: QueryParams, name: str) -> list[str]:
    """``name[]=a&name[]=b`` (githubkit), ``name=a,b`` (octokit) or both, in order."""
    values = [*query.getlist(f"{name}[]"), *query.getlist(name)]
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def parse_timestamp(text: str, field: str) -> datetime:
    """ISO 8601 as clients send it (``2024-01-02T03:04:05Z``, githubkit's
    ``2024-01-02 03:04:05+00:00``, a bare date); naive values are UTC. 422 otherwise."""
    value = text.strip()
    # An unencoded ``+`` in a query string arrives as a space: ``03:04:05 00:00``.
    if len(value) > 6 and value[-6] == " " and value[-5:-3].isdigit() and value[-3] == ":":
        value = f"{value[:-6]}+{value[-5:]}"
    try:
        parsed = datetime.fromisoformat(value)
        # An offset can carry year 1 or 9999 out of range (OverflowError).
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(
            f"{field} {text!r} is not an ISO 8601 timestamp (YYYY-MM-DDTHH:MM:SSZ)", field=field
        ) from None


def list_filters(query: QueryParams) -> approvals.ListFilters:
    """The filters of the two list endpoints; raises :class:`InvalidInput` (422)."""
    owners = _multi(query, "owner")
    if len(owners) > MAX_OWNERS:
        raise InvalidInput(f"at most {MAX_OWNERS} owners", field="owner")
    raw_ids = _multi(query, "token_id")
    if len(raw_ids) > MAX_TOKEN_IDS:
        raise InvalidInput(f"at most {MAX_TOKEN_IDS} token ids", field="token_id")
    token_ids = []
    for raw in raw_ids:
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) > MAX_ID:
            raise InvalidInput(f"token_id {raw!r} is not a token id", field="token_id")
        token_ids.append(int(raw))
    permission = query.get("permission") or None
    if permission is not None:
        approvals.parse_permission_filter(permission)
    sort = query.get("sort") or "created_at"
    if sort != "created_at":
        raise InvalidInput(f"sort must be created_at, not {sort!r}", field="sort")
    direction = query.get("direction") or "desc"
    if direction not in ("asc", "desc"):
        raise InvalidInput(f"direction must be asc or desc, not {direction!r}", field="direction")
    before = query.get("last_used_before")
    after = query.get("last_used_after")
    return approvals.ListFilters(
        owners=tuple(owners),
        repository=query.get("repository") or None,
        permission=permission,
        last_used_before=parse_timestamp(before, "last_used_before") if before else None,
        last_used_after=parse_timestamp(after, "last_used_after") if after else None,
        token_ids=tuple(token_ids),
        direction=direction,
    )


def _id(request: Request, name: str) -> int:
    """An integer path parameter; anything else names nothing (404, as GitHub answers)."""
    raw = request.path_params[name]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18 or int(raw) > MAX_ID:
        raise NotFound(name, raw)
    return int(raw)


# ---- plumbing ---------------------------------------------------------------------------


def _authorized(call: Call, request: Request, action: Action) -> Organization:
    """The organization of the path, once ``decide()`` allowed ``action`` on it."""
    if "org_id" in request.path_params:
        org = call.ctx.session.get(Organization, _id(request, "org_id"))
        if org is None:
            raise NotFound("organization", request.path_params["org_id"])
    else:
        org = orgs.get_org(call.ctx, request.path_params["org"])
    call.require(action, orgs.org_facts(call.ctx, org))
    return org


def _paged(request: Request, items: list[Any], total: int, page: Any) -> JSONResponse:
    link = link_header(request, page, total)
    return JSONResponse(items, headers={"Link": link} if link else None)


def _owners(call: Call, user_ids: set[int]) -> dict[int, User]:
    if not user_ids:
        return {}
    return {u.id: u for u in call.ctx.session.scalars(select(User).where(User.id.in_(user_ids)))}


async def _sync(request: Request, handler: Any) -> Response:
    """Read the body here (async), handle it in a worker thread (the services are sync)."""
    raw = await request.body()
    return await run_in_threadpool(handler, request, raw)


# ---- requests ---------------------------------------------------------------------------


def list_requests(request: Request) -> Response:
    with api_call(request, anonymous=False) as call:
        org = _authorized(call, request, Actions.LIST_REQUESTS)
        filters = list_filters(request.query_params)
        page = page_of(request)
        rows, total = approvals.list_pending(
            call.ctx, org, filters, page=page.number, per_page=page.size
        )
        owners = _owners(call, {token.user_id for _, token in rows})
        items = [request_item(call.ctx, org, r, t, owners[t.user_id]) for r, t in rows]
        return _paged(request, items, total, page)


def _review(request: Request, raw: bytes) -> Response:
    with api_call(request, anonymous=False) as call:
        org = _authorized(call, request, Actions.REVIEW_REQUESTS)
        if "pat_request_id" in request.path_params:
            request_id = _id(request, "pat_request_id")
            approvals.get_request(call.ctx, org, request_id)  # 404 when it is not this org's
            body: ReviewRequest = parse_body(
                ReviewRequest, parse_json_body(raw), resource=REQUEST_RESOURCE
            )
            ids = [request_id]
        else:
            bulk = parse_body(ReviewRequests, parse_json_body(raw), resource=REQUEST_RESOURCE)
            body, ids = bulk, bulk.pat_request_ids
        decide_requests = approvals.approve if body.action == "approve" else approvals.deny
        decide_requests(call.ctx, org, ids, actor=call.actor, reason=body.reason)
        if "pat_request_id" in request.path_params:
            return Response(status_code=204)
        return JSONResponse({}, status_code=202)


async def review_requests(request: Request) -> Response:
    return await _sync(request, _review)


async def review_request(request: Request) -> Response:
    return await _sync(request, _review)


def request_repositories(request: Request) -> Response:
    """List repositories requested to be accessed by a fine-grained personal access token."""
    with api_call(request, anonymous=False) as call:
        org = _authorized(call, request, Actions.LIST_REQUESTS)
        token_request = approvals.get_request(call.ctx, org, _id(request, "pat_request_id"))
        ids = approvals.request_repository_ids(call.ctx, token_request)
        return _repositories(call, request, org, token_request.repository_selection, ids)


# ---- grants -----------------------------------------------------------------------------


def list_grants(request: Request) -> Response:
    with api_call(request, anonymous=False) as call:
        org = _authorized(call, request, Actions.LIST_GRANTS)
        filters = list_filters(request.query_params)
        page = page_of(request)
        rows, total = approvals.list_active_grants(
            call.ctx, org, filters, page=page.number, per_page=page.size
        )
        owners = _owners(call, {token.user_id for _, token in rows})
        items = [grant_item(call.ctx, org, g, t, owners[t.user_id]) for g, t in rows]
        return _paged(request, items, total, page)


def _revoke(request: Request, raw: bytes) -> Response:
    with api_call(request, anonymous=False) as call:
        org = _authorized(call, request, Actions.REVOKE_GRANTS)
        if "pat_id" in request.path_params:
            grant_id = _id(request, "pat_id")
            approvals.get_grant(call.ctx, org, grant_id)  # 404 when it is not this org's
            parse_body(RevokeGrant, parse_json_body(raw), resource=GRANT_RESOURCE)
            approvals.revoke(call.ctx, org, [grant_id], actor=call.actor)
            return Response(status_code=204)
        body = parse_body(RevokeGrants, parse_json_body(raw), resource=GRANT_RESOURCE)
        approvals.revoke(call.ctx, org, body.pat_ids, actor=call.actor)
        return JSONResponse({}, status_code=202)


async def revoke_grants(request: Request) -> Response:
    return await _sync(request, _revoke)


async def revoke_grant(request: Request) -> Response:
    return await _sync(request, _revoke)


def grant_repositories(request: Request) -> Response:
    """List repositories a fine-grained personal access token has access to."""
    with api_call(request, anonymous=False) as call:
        org = _authorized(call, request, Actions.LIST_GRANTS)
        grant = approvals.get_grant(call.ctx, org, _id(request, "pat_id"))
        ids = approvals.grant_repository_ids(call.ctx, grant)
        return _repositories(call, request, org, grant.repository_selection, ids)


def _repositories(
    call: Call, request: Request, org: Organization, selection: str, ids: list[int]
) -> Response:
    """What a request or grant reaches: every org repository (``all``), those selected
    (``subset``) or none, a page at a time, by name."""
    page = page_of(request)
    if selection == "all":
        chosen = sorted(repos.repos_of(call.ctx, org), key=lambda r: r.name_key)
    elif selection == "subset":
        chosen = repos.repos_by_ids(call.ctx, ids)
    else:
        chosen = []
    start = (page.number - 1) * page.size
    items = [repository_json(call.ctx, r, org) for r in chosen[start : start + page.size]]
    return _paged(request, items, len(chosen), page)


REQUESTS = "/orgs/{org}/personal-access-token-requests"
GRANTS = "/orgs/{org}/personal-access-tokens"

routes = [
    Route(REQUESTS, list_requests, methods=["GET"]),
    Route(REQUESTS, review_requests, methods=["POST"]),
    Route(REQUESTS + "/{pat_request_id}", review_request, methods=["POST"]),
    Route(REQUESTS + "/{pat_request_id}/repositories", request_repositories, methods=["GET"]),
    Route(GRANTS, list_grants, methods=["GET"]),
    Route(GRANTS, revoke_grants, methods=["POST"]),
    Route(GRANTS + "/{pat_id}", revoke_grant, methods=["POST"]),
    Route(GRANTS + "/{pat_id}/repositories", grant_repositories, methods=["GET"]),
    # The ``repositories_url`` of the items, in GitHub's form (the org by its id).
    Route(
        "/organizations/{org_id}/personal-access-token-requests/{pat_request_id}/repositories",
        request_repositories,
        methods=["GET"],
    ),
    Route(
        "/organizations/{org_id}/personal-access-tokens/{pat_id}/repositories",
        grant_repositories,
        methods=["GET"],
    ),
]

# The pydantic models of the request bodies, by route (for patgate's OpenAPI document).
BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("POST", REQUESTS): ReviewRequests,
    ("POST", REQUESTS + "/{pat_request_id}"): ReviewRequest,
    ("POST", GRANTS): RevokeGrants,
    ("POST", GRANTS + "/{pat_id}"): RevokeGrant,
}
