"""The eight governance endpoints over real HTTP on both databases: GitHub's shapes (every
answer validated against GitHub's OpenAPI description), filters, paging, atomic bulk reviews,
who may call them, API versions, and patgate's own OpenAPI document."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.approvals.models import Grant, TokenRequest
from patgate.apps import services as apps
from patgate.context import CLI_ACTOR
from patgate.orgs import services as orgs
from patgate.tokens import services as tokens
from patgate.tokens.models import FineGrainedToken
from patgate.web.api import openapi
from support.openapi import SPEC_PATH, assert_github_timestamp, validate_response
from support.world import World

REQUESTS = "/orgs/{org}/personal-access-token-requests"
REQUEST = REQUESTS + "/{pat_request_id}"
REQUEST_REPOS = REQUEST + "/repositories"
GRANTS = "/orgs/{org}/personal-access-tokens"
GRANT = GRANTS + "/{pat_id}"
GRANT_REPOS = GRANT + "/repositories"
PAT_FORBIDDEN = "Resource not accessible by personal access token"
APP_FORBIDDEN = "Resource not accessible by integration"
WRITE = {
    "organization_personal_access_token_requests": "write",
    "organization_personal_access_tokens": "write",
}
READ = {
    "organization_personal_access_token_requests": "read",
    "organization_personal_access_tokens": "read",
}


# ---- helpers ----------------------------------------------------------------------------


class Api:
    """An installation token's view of the API, validating every answer it gets."""

    def __init__(self, server: Any, token: str | None, scheme: str = "token") -> None:
        self.server = server
        self.headers = {"Authorization": f"{scheme} {token}"} if token else {}

    def call(
        self,
        method: str,
        template: str,
        *,
        org: str = "acme",
        params: Any = None,
        body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        **ids: Any,
    ) -> httpx.Response:
        path = template.format(org=org, **ids)
        response = httpx.request(
            method,
            f"{self.server.api}{path}",
            params=params,
            json=body,
            content=content,
            headers={**self.headers, **(headers or {})},
        )
        payload = response.json() if response.content else None
        if template.startswith("/orgs/"):
            validate_response(method, template, response.status_code, payload)
        else:  # the /organizations/{org_id} aliases: the same answers as their originals
            alias = template.replace("/organizations/{org_id}", "/orgs/{org}")
            validate_response(method, alias, response.status_code, payload)
        return response

    def get(self, template: str, **kwargs: Any) -> httpx.Response:
        return self.call("GET", template, **kwargs)

    def post(self, template: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.call("POST", template, body=body, **kwargs)


def install_app(server: Any, name: str, permissions: dict[str, str], org: str = "acme") -> Api:
    """Register an app, install it on ``org`` and return an installation token's view."""
    with server.runtime.unit_of_work() as ctx:
        owner = orgs.get_org(ctx, org)
        app, _ = apps.create_app(
            ctx, name=name, owner_org=owner, permissions=permissions, actor=CLI_ACTOR
        )
        installation = apps.install(ctx, app, owner, actor=CLI_ACTOR)
        _, secret = apps.create_installation_token(ctx, installation)
    return Api(server, secret)


def many_pending(runtime: Any, count: int, prefix: str = "bulk") -> list[int]:
    """``count`` pending requests (members of 50 tokens each), made in one unit of work."""
    ids: list[int] = []
    with runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        for start in range(0, count, tokens.MAX_TOKENS_PER_USER):
            user = accounts.create_user(
                ctx, f"{prefix}{start}", email=f"{prefix}{start}@example.com"
            )
            orgs.add_member(ctx, org, user, actor=CLI_ACTOR)
            for number in range(start, min(count, start + tokens.MAX_TOKENS_PER_USER)):
                issued = tokens.create_fine_grained(
                    ctx,
                    user,
                    name=f"token-{number}",
                    resource_owner=org,
                    repository_selection="all",
                    permissions={"issues": "read"},
                    expires_at=ctx.now + timedelta(days=30),
                    actor=CLI_ACTOR,
                )
                ids.append(issued.request.id)
    return ids


def states(server: Any) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    with server.runtime.unit_of_work() as ctx:
        requests = ctx.session.execute(
            select(TokenRequest.id, TokenRequest.state).order_by(TokenRequest.id)
        ).all()
        grants = ctx.session.execute(select(Grant.id, Grant.state).order_by(Grant.id)).all()
        return [tuple(r) for r in requests], [tuple(g) for g in grants]  # type: ignore[misc]


def grant_of(world: World, token: Any) -> int:
    return world.run(lambda ctx, org: approvals.active_grant_of(ctx, token, org).id)


def approved(world: World, issued: Any) -> int:
    world.run(approvals.approve, [issued.request.id], actor=world.actor())
    return grant_of(world, issued.token)


@pytest.fixture
def server(live_server: Any) -> Any:
    return live_server()


@pytest.fixture
def world(server: Any) -> World:
    return World(server.runtime).build()


@pytest.fixture
def api(server: Any, world: World) -> Api:
    return install_app(server, "governor", WRITE)


# ---- listing requests -------------------------------------------------------------------


def test_list_requests(server: Any, world: World, api: Api) -> None:
    subset = world.token(
        "mona", name="subset", repositories=["private-api"], reason="Deploy the API"
    )
    everything = world.token("mona", name="everything", permissions={"contents": "read"})
    world.token("olivia", name="owners-own")  # approved at once: not listed
    response = api.get(REQUESTS)
    assert response.status_code == 200
    assert "link" not in response.headers
    items = response.json()
    assert [i["id"] for i in items] == [everything.request.id, subset.request.id]
    item = items[1]
    assert item["reason"] == "Deploy the API"
    assert item["owner"]["login"] == "mona"
    assert item["repository_selection"] == "subset"
    assert item["permissions"] == {
        "organization": {},
        "repository": {"issues": "write", "metadata": "read"},
        "other": {},
    }
    assert (item["token_id"], item["token_name"]) == (subset.token.id, "subset")
    assert item["token_expired"] is False and item["token_last_used_at"] is None
    assert_github_timestamp(item["created_at"])
    assert_github_timestamp(item["token_expires_at"])
    with server.runtime.unit_of_work() as ctx:
        org_id = orgs.get_org(ctx, "acme").id
    assert item["repositories_url"] == (
        f"{server.api}/organizations/{org_id}/personal-access-token-requests/"
        f"{subset.request.id}/repositories"
    )
    repositories = httpx.get(item["repositories_url"], headers=api.headers)
    assert [r["name"] for r in repositories.json()] == ["private-api"]
    ascending = api.get(REQUESTS, params={"direction": "asc", "sort": "created_at"}).json()
    assert [i["id"] for i in ascending] == [subset.request.id, everything.request.id]


def test_list_request_filters(server: Any, world: World, api: Api) -> None:
    with server.runtime.unit_of_work() as ctx:
        orgs.add_member(
            ctx,
            orgs.get_org(ctx, "acme"),
            accounts.create_user(ctx, "max", email="max@example.com"),
            actor=CLI_ACTOR,
        )
    a = world.token("mona", name="a", repositories=["private-api"], permissions={"issues": "read"})
    b = world.token("mona", name="b", repositories=["private-ops"], permissions={"issues": "write"})
    c = world.token("max", name="c", repositories="all", permissions={"contents": "write"})
    used = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    with server.runtime.unit_of_work() as ctx:
        ctx.session.get(FineGrainedToken, a.token.id).last_used_at = used
        ctx.session.get(FineGrainedToken, c.token.id).last_used_at = used + timedelta(days=30)

    def ids(params: Any) -> set[int]:
        response = api.get(REQUESTS, params=params)
        assert response.status_code == 200, response.text
        return {i["token_id"] for i in response.json()}

    a, b, c = a.token.id, b.token.id, c.token.id
    assert ids({}) == {a, b, c}
    assert ids([("owner[]", "mona")]) == {a, b}
    assert ids([("owner[]", "MONA"), ("owner[]", "max")]) == {a, b, c}
    assert ids({"owner": "mona,max"}) == {a, b, c}
    assert ids({"owner": "nobody-here"}) == set()
    assert ids({"repository": "private-api"}) == {a, c}  # subset with it, and every all-token
    assert ids({"repository": "PRIVATE-OPS"}) == {b, c}
    assert ids({"repository": "no-such-repo"}) == set()
    assert ids({"permission": "issues_read"}) == {a}
    assert ids({"permission": "issues_write"}) == {b}
    assert ids({"permission": "contents_write"}) == {c}
    assert ids([("token_id[]", str(a)), ("token_id[]", str(c))]) == {a, c}
    assert ids({"token_id": f"{b},{c}"}) == {b, c}
    for before in (
        "2024-01-02T03:04:06Z",
        "2024-01-02 03:04:06+00:00",
        "2024-01-02T05:04:06+02:00",
    ):
        assert ids({"last_used_before": before}) == {a}
    assert ids({"last_used_after": "2024-01-02 03:04:05+00:00"}) == {c}
    assert ids({"last_used_after": "2024-01-02"}) == {a, c}
    # An unencoded "+" arrives as a space.
    raw = httpx.get(
        f"{server.api}/orgs/acme/personal-access-token-requests"
        "?last_used_before=2024-01-02T03:04:06+00:00",
        headers=api.headers,
    )
    assert {i["token_id"] for i in raw.json()} == {a}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"owner": ",".join(f"user{i}" for i in range(11))}, "owner"),
        ([("owner[]", f"user{i}") for i in range(11)], "owner"),
        ({"token_id": "1,two"}, "token_id"),
        ({"token_id": "1.5"}, "token_id"),
        ({"token_id": ",".join(str(i) for i in range(1, 52))}, "token_id"),
        ({"permission": "issues_admin"}, "permission"),
        ({"permission": "nonsense"}, "permission"),
        ({"last_used_before": "yesterday"}, "last_used_before"),
        ({"last_used_after": "2024-13-01T00:00:00Z"}, "last_used_after"),
        ({"sort": "updated_at"}, "sort"),
        ({"direction": "up"}, "direction"),
        ({"per_page": "0"}, "per_page"),
        ({"per_page": "ten"}, "per_page"),
        ({"per_page": "-5"}, "per_page"),
        ({"page": "0"}, "page"),
        ({"page": "1.5"}, "page"),
    ],
)
@pytest.mark.parametrize("template", [REQUESTS, GRANTS])
def test_invalid_list_parameters(
    world: World, api: Api, template: str, params: Any, field: str
) -> None:
    response = api.get(template, params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["message"] == "Validation Failed" and body["status"] == "422"
    assert body["errors"][0]["field"] == field


def test_per_page_above_100_is_capped_and_links_are_absolute(
    server: Any, world: World, api: Api
) -> None:
    ids = many_pending(server.runtime, 120)
    response = api.get(REQUESTS, params={"per_page": 500})
    assert len(response.json()) == 100
    link = response.headers["link"]
    page_2 = f"{server.api}/orgs/acme/personal-access-token-requests?page=2&per_page=100"
    assert f'<{page_2}>; rel="next", <{page_2}>; rel="last"' == link
    second = api.get(REQUESTS, params={"per_page": 500, "page": 2})
    assert len(second.json()) == 20
    assert 'rel="prev"' in second.headers["link"] and 'rel="next"' not in second.headers["link"]
    seen = [i["id"] for i in response.json()] + [i["id"] for i in second.json()]
    assert sorted(seen) == sorted(ids)
    default = api.get(REQUESTS)
    assert len(default.json()) == 30
    assert api.get(REQUESTS, params={"page": 99}).json() == []


# ---- reviewing requests -----------------------------------------------------------------


def test_bulk_approval_of_100_requests(server: Any, world: World, api: Api) -> None:
    ids = many_pending(server.runtime, 100)
    response = api.post(REQUESTS, {"action": "approve", "pat_request_ids": ids, "reason": None})
    assert response.status_code == 202 and response.json() == {}
    requests, grants = states(server)
    assert {state for _, state in requests} == {"approved"}
    assert len(grants) == 100
    assert api.get(REQUESTS).json() == []
    listed = api.get(GRANTS, params={"per_page": 100}).json()
    assert len(listed) == 100
    assert {g["owner"]["login"] for g in listed} == {"bulk0", "bulk50"}


@pytest.mark.parametrize("bad", ["unknown", "decided", "other-org"])
@pytest.mark.parametrize("action", ["approve", "deny"])
def test_a_bulk_review_with_one_bad_id_changes_nothing(
    server: Any, world: World, api: Api, bad: str, action: str
) -> None:
    ids = many_pending(server.runtime, 5)
    if bad == "unknown":
        wrong = 424242
    elif bad == "decided":
        wrong = ids[2]
        world.run(approvals.deny, [wrong], actor=world.actor(), reason="no")
    else:
        with server.runtime.unit_of_work() as ctx:
            other = orgs.create_org(
                ctx, "globex", owner=accounts.get_user(ctx, "olivia"), actor=CLI_ACTOR
            )
            orgs.add_member(ctx, other, accounts.get_user(ctx, "mona"), actor=CLI_ACTOR)
            orgs.set_org_policy(ctx, other, actor=CLI_ACTOR, opt_in=True)
        wrong = world.token("mona", name="elsewhere", owner="globex").request.id
    before = states(server)
    body = {"action": action, "pat_request_ids": [*ids, wrong]}
    response = api.post(REQUESTS, body)
    assert response.status_code == 422
    answer = response.json()
    assert answer["message"] == "Validation Failed"
    assert str(wrong) in answer["errors"][0]["message"]
    assert answer["errors"][0]["ids"] == [wrong]
    assert states(server) == before


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"action": "approve"}, "pat_request_ids", "missing_field"),
        ({"pat_request_ids": [1]}, "action", "missing_field"),
        ({"action": "approve", "pat_request_ids": []}, "pat_request_ids", "invalid"),
        (
            {"action": "approve", "pat_request_ids": list(range(1, 102))},
            "pat_request_ids",
            "invalid",
        ),
        ({"action": "approve", "pat_request_ids": ["1"]}, "pat_request_ids", "invalid"),
        ({"action": "approve", "pat_request_ids": [True]}, "pat_request_ids", "invalid"),
        ({"action": "approve", "pat_request_ids": 1}, "pat_request_ids", "invalid"),
        ({"action": "revoke", "pat_request_ids": [1]}, "action", "invalid"),
        ({"action": "deny", "pat_request_ids": [1], "reason": "x" * 1025}, "reason", "invalid"),
        ({"action": "deny", "pat_request_ids": [1], "reason": 42}, "reason", "invalid"),
    ],
)
def test_bulk_review_bodies_are_validated(
    server: Any, world: World, api: Api, body: Any, field: str, code: str
) -> None:
    world.token()
    before = states(server)
    response = api.post(REQUESTS, body)
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert (error["field"], error["code"]) == (field, code)
    assert states(server) == before


