"""Engine, sessions and the declarative base shared by every domain's models."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so Alembic migrations can name what they alter on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 15_000
# The largest id a row can have: primary keys are INTEGER, 32-bit on PostgreSQL. A larger id
# from outside names nothing, and must not reach a query (PostgreSQL refuses to compare it).
MAX_ID = 2**31 - 1


def written_table(state: Any) -> str | None:
    """The name of the table an ORM session's ``INSERT``/``UPDATE``/``DELETE`` statement
    writes (``do_orm_execute``), ``None`` for anything else. Names, not Table objects: an ORM
    statement carries an annotated copy of its Table."""
    if not (state.is_insert or state.is_update or state.is_delete):
        return None
    return getattr(getattr(state.statement, "table", None), "name", None)


def is_storable_id(value: int) -> bool:
    """Whether ``value`` can be a row id (an id from a URL may be any size: not one of ours)."""
    return 0 < value <= MAX_ID


LISTEN_CHECK_SECONDS = 0.2
MAX_LISTEN_PAUSE_SECONDS = 30.0


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite stores no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}


def json_dumps(value: Any) -> str:
    """JSON text of ``value`` as the JSON columns store it: orjson, several times faster than
    the standard library on the large payloads of bulk decisions (docs/performance.md)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for patgate: SQLite in WAL mode with a busy timeout and foreign keys."""
    # Statement parameters carry token hashes and webhook secrets: keep them out of logs.
    kwargs.setdefault("hide_parameters", True)
    # JSON columns hold outbox payloads (webhook bodies, digests) written hundreds at a time.
    kwargs.setdefault("json_serializer", json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN and breaks SERIALIZABLE-like
        # behaviour; take over so that every transaction starts with BEGIN IMMEDIATE
        # when it writes (see ``write_transaction``) and plain BEGIN otherwise.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front: a read-then-write transaction can then
    # never fail half-way with "database is locked"; it waits up to the busy timeout.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session


class PgListener(threading.Thread):
    """``LISTEN channel`` on a connection of its own; calls ``on_notify`` for each
    notification, and once after every (re)connection, since notifications sent while the
    connection was down are lost."""

    def __init__(self, engine: Engine, channel: str, on_notify: Callable[[], None]) -> None:
        super().__init__(name=f"listen-{channel}", daemon=True)
        url = engine.url.set(drivername="postgresql")
        self.conninfo = url.render_as_string(hide_password=False)
        self.channel = channel
        self.on_notify = on_notify
        self.ready = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        import psycopg

        pause = 1.0
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    # Forget first, then say ready: no reader may cache between the two.
                    self.on_notify()
                    self.ready.set()
                    pause = 1.0
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=LISTEN_CHECK_SECONDS):
                            self.on_notify()
            except (psycopg.Error, OSError) as exc:
                self.ready.clear()
                log.warning("%s listener: %s; reconnecting in %.0f s", self.channel, exc, pause)
                self.stopping.wait(pause)
                pause = min(pause * 2, MAX_LISTEN_PAUSE_SECONDS)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
