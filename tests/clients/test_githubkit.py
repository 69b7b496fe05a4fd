"""githubkit 0.16.1, a real GitHub client, against a live patgate on both databases: App
authentication (JWT, installation lookup, access token) and the eight governance operations,
parsed with githubkit's own models for both API versions, and its Link-following paginator."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.apps import services as apps
from patgate.context import CLI_ACTOR
from patgate.orgs import services as orgs
from patgate.tokens import services as tokens
from patgate.tokens.models import FineGrainedToken
from support.openapi import validate_response
from support.world import World

WRITE = {
    "organization_personal_access_token_requests": "write",
    "organization_personal_access_tokens": "write",
}
VERSIONS = ["2022-11-28", "2026-03-10"]


@dataclass
class Installed:
    app_id: int
    private_key: str
    installation_id: int


@pytest.fixture
def server(live_server: Any) -> Any:
    return live_server()


@pytest.fixture
def world(server: Any) -> World:
    return World(server.runtime).build()


@pytest.fixture
def installed(server: Any, world: World, request: pytest.FixtureRequest) -> Installed:
    """A fresh app per test: githubkit caches tokens by app id, whatever the base URL."""
    with server.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        app, key = apps.create_app(
            ctx,
            name=f"kit-{request.node.name}"[:34],
            owner_org=org,
            permissions=WRITE,
            events=["personal_access_token_request"],
            actor=CLI_ACTOR,
        )
        installation = apps.install(ctx, app, org, actor=CLI_ACTOR)
        return Installed(app.id, key, installation.id)


@pytest.fixture
def app_client(server: Any, installed: Installed) -> Iterator[GitHub[Any]]:
    # A cache of its own as well, so that no other test's token can ever be reused.
    github = GitHub(
        AppAuthStrategy(installed.app_id, installed.private_key),
        base_url=server.api + "/",
        cache_strategy=MemCacheStrategy(),
        auto_retry=False,
        http_cache=False,
    )
    yield github


@pytest.fixture
def client(app_client: GitHub[Any]) -> GitHub[Any]:
    """The installation's client, found the way real callers find it (no client guesses)."""
    installation = app_client.rest.apps.get_org_installation("acme").parsed_data
    return app_client.with_auth(app_client.auth.as_installation(installation.id))


