"""outbox payloads compressed with lz4

On PostgreSQL a payload over 2 kB (a webhook body, a digest) is compressed when it is stored;
the default method, pglz, took half of the time of a bulk decision's outbox insert (200
payloads, ~800 kB); lz4 does it in a fraction (docs/performance.md, goal 3). A server built
without lz4 (or before PostgreSQL 14) keeps pglz. SQLite compresses nothing.

Revision ID: 5dc4905a6ad8
Revises: d33aa7358bbb
Create Date: 2026-11-25 16:38:03.409887
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5dc4905a6ad8"
down_revision: str | None = "d33aa7358bbb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _set_compression(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or bind.dialect.server_version_info < (14,):
        return
    try:
        with bind.begin_nested():
            bind.exec_driver_sql(
                f"ALTER TABLE outbox_messages ALTER COLUMN payload SET COMPRESSION {method}"
            )
    except sa.exc.DBAPIError:
        pass  # "compression method lz4 not supported": this server keeps the default


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("default")
