"""The outbox worker: waiting out an SMTP outage, a crash between sending and marking sent,
rollbacks, waking, webhooks with retries, and two workers sharing one PostgreSQL outbox."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from patgate import schema
from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.apps.models import App, Installation
from patgate.clock import Clock, FixedClock, SystemClock
from patgate.config import load_settings
from patgate.context import Actor
from patgate.notifications import jobs
from patgate.notifications import services as outbox
from patgate.notifications.models import DeliveryAttempt, MessageState, OutboxMessage
from patgate.orgs import services as orgs
from patgate.orgs.models import Role
from patgate.runtime import Runtime
from patgate.tokens import services as tokens
from patgate.worker import Worker, install_outbox_notify, run_worker, start_in_thread

START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # before the digest hour: no digests here
SECRET = "It's a Secret to Everybody"
PG_URL = os.environ.get("PATGATE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/test")
WAIT_SECONDS = 10.0  # a bound on waiting for a thread, never an assertion about speed


class Crash(BaseException):
    """The worker process dying (not an error any code would catch)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# ---- a real SMTP server that can go down ------------------------------------------------


@dataclass
class Inbox:
    delay: float = 0.0
    envelopes: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        parser = BytesParser(policy=policy.default)
        return [parser.parsebytes(e.original_content) for e in self.envelopes]  # type: ignore[misc]

    def message_ids(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]) for m in self.messages())


class SmtpServer:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller: Controller | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.stop()


# ---- a database with pending requests ---------------------------------------------------


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.sqlite"
    runtime = Runtime(load_settings(database_url=f"sqlite:///{path}", secret_key="x" * 32))
    schema.upgrade(runtime.engine)
    runtime.close()
    return path


def settings_for(database_url: str, tmp_path: Path, smtp_url: str | None) -> Any:
    return load_settings(
        database_url=database_url,
        secret_key="x" * 32,
        smtp_url=smtp_url,
        mailbox_dir=tmp_path / "mail",
        base_url="http://127.0.0.1:8000",
        digest_hour=9,
    )


@pytest.fixture
def runtime(tmp_path: Path, migrated_db: Path, smtp: SmtpServer) -> Iterator[Runtime]:
    db = tmp_path / "patgate.sqlite"
    shutil.copy(migrated_db, db)
    rt = Runtime(settings_for(f"sqlite:///{db}", tmp_path, smtp.url), clock=FixedClock(START))
    yield rt
    rt.close()


@dataclass
class World:
    owner: Actor
    org_id: int
    request_ids: list[int]


def build_world(runtime: Runtime, *, requests: int = 3) -> World:
    with runtime.unit_of_work() as ctx:
        owner = accounts.create_user(ctx, "octo-owner", email="owner@example.com")
        mona = accounts.create_user(ctx, "mona", email="mona@example.com")
        actor = Actor(owner.id, owner.login)
        org = orgs.create_org(ctx, "octo-org", owner=owner, actor=actor)
        orgs.set_org_policy(ctx, org, actor=actor, opt_in=True)
        orgs.add_member(ctx, org, mona, role=Role.MEMBER, actor=actor)
        ids = []
        for n in range(requests):
            issued = tokens.create_fine_grained(
                ctx, mona, name=f"token-{n}", resource_owner=org, repository_selection="all",
                permissions={"issues": "write"}, expires_at=ctx.now + timedelta(days=30),
                actor=Actor(mona.id, mona.login),
            )  # fmt: skip
            ids.append(issued.request.id)
        return World(actor, org.id, ids)


def deny_all(runtime: Runtime, world: World) -> None:
    with runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "octo-org")
        approvals.deny(ctx, org, world.request_ids, actor=world.owner, reason="not now")


def run_once(runtime: Runtime) -> int:
    worker = Worker(runtime)
    try:
        return worker.run_once()
    finally:
        worker.close()


def outbox_rows(runtime: Runtime) -> list[OutboxMessage]:
    with runtime.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def attempt_rows(runtime: Runtime) -> list[DeliveryAttempt]:
    with runtime.sessions() as session:
        return list(session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)))