@pytest.mark.parametrize("content", [b"[1, 2]", b"not json", b'"approve"', b""])
@pytest.mark.parametrize("template", [REQUESTS, REQUEST, GRANTS, GRANT])
def test_bodies_that_are_not_json_objects(
    server: Any, world: World, api: Api, template: str, content: bytes
) -> None:
    issued = world.token()
    grant = approved(world, world.token(name="granted"))
    before = states(server)
    response = api.call(
        "POST",
        template,
        content=content,
        headers={"Content-Type": "application/json"},
        pat_request_id=issued.request.id,
        pat_id=grant,
    )
    assert response.status_code == 400
    assert response.json()["message"] == "Problems parsing JSON"
    assert states(server) == before


def test_review_one_request(server: Any, world: World, api: Api) -> None:
    first, second = world.token(name="first"), world.token(name="second")
    response = api.post(REQUEST, {"action": "approve"}, pat_request_id=first.request.id)
    assert response.status_code == 204 and response.content == b""
    response = api.post(
        REQUEST, {"action": "deny", "reason": "r" * 1024}, pat_request_id=second.request.id
    )
    assert response.status_code == 204
    with server.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        assert approvals.get_request(ctx, org, first.request.id).state == "approved"
        denied = approvals.get_request(ctx, org, second.request.id)
        assert (denied.state, denied.decision_reason) == ("denied", "r" * 1024)
    before = states(server)
    again = api.post(REQUEST, {"action": "approve"}, pat_request_id=second.request.id)
    assert again.status_code == 422
    assert again.json()["errors"][0]["ids"] == [second.request.id]
    too_long = api.post(
        REQUEST, {"action": "deny", "reason": "r" * 1025}, pat_request_id=first.request.id
    )
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "reason"
    for missing in (999999, "abc"):
        response = api.post(REQUEST, {"action": "approve"}, pat_request_id=missing)
        assert response.status_code == 404
        assert response.json()["message"] == "Not Found"
    assert states(server) == before


