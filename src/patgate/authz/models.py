"""The authorization generation: a counter that every change to authorization facts bumps,
so that processes caching those facts know when to forget them (SPEC §10)."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Integer
from sqlalchemy.orm import Mapped, mapped_column

from patgate.db import Base


class AuthzGeneration(Base):
    __tablename__ = "authz_generation"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
