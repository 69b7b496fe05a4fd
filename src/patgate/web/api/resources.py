"""The resource endpoints of SPEC §1: what tokens are enforced on."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Scope

from patgate import representations as rep
from patgate.accounts.models import Account, User
from patgate.approvals.payloads import user_json
from patgate.authz.cache import MISS, AuthzCache
from patgate.authz.decision import (
    Actions,
    Decision,
    OrgFacts,
    Principal,
    Reason,
    RepoFacts,
    decide,
)
from patgate.clock import Clock
from patgate.errors import NotFound
from patgate.orgs import services as orgs
from patgate.orgs.models import Organization
from patgate.repos import services as repos
from patgate.repos.models import Issue, Repository
from patgate.repos.services import MAX_BODY, MAX_TITLE
from patgate.runtime import Runtime
from patgate.tokens.jobs import LastUsedBuffer
from patgate.web.api.paging import link_header, page_of
from patgate.web.auth import (
    cached_token_principal,
    credentials,
    credentials_of,
    note_use,
    note_use_in,
)
from patgate.web.deps import Call, api_call, parse_json_body
from patgate.web.errors import Denied
from patgate.web.versions import VERSION_HEADER, is_supported, requested_version, version_headers


def _urls(call: Call) -> tuple[str, str]:
    return call.runtime.settings.api_url, call.runtime.settings.base_url


def _paged(request: Request, items: list[Any], total: int, page: Any) -> JSONResponse:
    headers = {}
    link = link_header(request, page, total)
    if link:
        headers["Link"] = link
    return JSONResponse(items, headers=headers)


def get_authenticated_user(request: Request) -> Response:
    with api_call(request, anonymous=False) as call:
        call.require(Actions.READ_USER, None)
        if call.user_id is None:
            raise NotFound("user")
        user = call.ctx.session.get(User, call.user_id)
        assert user is not None
        api, web = _urls(call)
        return JSONResponse(
            rep.private_user(
                api=api,
                web=web,
                id=user.id,
                login=user.login,
                name=user.name,
                email=user.email,
                site_admin=user.site_admin,
                created_at=user.created_at,
                updated_at=user.updated_at,
            )
        )


def _org(call: Call, request: Request) -> tuple[Organization, OrgFacts]:
    org = orgs.get_org(call.ctx, request.path_params["org"])
    return org, orgs.org_facts(call.ctx, org)


def get_org(request: Request) -> Response:
    with api_call(request) as call:
        org, facts = _org(call, request)
        call.require(Actions.READ_ORG, facts)
        api, web = _urls(call)
        return JSONResponse(
            rep.organization(
                api=api,
                web=web,
                id=org.id,
                login=org.login,
                name=org.name,
                description=org.description,
                created_at=org.created_at,
                updated_at=org.updated_at,
            )
        )


def _repo_json(call: Call, repo: Repository, owner: Account, *, full: bool) -> dict[str, Any]:
    api, web = _urls(call)
    owner_json = user_json(call.ctx, owner)
    builder = rep.full_repository if full else rep.minimal_repository
    return builder(
        api=api, web=web, id=repo.id, name=repo.name, owner=owner_json,  # type: ignore[arg-type]
        visibility=repo.visibility,  # type: ignore[arg-type]
        description=repo.description, created_at=repo.created_at, updated_at=repo.updated_at,
        pushed_at=repo.pushed_at, open_issues_count=repos.open_issue_count(call.ctx, repo),
    )  # fmt: skip


def list_org_repos(request: Request) -> Response:
    """The org's repositories that the caller may see (public ones to everybody)."""
    with api_call(request) as call:
        org, facts = _org(call, request)
        page = page_of(request)
        visible = []
        for repo in repos.repos_of(call.ctx, org):
            resource = RepoFacts(repo.id, repo.owner_id, repo.visibility, facts)
            if call.allows(Actions.READ_REPO, resource):
                visible.append(repo)
        start = (page.number - 1) * page.size
        items = [_repo_json(call, r, org, full=False) for r in visible[start : start + page.size]]
        return _paged(request, items, len(visible), page)


def list_org_members(request: Request) -> Response:
    with api_call(request) as call:
        org, facts = _org(call, request)
        call.require(Actions.READ_MEMBERS, facts)
        page = page_of(request)
        members = orgs.members(call.ctx, org)
        start = (page.number - 1) * page.size
        items = [user_json(call.ctx, user) for user, _ in members[start : start + page.size]]
        return _paged(request, items, len(members), page)