def test_request_repositories_and_alias(server: Any, world: World, api: Api) -> None:
    subset = world.token(name="subset", repositories=["private-ops", "private-api"])
    everything = world.token(name="everything", repositories="all")
    nothing = world.token(name="nothing", repositories="none")
    with server.runtime.unit_of_work() as ctx:
        org_id = orgs.get_org(ctx, "acme").id

    def names(issued: Any) -> list[str]:
        response = api.get(REQUEST_REPOS, pat_request_id=issued.request.id)
        assert response.status_code == 200
        alias = api.get(
            "/organizations/{org_id}/personal-access-token-requests/{pat_request_id}/repositories",
            org_id=org_id,
            pat_request_id=issued.request.id,
        )
        assert alias.json() == response.json()
        return [r["full_name"] for r in response.json()]

    assert names(subset) == ["acme/private-api", "acme/private-ops"]
    assert names(everything) == ["acme/private-api", "acme/private-ops", "acme/public-site"]
    assert names(nothing) == []
    page = api.get(REQUEST_REPOS, pat_request_id=everything.request.id, params={"per_page": 1})
    assert len(page.json()) == 1 and 'rel="next"' in page.headers["link"]
    assert api.get(REQUEST_REPOS, pat_request_id=424242).status_code == 404
    response = api.get(
        "/organizations/{org_id}/personal-access-token-requests/{pat_request_id}/repositories",
        org_id=999999,
        pat_request_id=subset.request.id,
    )
    assert response.status_code == 404


