"""Authorization facts cached in-process, and the generation that tells when to forget them.

Every transaction that changes an authorization fact (tokens, grants, requests, policies,
memberships, users, repositories, apps) bumps ``authz_generation`` in the same transaction;
on PostgreSQL it also sends ``NOTIFY patgate_authz``. A cache compares the generation it
filled under with the current one before each use and forgets everything when they differ:

- on SQLite the current generation is read per request (one tiny indexed read on a
  connection of the reading thread), so a commit from any process — the CLI included — is
  honoured from the next request;
- on PostgreSQL a listener thread counts notifications, so a commit elsewhere is honoured
  within the notification's latency (well under a second); while the listener is not
  connected, nothing is cached. A commit in this process also bumps this process's caches
  of the same database at once, so that the process reads its own writes without waiting
  for its notification to come back.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from patgate.accounts.models import Account, User
from patgate.approvals.models import Grant, GrantRepository, RequestRepository, TokenRequest
from patgate.apps.models import App, Installation, InstallationToken
from patgate.db import PgListener, written_table
from patgate.orgs.models import Enterprise, EnterpriseOwner, Membership, Organization
from patgate.repos.models import Issue, Repository
from patgate.tokens.models import ClassicToken, FineGrainedToken, TokenRepository

CHANNEL = "patgate_authz"
DEFAULT_MAX_ENTRIES = 20_000

# Issues are here because cached repository bodies carry ``open_issues_count``.
FACT_MODELS: tuple[type, ...] = (
    Account, User, Organization, Enterprise, EnterpriseOwner, Membership, Repository, Issue,
    FineGrainedToken, TokenRepository, ClassicToken, Grant, GrantRepository, TokenRequest,
    RequestRepository, App, Installation, InstallationToken,
)  # fmt: skip
FACT_TABLES = frozenset(
    table.name
    for model in FACT_MODELS
    for table in model.__mapper__.tables  # type: ignore[attr-defined]
)
_CHANGED = "patgate.authz_changed"
_BUMPED = "patgate.authz_bumped"


# ---- bumping the generation -------------------------------------------------------------


def install_generation_bump(sessions: sessionmaker[Session]) -> None:
    """Make commits of ``sessions`` that change authorization facts bump the generation.

    Idempotent. Statements run outside an ORM session (the ``last_used_at`` flush) are
    deliberately not facts: ``decide()`` never reads them.
    """
    if event.contains(sessions, "before_commit", _before_commit):
        return
    event.listen(sessions, "after_flush", _after_flush)
    event.listen(sessions, "do_orm_execute", _on_execute)
    event.listen(sessions, "before_commit", _before_commit)
    event.listen(sessions, "after_commit", _forget)
    event.listen(sessions, "after_soft_rollback", _after_soft_rollback)


def _touches_facts(objects: Any) -> bool:
    return any(isinstance(obj, FACT_MODELS) for obj in objects)


def _after_flush(session: Session, _context: Any) -> None:
    # In after_flush the session still lists what this flush inserted, changed and deleted.
    if (
        _touches_facts(session.new)
        or _touches_facts(session.dirty)
        or _touches_facts(session.deleted)
    ):
        session.info[_CHANGED] = True


def _on_execute(state: Any) -> None:
    if written_table(state) in FACT_TABLES:
        state.session.info[_CHANGED] = True


def _before_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return
    pending = session.new | session.dirty | session.deleted  # not flushed yet at this point
    if not (session.info.get(_CHANGED) or _touches_facts(pending)):
        return
    session.execute(text("UPDATE authz_generation SET value = value + 1 WHERE id = 1"))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))
        session.info[_BUMPED] = True


def _forget(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_CHANGED, None)
        if session.info.pop(_BUMPED, False):
            # The NOTIFY reaches this process's listeners a moment later; a request in
            # between must not be answered from what this commit just changed.
            PgGeneration.bump_local(_database_of(session.get_bind()))


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    if previous.parent is None:
        session.info.pop(_CHANGED, None)
        session.info.pop(_BUMPED, None)


def _database_of(bind: Any) -> str:
    engine = getattr(bind, "engine", bind)
    return str(engine.url.set(drivername="postgresql", password=None))


# ---- reading the generation -------------------------------------------------------------


class SqliteGeneration:
    """Reads the generation per call, on a connection owned by the calling thread.

    The read is one indexed ``SELECT`` (about 4 µs, most of it the two ``fcntl`` calls of
    a WAL read transaction). Cheaper change detectors were measured and not taken
    (docs/performance.md): ``PRAGMA data_version`` starts the same read transaction and
    costs the same; the size and mtime of the ``-wal`` file miss a commit that rewrites a
    reset WAL to the same size within one coarse timestamp tick; reading the wal-index
    header from the ``-shm`` file is cheap but leans on SQLite's internals.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()

    def current(self) -> int | None:
        """The generation; ``None`` (cache nothing) when it cannot be read."""
        try:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
                self._local.conn = conn
            row = conn.execute("SELECT value FROM authz_generation WHERE id = 1").fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class PgGeneration:
    """Counts ``NOTIFY patgate_authz`` (and this process's own commits); ``None`` (cache
    nothing) while not listening."""

    _local: weakref.WeakSet[PgGeneration] = weakref.WeakSet()
    _local_lock = threading.Lock()

    def __init__(self, engine: Engine) -> None:
        self._count = 0
        self._bump_lock = threading.Lock()
        self.database = _database_of(engine)
        self._listener = PgListener(engine, CHANNEL, self._bump)
        with PgGeneration._local_lock:
            PgGeneration._local.add(self)

    def _bump(self) -> None:
        with self._bump_lock:  # the listener thread and committing threads
            self._count += 1

    @classmethod
    def bump_local(cls, database: str) -> None:
        """Bump every generation of this process that watches ``database``."""
        with cls._local_lock:
            sources = [s for s in cls._local if s.database == database]
        for source in sources:
            source._bump()

    def current(self) -> int | None:
        return self._count if self._listener.ready.is_set() else None

    def start(self) -> None:
        self._listener.start()
        self._listener.ready.wait(5)

    def stop(self) -> None:
        self._listener.stop()