def _repo(call: Call, request: Request) -> tuple[Repository, Account, RepoFacts]:
    repo = repos.get_repo(call.ctx, request.path_params["owner"], request.path_params["repo"])
    owner = call.ctx.session.get(Account, repo.owner_id)
    assert owner is not None
    return repo, owner, repos.repo_facts(call.ctx, repo)


REPOS = "repo"
REPO_PREFIX = "/api/v3/repos/"


class CachedRepo(NamedTuple):
    """What :data:`REPOS` holds for a repository: its facts and its body, rendered once as
    :class:`JSONResponse` renders it (the bytes are valid as long as the facts are)."""

    facts: RepoFacts
    body: bytes


async def get_repo(request: Request) -> Response:
    """The hot path (SPEC §5, performance): answered from cached facts without the database
    or a thread hop when the cache holds both the token and the repository. (A plain ``GET``
    is answered before this route, by :class:`RepoFastPath`; this covers the rest.)"""
    answer = _cached_repo_answer(request)
    if answer is not None:
        return answer
    return await run_in_threadpool(_get_repo, request)


def _cached_repo_answer(request: Request) -> Response | None:
    runtime: Runtime = request.app.state.runtime
    now = runtime.clock.now()
    found = cached_repo(
        request.app.state.authz_cache, credentials(request), _repo_key(request), now
    )
    if found is None:
        return None
    entry, principal = found
    note_use(request, principal, now)
    return Response(entry.body, media_type=JSONResponse.media_type)


def cached_repo(
    cache: AuthzCache, raw: str | None, key: tuple[str, str], now: datetime
) -> tuple[CachedRepo, Principal] | None:
    """The cached repository ``key`` and the principal of ``raw``, when the cache holds
    both and ``decide()`` lets the principal read it; ``None`` when the cache cannot
    answer. Raises :class:`Denied` or :class:`NotFound` for what it can refuse."""
    if cache.sync() is None or (raw is not None and raw.startswith("eyJ")):
        return None
    principal = None if raw is None else cached_token_principal(cache, raw)
    if principal is MISS:
        return None
    if raw is not None and principal is None:
        raise Denied(Decision(False, Reason.BAD_CREDENTIALS))
    entry = cache.get(REPOS, key)
    if entry is MISS:
        return None
    if entry is None:
        raise NotFound("repository")
    decision = decide(principal, Actions.READ_REPO, entry.facts, now=now)
    if not decision.allowed:
        raise Denied(decision)
    return entry, principal


def _repo_key(request: Request) -> tuple[str, str]:
    return request.path_params["owner"].lower(), request.path_params["repo"].lower()


def _get_repo(request: Request) -> Response:
    cache: AuthzCache = request.app.state.authz_cache
    generation = cache.sync()
    with api_call(request) as call:
        try:
            repo, owner, facts = _repo(call, request)
        except NotFound:
            cache.put(REPOS, _repo_key(request), None, generation)
            raise
        response = JSONResponse(_repo_json(call, repo, owner, full=True))
        cache.put(REPOS, _repo_key(request), CachedRepo(facts, response.body), generation)
        call.require(Actions.READ_REPO, facts)
        return response


_JSON_HEADER = (b"content-type", JSONResponse.media_type.encode("latin-1"))


class RepoFastPath:
    """``GET /api/v3/repos/{owner}/{repo}`` answered in front of the whole ASGI stack
    (error middleware, version middleware, routing, ``Request``) when the authorization
    cache allows it; ``None`` sends the request through that stack as usual.

    Only a plain request is taken: method ``GET`` exactly, no query string, no root path,
    exactly two path segments, a supported API version, a well-formed credential (or
    none) whose principal and the repository are both cached, and an allowing
    ``decide()``. Anything else (a miss, a refusal, ``HEAD``, a version to refuse, ...) is
    left to the route, which answers it as always; so the answers are the route's, byte
    for byte: ``JSONResponse``'s body and headers, then the version headers that
    :class:`~patgate.web.versions.ApiVersionMiddleware` appends.
    """

    def __init__(self, cache: AuthzCache, last_used: LastUsedBuffer | None, clock: Clock) -> None:
        self.cache = cache
        self.last_used = last_used
        self.clock = clock

    def answer(self, scope: Scope) -> tuple[Message, Message] | None:
        """The response messages for ``scope``, or ``None`` to leave it to the app."""
        path: str = scope["path"]
        if (
            scope["method"] != "GET"
            or not path.startswith(REPO_PREFIX)
            or scope.get("query_string")
            or scope.get("root_path")
        ):
            return None
        owner, slash, name = path[len(REPO_PREFIX) :].partition("/")
        if not (owner and slash and name) or "/" in name:
            return None
        authorization = asked = None
        for header, value in scope["headers"]:
            if header == b"authorization":
                if authorization is None:
                    authorization = value
            elif header == VERSION_HEADER and asked is None:
                asked = value
        version = requested_version(asked)
        if not is_supported(version):
            return None
        now = self.clock.now()
        try:
            raw = None if authorization is None else credentials_of(authorization.decode("latin-1"))
            found = cached_repo(self.cache, raw, (owner.lower(), name.lower()), now)
        except (Denied, NotFound):
            return None  # the route answers refusals (and logs them)
        if found is None:
            return None
        entry, principal = found
        note_use_in(self.last_used, principal, now)
        body = entry.body
        headers = [
            (b"content-length", str(len(body)).encode("latin-1")),
            _JSON_HEADER,
            *version_headers(version),
        ]
        return (
            {"type": "http.response.start", "status": 200, "headers": headers},
            {"type": "http.response.body", "body": body},
        )