# ---- grants -------------------------------------------------------------------------------


def test_list_grants_and_their_repositories(server: Any, world: World, api: Api) -> None:
    subset = world.token(name="subset", repositories=["private-api"])
    grant = approved(world, subset)
    world.token(name="still-pending")
    items = api.get(GRANTS).json()
    assert [g["id"] for g in items] == [grant]
    item = items[0]
    assert "reason" not in item and "created_at" not in item
    assert_github_timestamp(item["access_granted_at"])
    assert item["token_id"] == subset.token.id
    repositories = httpx.get(item["repositories_url"], headers=api.headers)
    assert repositories.status_code == 200
    validate_response("GET", GRANT_REPOS, 200, repositories.json())
    assert [r["name"] for r in repositories.json()] == ["private-api"]
    assert api.get(GRANT_REPOS, pat_id=grant).json() == repositories.json()
    assert api.get(GRANTS, params={"owner[]": "olivia"}).json() == []
    assert len(api.get(GRANTS, params={"repository": "private-api"}).json()) == 1
    assert api.get(GRANTS, params={"repository": "private-ops"}).json() == []
    assert api.get(GRANT_REPOS, pat_id=424242).status_code == 404


def test_revoke_one_grant(server: Any, world: World, api: Api) -> None:
    issued = world.token(name="granted")
    grant = approved(world, issued)
    response = api.post(GRANT, {"action": "revoke"}, pat_id=grant)
    assert response.status_code == 204 and response.content == b""
    assert api.get(GRANTS).json() == []
    private = httpx.get(
        f"{server.api}/repos/acme/private-api",
        headers={"Authorization": f"Bearer {issued.secret}"},
    )
    assert private.status_code == 404
    before = states(server)
    again = api.post(GRANT, {"action": "revoke"}, pat_id=grant)
    assert again.status_code == 422
    assert api.post(GRANT, {"action": "revoke"}, pat_id=424242).status_code == 404
    wrong = api.post(GRANT, {"action": "approve"}, pat_id=grant)
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "action"
    missing = api.post(GRANT, {}, pat_id=grant)
    assert missing.json()["errors"][0]["code"] == "missing_field"
    assert states(server) == before


