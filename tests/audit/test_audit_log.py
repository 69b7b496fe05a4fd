"""Audit entries are written in the change's transaction and read by owners only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from patgate.approvals import services as approvals
from patgate.audit.models import AuditEntry
from patgate.context import CLI_ACTOR
from patgate.orgs import services as orgs
from support.world import World


class Boom(Exception):
    pass


def count(runtime: Any, action: str | None = None) -> int:
    with runtime.unit_of_work() as ctx:
        stmt = select(func.count()).select_from(AuditEntry)
        if action:
            stmt = stmt.where(AuditEntry.action == action)
        return ctx.session.scalar(stmt) or 0


def test_a_failure_after_the_change_rolls_back_the_audit_entry(runtime: Any) -> None:
    world = World(runtime).build()
    issued = world.token()
    before = count(runtime)
    owner = world.actor()
    with pytest.raises(Boom), runtime.unit_of_work() as ctx:
        approvals.approve(ctx, orgs.get_org(ctx, "acme"), [issued.request.id], actor=owner)
        raise Boom
    assert count(runtime) == before
    with runtime.unit_of_work() as ctx:
        assert (
            approvals.get_request(ctx, orgs.get_org(ctx, "acme"), issued.request.id).state
            == "pending"
        )


def test_every_transition_is_audited(runtime: Any) -> None:
    world = World(runtime).build()
    first = world.token(name="first")
    second = world.token(name="second")
    world.run(approvals.approve, [first.request.id], actor=world.actor())
    world.run(approvals.deny, [second.request.id], actor=world.actor(), reason="no")
    grant = world.run(lambda ctx, org: approvals.active_grant_of(ctx, first.token, org))
    world.run(approvals.revoke, [grant.id], actor=world.actor())
    world.run(orgs.set_org_policy, actor=CLI_ACTOR, approval="not_required")
    for action, expected in [
        ("personal_access_token.create", 2),
        ("personal_access_token.request_created", 2),
        ("personal_access_token.access_granted", 1),
        ("personal_access_token.request_denied", 1),
        ("personal_access_token.access_revoked", 1),
        ("auto_approve_personal_access_token_requests.enable", 1),
        ("org.fine_grained_pat_opt_in", 1),
    ]:
        assert count(runtime, action) == expected, action


def test_audit_log_api_filters_and_is_for_owners_only(live_server: Any) -> None:
    server = live_server()
    world = World(server.runtime).build()
    issued = world.token()
    world.run(approvals.deny, [issued.request.id], actor=world.actor(), reason="no")
    owner_token = world.classic("olivia", ["read:audit_log"])
    member_token = world.classic("mona", ["admin:org"])
    url = f"{server.api}/orgs/acme/audit-log"

    def call(secret: str, **params: Any) -> httpx.Response:
        return httpx.get(url, params=params, headers={"Authorization": f"token {secret}"})

    everything = call(owner_token, per_page=100)
    assert everything.status_code == 200
    actions = [e["action"] for e in everything.json()]
    assert "personal_access_token.request_denied" in actions
    denied = call(owner_token, phrase="action:personal_access_token.request_denied").json()
    assert [e["action"] for e in denied] == ["personal_access_token.request_denied"]
    event = denied[0]
    for field in ("@timestamp", "_document_id", "actor", "actor_id", "org", "org_id",
                  "created_at", "token_id", "user_programmatic_access_request_id"):  # fmt: skip
        assert field in event, field
    assert event["actor"] == "olivia" and event["org"] == "acme"
    by_actor = call(owner_token, phrase="actor:olivia").json()
    assert by_actor and all(e["actor"] == "olivia" for e in by_actor)
    paged = call(owner_token, per_page=1)
    assert len(paged.json()) == 1 and 'rel="next"' in paged.headers["Link"]
    assert call(member_token).status_code == 403
    assert call(owner_token, phrase="bogus:1").status_code == 422
    no_scope = world.classic("olivia", ["repo"])
    assert call(no_scope).status_code == 403
