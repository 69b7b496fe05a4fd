"""Fresh databases for tests, fast: migrate a template once per session, copy it per test.

SQLite: one migrated file per session, ``shutil.copy`` per test. PostgreSQL: one migrated
``patgate_tpl_<pid>`` per session, ``CREATE DATABASE ... TEMPLATE`` per test, dropped afterwards.
Every database this module creates carries a comment naming the host and the pytest process, so
that a later session can drop what a killed one left behind (and nothing a live one still uses).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import Engine, make_url, text

from patgate.db import make_engine
from patgate.schema import upgrade

__all__ = [
    "BACKENDS",
    "POSTGRES_ADMIN_URL",
    "DatabaseTemplates",
    "PostgresServer",
    "empty_database",
    "migrate",
    "sqlite_url",
]

BACKENDS = ("sqlite", "postgres")

# Any database on the server will do: it is only used to create and drop the test databases.
POSTGRES_ADMIN_URL = (
    os.environ.get("PATGATE_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
)

_PREFIX = "patgate_"
_OWNER_TAG = "patgate-tests"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest revision, then let go of every connection."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        if engine.dialect.name == "sqlite":
            # Fold the WAL into the main file, so that copying that one file copies everything.
            # Outside SQLAlchemy's transaction: patgate's engine begins every one IMMEDIATE.
            connection = engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                busy, _, _ = cursor.fetchone()
                assert not busy, "the WAL of the template could not be checkpointed"
            finally:
                connection.close()
    finally:
        engine.dispose()


class PostgresServer:
    """Creates and drops this session's databases on the test PostgreSQL server."""

    def __init__(self, admin_url: str = POSTGRES_ADMIN_URL) -> None:
        url = make_url(admin_url)
        if url.get_backend_name() != "postgresql":
            raise ValueError(f"not a PostgreSQL URL: {url.render_as_string()}")
        self._url = url
        self._connection: psycopg.Connection | None = None
        self._names = itertools.count(1)
        self._owner = f"{_OWNER_TAG} host={socket.gethostname()} pid={os.getpid()}"

    @property
    def display_url(self) -> str:
        """The admin URL with any password hidden, for messages."""
        return self._url.set(drivername="postgresql").render_as_string(hide_password=True)

    def unreachable_reason(self) -> str | None:
        """``None`` when the server answers, else one line saying why it does not."""
        try:
            self._admin()
        except psycopg.Error as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            return f"PostgreSQL is not reachable at {self.display_url}: {detail}"
        return None

    def url_for(self, name: str) -> str:
        """The SQLAlchemy URL of database ``name`` on this server."""
        url = self._url.set(drivername="postgresql+psycopg", database=name)
        return url.render_as_string(hide_password=False)

    def new_name(self, kind: str) -> str:
        """A database name unique on the server: the kind, this process and a counter."""
        return f"{_PREFIX}{kind}_{os.getpid()}_{next(self._names)}"

    def create(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` (empty, or a copy of ``template``) and return its URL."""
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template or "template0")
        )
        admin = self._admin()
        admin.execute(statement)
        admin.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(self._owner)
            )
        )
        return self.url_for(name)

    def drop(self, name: str) -> None:
        # FORCE: a test that leaked a connection must not keep its database alive.
        self._admin().execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def drop_stale(self) -> list[str]:
        """Drop the databases that test sessions on this host left behind when they were killed."""
        rows = self._admin().execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
            " WHERE datname LIKE %s",
            [_PREFIX.replace("_", r"\_") + "%"],
        )
        stale = [name for name, comment in rows.fetchall() if self._is_orphan(comment)]
        for name in stale:
            self.drop(name)
        return stale

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _is_orphan(self, comment: str | None) -> bool:
        prefix = f"{_OWNER_TAG} host={socket.gethostname()} pid="
        if not comment or not comment.startswith(prefix):
            return False
        pid = comment.removeprefix(prefix)
        return pid.isdigit() and int(pid) != os.getpid() and not _process_exists(int(pid))

    def _admin(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            url = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
            # CREATE/DROP DATABASE cannot run inside a transaction block.
            self._connection = psycopg.connect(url, autocommit=True, connect_timeout=5)
        return self._connection


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DatabaseTemplates:
    """The session's migrated templates, built on first use, and the fresh copies made of them."""

    def __init__(self, directory: Path, postgres: PostgresServer) -> None:
        self._directory = directory
        self._postgres = postgres
        self._sqlite_template: Path | None = None
        self._postgres_template: str | None = None
        self._copies = itertools.count(1)

    def fresh(self, backend: str, directory: Path) -> str:
        """A new, fully migrated database; ``directory`` holds it on SQLite. Returns its URL."""
        if backend == "sqlite":
            path = directory / f"patgate-{next(self._copies)}.db"
            shutil.copy(self._sqlite(), path)
            return sqlite_url(path)
        if backend == "postgres":
            template = self._postgres_tpl()
            return self._postgres.create(self._postgres.new_name("t"), template=template)
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")

    def release(self, url: str) -> None:
        """Drop a PostgreSQL copy (SQLite files go with pytest's temporary directories)."""
        parsed = make_url(url)
        if parsed.get_backend_name() == "postgresql" and parsed.database:
            self._postgres.drop(parsed.database)

    def close(self) -> None:
        if self._postgres_template is not None:
            self._postgres.drop(self._postgres_template)
            self._postgres_template = None

    def _sqlite(self) -> Path:
        if self._sqlite_template is None:
            path = self._directory / "template.db"
            migrate(sqlite_url(path))
            self._sqlite_template = path
        return self._sqlite_template

    def _postgres_tpl(self) -> str:
        if self._postgres_template is None:
            name = f"{_PREFIX}tpl_{os.getpid()}"
            self._postgres.drop(name)
            try:
                migrate(self._postgres.create(name))
            except BaseException:
                self._postgres.drop(name)
                raise
            self._postgres_template = name
        return self._postgres_template


@contextmanager
def empty_database(
    backend: str, directory: Path, postgres: PostgresServer | None = None
) -> Iterator[str]:
    """A database with nothing in it (not even Alembic's table), dropped afterwards.

    ``directory`` holds it on SQLite; ``postgres`` (reachable) is needed on PostgreSQL.
    """
    if backend == "sqlite":
        yield sqlite_url(directory / "empty.db")
        return
    if backend != "postgres":
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if postgres is None:
        raise ValueError("an empty PostgreSQL database needs the PostgresServer to create it on")
    name = postgres.new_name("e")
    url = postgres.create(name)
    try:
        yield url
    finally:
        postgres.drop(name)


def listening(engine: Engine, channel: str) -> int:
    """How many connections to ``engine``'s PostgreSQL database are listening on ``channel``
    (patgate's caches and workers each hold one: ``patgate_authz``, ``patgate_outbox``)."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query = :listen"
                ),
                {"listen": f"LISTEN {channel}"},
            ).scalar_one()
        )
