"""The listing filters (owner, permission, token ids) over their indexes and permission rows,
and bulk decisions done in a few statements: the same answers, audit entries, emails and
webhooks as one request at a time (docs/performance.md)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.approvals.models import Grant, GrantPermission, RequestPermission, TokenRequest
from patgate.apps import services as apps
from patgate.audit.models import AuditEntry
from patgate.context import CLI_ACTOR
from patgate.notifications.models import OutboxMessage
from patgate.orgs import services as orgs
from patgate.tokens import services as tokens
from support.world import World

Filters = approvals.ListFilters


@pytest.fixture
def world(runtime: Any) -> World:
    world = World(runtime).build()
    with runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        for login in ("max", "lin"):
            user = accounts.create_user(ctx, login, email=f"{login}@example.com")
            orgs.add_member(ctx, org, user, actor=CLI_ACTOR)
    return world


def listed(world: World, filters: Filters, *, grants: bool = False, **page: Any) -> Any:
    """``(ids, total)`` of a page (default: the first 100)."""
    lister = approvals.list_active_grants if grants else approvals.list_pending
    page = {"page": 1, "per_page": 100, **page}
    rows, total = world.run(lambda ctx, org: lister(ctx, org, filters, **page))
    return [row.id for row, _ in rows], total


def test_owner_and_permission_filters_follow_decisions(world: World) -> None:
    a = world.token("mona", name="a", permissions={"issues": "write"}).request.id
    b = world.token("mona", name="b", permissions={"issues": "read"}).request.id
    c = world.token("max", name="c", permissions={"issues": "write", "contents": "read"})
    d = world.token("lin", name="d", permissions={"contents": "read"}).request.id
    c = c.request.id

    assert listed(world, Filters(owners=("mona",))) == ([b, a], 2)
    assert listed(world, Filters(owners=("MONA", "max"))) == ([c, b, a], 3)
    assert listed(world, Filters(owners=("max", "mona"), direction="asc")) == ([a, b, c], 3)
    assert listed(world, Filters(owners=("nobody",))) == ([], 0)
    assert listed(world, Filters(permission="issues_write")) == ([c, a], 2)
    assert listed(world, Filters(permission="issues_write", direction="asc")) == ([a, c], 2)
    assert listed(world, Filters(permission="contents_read", owners=("lin",))) == ([d], 1)
    assert listed(world, Filters(permission="repository_projects_admin")) == ([], 0)
    assert listed(world, Filters(), per_page=2, page=2) == ([b, a], 4)
    assert listed(world, Filters(owners=("mona", "max")), per_page=2, page=2) == ([a], 3)
    assert listed(world, Filters(permission="issues_write"), per_page=1, page=2) == ([a], 2)
    assert listed(world, Filters(permission="issues_write"), page=5) == ([], 2)

    # A decided request leaves the list: its permission rows follow its state.
    world.run(approvals.approve, [a], actor=world.actor())
    world.run(approvals.deny, [c], actor=world.actor(), reason="no")
    assert listed(world, Filters(permission="issues_write")) == ([], 0)
    assert listed(world, Filters(owners=("mona",))) == ([b], 1)
    [grant] = listed(world, Filters(), grants=True)[0]
    assert listed(world, Filters(permission="issues_write"), grants=True) == ([grant], 1)
    assert listed(world, Filters(owners=("mona",)), grants=True) == ([grant], 1)
    assert listed(world, Filters(owners=("max",)), grants=True) == ([], 0)
    with world.runtime.unit_of_work() as ctx:
        states = dict(
            ctx.session.execute(
                select(RequestPermission.request_id, RequestPermission.state).where(
                    RequestPermission.name == "issues"
                )
            ).all()
        )
        assert states == {a: "approved", b: "pending", c: "denied"}

    world.run(approvals.revoke, [grant], actor=world.actor())
    assert listed(world, Filters(permission="issues_write"), grants=True) == ([], 0)
    with world.runtime.unit_of_work() as ctx:
        rows = ctx.session.execute(select(GrantPermission.name, GrantPermission.state)).all()
        assert sorted(rows) == [("issues", "revoked"), ("metadata", "revoked")]


def test_token_id_filter_and_unknown_ids(world: World) -> None:
    a = world.token("mona", name="a")
    b = world.token("max", name="b")
    assert listed(world, Filters(token_ids=(b.token.id, a.token.id))) == (
        [b.request.id, a.request.id],
        2,
    )
    assert listed(world, Filters(token_ids=(a.token.id, 2**31 - 1))) == ([a.request.id], 1)


def test_a_bulk_approval_is_one_decision_each_with_its_audit_email_and_webhooks(
    world: World,
) -> None:
    with world.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        for name in ("first", "second"):
            app, _ = apps.create_app(
                ctx, name=name, owner_org=org, actor=CLI_ACTOR,
                permissions={"organization_personal_access_token_requests": "read"},
                webhook_url=f"http://127.0.0.1:9/{name}", events=[apps.REQUEST_EVENT],
            )  # fmt: skip
            apps.install(ctx, app, org, actor=CLI_ACTOR)
    old = world.token("mona", name="old", permissions={"issues": "read"})
    world.run(approvals.approve, [old.request.id], actor=world.actor())
    # Widening the token asks again: the approval replaces the grant in force.
    with world.runtime.unit_of_work() as ctx:
        token = tokens.get_fine_grained(ctx, old.token.id)
        tokens.update_fine_grained(
            ctx, token, permissions={"issues": "write", "contents": "read"}, actor=CLI_ACTOR
        )
    others = [world.token("max", name=f"t{n}", repositories=["private-api"]) for n in range(3)]
    with world.runtime.unit_of_work() as ctx:
        widened = ctx.session.scalar(
            select(TokenRequest.id).where(
                TokenRequest.token_id == old.token.id, TokenRequest.state == "pending"
            )
        )
        before = {
            kind: ctx.session.scalar(select(func.count()).select_from(model)) or 0
            for kind, model in (("audit", AuditEntry), ("outbox", OutboxMessage))
        }
    ids = [widened, *(o.request.id for o in others)]

    world.run(approvals.approve, ids, actor=world.actor(), reason="fine")

    with world.runtime.unit_of_work() as ctx:
        assert {
            r.id: r.state
            for r in ctx.session.scalars(select(TokenRequest).where(TokenRequest.id.in_(ids)))
        } == dict.fromkeys(ids, "approved")
        grants = ctx.session.scalars(select(Grant).order_by(Grant.id)).all()
        assert [(g.request_id, g.state) for g in grants] == [
            (old.request.id, "revoked"),
            *((i, "active") for i in ids),
        ]
        audit = ctx.session.scalars(
            select(AuditEntry).order_by(AuditEntry.id).offset(before["audit"])
        ).all()
        assert [(e.action, e.request_id, e.data["pat_id"]) for e in audit] == [
            ("personal_access_token.access_granted", g.request_id, g.id) for g in grants[1:]
        ]
        messages = ctx.session.scalars(
            select(OutboxMessage).order_by(OutboxMessage.id).offset(before["outbox"])
        ).all()
    emails = [m.payload for m in messages if m.kind == "email"]
    assert [(e["template"], e["data"]["request_id"], e["data"]["reason"]) for e in emails] == [
        ("request_approved", i, "fine") for i in ids
    ]
    hooks = [m.payload for m in messages if m.kind == "webhook"]
    assert [(h["request_id"], h["body"]["action"]) for h in hooks] == [
        (i, "approved") for i in ids for _ in range(2)
    ]
    first = hooks[0]["body"]["personal_access_token_request"]
    # Compared with the grant it replaces: contents is added, issues upgraded.
    assert first["permissions_added"]["repository"] == {"contents": "read"}
    assert first["permissions_upgraded"]["repository"] == {"issues": "write"}
    assert hooks[0]["body"]["sender"]["login"] == "olivia"
    subset = hooks[2]["body"]["personal_access_token_request"]
    assert subset["repository_count"] == 1
    assert [r["name"] for r in subset["repositories"]] == ["private-api"]


def test_a_bulk_denial_writes_one_audit_entry_email_and_no_grant(world: World) -> None:
    ids = [world.token("mona", name=f"t{n}").request.id for n in range(3)]
    world.run(approvals.deny, ids, actor=world.actor(), reason="not now")
    with world.runtime.unit_of_work() as ctx:
        assert ctx.session.scalar(select(func.count()).select_from(Grant)) == 0
        denied = ctx.session.scalars(
            select(AuditEntry.request_id).where(
                AuditEntry.action == "personal_access_token.request_denied"
            )
        ).all()
        assert sorted(denied) == ids
        emails = [m.payload for m in ctx.session.scalars(select(OutboxMessage))]
        assert [(e["template"], e["data"]["reason"]) for e in emails] == [
            ("request_denied", "not now")
        ] * 3