def advance(runtime: Runtime, delta: timedelta) -> None:
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    clock.advance(delta)


# ---- emails -----------------------------------------------------------------------------


def test_messages_wait_while_smtp_is_down_and_are_delivered_once_when_it_is_back(
    runtime: Runtime, smtp: SmtpServer
) -> None:
    world = build_world(runtime)
    smtp.stop()
    deny_all(runtime, world)

    assert run_once(runtime) == 0
    assert run_once(runtime) == 0  # nothing is due before the backoff has passed
    advance(runtime, timedelta(seconds=61))
    assert run_once(runtime) == 0

    rows = outbox_rows(runtime)
    assert [(m.state, m.attempts) for m in rows] == [(MessageState.PENDING, 2)] * 3
    assert all("Connection" in (m.last_error or "") for m in rows)
    attempts = attempt_rows(runtime)
    assert len(attempts) == 6
    assert not any(a.succeeded or a.permanent for a in attempts)

    smtp.start()
    advance(runtime, timedelta(seconds=61))
    assert run_once(runtime) == 3
    advance(runtime, timedelta(minutes=30))
    assert run_once(runtime) == 0

    assert smtp.inbox.message_ids() == {
        f"<outbox-{m.id}.{int(m.created_at.timestamp())}@127.0.0.1>": 1 for m in rows
    }
    assert {m.state for m in outbox_rows(runtime)} == {MessageState.SENT}