def _issue_json(call: Call, issue: Issue, repo: Repository, owner: Account) -> dict[str, Any]:
    api, web = _urls(call)
    author = call.ctx.session.get(User, issue.author_id) if issue.author_id else None
    return rep.issue(
        api=api, web=web, id=issue.id, number=issue.number, title=issue.title, body=issue.body,
        state=issue.state, user=user_json(call.ctx, author),
        repository_full_name=f"{owner.login}/{repo.name}", created_at=issue.created_at,
        updated_at=issue.updated_at, closed_at=issue.closed_at,
    )  # fmt: skip


def list_issues(request: Request) -> Response:
    with api_call(request) as call:
        repo, owner, facts = _repo(call, request)
        call.require(Actions.READ_ISSUES, facts)
        page = page_of(request)
        state = request.query_params.get("state", "open")
        if state not in ("open", "closed", "all"):
            state = "open"
        issues, total = repos.list_issues(
            call.ctx, repo, state=state, page=page.number, per_page=page.size
        )
        return _paged(request, [_issue_json(call, i, repo, owner) for i in issues], total, page)


def get_issue(request: Request) -> Response:
    with api_call(request) as call:
        repo, owner, facts = _repo(call, request)
        call.require(Actions.READ_ISSUES, facts)
        issue = repos.get_issue(call.ctx, repo, request.path_params["number"])
        return JSONResponse(_issue_json(call, issue, repo, owner))


async def create_issue(request: Request) -> Response:
    # The body is read here and parsed once the caller may write issues (401/403/404 first).
    raw = await request.body()
    return await _run_sync(request, _create_issue, raw)


def _create_issue(request: Request, raw: bytes) -> Response:
    with api_call(request, anonymous=False) as call:
        repo, owner, facts = _repo(call, request)
        call.require(Actions.WRITE_ISSUES, facts)
        author_id = call.user_id
        if author_id is None:
            # An installation acts on issues as its bot, which patgate does not model yet.
            raise Denied(Decision(False, Reason.INTEGRATION_PERMISSION_MISSING))
        author = call.ctx.session.get(User, author_id)
        assert author is not None
        body = parse_json_body(raw)
        issue = repos.create_issue(
            call.ctx, repo, title=body.get("title"), body=body.get("body"), author=author
        )
        return JSONResponse(_issue_json(call, issue, repo, owner), status_code=201)


async def _run_sync(request: Request, fn: Any, *args: Any) -> Response:
    return await run_in_threadpool(fn, request, *args)


class CreateIssue(BaseModel):
    """Body of ``POST /repos/{owner}/{repo}/issues``, for patgate's OpenAPI document; the
    service itself checks the fields (``repos.create_issue``)."""

    model_config = ConfigDict(extra="ignore", title="create-issue")

    title: StrictStr = Field(min_length=1, max_length=MAX_TITLE, description="The issue's title.")
    body: StrictStr | None = Field(
        default=None, max_length=MAX_BODY, description="The issue's text."
    )


routes = [
    Route("/user", get_authenticated_user),
    Route("/orgs/{org}", get_org),
    Route("/orgs/{org}/repos", list_org_repos),
    Route("/orgs/{org}/members", list_org_members),
    Route("/repos/{owner}/{repo}", get_repo),
    Route("/repos/{owner}/{repo}/issues", list_issues, methods=["GET"]),
    Route("/repos/{owner}/{repo}/issues", create_issue, methods=["POST"]),
    Route("/repos/{owner}/{repo}/issues/{number:int}", get_issue),
]

BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("POST", "/repos/{owner}/{repo}/issues"): CreateIssue,
}