def test_bulk_revocation_is_atomic(server: Any, world: World, api: Api) -> None:
    grants = [approved(world, world.token(name=f"t{i}")) for i in range(3)]
    before = states(server)
    for body in (
        {"action": "revoke", "pat_ids": [*grants, 424242]},
        {"action": "revoke"},
        {"action": "revoke", "pat_ids": []},
        {"action": "revoke", "pat_ids": list(range(1, 102))},
        {"pat_ids": grants},
    ):
        response = api.post(GRANTS, body)
        assert response.status_code == 422, body
    assert states(server) == before
    response = api.post(GRANTS, {"action": "revoke", "pat_ids": grants})
    assert response.status_code == 202 and response.json() == {}
    assert api.get(GRANTS).json() == []
    again = api.post(GRANTS, {"action": "revoke", "pat_ids": grants[:1]})
    assert again.status_code == 422 and again.json()["errors"][0]["ids"] == grants[:1]


# ---- who may call them ------------------------------------------------------------------


def _eight(request_id: int, grant_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("GET", REQUESTS, {}),
        ("POST", REQUESTS, {"body": {"action": "approve", "pat_request_ids": [request_id]}}),
        ("POST", REQUEST, {"body": {"action": "deny"}, "pat_request_id": request_id}),
        ("GET", REQUEST_REPOS, {"pat_request_id": request_id}),
        ("GET", GRANTS, {}),
        ("POST", GRANTS, {"body": {"action": "revoke", "pat_ids": [grant_id]}}),
        ("POST", GRANT, {"body": {"action": "revoke"}, "pat_id": grant_id}),
        ("GET", GRANT_REPOS, {"pat_id": grant_id}),
    ]


