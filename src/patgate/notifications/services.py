"""Enqueueing messages into the outbox, in the caller's transaction (SPEC §7)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select

from patgate.context import Context
from patgate.notifications.models import MessageState, OutboxMessage

EMAIL = "email"
WEBHOOK = "webhook"


def enqueue(
    ctx: Context, kind: str, payload: dict[str, Any], *, dedupe_key: str | None = None
) -> OutboxMessage | None:
    """Add a message to the outbox; it is sent only if the caller's transaction commits.

    With a ``dedupe_key`` already in the outbox nothing is added and ``None`` is returned.
    """
    if dedupe_key is not None:
        exists = ctx.session.scalar(
            select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)
        )
        if exists is not None:
            return None
    message = OutboxMessage(
        kind=kind,
        dedupe_key=dedupe_key,
        payload=payload,
        state=MessageState.PENDING,
        attempts=0,
        next_attempt_at=ctx.now,
        created_at=ctx.now,
    )
    ctx.session.add(message)
    ctx.session.flush()
    return message


def enqueue_all(ctx: Context, messages: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Add ``(kind, payload)`` messages to the outbox, in this order and without dedupe keys,
    with one multi-row INSERT (a bulk decision's emails and webhooks); return how many."""
    rows = [
        {
            "kind": kind,
            "payload": payload,
            "state": MessageState.PENDING,
            "attempts": 0,
            "next_attempt_at": ctx.now,
            "created_at": ctx.now,
        }
        for kind, payload in messages
    ]
    if rows:
        ctx.session.execute(insert(OutboxMessage), rows)
    return len(rows)


def email_payload(template: str, *, to: str, data: dict[str, Any]) -> dict[str, Any]:
    """The outbox payload of an email rendered from ``template`` with ``data``."""
    return {"template": template, "to": to, "data": data}


def enqueue_email(
    ctx: Context,
    template: str,
    *,
    to: str,
    data: dict[str, Any],
    dedupe_key: str | None = None,
) -> OutboxMessage | None:
    """An email rendered from ``template`` with ``data`` when the worker sends it."""
    return enqueue(ctx, EMAIL, email_payload(template, to=to, data=data), dedupe_key=dedupe_key)
