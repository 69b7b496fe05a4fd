"""Migrations, on both databases: from empty to head, idempotent, and in agreement with the models.

These start from an empty database (not the session's migrated template), since what they test
is the migrating itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from pprint import pformat
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
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