def test_a_crash_between_sending_and_marking_sent_resends_only_what_was_sent_alike(
    runtime: Runtime, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    deny_all(runtime, build_world(runtime))
    real_deliver = jobs.transmit

    def deliver_then_crash(*args: Any, **kwargs: Any) -> jobs.Outcome:
        real_deliver(*args, **kwargs)
        raise Crash  # the SMTP server accepted it; the worker dies before recording it

    monkeypatch.setattr(jobs, "transmit", deliver_then_crash)
    with pytest.raises(Crash):
        run_once(runtime)
    monkeypatch.setattr(jobs, "transmit", real_deliver)
    # The first message, and those the other senders had in flight when the worker died.
    before_crash = set(smtp.inbox.message_ids())
    assert before_crash

    # The dead worker's leases still hold: no other worker takes its messages yet.
    assert run_once(runtime) == 0
    advance(runtime, jobs.LEASE + timedelta(seconds=1))
    assert run_once(runtime) == 3

    rows = outbox_rows(runtime)
    ids = smtp.inbox.message_ids()
    assert {msg_id for msg_id, sends in ids.items() if sends == 2} == before_crash
    assert {msg_id for msg_id, sends in ids.items() if sends == 1} == set(ids) - before_crash
    assert len(ids) == len(rows) == 3
    assert {m.state for m in rows} == {MessageState.SENT}


def test_a_crash_while_recording_a_batch_resends_that_batch_alike_once(
    runtime: Runtime, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    deny_all(runtime, build_world(runtime))
    real_record = jobs.record_outcomes

    def crash(*args: Any, **kwargs: Any) -> None:
        raise Crash

    monkeypatch.setattr(jobs, "record_outcomes", crash)
    with pytest.raises(Crash):
        run_once(runtime)
    monkeypatch.setattr(jobs, "record_outcomes", real_record)
    assert sorted(smtp.inbox.message_ids().values()) == [1, 1, 1]
    assert attempt_rows(runtime) == []

    advance(runtime, jobs.LEASE + timedelta(seconds=1))
    assert run_once(runtime) == 3

    rows = outbox_rows(runtime)
    assert sorted(smtp.inbox.message_ids().values()) == [2, 2, 2]
    assert [(m.state, m.attempts) for m in rows] == [(MessageState.SENT, 1)] * 3
    assert [a.succeeded for a in attempt_rows(runtime)] == [True] * 3


def test_a_decision_that_rolls_back_leaves_no_message(runtime: Runtime, smtp: SmtpServer) -> None:
    world = build_world(runtime)
    with pytest.raises(RuntimeError), runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "octo-org")
        approvals.deny(ctx, org, world.request_ids, actor=world.owner, reason="no")
        assert ctx.session.scalar(select(func.count()).select_from(OutboxMessage)) == 3
        raise RuntimeError("the request failed after the decision")

    assert outbox_rows(runtime) == []
    assert run_once(runtime) == 0
    assert smtp.inbox.envelopes == []


def test_a_commit_that_adds_a_message_wakes_the_worker_and_a_rollback_does_not(
    runtime: Runtime,
) -> None:
    build_world(runtime)
    worker = Worker(runtime)
    try:
        with runtime.unit_of_work() as ctx:
            accounts.create_user(ctx, "hubot", email="hubot@example.com")
        assert not worker.wake_requested

        with pytest.raises(RuntimeError), runtime.unit_of_work() as ctx:
            outbox.enqueue_email(ctx, "request_denied", to="a@example.com", data={})
            raise RuntimeError
        assert not worker.wake_requested

        with runtime.unit_of_work() as ctx:
            outbox.enqueue_email(ctx, "request_denied", to="a@example.com", data={})
        assert worker.wake_requested
    finally:
        worker.close()


def test_a_commit_that_adds_messages_in_one_insert_wakes_the_worker(runtime: Runtime) -> None:
    # Bulk decisions enqueue with one INSERT statement, no ORM object.
    worker = Worker(runtime)
    try:
        with runtime.unit_of_work() as ctx:
            payload = outbox.email_payload("request_denied", to="a@example.com", data={})
            assert outbox.enqueue_all(ctx, [(outbox.EMAIL, payload)] * 2) == 2
        assert worker.wake_requested
    finally:
        worker.close()


def test_a_worker_thread_delivers_new_messages_and_stops(
    tmp_path: Path, migrated_db: Path, smtp: SmtpServer
) -> None:
    db = tmp_path / "patgate.sqlite"
    shutil.copy(migrated_db, db)
    runtime = Runtime(settings_for(f"sqlite:///{db}", tmp_path, smtp.url), clock=SystemClock())
    worker, stop, thread = start_in_thread(runtime)
    try:
        assert wait_for(worker.idle.is_set)
        world = build_world(runtime, requests=1)
        deny_all(runtime, world)
        assert wait_for(lambda: len(smtp.inbox.envelopes) == 1)
    finally:
        stop.set()
        thread.join(WAIT_SECONDS)
        runtime.close()
    assert not thread.is_alive()
    assert [m.state for m in outbox_rows(runtime)] == [MessageState.SENT]


def test_run_worker_once_delivers_what_is_due(runtime: Runtime, smtp: SmtpServer) -> None:
    deny_all(runtime, build_world(runtime))
    assert run_worker(runtime, once=True) == 3
    assert run_worker(runtime, once=True) == 0
    assert len(smtp.inbox.envelopes) == 3


def test_the_worker_sleeps_until_the_next_retry_at_most_a_second_on_sqlite(
    runtime: Runtime, smtp: SmtpServer
) -> None:
    world = build_world(runtime, requests=1)
    worker = Worker(runtime)
    try:
        assert worker.seconds_to_sleep() == 1.0  # nothing due: SQLite polls every second
        smtp.stop()
        deny_all(runtime, world)
        assert worker.run_once() == 0
        assert worker.seconds_to_sleep() == 1.0  # the retry is due in one second
        advance(runtime, timedelta(milliseconds=750))
        assert worker.seconds_to_sleep() == 0.25
        advance(runtime, timedelta(seconds=1))
        assert worker.seconds_to_sleep() == 0.0
    finally:
        worker.close()


def test_backoff_doubles_up_to_a_minute() -> None:
    waits = [jobs.backoff(n).total_seconds() for n in range(1, 10)]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]


