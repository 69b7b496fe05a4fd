"""The outbox worker (SPEC §7): delivers due emails and webhooks, queues the daily digest,
and sleeps until the next message is due — or until a new one is enqueued.

How it wakes: a commit that added an :class:`OutboxMessage` wakes every worker of this
process at once (a session event installed by :func:`install_outbox_notify`), and on
PostgreSQL also issues ``NOTIFY patgate_outbox`` inside that transaction, which workers of
other processes ``LISTEN`` for; on SQLite, where there is no such channel, a worker polls at
most a second apart.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, date
from types import FrameType
from typing import Any

import httpx
from sqlalchemy import event, text
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from patgate.db import PgListener, written_table
from patgate.notifications import jobs, mail
from patgate.notifications.models import OutboxMessage
from patgate.runtime import Runtime

log = logging.getLogger(__name__)

CHANNEL = "patgate_outbox"
SQLITE_POLL_SECONDS = 1.0
# A safety net under LISTEN/NOTIFY (a notification lost with a dropped connection).
POSTGRES_POLL_SECONDS = 60.0
# How often a sleeping worker looks at its stop event.
STOP_CHECK_SECONDS = 0.2
LISTEN_READY_SECONDS = 5.0
MAX_ERROR_PAUSE_SECONDS = 30.0

_OUTBOX_ADDED = "patgate.outbox_added"
_workers: weakref.WeakSet[Worker] = weakref.WeakSet()
_workers_lock = threading.Lock()


# ---- waking on new messages -------------------------------------------------------------


def install_outbox_notify(sessions: sessionmaker[Session]) -> None:
    """Make commits of ``sessions`` that add an outbox message wake the workers.

    The workers of this process on the same engine at once; on PostgreSQL also every worker
    listening, in any process, through a ``NOTIFY patgate_outbox`` issued in the same
    transaction (so a rollback sends none). Idempotent.
    """
    if event.contains(sessions, "before_commit", _before_commit):
        return
    event.listen(sessions, "after_flush", _after_flush)
    event.listen(sessions, "do_orm_execute", _on_execute)
    event.listen(sessions, "before_commit", _before_commit)
    event.listen(sessions, "after_commit", _after_commit)
    event.listen(sessions, "after_soft_rollback", _after_soft_rollback)


def _after_flush(session: Session, _flush_context: Any) -> None:
    # In after_flush, ``session.new`` still lists the objects this flush inserted.
    if any(isinstance(obj, OutboxMessage) for obj in session.new):
        session.info[_OUTBOX_ADDED] = True


def _on_execute(state: Any) -> None:
    # A bulk INSERT statement (``outbox.enqueue_all``) adds messages without ORM objects.
    if state.is_insert and written_table(state) == OutboxMessage.__tablename__:
        state.session.info[_OUTBOX_ADDED] = True


def _added_outbox(session: Session) -> bool:
    return bool(session.info.get(_OUTBOX_ADDED)) or any(
        isinstance(obj, OutboxMessage) for obj in session.new
    )


def _before_commit(session: Session) -> None:
    if session.in_nested_transaction() or not _added_outbox(session):
        return
    session.info[_OUTBOX_ADDED] = True
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction() or not session.info.pop(_OUTBOX_ADDED, False):
        return
    engine = session.get_bind()
    with _workers_lock:
        workers = [w for w in _workers if w.runtime.engine is engine]
    for worker in workers:
        worker.wake()


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    if previous.parent is None:
        session.info.pop(_OUTBOX_ADDED, None)


# ---- the worker -------------------------------------------------------------------------


class Worker:
    """Delivers the outbox of ``runtime``'s database. Any number may run at once, in any
    number of processes: each message is delivered by one of them."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        mailer: mail.Mailer | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.runtime = runtime
        self.mailer = mailer if mailer is not None else mail.mailer_for(runtime.settings)
        self._http = http
        self._owns_http = http is None
        self._wake = threading.Event()
        # Set while the worker sleeps between passes (for health checks and tests).
        self.idle = threading.Event()
        self._digest_checked_on: date | None = None
        install_outbox_notify(runtime.sessions)
        with _workers_lock:
            _workers.add(self)

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=jobs.WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False)
        return self._http

    def wake(self) -> None:
        """Run the next pass now (a message was enqueued); safe from any thread."""
        self._wake.set()

    @property
    def wake_requested(self) -> bool:
        return self._wake.is_set()

    def run_once(self) -> int:
        """Queue the digest if its hour has come, deliver everything due now; return how many
        messages were delivered."""
        self.check_digest()
        return jobs.deliver_due(self.runtime, mailer=self.mailer, http=self.http)

    def check_digest(self) -> int:
        """Queue today's digests once the digest hour has passed (once a day per worker;
        the dedupe keys make a second worker's check queue nothing)."""
        now = self.runtime.clock.now()
        hour = self.runtime.settings.digest_hour
        today = now.astimezone(UTC).date()
        if self._digest_checked_on == today or not jobs.digest_due(now, hour):
            return 0
        with self.runtime.unit_of_work() as ctx:
            queued = jobs.enqueue_digests(ctx, force=False, digest_hour=hour)
        self._digest_checked_on = today
        if queued:
            log.info("queued %s digest emails", queued)
        return queued

    def seconds_to_sleep(self) -> float:
        """Until the next message or digest is due, at most the poll interval."""
        now = self.runtime.clock.now()
        cap = SQLITE_POLL_SECONDS if self.runtime.settings.is_sqlite else POSTGRES_POLL_SECONDS
        moments = [jobs.next_digest_at(now, self.runtime.settings.digest_hour)]
        if self._digest_checked_on != now.astimezone(UTC).date() and jobs.digest_due(
            now, self.runtime.settings.digest_hour
        ):
            moments.append(now)
        due = jobs.next_due_at(self.runtime)
        if due is not None:
            moments.append(due)
        seconds = (min(moments) - now).total_seconds()
        return max(0.0, min(cap, seconds))

    def run_forever(self, stop: threading.Event) -> int:
        """Deliver until ``stop`` is set; return how many messages were delivered.

        Errors (the database or network away) are logged and the pass is retried after a
        pause that doubles up to 30 s.
        """
        listener = self._start_listener()
        delivered = 0
        failures = 0
        try:
            while not stop.is_set():
                # Cleared before the pass: a message enqueued during it wakes the next one.
                self._wake.clear()
                try:
                    delivered += self.run_once()
                    failures = 0
                    pause = self.seconds_to_sleep()
                except Exception:
                    failures += 1
                    pause = min(MAX_ERROR_PAUSE_SECONDS, 2.0 ** (failures - 1))
                    log.exception("outbox worker pass failed; next try in %.0f s", pause)
                self._sleep(stop, pause)
        finally:
            if listener is not None:
                listener.stop()
        return delivered

    def _sleep(self, stop: threading.Event, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        self.idle.set()
        try:
            while not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._wake.wait(min(remaining, STOP_CHECK_SECONDS)):
                    return
        finally:
            self.idle.clear()

    def _start_listener(self) -> PgListener | None:
        if self.runtime.settings.is_sqlite:
            return None
        listener = PgListener(self.runtime.engine, CHANNEL, self.wake)
        listener.start()
        if not listener.ready.wait(LISTEN_READY_SECONDS):
            log.warning("outbox listener not connected yet; polling until it is")
        return listener

    def close(self) -> None:
        with _workers_lock:
            _workers.discard(self)
        if self._owns_http and self._http is not None:
            self._http.close()
            self._http = None


# ---- entry points -----------------------------------------------------------------------


def start_in_thread(runtime: Runtime) -> tuple[Worker, threading.Event, threading.Thread]:
    """A worker running in a daemon thread (``patgate serve``). Stop it with
    ``stop.set(); thread.join()``."""
    worker = Worker(runtime)
    stop = threading.Event()

    def run() -> None:
        try:
            worker.run_forever(stop)
        finally:
            worker.close()

    thread = threading.Thread(target=run, name="patgate-worker", daemon=True)
    thread.start()
    return worker, stop, thread


def run_worker(runtime: Runtime, *, once: bool) -> int:
    """``patgate worker [--once]``: deliver what is due and return (``once``), or run until
    SIGINT/SIGTERM. Returns how many messages were delivered."""
    worker = Worker(runtime)
    try:
        if once:
            return worker.run_once()
        stop = threading.Event()
        restore = _stop_on_signals(stop)
        try:
            return worker.run_forever(stop)
        finally:
            restore()
    finally:
        worker.close()


def run_digest(runtime: Runtime, *, now: bool) -> int:
    """``patgate digest run [--now]``: queue today's digests (``now`` ignores the digest
    hour) for the worker to send; return how many were queued."""
    install_outbox_notify(runtime.sessions)
    with runtime.unit_of_work() as ctx:
        return jobs.enqueue_digests(ctx, force=now, digest_hour=runtime.settings.digest_hour)


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
