"""octokit (``@octokit/rest`` 22 and ``@octokit/auth-app`` 8, pinned in ``package.json`` and
``package-lock.json`` here), GitHub's own JavaScript client, against a live patgate on both
databases: App authentication as octokit does it (JWT with a numeric ``iss``, ``bearer`` in lower
case, an access token request without a body), then the eight governance operations through
``octokit.rest.orgs``, its ``owner=a,b`` filter encoding, and ``octokit.paginate``.

``octokit_eight.mjs`` makes the calls and prints what it got as JSON; the tests check the answers
against GitHub's OpenAPI description and read the effects back through the services. Without
``node`` or ``tests/clients/node_modules`` (``npm ci --prefix tests/clients``) they skip, or fail
under CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.approvals.models import Grant, TokenRequest
from patgate.approvals.states import GrantState, RequestState
from patgate.apps import services as apps
from patgate.context import CLI_ACTOR
from patgate.orgs import services as orgs
from support.env import unavailable
from support.openapi import assert_github_timestamp, validate_response
from support.world import World

CLIENTS = Path(__file__).resolve().parent
SCRIPT = CLIENTS / "octokit_eight.mjs"
PACKAGES = ("@octokit/rest", "@octokit/auth-app")
MIN_NODE = 20
TIMEOUT = 120  # seconds for one run of the script, JWT signing and node's start-up included

WRITE = {
    "organization_personal_access_token_requests": "write",
    "organization_personal_access_tokens": "write",
}
REQUESTS = "/orgs/{org}/personal-access-token-requests"
GRANTS = "/orgs/{org}/personal-access-tokens"
REASON = "reviewed by octokit"
CONTENTS = {"contents": "read"}
ISSUES = {"issues": "read"}


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` executable, with this directory's packages installed (else skip / fail)."""
    executable = shutil.which("node")
    if executable is None:
        unavailable(f"node is not on PATH (Node {MIN_NODE}+ runs the octokit client tests)")
    version = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    major = version.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < MIN_NODE:
        unavailable(f"node {version or '?'} is too old for octokit 22 (Node {MIN_NODE}+)")
    missing = [p for p in PACKAGES if not (CLIENTS / "node_modules" / p / "package.json").is_file()]
    if missing:
        unavailable(
            f"{', '.join(missing)} not installed in tests/clients/node_modules "
            "(run `npm ci --prefix tests/clients`)"
        )
    return executable


@dataclass
class Installed:
    app_id: int
    installation_id: int
    key_path: Path


@pytest.fixture
def server(live_server: Any) -> Any:
    return live_server()


@pytest.fixture
def world(server: Any) -> World:
    world = World(server.runtime).build()
    with server.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, world.org_login)
        for login in ("octo", "hubot"):
            user = accounts.create_user(ctx, login, email=f"{login}@example.com")
            orgs.add_member(ctx, org, user, actor=CLI_ACTOR)
    return world


@pytest.fixture
def installed(server: Any, world: World, tmp_path: Path) -> Installed:
    with server.runtime.unit_of_work() as ctx:
        registered = apps.register_and_install(
            ctx,
            name="octokit",
            org=orgs.get_org(ctx, world.org_login),
            permissions=WRITE,
            events=["personal_access_token_request"],
            actor=CLI_ACTOR,
        )
        app_id, installation_id = registered.app.id, registered.installation.id
    key_path = tmp_path / "octokit-app.pem"
    key_path.write_text(registered.private_key_pem, encoding="ascii")
    return Installed(app_id, installation_id, key_path)


