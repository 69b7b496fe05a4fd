"""What every service call is built from: a session, the time, and the settings it needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something, as the audit log records it (``cli`` when nobody is named)."""

    id: int | None
    login: str
    kind: str = "user"  # "user", "app" (an installation's bot) or "cli" (the operator)


CLI_ACTOR = Actor(None, "cli", "cli")


@dataclass(slots=True)
class Context:
    session: Session
    now: datetime
    base_url: str = "http://127.0.0.1:8000"
    # Beta mode (SPEC §3): organizations must opt in before fine-grained tokens target them.
    opt_in_required: bool = True