def generation_source(engine: Engine) -> SqliteGeneration | PgGeneration:
    if engine.dialect.name == "sqlite":
        return SqliteGeneration(engine.url.database or "")
    return PgGeneration(engine)


# ---- the cache --------------------------------------------------------------------------


MISS: Any = object()


class AuthzCache:
    """Bounded LRU maps of facts, valid for one generation at a time.

    Readers call :meth:`sync` once per request, then :meth:`get`; a loader remembers the
    generation :meth:`sync` returned before it read the database and hands it to
    :meth:`put`, which drops the entry if the generation moved meanwhile.
    """

    def __init__(
        self, source: SqliteGeneration | PgGeneration, *, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.source = source
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._maps: dict[str, OrderedDict[Hashable, Any]] = {}
        self._generation: int | None = None

    def sync(self) -> int | None:
        """The current generation (``None``: do not cache), forgetting older entries."""
        current = self.source.current()
        if current != self._generation:
            with self._lock:
                self._maps.clear()
                self._generation = current
        return current

    def get(self, kind: str, key: Hashable) -> Any:
        with self._lock:
            entries = self._maps.get(kind)
            if entries is None:
                return MISS
            value = entries.get(key, MISS)
            if value is not MISS:
                entries.move_to_end(key)
            return value

    def put(self, kind: str, key: Hashable, value: Any, generation: int | None) -> None:
        if generation is None:
            return
        with self._lock:
            if generation != self._generation:
                return
            entries = self._maps.setdefault(kind, OrderedDict())
            entries[key] = value
            entries.move_to_end(key)
            while len(entries) > self.max_entries:
                entries.popitem(last=False)

    def size(self) -> int:
        with self._lock:
            return sum(len(m) for m in self._maps.values())
