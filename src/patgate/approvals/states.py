"""The request and grant workflows: states and the one table of allowed transitions."""

from __future__ import annotations

import enum


class RequestState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CANCELLED = "cancelled"


class GrantState(enum.StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


TRANSITIONS: dict[enum.StrEnum, frozenset[enum.StrEnum]] = {
    RequestState.PENDING: frozenset(
        {RequestState.APPROVED, RequestState.DENIED, RequestState.CANCELLED}
    ),
    RequestState.APPROVED: frozenset(),
    RequestState.DENIED: frozenset(),
    RequestState.CANCELLED: frozenset(),
    GrantState.ACTIVE: frozenset({GrantState.REVOKED}),
    GrantState.REVOKED: frozenset(),
}


def can_move(current: enum.StrEnum, target: enum.StrEnum) -> bool:
    return target in TRANSITIONS[current]
