"""listing indexes and permission rows

The governance lists filter by owner and by permission and order by creation; these give each
filter an index range, already in order, and a count that reads only that range:

- ``token_requests (org_id, state, requester_id, created_at, id)`` for ``owner``;
- ``token_grants (org_id, state, granted_at)`` in place of ``(org_id, state)``, the grant list's
  order;
- ``token_request_permissions`` / ``token_grant_permissions``: one row per permission, with the
  parent's org, state and time, searched by ``(org_id, state, name, level, time, id)``. Their
  foreign key is ``(id, state)`` with ``ON UPDATE CASCADE``, so the state follows the parent's
  (hence the unique ``(id, state)`` indexes), and the rows are filled here from the JSON of
  the existing requests and grants;
- ``outbox_messages.payload`` is JSON rather than JSONB on PostgreSQL: stored as sent, not
  parsed (bulk decisions and the digest write hundreds of kilobytes of it at once).

Revision ID: d33aa7358bbb
Revises: ac56199d20a4
Create Date: 2026-11-25 13:54:23.308667
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import patgate.db

revision: str = "d33aa7358bbb"
down_revision: str | None = "ac56199d20a4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _copy_permissions(child: str, parent: str, parent_id: str, time: str) -> None:
    each = (
        "jsonb_each_text(p.permissions)"
        if op.get_bind().dialect.name == "postgresql"
        else "json_each(p.permissions)"
    )
    op.execute(
        f"INSERT INTO {child} ({parent_id}, name, level, org_id, state, {time}) "
        f"SELECT p.id, e.key, e.value, p.org_id, p.state, p.{time} FROM {parent} p, {each} e"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "outbox_messages",
            "payload",
            type_=sa.JSON(),
            existing_type=postgresql.JSONB(astext_type=sa.Text()),
            existing_nullable=False,
            postgresql_using="payload::json",
        )
    op.create_index(
        "ix_token_requests_org_state_requester",
        "token_requests",
        ["org_id", "state", "requester_id", "created_at", "id"],
        unique=False,
    )
    op.create_index("uq_token_requests_id_state", "token_requests", ["id", "state"], unique=True)
    op.drop_index("ix_token_grants_org_state", table_name="token_grants")
    op.create_index(
        "ix_token_grants_org_state_granted",
        "token_grants",
        ["org_id", "state", "granted_at"],
        unique=False,
    )
    op.create_index("uq_token_grants_id_state", "token_grants", ["id", "state"], unique=True)

    op.create_table(
        "token_request_permissions",
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=5), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("created_at", patgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id", "state"],
            ["token_requests.id", "token_requests.state"],
            name=op.f("fk_token_request_permissions_request_id_token_requests"),
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", "name", name=op.f("pk_token_request_permissions")),
    )
    _copy_permissions("token_request_permissions", "token_requests", "request_id", "created_at")
    op.create_index(
        "ix_token_request_permissions_search",
        "token_request_permissions",
        ["org_id", "state", "name", "level", "created_at", "request_id"],
        unique=False,
    )

    op.create_table(
        "token_grant_permissions",
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=5), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("granted_at", patgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id", "state"],
            ["token_grants.id", "token_grants.state"],
            name=op.f("fk_token_grant_permissions_grant_id_token_grants"),
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("grant_id", "name", name=op.f("pk_token_grant_permissions")),
    )
    _copy_permissions("token_grant_permissions", "token_grants", "grant_id", "granted_at")
    op.create_index(
        "ix_token_grant_permissions_search",
        "token_grant_permissions",
        ["org_id", "state", "name", "level", "granted_at", "grant_id"],
        unique=False,
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "outbox_messages",
            "payload",
            type_=postgresql.JSONB(astext_type=sa.Text()),
            existing_type=sa.JSON(),
            existing_nullable=False,
            postgresql_using="payload::jsonb",
        )
    op.drop_table("token_grant_permissions")
    op.drop_table("token_request_permissions")
    op.drop_index("uq_token_grants_id_state", table_name="token_grants")
    op.drop_index("ix_token_grants_org_state_granted", table_name="token_grants")
    op.create_index("ix_token_grants_org_state", "token_grants", ["org_id", "state"], unique=False)
    op.drop_index("uq_token_requests_id_state", table_name="token_requests")
    op.drop_index("ix_token_requests_org_state_requester", table_name="token_requests")
