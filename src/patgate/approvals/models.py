"""Requests for an organization's approval of a fine-grained token, and the grants they yield."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from patgate.db import Base


class TokenRequest(Base):
    """A snapshot of what a token asked of an organization; decided once."""

    __tablename__ = "token_requests"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'approved', 'denied', 'cancelled')", name="state"),
        CheckConstraint("repository_selection IN ('none', 'all', 'subset')", name="selection"),
        # At most one pending request per token and organization.
        Index(
            "uq_token_requests_pending",
            "token_id",
            "org_id",
            unique=True,
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
        Index("ix_token_requests_org_state_created", "org_id", "state", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(
        ForeignKey("fine_grained_tokens.id", ondelete="CASCADE"), index=True
    )
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(10))
    # The creator's justification (GitHub's ``reason`` on the request).
    reason: Mapped[str | None] = mapped_column(String(1024))
    repository_selection: Mapped[str] = mapped_column(String(8))
    permissions: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The owner's reason for the decision, sent to the creator.
    decision_reason: Mapped[str | None] = mapped_column(String(1024))


class RequestRepository(Base):
    __tablename__ = "token_request_repositories"

    request_id: Mapped[int] = mapped_column(
        ForeignKey("token_requests.id", ondelete="CASCADE"), primary_key=True
    )
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Grant(Base):
    """An organization's approval in force for a token (GitHub's ``pat_id``)."""

    __tablename__ = "token_grants"
    __table_args__ = (
        CheckConstraint("state IN ('active', 'revoked')", name="state"),
        CheckConstraint("repository_selection IN ('none', 'all', 'subset')", name="selection"),
        Index(
            "uq_token_grants_active",
            "token_id",
            "org_id",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
        Index("ix_token_grants_org_state", "org_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(
        ForeignKey("fine_grained_tokens.id", ondelete="CASCADE"), index=True
    )
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    request_id: Mapped[int] = mapped_column(ForeignKey("token_requests.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(8))
    repository_selection: Mapped[str] = mapped_column(String(8))
    permissions: Mapped[dict[str, Any]]
    granted_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class GrantRepository(Base):
    __tablename__ = "token_grant_repositories"

    grant_id: Mapped[int] = mapped_column(
        ForeignKey("token_grants.id", ondelete="CASCADE"), primary_key=True
    )
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True, index=True
    )
