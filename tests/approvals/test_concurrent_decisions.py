"""Two owners deciding the same request at the same moment produce exactly one decision."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from patgate.approvals import services as approvals
from patgate.audit.models import AuditEntry
from patgate.context import CLI_ACTOR
from patgate.errors import InvalidTransition
from patgate.orgs import services as orgs
from support.world import World

DECISION_ACTIONS = ("personal_access_token.access_granted", "personal_access_token.request_denied")


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_approve_and_deny_leave_one_decision(runtime: Any, round_: int) -> None:
    world = World(runtime).build()
    with runtime.unit_of_work() as ctx:
        from patgate.accounts import services as accounts

        org = orgs.get_org(ctx, "acme")
        orgs.add_member(ctx, org, accounts.create_user(ctx, "owen", email="owen@example.com"),
                        role="owner", actor=CLI_ACTOR)  # fmt: skip
    request_id = world.token().request.id
    owners = [world.actor("olivia"), world.actor("owen")]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(index: int) -> None:
        fn = approvals.approve if index == 0 else approvals.deny
        barrier.wait()
        try:
            world.run(fn, [request_id], actor=owners[index])
            outcomes.append("decided")
        except InvalidTransition:
            outcomes.append("refused")

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["decided", "refused"]
    with runtime.unit_of_work() as ctx:
        state = approvals.get_request(ctx, orgs.get_org(ctx, "acme"), request_id).state
        entries = ctx.session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.request_id == request_id, AuditEntry.action.in_(DECISION_ACTIONS))
        )
    assert state in ("approved", "denied")
    assert entries == 1