# ---- webhooks ---------------------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook receiver answering with ``statuses`` in turn (then 200)."""

    statuses: list[int]
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(statuses=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((dict(self.headers.items()), body))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def install_app(runtime: Runtime, url: str) -> int:
    with runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "octo-org")
        app = App(
            slug="token-auditor", name="Token auditor", client_id="Iv1.0123456789abcdef",
            owner_id=org.id, public_key_pem="(not used here)", webhook_url=url,
            webhook_secret=SECRET, events={"events": ["personal_access_token_request"]},
            permissions={"organization_personal_access_token_requests": "write"},
            created_at=ctx.now, updated_at=ctx.now,
        )  # fmt: skip
        ctx.session.add(app)
        ctx.session.flush()
        installation = Installation(
            app_id=app.id, org_id=org.id, permissions=dict(app.permissions),
            events=dict(app.events), created_at=ctx.now, updated_at=ctx.now,
        )  # fmt: skip
        ctx.session.add(installation)
        return app.id


def request_a_token(runtime: Runtime) -> None:
    with runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "octo-org")
        mona = accounts.get_user(ctx, "mona")
        tokens.create_fine_grained(
            ctx, mona, name="audited", resource_owner=org, repository_selection="all",
            permissions={"contents": "read"}, expires_at=ctx.now + timedelta(days=7),
            actor=Actor(mona.id, mona.login),
        )  # fmt: skip


