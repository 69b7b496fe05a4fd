"""Accounts: users and organizations share one login namespace and one id space, as on GitHub."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from patgate.db import Base

USER = "User"
ORGANIZATION = "Organization"


class Account(Base):
    """A login: a user or an organization (joined-table inheritance keeps one namespace)."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("type IN ('User', 'Organization')", name="type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(12))
    login: Mapped[str] = mapped_column(String(39))
    # Lower-cased login: logins are unique case-insensitively across users and orgs.
    login_key: Mapped[str] = mapped_column(String(39), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __mapper_args__ = {"polymorphic_on": "type", "polymorphic_abstract": True}


class User(Account):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[str] = mapped_column(String(255))
    # None: the user cannot sign in with a password (created by the CLI without one).
    password_hash: Mapped[str | None] = mapped_column(String(255))
    site_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    suspended_at: Mapped[datetime | None]

    __mapper_args__ = {"polymorphic_identity": USER}

    @property
    def suspended(self) -> bool:
        return self.suspended_at is not None
