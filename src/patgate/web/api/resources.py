"""The resource endpoints of SPEC §1: what tokens are enforced on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from patgate import representations as rep
from patgate.accounts.models import Account, User
from patgate.approvals.payloads import user_json
from patgate.authz.cache import MISS, AuthzCache
from patgate.authz.decision import Actions, Decision, OrgFacts, Reason, RepoFacts, decide
from patgate.errors import NotFound
from patgate.orgs import services as orgs
from patgate.orgs.models import Organization
from patgate.repos import services as repos
from patgate.repos.models import Issue, Repository
from patgate.web.api.paging import link_header, page_of
from patgate.web.auth import cached_token_principal, credentials, note_use
from patgate.web.deps import Call, api_call, json_body
from patgate.web.errors import Denied


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
        if call.user_id is None:
            raise NotFound("user")
        user = call.ctx.session.get(User, call.user_id)
        assert user is not None
        call.require(Actions.READ_USER, None)
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


async def get_repo(request: Request) -> Response:
    """The hot path (SPEC §5, performance): answered from cached facts without the database
    or a thread hop when the cache holds both the token and the repository."""
    answer = _cached_repo_answer(request)
    if answer is not None:
        return answer
    return await run_in_threadpool(_get_repo, request)


def _cached_repo_answer(request: Request) -> Response | None:
    cache: AuthzCache = request.app.state.authz_cache
    raw = credentials(request)
    if cache.sync() is None or (raw is not None and raw.startswith("eyJ")):
        return None
    principal = None if raw is None else cached_token_principal(cache, raw)
    if principal is MISS:
        return None
    if raw is not None and principal is None:
        raise Denied(Decision(False, Reason.BAD_CREDENTIALS))
    entry = cache.get(REPOS, _repo_key(request))
    if entry is MISS:
        return None
    if entry is None:
        raise NotFound("repository")
    facts, body = entry
    now = datetime.now(UTC)
    decision = decide(principal, Actions.READ_REPO, facts, now=now)
    if not decision.allowed:
        raise Denied(decision)
    note_use(request, principal, now)
    return JSONResponse(body)


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
        body = _repo_json(call, repo, owner, full=True)
        cache.put(REPOS, _repo_key(request), (facts, body), generation)
        call.require(Actions.READ_REPO, facts)
        return JSONResponse(body)


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
    body = await json_body(request)
    return await _run_sync(request, _create_issue, body)


def _create_issue(request: Request, body: dict[str, Any]) -> Response:
    with api_call(request, anonymous=False) as call:
        repo, owner, facts = _repo(call, request)
        call.require(Actions.WRITE_ISSUES, facts)
        author_id = call.user_id
        if author_id is None:
            # An installation acts on issues as its bot, which patgate does not model yet.
            raise Denied(Decision(False, Reason.INTEGRATION_PERMISSION_MISSING))
        author = call.ctx.session.get(User, author_id)
        assert author is not None
        issue = repos.create_issue(
            call.ctx, repo, title=body.get("title"), body=body.get("body"), author=author
        )
        return JSONResponse(_issue_json(call, issue, repo, owner), status_code=201)


async def _run_sync(request: Request, fn: Any, *args: Any) -> Response:
    return await run_in_threadpool(fn, request, *args)


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