def test_a_webhook_failing_twice_arrives_on_the_third_attempt_signed(
    runtime: Runtime, receiver: Receiver
) -> None:
    build_world(runtime, requests=0)
    app_id = install_app(runtime, f"http://127.0.0.1:{receiver.port}/hooks")
    request_a_token(runtime)
    receiver.statuses = [500, 500]

    assert run_once(runtime) == 0
    advance(runtime, timedelta(seconds=1))
    assert run_once(runtime) == 0
    advance(runtime, timedelta(seconds=1))
    assert run_once(runtime) == 0  # the second retry waits 2 s
    advance(runtime, timedelta(seconds=1))
    assert run_once(runtime) == 1
    advance(runtime, timedelta(minutes=5))
    assert run_once(runtime) == 0

    assert len(receiver.received) == 3
    deliveries = {headers["X-GitHub-Delivery"] for headers, _ in receiver.received}
    assert len(deliveries) == 1
    uuid.UUID(deliveries.pop())
    headers, body = receiver.received[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
    assert headers["X-GitHub-Event"] == "personal_access_token_request"
    assert headers["X-GitHub-Hook-ID"] == str(app_id)
    assert headers["X-GitHub-Hook-Installation-Target-ID"] == str(app_id)
    assert headers["User-Agent"] == "GitHub-Hookshot/patgate"
    assert headers["Content-Type"] == "application/json"
    event = json.loads(body)
    assert event["action"] == "created"
    assert event["personal_access_token_request"]["token_name"] == "audited"

    [message] = outbox_rows(runtime)
    assert (message.kind, message.state, message.attempts) == ("webhook", "sent", 3)
    attempts = attempt_rows(runtime)
    assert [(a.succeeded, a.status_code) for a in attempts] == [
        (False, 500),
        (False, 500),
        (True, 200),
    ]
    assert all(a.message_id == message.id and a.duration_ms is not None for a in attempts)


def test_an_unreachable_receiver_is_retried_and_a_4xx_is_given_up(
    runtime: Runtime, receiver: Receiver
) -> None:
    build_world(runtime, requests=0)
    install_app(runtime, f"http://127.0.0.1:{free_port()}/nobody-listens")
    request_a_token(runtime)
    for _ in range(jobs.PERMANENT_ATTEMPTS + 2):
        assert run_once(runtime) == 0
        advance(runtime, timedelta(seconds=61))
    [message] = outbox_rows(runtime)
    assert (message.state, message.attempts) == (MessageState.PENDING, 7)
    assert not any(a.permanent for a in attempt_rows(runtime))

    with runtime.unit_of_work() as ctx:
        ctx.session.get_one(
            App, ctx.session.scalar(select(App.id))
        ).webhook_url = f"http://127.0.0.1:{receiver.port}/gone"
    receiver.statuses = [410] * 10
    for _ in range(jobs.PERMANENT_ATTEMPTS + 2):
        assert run_once(runtime) == 0
        advance(runtime, timedelta(seconds=61))
    [message] = outbox_rows(runtime)
    assert message.state == MessageState.FAILED
    assert len(receiver.received) == jobs.PERMANENT_ATTEMPTS
    with runtime.unit_of_work() as ctx:
        assert [m.id for m in jobs.failed_messages(ctx)] == [message.id]


# ---- PostgreSQL: several workers, LISTEN/NOTIFY -----------------------------------------


@pytest.fixture
def pg_database(tmp_path: Path) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    admin = url.set(drivername="postgresql", database="postgres")
    try:
        conn = psycopg.connect(
            admin.render_as_string(hide_password=False), autocommit=True, connect_timeout=3
        )
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {url.host}:{url.port or 5432} is unreachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"nt_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            database_url = url.set(database=name).render_as_string(hide_password=False)
            engine_runtime = Runtime(settings_for(database_url, tmp_path, None))
            schema.upgrade(engine_runtime.engine)
            engine_runtime.close()
            yield database_url
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_runtime(database_url: str, tmp_path: Path, smtp: SmtpServer, clock: Clock) -> Runtime:
    return Runtime(settings_for(database_url, tmp_path, smtp.url), clock=clock)


@pytest.mark.postgres
def test_two_workers_on_postgresql_deliver_each_message_once(
    pg_database: str, tmp_path: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 10: neither worker can claim all 40 messages at once.
    monkeypatch.setattr(jobs, "CLAIM_BATCH", 10)
    runtimes = [pg_runtime(pg_database, tmp_path, smtp, SystemClock()) for _ in range(3)]
    try:
        with runtimes[0].unit_of_work() as ctx:
            for n in range(40):
                outbox.enqueue_email(
                    ctx, "grant_revoked", to=f"user{n}@example.com",
                    data={"org": "octo-org", "token_id": n, "token_name": f"t{n}", "user": "u",
                          "reviewer": "o", "reason": None, "token_url": "http://x/"},
                )  # fmt: skip
        smtp.inbox.delay = 0.01  # each worker spends ~0.4 s alone on all 40: they overlap
        barrier = threading.Barrier(2)
        counts: list[int] = []

        def work(rt: Runtime) -> None:
            worker = Worker(rt)
            try:
                barrier.wait()
                counts.append(worker.run_once())
            finally:
                worker.close()

        threads = [threading.Thread(target=work, args=(rt,)) for rt in runtimes[1:]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_SECONDS * 3)
        assert len(counts) == 2 and sum(counts) == 40
        assert min(counts) > 0  # both took part: the exactly-once below was contended
        ids = smtp.inbox.message_ids()
        assert len(ids) == 40 and set(ids.values()) == {1}
        rows = outbox_rows(runtimes[0])
        assert {(m.state, m.attempts) for m in rows} == {(MessageState.SENT, 1)}
        assert len(attempt_rows(runtimes[0])) == 40
    finally:
        for rt in runtimes:
            rt.close()


@pytest.mark.postgres
def test_notify_wakes_a_worker_of_another_process_on_postgresql(
    pg_database: str, tmp_path: Path, smtp: SmtpServer
) -> None:
    # Two runtimes stand for two processes: only NOTIFY can reach the worker's (its polling
    # interval on PostgreSQL is a minute).
    worker_runtime = pg_runtime(pg_database, tmp_path, smtp, SystemClock())
    web_runtime = pg_runtime(pg_database, tmp_path, smtp, SystemClock())
    install_outbox_notify(web_runtime.sessions)
    worker, stop, thread = start_in_thread(worker_runtime)
    try:
        assert wait_for(worker.idle.is_set)
        with web_runtime.unit_of_work() as ctx:
            outbox.enqueue_email(
                ctx, "grant_revoked", to="mona@example.com",
                data={"org": "octo-org", "token_id": 1, "token_name": "t", "user": "mona",
                      "reviewer": "o", "reason": None, "token_url": "http://x/"},
            )  # fmt: skip
        assert wait_for(lambda: len(smtp.inbox.envelopes) == 1)
    finally:
        stop.set()
        thread.join(WAIT_SECONDS)
        worker_runtime.close()
        web_runtime.close()
    assert not thread.is_alive()
