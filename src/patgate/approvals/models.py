"""Requests for an organization's approval of a fine-grained token, and the grants they yield."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, ForeignKeyConstraint, Index, String, text
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
        # The ``owner`` filter: one owner's pending requests, already in the listing's order.
        Index(
            "ix_token_requests_org_state_requester",
            "org_id",
            "state",
            "requester_id",
            "created_at",
            "id",
        ),
        # What the permission rows' foreign key points at, so that they follow the state.
        Index("uq_token_requests_id_state", "id", "state", unique=True),
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


class RequestPermission(Base):
    """One permission of a request, so that the listing's ``permission`` filter, its order and
    its count are one index range (not a JSON extraction from every pending row).

    Written with the request and never changed: ``org_id`` and ``created_at`` repeat the
    request's, and ``state`` follows the request's through the foreign key (``ON UPDATE
    CASCADE``), so no code path has to remember it.
    """

    __tablename__ = "token_request_permissions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["request_id", "state"],
            ["token_requests.id", "token_requests.state"],
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        Index(
            "ix_token_request_permissions_search",
            "org_id",
            "state",
            "name",
            "level",
            "created_at",
            "request_id",
        ),
    )

    request_id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    level: Mapped[str] = mapped_column(String(5))
    org_id: Mapped[int]
    state: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime]


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
        Index("ix_token_grants_org_state_granted", "org_id", "state", "granted_at"),
        Index("uq_token_grants_id_state", "id", "state", unique=True),
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


class GrantPermission(Base):
    """One permission of a grant: :class:`RequestPermission` for the grant list."""

    __tablename__ = "token_grant_permissions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["grant_id", "state"],
            ["token_grants.id", "token_grants.state"],
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        Index(
            "ix_token_grant_permissions_search",
            "org_id",
            "state",
            "name",
            "level",
            "granted_at",
            "grant_id",
        ),
    )

    grant_id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    level: Mapped[str] = mapped_column(String(5))
    org_id: Mapped[int]
    state: Mapped[str] = mapped_column(String(8))
    granted_at: Mapped[datetime]


class GrantRepository(Base):
    __tablename__ = "token_grant_repositories"

    grant_id: Mapped[int] = mapped_column(
        ForeignKey("token_grants.id", ondelete="CASCADE"), primary_key=True
    )
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True, index=True
    )
