"""Limits on what a caller may send, over HTTP on both databases: every value out of bounds
gets a clear 4xx in GitHub's JSON error body, and nothing changes (requests, grants and
issues are compared before and after every refused call).

Covered on the eight governance endpoints (and the two ``/organizations/{org_id}`` aliases)
and on the resource endpoints: body size (over 1 MB: 413), JSON depth (over 32: 400), ids
(non-integers, negatives, 2**70, booleans, beyond PostgreSQL's INTEGER), names, reasons
(over 1024: 422), NUL characters (which PostgreSQL refuses in text), filters (``owner`` over
10, ``token_id`` over 50, malformed or out-of-calendar ``last_used_*``, unknown ``sort`` and
``direction``), ``per_page`` (capped at 100 silently, a non-integer or below 1: 422), path ids
that are not integers (404), and issue titles and bodies.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hostile_world import Target, assert_github_error, build_target

from patgate.orgs import services as orgs
from patgate.repos import services as repos

REQUESTS = "/orgs/acme/personal-access-token-requests"
GRANTS = "/orgs/acme/personal-access-tokens"
ONE_MB = 1_000_000
HUGE = str(2**70)
BEYOND_INTEGER = str(2**31)  # an int64, but beyond PostgreSQL's INTEGER ids
BAD_PATH_IDS = ["abc", "-1", "1.5", "1e3", "0x10", "true", "%20", "%EF%BC%91", HUGE, BEYOND_INTEGER]


@pytest.fixture
def target(live_server: Any) -> Target:
    """A live server on the test's database (both backends) with :mod:`hostile_world`'s world."""
    return build_target(live_server())


def send(
    target: Target,
    method: str,
    path: str,
    caller: str = "installation",
    **kwargs: Any,
) -> httpx.Response:
    return httpx.request(method, f"{target.api}{path}", headers=target.headers[caller], **kwargs)


def nested(depth: int) -> Any:
    """A value that makes ``{"key": nested(n)}`` ``n`` levels deep as patgate counts them
    (containers on the way to the deepest scalar: ``{"a": 1}`` is 1, ``{"a": [1]}`` is 2)."""
    value: Any = 1
    for _ in range(depth - 1):
        value = [value]
    return value


def refused(
    target: Target,
    subtests: Any,
    cases: list[tuple[str, str, dict[str, Any], int]],
    caller: str = "installation",
) -> None:
    """Each ``(method, path, request kwargs, status)`` gets ``status`` with GitHub's error
    body and leaves every request, grant and issue as it was."""
    before = target.state()
    for method, path, kwargs, status in cases:
        shown = {
            k: (v if len(repr(v)) < 200 else f"<{len(repr(v))} chars>") for k, v in kwargs.items()
        }
        with subtests.test(msg=f"{method} {path[:80]} {shown}"):
            response = send(target, method, path, caller, **kwargs)
            assert_github_error(response, status)
            assert target.state() == before


# ---- bodies -----------------------------------------------------------------------------


def governance_posts(target: Target) -> list[tuple[str, dict[str, Any]]]:
    """The four POSTs of the eight, each with a body that would change something."""
    request_id, grant_id = target.request_ids[0], target.grant_ids[0]
    return [
        (REQUESTS, {"action": "approve", "pat_request_ids": [request_id]}),
        (f"{REQUESTS}/{request_id}", {"action": "approve"}),
        (GRANTS, {"action": "revoke", "pat_ids": [grant_id]}),
        (f"{GRANTS}/{grant_id}", {"action": "revoke"}),
    ]


def test_bodies_too_big_too_deep_or_not_json_change_nothing(target: Target, subtests: Any) -> None:
    cases = []
    for path, body in governance_posts(target):
        padded = json.dumps({**body, "padding": "x" * ONE_MB}).encode()
        cases += [
            ("POST", path, {"content": padded}, 413),
            ("POST", path, {"content": json.dumps({**body, "x": nested(33)})}, 400),
            ("POST", path, {"content": b"[" * 100_000 + b"]" * 100_000}, 400),
            ("POST", path, {"content": json.dumps([body])}, 400),
            ("POST", path, {"content": b'{"action": "approve",'}, 400),
            ("POST", path, {"content": b"\xff\xfe{}"}, 400),
            ("POST", path, {"content": b""}, 400),
            ("POST", path, {"content": json.dumps({**body, "x": "a\x00b"})}, 422),
        ]
    padded_issue = json.dumps({"title": "t", "body": "x" * ONE_MB})
    issues = "/repos/acme/private-api/issues"
    cases += [
        ("POST", issues, {"content": padded_issue}, 413),
        ("POST", issues, {"content": json.dumps({"title": "t", "x": nested(33)})}, 400),
        ("POST", issues, {"content": b"not json"}, 400),
    ]
    refused(target, subtests, cases[:-3])
    refused(target, subtests, cases[-3:], caller="fine_grained")


def test_json_depth_32_is_read_and_33_is_refused(target: Target) -> None:
    path, body = governance_posts(target)[0]
    # 32 levels pass the parser; the unknown action then makes it a 422.
    deep_enough = send(
        target, "POST", path, content=json.dumps({**body, "action": "x", "d": nested(32)})
    )
    assert_github_error(deep_enough, 422)
    too_deep = send(target, "POST", path, content=json.dumps({**body, "d": nested(33)}))
    assert assert_github_error(too_deep, 400)["message"].startswith("Problems parsing JSON")


def test_review_and_revoke_bodies_are_validated(target: Target, subtests: Any) -> None:
    request_id, grant_id = target.request_ids[0], target.grant_ids[0]
    one_request, one_grant = f"{REQUESTS}/{request_id}", f"{GRANTS}/{grant_id}"
    cases: list[tuple[str, str, dict[str, Any], int]] = []
    for ids in ([-1], [0], [int(HUGE)], [int(BEYOND_INTEGER)], [True], ["1"], [1.0], [None],
                [], list(range(1, 102)), "1", {"id": 1}, [request_id, int(HUGE)]):  # fmt: skip
        cases.append(
            ("POST", REQUESTS, {"json": {"action": "approve", "pat_request_ids": ids}}, 422)
        )
    for ids in ([-1], [int(HUGE)], [int(BEYOND_INTEGER)], [False], [grant_id, int(HUGE)], []):
        cases.append(("POST", GRANTS, {"json": {"action": "revoke", "pat_ids": ids}}, 422))
    for action in (None, "", "APPROVE", "revoke", 1, True, ["approve"], "approve\x00"):
        cases.append(("POST", one_request, {"json": {"action": action}}, 422))
        cases.append(
            ("POST", REQUESTS, {"json": {"action": action, "pat_request_ids": [request_id]}}, 422)
        )
    for action in (None, "approve", "REVOKE", 0):
        cases.append(("POST", one_grant, {"json": {"action": action}}, 422))
    for reason in ("x" * 1025, 1, True, ["why"], {"a": "b"}, "why\x00not"):
        cases.append(("POST", one_request, {"json": {"action": "deny", "reason": reason}}, 422))
        cases.append(
            (
                "POST",
                REQUESTS,
                {"json": {"action": "deny", "reason": reason, "pat_request_ids": [request_id]}},
                422,
            )
        )
    cases += [
        ("POST", REQUESTS, {"json": {"action": "approve"}}, 422),
        ("POST", GRANTS, {"json": {"action": "revoke"}}, 422),
        ("POST", one_request, {"json": {}}, 422),
        ("POST", one_grant, {"json": {"reason": "x"}}, 422),
    ]
    refused(target, subtests, cases)
    missing = send(target, "POST", REQUESTS, json={"action": "approve"}).json()
    assert missing["errors"][0]["code"] == "missing_field"


def test_a_reason_of_1024_characters_is_taken(target: Target) -> None:
    request_id = target.request_ids[0]
    response = send(
        target, "POST", f"{REQUESTS}/{request_id}", json={"action": "deny", "reason": "é" * 1024}
    )
    assert response.status_code == 204, response.text
    assert ("é" * 1024) in [r.decision_reason for r in target.state()["requests"]]


# ---- path ids and names -----------------------------------------------------------------


def test_path_ids_that_are_not_ids_are_404(target: Target, subtests: Any) -> None:
    cases: list[tuple[str, str, dict[str, Any], int]] = []
    post = {"json": {"action": "approve"}}
    for bad in BAD_PATH_IDS:
        cases += [
            ("POST", f"{REQUESTS}/{bad}", post, 404),
            ("GET", f"{REQUESTS}/{bad}/repositories", {}, 404),
            ("POST", f"{GRANTS}/{bad}", {"json": {"action": "revoke"}}, 404),
            ("GET", f"{GRANTS}/{bad}/repositories", {}, 404),
            (
                "GET",
                f"/organizations/{bad}/personal-access-tokens/{target.grant_ids[0]}/repositories",
                {},
                404,
            ),
            (
                "GET",
                f"/organizations/{target.org_id}/personal-access-token-requests/{bad}/repositories",
                {},
                404,
            ),
        ]
    refused(target, subtests, cases)
    issues = [("GET", f"/repos/acme/private-api/issues/{bad}", {}, 404) for bad in BAD_PATH_IDS]
    refused(target, subtests, issues, caller="fine_grained")
    jwt_cases = [
        ("POST", f"/app/installations/{bad}/access_tokens", {"json": {}}, 404)
        for bad in BAD_PATH_IDS
    ]
    refused(target, subtests, jwt_cases, caller="app")


def test_names_that_name_nothing_are_404(target: Target, subtests: Any) -> None:
    cases: list[tuple[str, str, dict[str, Any], int]] = []
    for name in (
        "nobody",
        "a" * 1000,
        "acme%00",
        "%00",
        "ac%00me",
        "acme%20",
        "%F0%9F%92%A5",
        "acme%2F..",
    ):
        cases += [
            ("GET", f"/orgs/{name}/personal-access-token-requests", {}, 404),
            (
                "POST",
                f"/orgs/{name}/personal-access-tokens",
                {"json": {"action": "revoke", "pat_ids": [1]}},
                404,
            ),
            ("GET", f"/repos/{name}/private-api", {}, 404),
            ("GET", f"/repos/acme/{name}", {}, 404),
            ("GET", f"/repos/acme/{name}/issues", {}, 404),
            ("POST", f"/repos/{name}/private-api/issues", {"json": {"title": "t"}}, 404),
            ("GET", f"/orgs/{name}", {}, 404),
        ]
    refused(target, subtests, cases[:-3])
    refused(target, subtests, cases[-3:], caller="fine_grained")


def test_unknown_routes_and_methods_answer_in_githubs_body(target: Target, subtests: Any) -> None:
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", "/no/such/route", {}, 404),
        ("GET", "/orgs/acme/personal-access-token-requests/1/nothing", {}, 404),
        ("DELETE", GRANTS, {}, 405),
        ("PUT", f"{REQUESTS}/{target.request_ids[0]}", {"json": {"action": "approve"}}, 405),
    ]
    refused(target, subtests, cases)


# ---- query parameters -------------------------------------------------------------------


def test_list_filters_out_of_bounds_are_422(target: Target, subtests: Any) -> None:
    filters: list[Any] = [
        [("owner[]", f"user{i}") for i in range(11)],
        {"owner": ",".join(f"user{i}" for i in range(11))},
        [("owner[]", "a"), ("owner", ",".join(f"user{i}" for i in range(10)))],
        [("token_id[]", str(i)) for i in range(1, 52)],
        {"token_id": ",".join(str(i) for i in range(1, 52))},
        {"token_id": "abc"},
        {"token_id": "-1"},
        {"token_id": HUGE},
        {"token_id": BEYOND_INTEGER},
        {"token_id": "true"},
        {"last_used_before": "garbage"},
        {"last_used_before": "2024-02-30"},
        {"last_used_after": "0001-01-01T00:00:00+01:00"},
        {"last_used_before": "9999-12-31T23:59:59-01:00"},
        {"last_used_after": "2024-01-01T00:00:00+25:00"},
        {"sort": "updated_at"},
        {"sort": "CREATED_AT"},
        {"direction": "up"},
        {"direction": "ASC"},
        {"per_page": "abc"},
        {"per_page": "0"},
        {"per_page": "-1"},
        {"per_page": "1.5"},
        {"per_page": "9" * 5000},
        {"page": "0"},
        {"page": "x"},
        {"owner": "mona\x00"},
        {"repository": "private-api\x00"},
        {"permission": "issues_read\x00"},
    ]
    cases = [
        ("GET", path, {"params": params}, 422) for path in (REQUESTS, GRANTS) for params in filters
    ]
    refused(target, subtests, cases)


def test_ten_owners_and_fifty_token_ids_are_taken(target: Target) -> None:
    for path in (REQUESTS, GRANTS):
        owners = send(
            target,
            "GET",
            path,
            params=[("owner[]", f"user{i}") for i in range(9)] + [("owner", "mona")],
        )
        assert owners.status_code == 200, owners.text
        tokens = send(
            target, "GET", path, params={"token_id": ",".join(str(i) for i in range(1, 51))}
        )
        assert tokens.status_code == 200, tokens.text
        assert len(owners.json()) == len(tokens.json()) > 0


def test_per_page_is_capped_at_100_silently(target: Target) -> None:
    with target.server.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        for number in range(105):
            repos.create_repo(ctx, org, f"bulk-{number:03}", visibility="private")
    grant = target.grant_ids[0]  # the "all repositories" grant: 108 repositories
    for path in (
        f"{GRANTS}/{grant}/repositories",
        f"/organizations/{target.org_id}/personal-access-tokens/{grant}/repositories",
    ):
        response = send(target, "GET", path, params={"per_page": "1000"})
        assert response.status_code == 200, response.text
        assert len(response.json()) == 100
        assert "per_page=100" in response.headers["link"] and "page=2" in response.headers["link"]
    issues = send(
        target, "GET", "/repos/acme/private-api/issues", "fine_grained", params={"per_page": HUGE}
    )
    assert issues.status_code == 200, issues.text


def test_resource_lists_refuse_bad_paging(target: Target, subtests: Any) -> None:
    cases = [
        ("GET", path, {"params": params}, 422)
        for path in ("/repos/acme/private-api/issues", "/orgs/acme/repos")
        for params in ({"per_page": "0"}, {"per_page": "x"}, {"page": "-3"}, {"page": "1e2"})
    ]
    refused(target, subtests, cases, caller="fine_grained")


def test_audit_log_phrases_out_of_bounds_are_422(live_server: Any, subtests: Any) -> None:
    from support.world import World

    server = live_server()
    world = World(server.runtime).build()
    classic = world.classic("olivia", scopes=["admin:org"])
    for phrase in ("created:<=9999-12-31", "created:>9999-12-31", "created:2024-01-01..9999-12-31",
                   "created:0000-01-01", "actor:", "nothing:x", "actor:mona\x00"):  # fmt: skip
        with subtests.test(msg=phrase):
            response = httpx.get(
                f"{server.api}/orgs/acme/audit-log",
                params={"phrase": phrase},
                headers={"Authorization": f"token {classic}"},
            )
            assert_github_error(response, 422)
    ok = httpx.get(
        f"{server.api}/orgs/acme/audit-log",
        params={"phrase": "created:>=9999-12-31"},
        headers={"Authorization": f"token {classic}"},
    )
    assert ok.status_code == 200 and ok.json() == []


# ---- issues -----------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["fine_grained"])
def test_issue_bodies_are_validated(target: Target, subtests: Any, caller: str) -> None:
    path = "/repos/acme/private-api/issues"
    bodies: list[Any] = [
        {},
        {"body": "no title"},
        {"title": None},
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 257},
        {"title": 42},
        {"title": ["a"]},
        {"title": {"a": "b"}},
        {"title": True},
        {"title": "ok", "body": 5},
        {"title": "ok", "body": ["a"]},
        {"title": "ok", "body": "x" * 65537},
        {"title": "nul\x00"},
        {"title": "ok", "body": "nul\x00"},
    ]
    cases = [("POST", path, {"json": body}, 422) for body in bodies]
    # A lone surrogate parses as JSON but is no text any database could store.
    cases += [
        ("POST", path, {"content": raw}, 400)
        for raw in (b'{"title": "\\ud800"}', b'{"title": "ok", "body": "a\\udfffb"}')
    ]
    refused(target, subtests, cases, caller=caller)
    missing = send(target, "POST", path, caller, json={}).json()
    assert missing["errors"][0]["field"] == "title"
    created = send(target, "POST", path, caller, json={"title": "x" * 256, "body": "y" * 65536})
    assert created.status_code == 201, created.text


def test_unauthenticated_bad_bodies_are_401_first(target: Target, subtests: Any) -> None:
    cases = [
        ("POST", "/repos/acme/private-api/issues", {"content": b"not json"}, 401),
        ("POST", "/repos/acme/private-api/issues", {"json": {"title": 5}}, 401),
        ("POST", REQUESTS, {"content": b"[" * 100}, 401),
        ("POST", f"{GRANTS}/abc", {"content": b"x"}, 401),
    ]
    refused(target, subtests, cases, caller="anonymous")
