"""The request lifecycle end to end over HTTP, on both databases (issue: governance core)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from patgate.approvals import services as approvals
from patgate.context import CLI_ACTOR
from patgate.errors import Forbidden, InvalidTransition, PolicyRefused
from patgate.orgs import services as orgs
from patgate.tokens import services as tokens
from support.world import World


@pytest.fixture
def server(live_server: Any) -> Any:
    return live_server()


@pytest.fixture
def world(server: Any) -> World:
    return World(server.runtime).build()


def get(server: Any, path: str, secret: str) -> httpx.Response:
    return httpx.get(f"{server.api}{path}", headers={"Authorization": f"Bearer {secret}"})


def status(server: Any, path: str, secret: str) -> int:
    return get(server, path, secret).status_code


PUBLIC = "/repos/acme/public-site"
PRIVATE = "/repos/acme/private-api"


def test_pending_token_reads_public_only_until_approved(server: Any, world: World) -> None:
    issued = world.token()
    assert issued.request.state == "pending"
    assert status(server, PUBLIC, issued.secret) == 200
    assert status(server, PRIVATE, issued.secret) == 404
    world.run(approvals.approve, [issued.request.id], actor=world.actor())
    assert status(server, PRIVATE, issued.secret) == 200


def test_denied_token_is_back_to_public_only(server: Any, world: World) -> None:
    issued = world.token()
    world.run(approvals.deny, [issued.request.id], actor=world.actor(), reason="too broad")
    assert status(server, PUBLIC, issued.secret) == 200
    assert status(server, PRIVATE, issued.secret) == 404
    with server.runtime.unit_of_work() as ctx:
        request = approvals.get_request(ctx, orgs.get_org(ctx, "acme"), issued.request.id)
        assert (request.state, request.decision_reason) == ("denied", "too broad")


def test_revoked_grant_is_back_to_public_only(server: Any, world: World) -> None:
    issued = world.token()
    world.run(approvals.approve, [issued.request.id], actor=world.actor())
    assert status(server, PRIVATE, issued.secret) == 200
    grant_id = world.run(lambda ctx, org: approvals.active_grant_of(ctx, issued.token, org).id)
    world.run(approvals.revoke, [grant_id], actor=world.actor())
    assert status(server, PRIVATE, issued.secret) == 404
    assert status(server, PUBLIC, issued.secret) == 200


def test_owner_token_is_approved_at_once(server: Any, world: World) -> None:
    issued = world.token("olivia")
    assert issued.request.state == "approved"
    assert status(server, PRIVATE, issued.secret) == 200


def test_every_token_approved_at_once_when_approval_not_required(server: Any, world: World) -> None:
    world.run(orgs.set_org_policy, actor=CLI_ACTOR, approval="not_required")
    issued = world.token()
    assert issued.request.state == "approved"
    assert status(server, PRIVATE, issued.secret) == 200


def test_switching_to_not_required_approves_pending(server: Any, world: World) -> None:
    issued = world.token()
    world.run(orgs.set_org_policy, actor=CLI_ACTOR, approval="not_required")
    assert status(server, PRIVATE, issued.secret) == 200


def test_classic_token_needs_no_approval_and_obeys_restriction(server: Any, world: World) -> None:
    secret = world.classic()
    assert status(server, PRIVATE, secret) == 200
    world.run(orgs.set_org_policy, actor=CLI_ACTOR, classic="restrict")
    answer = get(server, PRIVATE, secret)
    assert answer.status_code == 403
    assert answer.json()["message"] == (
        "`acme` forbids access via a personal access token (classic). Please use a GitHub App, "
        "OAuth App, or a personal access token with fine-grained permissions."
    )
    assert status(server, PUBLIC, secret) == 200


def test_restricted_fine_grained_blocks_without_deleting(server: Any, world: World) -> None:
    issued = world.token()
    world.run(approvals.approve, [issued.request.id], actor=world.actor())
    world.run(orgs.set_org_policy, actor=CLI_ACTOR, fine_grained="restrict")
    answer = get(server, PRIVATE, issued.secret)
    assert answer.status_code == 403
    assert (
        answer.json()["message"]
        == "`acme` forbids access via a fine-grained personal access token."
    )
    assert status(server, PUBLIC, issued.secret) == 200
    world.run(orgs.set_org_policy, actor=CLI_ACTOR, fine_grained="allow")
    assert status(server, PRIVATE, issued.secret) == 200


def test_lifetime_refused_at_creation_and_blocked_at_use(server: Any, world: World) -> None:
    world.run(orgs.set_org_policy, actor=CLI_ACTOR, fine_grained_max_lifetime_days=30)
    with pytest.raises(PolicyRefused):
        world.token(expires_in="60")
    with pytest.raises(PolicyRefused):
        world.token(name="forever", expires_in="none")
    issued = world.token(expires_in="30")
    world.run(approvals.approve, [issued.request.id], actor=world.actor())
    assert status(server, PRIVATE, issued.secret) == 200
    world.run(orgs.set_org_policy, actor=CLI_ACTOR, fine_grained_max_lifetime_days=7)
    answer = get(server, PRIVATE, issued.secret)
    assert answer.status_code == 403
    assert answer.json()["message"] == (
        "The 'acme' organization forbids access via a fine-grained personal access tokens if "
        "the token's lifetime is greater than 7 days. Please adjust your token's lifetime at "
        f"the following URL: {server.url}/settings/personal-access-tokens/{issued.token.id}"
    )
    with server.runtime.unit_of_work() as ctx:  # blocked, not revoked
        token = tokens.get_fine_grained(ctx, issued.token.id)
        assert approvals.active_grant_of(ctx, token, orgs.get_org(ctx, "acme")) is not None
        with pytest.raises(PolicyRefused):
            tokens.regenerate(ctx, token, expires_at=tokens.expiry(ctx.now, "30"), actor=CLI_ACTOR)


def test_removed_member_loses_grants_and_pending_requests(server: Any, world: World) -> None:
    approved = world.token(name="approved")
    world.run(approvals.approve, [approved.request.id], actor=world.actor())
    pending = world.token(name="pending")
    assert status(server, PRIVATE, approved.secret) == 200
    with server.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        orgs.remove_member(ctx, org, orgs.get_member(ctx, org, "mona"), actor=CLI_ACTOR)
    assert status(server, PRIVATE, approved.secret) == 404
    with server.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        assert approvals.get_request(ctx, org, pending.request.id).state == "cancelled"
        assert (
            approvals.list_active_grants(ctx, org, approvals.ListFilters(), page=1, per_page=10)[1]
            == 0
        )
        # Rejoining restores nothing.
        from patgate.accounts import services as accounts

        orgs.add_member(ctx, org, accounts.get_user(ctx, "mona"), actor=CLI_ACTOR)
    assert status(server, PRIVATE, approved.secret) == 404


def test_deleting_a_token_cancels_its_pending_request(server: Any, world: World) -> None:
    issued = world.token()
    with server.runtime.unit_of_work() as ctx:
        tokens.delete_fine_grained(
            ctx, tokens.get_fine_grained(ctx, issued.token.id), actor=CLI_ACTOR
        )
    with server.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        assert (
            approvals.list_pending(ctx, org, approvals.ListFilters(), page=1, per_page=10)[1] == 0
        )
    assert status(server, PUBLIC, issued.secret) == 401


def test_edits_narrow_at_once_and_widening_waits(server: Any, world: World) -> None:
    issued = world.token(repositories=["private-api", "private-ops"])
    world.run(approvals.approve, [issued.request.id], actor=world.actor())
    assert status(server, "/repos/acme/private-ops", issued.secret) == 200
    # Narrowing: takes effect at once, no new request.
    with server.runtime.unit_of_work() as ctx:
        token = tokens.get_fine_grained(ctx, issued.token.id)
        repo_list = [r for r in __import__("patgate.repos.services", fromlist=["x"]).resolve_names(
            ctx, orgs.get_org(ctx, "acme"), ["private-api"])]  # fmt: skip
        assert (
            tokens.update_fine_grained(ctx, token, repositories=repo_list, actor=CLI_ACTOR) is None
        )
    assert status(server, "/repos/acme/private-ops", issued.secret) == 404
    assert status(server, PRIVATE, issued.secret) == 200
    # Widening the permission: a new request, while the old grant keeps working.
    with server.runtime.unit_of_work() as ctx:
        token = tokens.get_fine_grained(ctx, issued.token.id)
        new_request = tokens.update_fine_grained(
            ctx, token, permissions={"issues": "write", "contents": "read"}, reason="more",
            actor=CLI_ACTOR,
        )  # fmt: skip
        assert new_request is not None and new_request.state == "pending"
        changes = approvals.changes_of(ctx, new_request)
        assert changes.added == {"contents": "read"}
    assert status(server, PRIVATE, issued.secret) == 200
    denied = httpx.post(
        f"{server.api}/repos/acme/private-api/issues",
        headers={"Authorization": f"Bearer {issued.secret}"},
        json={"title": "still allowed by the old grant"},
    )
    assert denied.status_code == 201


def test_permission_missing_is_403_with_accepted_permissions(server: Any, world: World) -> None:
    issued = world.token(permissions={"issues": "read"})
    world.run(approvals.approve, [issued.request.id], actor=world.actor())
    answer = httpx.post(
        f"{server.api}/repos/acme/private-api/issues",
        headers={"Authorization": f"token {issued.secret}"},
        json={"title": "x"},
    )
    assert answer.status_code == 403
    assert answer.json()["message"] == "Resource not accessible by personal access token"
    assert answer.headers["X-Accepted-GitHub-Permissions"] == "issues=write"


def test_deciding_twice_is_refused_and_changes_nothing(server: Any, world: World) -> None:
    issued = world.token()
    world.run(approvals.approve, [issued.request.id], actor=world.actor())
    with pytest.raises(InvalidTransition) as refused:
        world.run(approvals.deny, [issued.request.id], actor=world.actor())
    assert refused.value.ids == [issued.request.id]
    assert status(server, PRIVATE, issued.secret) == 200


@pytest.mark.parametrize("who", ["mona", "stranger-owner"])
def test_only_owners_of_that_org_decide(server: Any, world: World, who: str) -> None:
    issued = world.token()
    if who == "stranger-owner":
        with server.runtime.unit_of_work() as ctx:
            from patgate.accounts import services as accounts

            orgs.create_org(ctx, "other", owner=accounts.get_user(ctx, "stranger"), actor=CLI_ACTOR)
        actor = world.actor("stranger")
    else:
        actor = world.actor("mona")
    for decide_fn in (approvals.approve, approvals.deny):
        with pytest.raises(Forbidden):
            world.run(decide_fn, [issued.request.id], actor=actor)
    with server.runtime.unit_of_work() as ctx:
        assert (
            approvals.get_request(ctx, orgs.get_org(ctx, "acme"), issued.request.id).state
            == "pending"
        )