def test_app_endpoints(app_client: GitHub[Any], installed: Installed, server: Any) -> None:
    me = app_client.rest.apps.get_authenticated()
    assert me.parsed_data is not None and me.parsed_data.id == installed.app_id
    validate_response("GET", "/app", me.status_code, me.json())
    listed = app_client.rest.apps.list_installations().parsed_data
    assert [i.id for i in listed] == [installed.installation_id]
    found = app_client.rest.apps.get_org_installation("acme")
    assert found.parsed_data.id == installed.installation_id
    assert found.parsed_data.account is not None
    issued = app_client.rest.apps.create_installation_access_token(
        installed.installation_id, data={}
    )
    validate_response(
        "POST", "/app/installations/{installation_id}/access_tokens", 201, issued.json()
    )
    token = issued.parsed_data
    assert token.token.startswith("ghs_")
    # githubkit's token cache parses it with exactly this format.
    expires_at = datetime.strptime(token.expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert expires_at - datetime.now(UTC) > timedelta(minutes=59)
    narrowed = app_client.rest.apps.create_installation_access_token(
        installed.installation_id,
        permissions={"organization_personal_access_token_requests": "read"},
        repositories=["private-api"],
    ).parsed_data
    assert narrowed.repository_selection == "selected"
    assert [r.name for r in narrowed.repositories or []] == ["private-api"]
    with pytest.raises(RequestFailed) as refused:
        app_client.rest.apps.create_installation_access_token(
            installed.installation_id, permissions={"members": "read"}
        )
    assert refused.value.response.status_code == 422


@pytest.mark.parametrize("version", VERSIONS)
def test_the_eight_operations(server: Any, world: World, client: GitHub[Any], version: str) -> None:
    rest = client.rest(version)
    first = world.token(name="first", repositories=["private-api"], reason="deploys")
    second = world.token(name="second", repositories="all")
    third = world.token(name="third")
    with server.runtime.unit_of_work() as ctx:
        ctx.session.get(FineGrainedToken, first.token.id).last_used_at = datetime(
            2024, 1, 2, 3, 4, 5, tzinfo=UTC
        )

    listed = rest.orgs.list_pat_grant_requests("acme")
    assert listed.headers["x-github-api-version-selected"] == version
    pending = listed.parsed_data
    assert [r.id for r in pending] == [third.request.id, second.request.id, first.request.id]
    assert pending[2].reason == "deploys" and pending[2].owner.login == "mona"
    assert pending[2].token_last_used_at == "2024-01-02T03:04:05Z"
    filtered = rest.orgs.list_pat_grant_requests(
        "acme",
        owner=["mona", "nobody"],
        last_used_before=datetime(2024, 1, 3, tzinfo=UTC),
        token_id=[str(first.token.id), str(second.token.id)],
        direction="asc",
        sort="created_at",
    ).parsed_data
    assert [r.id for r in filtered] == [first.request.id]

    repositories = rest.orgs.list_pat_grant_request_repositories("acme", first.request.id)
    assert [r.full_name for r in repositories.parsed_data] == ["acme/private-api"]

    one = rest.orgs.review_pat_grant_request("acme", first.request.id, action="approve")
    assert one.status_code == 204
    bulk = rest.orgs.review_pat_grant_requests_in_bulk(
        "acme", pat_request_ids=[second.request.id], action="approve", reason="fine"
    )
    assert bulk.status_code == 202 and bulk.parsed_data is not None
    with pytest.raises(RequestFailed) as twice:
        rest.orgs.review_pat_grant_requests_in_bulk(
            "acme", pat_request_ids=[second.request.id, third.request.id], action="deny"
        )
    assert twice.value.response.status_code == 422
    assert [r.id for r in rest.orgs.list_pat_grant_requests("acme").parsed_data] == [
        third.request.id
    ]

    grants = rest.orgs.list_pat_grants("acme", per_page=1)
    assert len(grants.parsed_data) == 1 and 'rel="next"' in grants.headers["link"]
    grants = rest.orgs.list_pat_grants("acme").parsed_data
    assert {g.token_id for g in grants} == {first.token.id, second.token.id}
    by_token = {g.token_id: g for g in grants}
    assert by_token[first.token.id].access_granted_at is not None
    granted = rest.orgs.list_pat_grant_repositories("acme", by_token[second.token.id].id)
    assert [r.name for r in granted.parsed_data] == ["private-api", "private-ops", "public-site"]

    revoked = rest.orgs.update_pat_access("acme", by_token[first.token.id].id, action="revoke")
    assert revoked.status_code == 204
    bulk_revoked = rest.orgs.update_pat_accesses(
        "acme", pat_ids=[by_token[second.token.id].id], action="revoke"
    )
    assert bulk_revoked.status_code == 202 and bulk_revoked.parsed_data is not None
    assert rest.orgs.list_pat_grants("acme").parsed_data == []


def test_paginate_follows_links_over_250_requests(
    server: Any, world: World, client: GitHub[Any]
) -> None:
    expected = []
    with server.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        for n in range(5):
            user = accounts.create_user(ctx, f"member{n}", email=f"member{n}@example.com")
            orgs.add_member(ctx, org, user, actor=CLI_ACTOR)
            for t in range(50):
                issued = tokens.create_fine_grained(
                    ctx, user, name=f"t{t}", resource_owner=org, repository_selection="all",
                    permissions={"issues": "read"}, expires_at=ctx.now + timedelta(days=7),
                    actor=CLI_ACTOR,
                )  # fmt: skip
                expected.append(issued.request.id)
    seen = [
        r.id for r in client.rest.paginate(client.rest.orgs.list_pat_grant_requests, org="acme")
    ]
    assert sorted(seen) == sorted(expected) and len(seen) == 250
    big_pages = client.rest.paginate(
        client.rest.orgs.list_pat_grant_requests, org="acme", per_page=100, direction="asc"
    )
    assert [r.id for r in big_pages] == sorted(expected)
    with server.runtime.unit_of_work() as ctx:
        approvals.approve(ctx, orgs.get_org(ctx, "acme"), expected[:100], actor=CLI_ACTOR)
    grants = list(client.rest.paginate(client.rest.orgs.list_pat_grants, org="acme", per_page=7))
    assert len(grants) == 100


def test_a_personal_access_token_is_refused(server: Any, world: World) -> None:
    owner_token = world.token("olivia", name="owner", permissions=WRITE)
    github = GitHub(
        TokenAuthStrategy(owner_token.secret),
        base_url=server.api + "/",
        cache_strategy=MemCacheStrategy(),
        auto_retry=False,
        http_cache=False,
    )
    with pytest.raises(RequestFailed) as refused:
        github.rest.orgs.list_pat_grant_requests("acme")
    assert refused.value.response.status_code == 403
    assert refused.value.response.json()["message"] == (
        "Resource not accessible by personal access token"
    )
    with pytest.raises(RequestFailed) as no_jwt:
        github.rest.apps.get_authenticated()
    assert no_jwt.value.response.status_code == 401