def run_octokit(
    node: str,
    server: Any,
    installed: Installed,
    *args: str,
    api_version: str | None = None,
    check: bool = True,
) -> Any:
    """Run the script; with ``check``, its parsed stdout (a failure shows its stderr)."""
    env = {
        **os.environ,
        "OCTOKIT_BASE_URL": server.api,  # no trailing slash: octokit would double it
        "OCTOKIT_APP_ID": str(installed.app_id),
        "OCTOKIT_PRIVATE_KEY_PATH": str(installed.key_path),
        "OCTOKIT_ORG": "acme",
        "OCTOKIT_API_VERSION": api_version or "",
        "NO_COLOR": "1",
    }
    try:
        done = subprocess.run(
            [node, str(SCRIPT), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=CLIENTS,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"octokit_eight.mjs did not finish in {TIMEOUT}s; stderr:\n{exc.stderr}")
    if not check:
        return done
    if done.returncode != 0:
        pytest.fail(
            f"octokit_eight.mjs exited with {done.returncode}; stderr:\n{done.stderr}",
            pytrace=False,
        )
    return json.loads(done.stdout)


def ids_of(items: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in items]


@pytest.mark.parametrize("api_version", [None, "2026-03-10"], ids=["no-version", "2026-03-10"])
def test_the_eight_operations(
    node: str, server: Any, world: World, installed: Installed, api_version: str | None
) -> None:
    # Two grants in force already, from two members; five pending requests from three.
    old = world.token("mona", name="old", repositories=["private-api", "private-ops"])
    older = world.token("octo", name="older", repositories="all")
    world.run(approvals.approve, [old.request.id, older.request.id], actor=world.actor())
    api = world.token("mona", name="api", repositories=["private-api"], reason="deploys")
    ops = world.token("mona", name="ops", repositories=["private-ops"], permissions=CONTENTS)
    site = world.token("octo", name="site", permissions={"pull_requests": "write"}, reason=None)
    docs = world.token("octo", name="docs", repositories=["public-site"], permissions=ISSUES)
    bot = world.token("hubot", name="bot", repositories=["private-ops"])
    with server.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        grants_before = {
            t.token.id: approvals.active_grant_of(ctx, t.token, org) for t in (old, older)
        }
        grant_of = {token_id: g.id for token_id, g in grants_before.items() if g is not None}
    pending_ids = [r.request.id for r in (api, ops, site, docs, bot)]

    out = run_octokit(
        node, server, installed,
        "--owner", "octo,nobody",
        "--per-page", "2",
        "--review", f"{api.request.id}=approve",
        "--bulk-review", f"{ops.request.id},{site.request.id},{bot.request.id}=deny",
        "--conflict", f"{docs.request.id},{api.request.id}",
        "--revoke", str(grant_of[old.token.id]),
        "--bulk-revoke", str(grant_of[older.token.id]),
        "--reason", REASON,
        api_version=api_version,
    )  # fmt: skip
    ops_out = out["operations"]
    version = api_version or "2022-11-28"

    # App authentication: octokit's JWT, then the installation found as real callers find it.
    assert out["app"]["status"] == 200 and out["app"]["data"]["id"] == installed.app_id
    assert out["installation"]["status"] == 200
    assert out["installation_id"] == installed.installation_id
    assert out["installation"]["data"]["account"]["login"] == "acme"

    # GET requests: every pending one, newest first, in GitHub's shape.
    listed = ops_out["listPatGrantRequests"]
    assert listed["status"] == 200 and listed["api_version"] == version
    validate_response("GET", REQUESTS, 200, listed["data"])
    assert ids_of(listed["data"]) == sorted(pending_ids, reverse=True)
    first = {item["id"]: item for item in listed["data"]}[api.request.id]
    assert first["reason"] == "deploys" and first["owner"]["login"] == "mona"
    assert first["token_id"] == api.token.id and first["token_name"] == "api"
    assert first["repository_selection"] == "subset"
    assert first["permissions"]["repository"]["issues"] == "write"
    assert_github_timestamp(first["created_at"])
    assert first["repositories_url"].startswith(server.api + "/organizations/")

    # The owner filter in octokit's encoding (owner=octo%2Cnobody); unknown logins match nothing.
    by_owner = ops_out["listPatGrantRequestsByOwner"]
    assert "owner=octo%2Cnobody" in by_owner["url"]
    assert by_owner["status"] == 200
    assert ids_of(by_owner["data"]) == [docs.request.id, site.request.id]
    assert {item["owner"]["login"] for item in by_owner["data"]} == {"octo"}

    # octokit.paginate follows the Link headers: 5 requests, 2 a page.
    paged = ops_out["paginateRequests"]
    assert [p["count"] for p in paged["pages"]] == [2, 2, 1]
    assert all(p["status"] == 200 for p in paged["pages"])
    requests_url = server.api + REQUESTS.format(org="acme")
    assert all(p["url"].startswith(requests_url) for p in paged["pages"])
    assert "page=3" in paged["pages"][2]["url"]
    assert ids_of(paged["data"]) == sorted(pending_ids)

    # GET a request's repositories: the subset it asked for, or all the org's for "all".
    repositories = ops_out["listPatGrantRequestRepositories"]
    assert sorted(map(int, repositories)) == sorted(pending_ids)
    for answer in repositories.values():
        assert answer["status"] == 200
        validate_response("GET", REQUESTS + "/{pat_request_id}/repositories", 200, answer["data"])
    names = {int(k): [r["full_name"] for r in v["data"]] for k, v in repositories.items()}
    assert names[api.request.id] == ["acme/private-api"]
    assert names[docs.request.id] == ["acme/public-site"]
    assert names[site.request.id] == ["acme/private-api", "acme/private-ops", "acme/public-site"]

    # POST reviews: one approved (204), three denied at once (202 {}), and an atomic refusal.
    assert ops_out["reviewPatGrantRequest"]["status"] == 204
    assert ops_out["reviewPatGrantRequest"]["data"] in (None, "")
    bulk = ops_out["reviewPatGrantRequestsInBulk"]
    assert bulk["status"] == 202 and bulk["data"] == {}
    conflict = ops_out["conflict"]
    assert conflict["status"] == 422
    assert [e["ids"] for e in conflict["data"]["errors"]] == [[api.request.id]]
    validate_response("POST", REQUESTS, 422, conflict["data"])
    assert ids_of(ops_out["listPatGrantRequestsAfterReview"]["data"]) == [docs.request.id]

    # GET grants: the two older ones and the one just approved, and what each reaches.
    grants = ops_out["listPatGrants"]
    assert grants["status"] == 200 and grants["api_version"] == version
    validate_response("GET", GRANTS, 200, grants["data"])
    by_token = {g["token_id"]: g for g in grants["data"]}
    assert set(by_token) == {old.token.id, older.token.id, api.token.id}
    assert by_token[old.token.id]["id"] == grant_of[old.token.id]
    assert by_token[api.token.id]["owner"]["login"] == "mona"
    assert_github_timestamp(by_token[api.token.id]["access_granted_at"])
    paged_grants = ops_out["paginateGrants"]
    assert [p["count"] for p in paged_grants["pages"]] == [2, 1]
    assert sorted(ids_of(paged_grants["data"])) == sorted(ids_of(grants["data"]))
    reached = ops_out["listPatGrantRepositories"]
    for answer in reached.values():
        assert answer["status"] == 200
        validate_response("GET", GRANTS + "/{pat_id}/repositories", 200, answer["data"])
    assert [r["name"] for r in reached[str(grant_of[old.token.id])]["data"]] == [
        "private-api",
        "private-ops",
    ]
    assert len(reached[str(grant_of[older.token.id])]["data"]) == 3

    # POST revocations: one (204) and in bulk (202 {}); only the new grant remains.
    assert ops_out["updatePatAccess"]["status"] == 204
    assert ops_out["updatePatAccesses"]["status"] == 202
    assert ops_out["updatePatAccesses"]["data"] == {}
    remaining = ops_out["listPatGrantsAfterRevoke"]["data"]
    assert [g["token_id"] for g in remaining] == [api.token.id]

    # The effects, read back through the services.
    with server.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        decided = {
            t.token.name: ctx.session.get(TokenRequest, t.request.id)
            for t in (api, ops, site, docs, bot)
        }
        assert {name: (r.state, r.decision_reason) for name, r in decided.items() if r} == {
            "api": (RequestState.APPROVED, REASON),
            "ops": (RequestState.DENIED, REASON),
            "site": (RequestState.DENIED, REASON),
            "bot": (RequestState.DENIED, REASON),
            "docs": (RequestState.PENDING, None),  # the refused bulk approval changed nothing
        }
        for revoked in (old, older):
            grant = ctx.session.get(Grant, grant_of[revoked.token.id])
            assert grant is not None and grant.state == GrantState.REVOKED
            assert grant.revoked_at is not None
        new_grant = approvals.active_grant_of(ctx, api.token, org)
        assert new_grant is not None and new_grant.id == remaining[0]["id"]


def test_errors_reach_octokit_as_github_errors(
    node: str, server: Any, world: World, installed: Installed
) -> None:
    """An unknown request id: patgate's 404 body becomes octokit's HttpError, the script fails."""
    world.token("mona", name="api")
    done = run_octokit(node, server, installed, "--review", "999999=approve", check=False)
    assert done.returncode == 1, done.stdout
    assert done.stdout == ""
    assert '"name": "HttpError"' in done.stderr and '"status": 404' in done.stderr
    assert "/personal-access-token-requests/999999" in done.stderr
