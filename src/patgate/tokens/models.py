"""Personal access tokens: fine-grained and classic. Only a hash of each secret is stored."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patgate.db import Base


class RepositorySelection(enum.StrEnum):
    NONE = "none"  # public repositories, read-only
    ALL = "all"
    SUBSET = "subset"


class FineGrainedToken(Base):
    __tablename__ = "fine_grained_tokens"
    __table_args__ = (
        UniqueConstraint("user_id", "name_key"),
        CheckConstraint("repository_selection IN ('none', 'all', 'subset')", name="selection"),
    )

    # Stable for the token's whole life: edits and regeneration keep it (the API's token_id).
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    resource_owner_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(40))
    name_key: Mapped[str] = mapped_column(String(40))
    description: Mapped[str | None] = mapped_column(String(1024))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    repository_selection: Mapped[str] = mapped_column(String(8))
    permissions: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    # When the current secret was issued; lifetime policies measure from here.
    issued_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None] = mapped_column(index=True)


class TokenRepository(Base):
    """A repository selected by a ``subset`` token."""

    __tablename__ = "fine_grained_token_repositories"

    token_id: Mapped[int] = mapped_column(
        ForeignKey("fine_grained_tokens.id", ondelete="CASCADE"), primary_key=True
    )
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ClassicToken(Base):
    __tablename__ = "classic_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    note: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[dict[str, Any]]  # {"scopes": [...]}: JSON object for a portable column type
    created_at: Mapped[datetime]
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
