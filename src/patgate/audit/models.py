"""The audit log: one row per token or policy event, written in the change's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from patgate.db import Base


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_org_created", "org_id", "created_at"),
        Index("ix_audit_entries_action", "action"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # GitHub's ``_document_id``: an opaque unique id per entry.
    document_id: Mapped[str] = mapped_column(String(32), unique=True)
    action: Mapped[str] = mapped_column(String(100))
    # Ids without foreign keys: the log outlives the users, orgs and tokens it names.
    actor_id: Mapped[int | None]
    actor: Mapped[str | None] = mapped_column(String(100))
    org_id: Mapped[int | None]
    org: Mapped[str | None] = mapped_column(String(39))
    user_id: Mapped[int | None]
    user: Mapped[str | None] = mapped_column(String(39))
    token_id: Mapped[int | None]
    request_id: Mapped[int | None]
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
