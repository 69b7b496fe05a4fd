"""Migrations, on both databases: from empty to head, idempotent, and in agreement with the models.

These start from an empty database (not the session's migrated template), since what they test
is the migrating itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from pprint import pformat
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, inspect, text
from sqlalchemy.sql import ClauseElement

from patgate import schema
from patgate.db import make_engine
from patgate.models import Base
from support.db import empty_database


@pytest.fixture
def engine(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database of the backend under test."""
    postgres = request.getfixturevalue("postgres_server") if backend == "postgres" else None
    with empty_database(backend, tmp_path, postgres) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def _snapshot(engine: Engine) -> dict[str, Any]:
    """Tables with their columns, indexes, keys and constraints: what an upgrade may change."""
    inspector = inspect(engine)
    return {
        table: {
            "columns": [
                (column["name"], str(column["type"]), column["nullable"])
                for column in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(_plain(fk) for fk in inspector.get_foreign_keys(table)),
            "indexes": sorted(_plain(ix) for ix in inspector.get_indexes(table)),
            "uniques": sorted(_plain(uq) for uq in inspector.get_unique_constraints(table)),
            "checks": sorted(_plain(ck) for ck in inspector.get_check_constraints(table)),
        }
        for table in inspector.get_table_names()
    }


def _plain(value: Any) -> str:
    """A comparable text for what the inspector reflects (SQL expressions by their SQL)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_plain(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if isinstance(value, ClauseElement):
        return str(value)
    return repr(value)


def test_the_revisions_form_a_single_line() -> None:
    script = ScriptDirectory.from_config(schema.alembic_config())
    assert len(script.get_heads()) == 1, f"several heads, merge them: {script.get_heads()}"
    assert script.get_current_head() == schema.head_revision()


def test_an_empty_database_is_out_of_date(engine: Engine) -> None:
    assert schema.current_revision(engine) is None
    with pytest.raises(schema.SchemaOutOfDate, match="patgate db upgrade"):
        schema.ensure_current(engine)


def test_upgrade_from_empty_reaches_head(engine: Engine) -> None:
    schema.upgrade(engine)

    assert schema.current_revision(engine) == schema.head_revision() is not None
    schema.ensure_current(engine)
    assert set(inspect(engine).get_table_names()) == {*Base.metadata.tables, "alembic_version"}


def test_upgrade_is_idempotent(engine: Engine) -> None:
    schema.upgrade(engine)
    before = _snapshot(engine)

    schema.upgrade(engine)

    assert schema.current_revision(engine) == schema.head_revision()
    assert _snapshot(engine) == before
    schema.ensure_current(engine)


def test_upgrade_one_revision_at_a_time(engine: Engine) -> None:
    """Each migration applies on its own, on top of the one before (as upgrades meet them)."""
    config = schema.alembic_config()
    revisions = list(reversed(list(ScriptDirectory.from_config(config).walk_revisions())))
    assert revisions, "no migrations at all"

    for revision in revisions:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision.revision)
        assert schema.current_revision(engine) == revision.revision

    schema.ensure_current(engine)


def test_models_and_migrations_agree(engine: Engine) -> None:
    schema.upgrade(engine)

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == [], (
        "the migrations do not build what the models describe; write a migration "
        "(`alembic revision --autogenerate`) or fix the models:\n" + pformat(differences)
    )


def test_the_permission_rows_are_filled_from_existing_requests_and_grants(engine: Engine) -> None:
    """d33aa7358bbb copies the JSON permissions of the rows already there, with their state."""
    config = schema.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "ac56199d20a4")
    now = datetime(2026, 11, 25, tzinfo=UTC)
    tables = Base.metadata.tables
    with engine.begin() as connection:

        def add(table: str, **values: Any) -> None:
            connection.execute(insert(tables[table]).values(**values))

        for id_, kind, login in ((1, "User", "mona"), (2, "Organization", "acme")):
            add("accounts", id=id_, type=kind, login=login, login_key=login, created_at=now,
                updated_at=now)  # fmt: skip
        add("users", id=1, email="mona@example.com", site_admin=False)
        add("organizations", id=2, opted_in=True, fine_grained_policy="allow",
            approval_policy="required", classic_policy="allow")  # fmt: skip
        for id_, permissions in (
            (1, {"issues": "read"}),
            (2, {"issues": "write", "metadata": "read"}),
        ):
            add("fine_grained_tokens", id=id_, user_id=1, resource_owner_id=2, name=f"t{id_}",
                name_key=f"t{id_}", token_hash=f"{id_:064}", repository_selection="all",
                permissions=permissions, created_at=now, issued_at=now, updated_at=now)  # fmt: skip
            add("token_requests", id=id_, token_id=id_, org_id=2, requester_id=1,
                state="approved" if id_ == 1 else "pending", repository_selection="all",
                permissions=permissions, created_at=now)  # fmt: skip
        add("token_grants", id=1, token_id=1, org_id=2, request_id=1, state="active",
            repository_selection="all", permissions={"issues": "read"}, granted_at=now)  # fmt: skip

    schema.upgrade(engine)

    with engine.connect() as connection:
        requests = connection.execute(
            text("SELECT request_id, name, level, org_id, state FROM token_request_permissions")
        ).all()
        grants = connection.execute(
            text("SELECT grant_id, name, level, org_id, state FROM token_grant_permissions")
        ).all()
    assert sorted(requests) == [
        (1, "issues", "read", 2, "approved"),
        (2, "issues", "write", 2, "pending"),
        (2, "metadata", "read", 2, "pending"),
    ]
    assert grants == [(1, "issues", "read", 2, "active")]


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_outbox_payloads_are_compressed_with_lz4_on_postgresql(engine: Engine) -> None:
    """5dc4905a6ad8: lz4 where the server has it (Debian's PostgreSQL 15 does), else pglz;
    SQLite compresses nothing."""
    schema.upgrade(engine)
    query = text(
        "SELECT attcompression FROM pg_attribute "
        "WHERE attrelid = 'outbox_messages'::regclass AND attname = 'payload'"
    )
    with engine.connect() as connection:
        assert connection.scalar(query) == "l"  # lz4

    config = schema.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "d33aa7358bbb")
    with engine.connect() as connection:
        assert connection.scalar(query) == ""  # the server's default
