"""Recording and reading audit entries. Recording joins the caller's transaction."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, insert, or_, select

from patgate.audit.models import AuditEntry
from patgate.context import Actor, Context
from patgate.errors import InvalidInput

# Policy actions of patgate's own (GitHub names only the token events); see docs/behaviour.md.
POLICY_ACTIONS = {
    "fine_grained": "org.fine_grained_pat_access_update",
    "classic": "org.classic_pat_access_update",
    "fine_grained_max_lifetime": "org.fine_grained_pat_max_lifetime_update",
    "classic_max_lifetime": "org.classic_pat_max_lifetime_update",
    "opt_in": "org.fine_grained_pat_opt_in",
}


def record(
    ctx: Context,
    action: str,
    *,
    actor: Actor,
    org: Any = None,
    user: Any = None,
    token_id: int | None = None,
    request_id: int | None = None,
    **data: Any,
) -> AuditEntry:
    """Add an audit entry to the current transaction (it commits or rolls back with it)."""
    values = entry(
        ctx, action, actor=actor, org=org, user=user, token_id=token_id, request_id=request_id,
        **data,
    )  # fmt: skip
    audit_entry = AuditEntry(**values)
    ctx.session.add(audit_entry)
    return audit_entry


def entry(
    ctx: Context,
    action: str,
    *,
    actor: Actor,
    org: Any = None,
    user: Any = None,
    token_id: int | None = None,
    request_id: int | None = None,
    **data: Any,
) -> dict[str, Any]:
    """The values of one audit entry, for :func:`record_all`."""
    return {
        "document_id": secrets.token_urlsafe(16)[:22],
        "action": action,
        "actor_id": actor.id,
        "actor": actor.login,
        "org_id": getattr(org, "id", None),
        "org": getattr(org, "login", None),
        "user_id": getattr(user, "id", None),
        "user": getattr(user, "login", None),
        "token_id": token_id,
        "request_id": request_id,
        "data": data,
        "created_at": ctx.now,
    }


def record_all(ctx: Context, entries: list[dict[str, Any]]) -> None:
    """Add many entries (from :func:`entry`) to the current transaction with one multi-row
    INSERT, without an ORM object each (a bulk decision's entries)."""
    if entries:
        ctx.session.execute(insert(AuditEntry), entries)


@dataclass(frozen=True)
class AuditQuery:
    """A parsed ``phrase``: ``action:``, ``actor:`` and ``created:`` terms.

    ``created:`` takes a day, ``>=``/``>``/``<=``/``<`` a day, or ``DAY..DAY``.
    """

    actions: tuple[str, ...] = ()
    actors: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None


def parse_phrase(phrase: str | None) -> AuditQuery:
    """Parse GitHub's audit-log search phrase; raise :class:`InvalidInput` on unknown keys."""
    actions: list[str] = []
    actors: list[str] = []
    start = end = None
    for term in (phrase or "").split():
        key, sep, value = term.partition(":")
        if not sep or not value:
            raise InvalidInput(f"phrase term {term!r} is not key:value", field="phrase")
        if key == "action":
            actions.append(value)
        elif key == "actor":
            actors.append(value)
        elif key == "created":
            start, end = _date_range(value)
        else:
            raise InvalidInput(
                f"phrase key {key!r} is not one of action, actor, created", field="phrase"
            )
    return AuditQuery(tuple(actions), tuple(actors), start, end)


def _date_range(value: str) -> tuple[datetime | None, datetime | None]:
    def day(text: str) -> datetime:
        try:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            raise InvalidInput(f"created date {text!r} is not YYYY-MM-DD", field="phrase") from None

    try:
        if ".." in value:
            first, _, last = value.partition("..")
            return day(first), day(last) + timedelta(days=1)
        if value.startswith(">="):
            return day(value[2:]), None
        if value.startswith("<="):
            return None, day(value[2:]) + timedelta(days=1)
        if value.startswith(">"):
            return day(value[1:]) + timedelta(days=1), None
        if value.startswith("<"):
            return None, day(value[1:])
        when = day(value)
        return when, when + timedelta(days=1)
    except OverflowError:  # the day after 9999-12-31
        raise InvalidInput(f"created date {value!r} is out of range", field="phrase") from None


def _filtered(org_id: int, query: AuditQuery) -> Select[Any]:
    stmt = select(AuditEntry).where(AuditEntry.org_id == org_id)
    if query.actions:
        # ``action:personal_access_token`` matches every ``personal_access_token.*`` event.
        conditions = [AuditEntry.action == a for a in query.actions] + [
            AuditEntry.action.startswith(a + ".") for a in query.actions if "." not in a
        ]
        stmt = stmt.where(or_(*conditions))
    if query.actors:
        stmt = stmt.where(func.lower(AuditEntry.actor).in_([a.lower() for a in query.actors]))
    if query.created_from is not None:
        stmt = stmt.where(AuditEntry.created_at >= query.created_from)
    if query.created_to is not None:
        stmt = stmt.where(AuditEntry.created_at < query.created_to)
    return stmt


def list_entries(
    ctx: Context, org_id: int, query: AuditQuery, *, page: int, per_page: int
) -> tuple[list[AuditEntry], int]:
    """One page of the org's entries, newest first, and the total count."""
    stmt = _filtered(org_id, query)
    total = ctx.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = ctx.session.scalars(
        stmt.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return list(rows), total


def as_github(entry: AuditEntry) -> dict[str, Any]:
    """GitHub's audit-log event shape (milliseconds since the epoch for the timestamps)."""
    millis = int(entry.created_at.timestamp() * 1000)
    event: dict[str, Any] = {
        "@timestamp": millis,
        "_document_id": entry.document_id,
        "action": entry.action,
        "actor": entry.actor,
        "actor_id": entry.actor_id,
        "created_at": millis,
        "org": entry.org,
        "org_id": entry.org_id,
        "user": entry.user,
        "user_id": entry.user_id,
    }
    if entry.token_id is not None:
        event["token_id"] = entry.token_id
    if entry.request_id is not None:
        event["user_programmatic_access_request_id"] = entry.request_id
    event.update(entry.data)
    return event