def test_only_installations_with_the_permission_may_call_the_eight(
    server: Any, world: World
) -> None:
    pending = world.token(name="pending")
    grant = approved(world, world.token(name="granted"))
    owner_token = world.token(
        "olivia", name="owner-fine-grained", permissions=WRITE | {"issues": "write"}
    )
    callers = {
        "fine-grained": (Api(server, owner_token.secret, "Bearer"), 403, PAT_FORBIDDEN),
        "classic": (
            Api(server, world.classic("olivia", ["admin:org", "repo"]), "token"),
            403,
            PAT_FORBIDDEN,
        ),
        "no-permission": (
            install_app(server, "issues-only", {"issues": "write"}),
            403,
            APP_FORBIDDEN,
        ),
        "nobody": (Api(server, None), 401, "Bad credentials"),
        "malformed": (Api(server, "ghs_" + "x" * 36), 401, "Bad credentials"),
        "expired-jwt": (Api(server, _expired_jwt(server)), 401, "Bad credentials"),
        "bad-jwt": (Api(server, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "Bearer"), 401, "Bad credentials"),
    }
    with server.runtime.unit_of_work() as ctx:
        olivia = accounts.get_user(ctx, "olivia")
        orgs.create_org(ctx, "globex", owner=olivia, actor=CLI_ACTOR)
    callers["other-org"] = (install_app(server, "elsewhere", WRITE, org="globex"), 404, "Not Found")
    before = states(server)
    for who, (caller, status, message) in callers.items():
        for method, template, kwargs in _eight(pending.request.id, grant):
            response = caller.call(method, template, **kwargs)
            assert response.status_code == status, (who, method, template, response.text)
            assert response.json()["message"] == message, (who, method, template)
    assert states(server) == before


def test_read_only_installations_list_but_do_not_decide(server: Any, world: World) -> None:
    pending = world.token(name="pending")
    grant = approved(world, world.token(name="granted"))
    reader = install_app(server, "reader", READ)
    before = states(server)
    for method, template, kwargs in _eight(pending.request.id, grant):
        response = reader.call(method, template, **kwargs)
        if method == "GET":
            assert response.status_code == 200, (template, response.text)
            continue
        assert response.status_code == 403
        assert response.json()["message"] == APP_FORBIDDEN
        wanted = "requests" if "requests" in template else "tokens"
        suffix = "token_requests" if wanted == "requests" else "tokens"
        assert response.headers["x-accepted-github-permissions"] == (
            f"organization_personal_access_{suffix}=write"
        )
    assert states(server) == before


