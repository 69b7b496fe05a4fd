"""Enterprises, organizations, memberships and the personal access token policies they set."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from patgate.accounts.models import ORGANIZATION, Account
from patgate.db import Base


class Role(enum.StrEnum):
    OWNER = "owner"
    MEMBER = "member"


class AccessPolicy(enum.StrEnum):
    ALLOW = "allow"
    RESTRICT = "restrict"


class ApprovalPolicy(enum.StrEnum):
    REQUIRED = "required"
    NOT_REQUIRED = "not_required"


DEFAULT_FINE_GRAINED_MAX_LIFETIME_DAYS = 366
MAX_LIFETIME_RANGE = range(1, 367)


class Enterprise(Base):
    """An enterprise; a ``None`` policy lets its organizations choose, any value binds them."""

    __tablename__ = "enterprises"
    __table_args__ = (
        CheckConstraint("fine_grained_policy IN ('allow', 'restrict')", name="fine_grained"),
        CheckConstraint("approval_policy IN ('required', 'not_required')", name="approval"),
        CheckConstraint("classic_policy IN ('allow', 'restrict')", name="classic"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(60))
    slug_key: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    opted_in: Mapped[bool] = mapped_column(Boolean, default=False)
    fine_grained_policy: Mapped[str | None] = mapped_column(String(16))
    approval_policy: Mapped[str | None] = mapped_column(String(16))
    classic_policy: Mapped[str | None] = mapped_column(String(16))
    # *_forced False: organizations choose; True: *_days binds them (None = no maximum).
    fine_grained_max_lifetime_forced: Mapped[bool] = mapped_column(Boolean, default=False)
    fine_grained_max_lifetime_days: Mapped[int | None] = mapped_column(Integer)
    classic_max_lifetime_forced: Mapped[bool] = mapped_column(Boolean, default=False)
    classic_max_lifetime_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]


class EnterpriseOwner(Base):
    __tablename__ = "enterprise_owners"

    enterprise_id: Mapped[int] = mapped_column(
        ForeignKey("enterprises.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Organization(Account):
    __tablename__ = "organizations"
    __table_args__ = (
        CheckConstraint("fine_grained_policy IN ('allow', 'restrict')", name="fine_grained"),
        CheckConstraint("approval_policy IN ('required', 'not_required')", name="approval"),
        CheckConstraint("classic_policy IN ('allow', 'restrict')", name="classic"),
        CheckConstraint(
            "fine_grained_max_lifetime_days IS NULL OR "
            "fine_grained_max_lifetime_days BETWEEN 1 AND 366",
            name="fine_grained_max_lifetime",
        ),
        CheckConstraint(
            "classic_max_lifetime_days IS NULL OR classic_max_lifetime_days BETWEEN 1 AND 366",
            name="classic_max_lifetime",
        ),
    )

    id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    enterprise_id: Mapped[int | None] = mapped_column(
        ForeignKey("enterprises.id", ondelete="SET NULL"), index=True
    )
    description: Mapped[str | None] = mapped_column(String(1024))
    opted_in: Mapped[bool] = mapped_column(Boolean, default=False)
    fine_grained_policy: Mapped[str] = mapped_column(String(16), default=AccessPolicy.ALLOW)
    approval_policy: Mapped[str] = mapped_column(String(16), default=ApprovalPolicy.REQUIRED)
    classic_policy: Mapped[str] = mapped_column(String(16), default=AccessPolicy.ALLOW)
    fine_grained_max_lifetime_days: Mapped[int | None] = mapped_column(
        Integer, default=DEFAULT_FINE_GRAINED_MAX_LIFETIME_DAYS
    )
    classic_max_lifetime_days: Mapped[int | None] = mapped_column(Integer)

    __mapper_args__ = {"polymorphic_identity": ORGANIZATION}


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (CheckConstraint("role IN ('owner', 'member')", name="role"),)

    org_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]