def _expired_jwt(server: Any) -> str:
    import time

    import jwt

    with server.runtime.unit_of_work() as ctx:
        app, key = apps.create_app(
            ctx, name="expired", owner_org=orgs.get_org(ctx, "acme"), permissions=WRITE,
            actor=CLI_ACTOR,
        )  # fmt: skip
        apps.install(ctx, app, orgs.get_org(ctx, "acme"), actor=CLI_ACTOR)
    now = int(time.time())
    return jwt.encode({"iss": str(app.id), "iat": now - 1200, "exp": now - 600}, key, "RS256")


# ---- API versions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "selected"),
    [(None, "2022-11-28"), ("2022-11-28", "2022-11-28"), ("2026-03-10", "2026-03-10")],
)
def test_api_versions_accepted(
    server: Any, world: World, api: Api, sent: str | None, selected: str
) -> None:
    world.token()
    headers = {"X-GitHub-Api-Version": sent} if sent else {}
    for template in (REQUESTS, GRANTS):
        response = api.get(template, headers=headers)
        assert response.status_code == 200
        assert response.headers["x-github-api-version-selected"] == selected


@pytest.mark.parametrize("sent", ["2021-01-01", "latest", "2022-11-28x"])
def test_unknown_api_version_is_400(server: Any, world: World, api: Api, sent: str) -> None:
    issued = world.token()
    before = states(server)
    for method, template, kwargs in _eight(issued.request.id, 1):
        response = api.call(method, template, headers={"X-GitHub-Api-Version": sent}, **kwargs)
        assert response.status_code == 400
        assert sent in response.json()["message"]
    assert states(server) == before


# ---- patgate's own OpenAPI document -----------------------------------------------------


def _app_routes(server: Any) -> set[tuple[str, str]]:
    from patgate.web.app import api_routes

    return {(method, path) for method, path, _ in openapi.api_route_table(api_routes())}


def test_openapi_document_lists_every_route_and_only_them(server: Any) -> None:
    response = httpx.get(f"{server.api}/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.0")
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert documented == _app_routes(server)
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    _assert_refs_resolve(document, document)
    github = json.loads(SPEC_PATH.read_text())
    for path, operations in github["paths"].items():
        for method, operation in operations.items():
            ours = document["paths"][path][method]
            assert ours["operationId"] == operation["operationId"]
            assert set(operation["responses"]) <= set(ours["responses"])


def _assert_refs_resolve(node: Any, document: dict[str, Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _assert_refs_resolve(item, document)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target: Any = document
            for part in ref.removeprefix("#/").split("/"):
                assert part in target, f"unresolved $ref {ref}"
                target = target[part]
        for value in node.values():
            _assert_refs_resolve(value, document)


def test_openapi_request_bodies_match_githubs(server: Any) -> None:
    document = httpx.get(f"{server.api}/openapi.json").json()
    github = json.loads(SPEC_PATH.read_text())
    for path, operations in github["paths"].items():
        for method, operation in operations.items():
            theirs = operation.get("requestBody")
            ours = document["paths"][path][method].get("requestBody")
            assert (theirs is None) == (ours is None), (method, path)
            if theirs is None:
                continue
            assert ours["required"] == theirs["required"]
            their_schema = theirs["content"]["application/json"]["schema"]
            ref = ours["content"]["application/json"]["schema"]["$ref"]
            our_schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
            required, theirs_required = (
                set(our_schema.get("required", [])),
                set(their_schema.get("required", [])),
            )
            # GitHub's description leaves pat_request_ids optional; SPEC §6 wants 422
            # missing_field without it (as GitHub answers), so patgate's document requires it.
            assert theirs_required <= required
            assert required - theirs_required <= {"pat_request_ids"}
            assert set(our_schema["properties"]) == set(their_schema["properties"])
            for name, prop in their_schema["properties"].items():
                mine = our_schema["properties"][name]
                for keyword in ("enum", "maxLength", "minItems", "maxItems", "nullable"):
                    if keyword in prop:
                        assert mine.get(keyword) == prop[keyword], (path, name, keyword)


def test_vendored_github_description_is_current() -> None:
    subset = json.loads(SPEC_PATH.read_text())
    assert openapi.vendored() == json.loads(json.dumps(openapi.vendor(subset))), (
        'refresh it: python -c "from patgate.web.api.openapi import write_vendored; '
        "write_vendored('../shared/openapi/github-pat-subset.json')\""
    )
