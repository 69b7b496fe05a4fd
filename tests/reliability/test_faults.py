"""Faults patgate must live through (SPEC §7, §10): the database restarting under load, many
writers on one SQLite file, and a worker killed with ``kill -9`` in the middle of a delivery.

The database that restarts is a throwaway cluster of this test's own (``support.pgcluster``):
the machine's PostgreSQL is never stopped.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, update

from patgate.approvals import services as approvals
from patgate.config import load_settings
from patgate.notifications.models import DeliveryAttempt, MessageState, OutboxMessage
from patgate.repos.models import Issue
from patgate.runtime import Runtime
from support.db import migrate
from support.env import TEST_SECRET_KEY, unavailable
from support.pgcluster import PgCluster, cluster_unavailable_reason
from support.processes import (
    PATGATE,
    free_port,
    patgate_env,
    run_cli,
    start_worker,
    wait_until,
)
from support.server import LiveServer, bind_free_port
from support.world import World

REQUEST_TIMEOUT = 5.0  # no request may take longer, database up or down
PRIVATE = "/repos/acme/private-api"


# ---- a throwaway cluster ----------------------------------------------------------------


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    reason = cluster_unavailable_reason()
    if reason is not None:
        unavailable(reason)
    cluster = PgCluster.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def serve(runtime_for: Callable[[str], Runtime]) -> LiveServer:
    sock = bind_free_port()
    host, port = sock.getsockname()[:2]
    try:
        runtime = runtime_for(f"http://{host}:{port}")
    except BaseException:
        sock.close()
        raise
    return LiveServer.start(runtime, sock)


def authz_cache(server: LiveServer) -> Any:
    # The Starlette app uvicorn serves (LiveServer keeps no other handle on it).
    return server._server.config.app.state.authz_cache


# ---- bounded load -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    started: float
    seconds: float
    path: str
    status: int | None  # None: no HTTP answer at all
    json_body: bool
    error: str | None


@dataclass
class Load:
    """``threads`` clients GETting ``paths`` in turn, a short pause apart, until stopped (or
    ``max_seconds`` have passed): a bounded load, in count and in time."""

    api: str
    secret: str
    paths: list[str]
    threads: int = 4
    pause: float = 0.01
    max_seconds: float = 60.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(n,), name=f"load-{n}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(REQUEST_TIMEOUT * 2)
        assert not any(t.is_alive() for t in self._workers), "a load thread hangs"

    def since(self, moment: float) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.started >= moment]

    def _run(self, n: int) -> None:
        headers = {"Authorization": f"Bearer {self.secret}"}
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=REQUEST_TIMEOUT, headers=headers) as client:
            i = n
            while not self._stop.is_set() and time.monotonic() < deadline:
                path = self.paths[i % len(self.paths)]
                i += 1
                started = time.monotonic()
                try:
                    answer = client.get(f"{self.api}{path}")
                except httpx.HTTPError as exc:
                    outcome = Outcome(
                        started, time.monotonic() - started, path, None, False, repr(exc)
                    )
                else:
                    outcome = Outcome(
                        started, time.monotonic() - started, path, answer.status_code,
                        _is_json_error_or_body(answer), None,
                    )  # fmt: skip
                self.outcomes.append(outcome)
                self._stop.wait(self.pause)


def _is_json_error_or_body(answer: httpx.Response) -> bool:
    if not answer.headers.get("content-type", "").startswith("application/json"):
        return False
    try:
        body = answer.json()
    except ValueError:
        return False
    return answer.status_code < 400 or (isinstance(body, dict) and "message" in body)


def summary(outcomes: list[Outcome]) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    for o in outcomes:
        key = o.status if o.status is not None else o.error
        counts[key] = counts.get(key, 0) + 1
    return counts


# ---- the database restarting under load -------------------------------------------------


@pytest.mark.postgres
def test_the_database_restarting_under_load(pg_cluster: PgCluster, tmp_path: Path) -> None:
    url = pg_cluster.create_database("patgate")
    migrate(url)

    def runtime_for(base_url: str) -> Runtime:
        return Runtime(
            load_settings(
                _env_file=None, database_url=url, secret_key=TEST_SECRET_KEY,
                base_url=base_url, mailbox_dir=tmp_path / "mail",
            )
        )  # fmt: skip

    server = serve(runtime_for)
    runtime = server.runtime
    load: Load | None = None
    try:
        world = World(runtime).build()
        owner = world.actor("olivia")
        kept = world.token(name="kept")
        world.run(approvals.approve, [kept.request.id], actor=owner)
        revoked_later = world.token(name="revoked-later")
        world.run(approvals.approve, [revoked_later.request.id], actor=owner)
        revoked_early = world.token(name="revoked-early")
        world.run(approvals.approve, [revoked_early.request.id], actor=owner)
        grant_of = {
            issued.token.id: world.run(
                lambda ctx, org, t=issued.token: approvals.active_grant_of(ctx, t, org).id
            )
            for issued in (revoked_later, revoked_early)
        }

        def get(secret: str, path: str = PRIVATE) -> httpx.Response:
            return httpx.get(
                f"{server.api}{path}",
                headers={"Authorization": f"Bearer {secret}"},
                timeout=REQUEST_TIMEOUT,
            )

        for issued in (kept, revoked_later, revoked_early):
            assert get(issued.secret).status_code == 200
        cache = authz_cache(server)
        assert cache.size() > 0, "the hot path should answer from the cache"

        # The hot path (from the cache) and a path that always reads the database.
        load = Load(server.api, kept.secret, [PRIVATE, f"{PRIVATE}/issues"])
        load.start()
        time.sleep(0.5)
        before = load.since(0)
        assert before and {o.status for o in before} == {200}, summary(before)

        # A browser at the sign-in form when the database goes away.
        browser = httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT)
        token = re.search(r'name="authenticity_token" value="([^"]+)"', browser.get("/login").text)
        assert token is not None

        pg_cluster.stop("fast")
        down_at = time.monotonic()
        time.sleep(1.5)
        assert server._thread is not None and server._thread.is_alive()
        during = load.since(down_at + 0.2)  # after the in-flight ones settled
        # The UI says so on a page of its own, with a 503 to retry (not a bare 500).
        page = browser.post(
            "/login", data={"login": "mona", "password": "x", "authenticity_token": token[1]}
        )
        browser.close()
        assert page.status_code == 503, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["retry-after"] == "1"
        assert "cannot reach its database" in page.text
        pg_cluster.start()
        up_at = time.monotonic()

        # Changed before patgate's listener is back (its notification is lost to patgate):
        # reconnecting must forget everything cached.
        world.run(approvals.revoke, [grant_of[revoked_early.token.id]], actor=owner)

        def recovered() -> bool:
            recent = load.since(time.monotonic() - 0.3)
            return bool(recent) and all(o.status == 200 for o in recent)

        assert wait_until(recovered, timeout=20), summary(load.since(up_at))
        recovered_after = time.monotonic() - up_at
        # The cache is used again (patgate's LISTEN connection is back) ...
        assert wait_until(lambda: cache.source.current() is not None, timeout=20)
        assert get(revoked_later.secret).status_code == 200
        assert wait_until(lambda: cache.size() > 0, timeout=5)
        # ... without what was true before the restart ...
        assert get(revoked_early.secret).status_code == 404
        # ... and a change committed by another process after the restart is honoured
        # within a second: its NOTIFY reaches the reconnected listener.
        assert get(revoked_later.secret).status_code == 200
        run_cli(patgate_env(url), "grant", "revoke", "acme", str(grant_of[revoked_later.token.id]))
        assert wait_until(lambda: get(revoked_later.secret).status_code == 404, timeout=1.0)
        load.stop()
        load_outcomes = list(load.outcomes)
    finally:
        if load is not None:
            load.stop()
        server.stop()  # raises if the server crashed while serving
        runtime.close()

    print(
        f"database down: {summary(during)}; answering 200 again "
        f"{recovered_after:.1f} s after it was back"
    )
    assert during, "no request was made while the database was down"
    # While it was down: a clean answer every time — a JSON 5xx (or an answer from the
    # cache) — and never a hang, a dropped connection or a non-JSON error page.
    for outcome in load_outcomes:
        assert outcome.error is None, outcome
        assert outcome.seconds < REQUEST_TIMEOUT, outcome
        assert outcome.json_body, outcome
        assert outcome.status in (200, 401, 404, 503), outcome
    assert {o.status for o in during} <= {200, 401, 404, 503}, summary(during)
    assert any(o.status == 503 for o in during), summary(during)


# ---- many writers on one SQLite file ----------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_concurrent_writers_on_sqlite_never_see_database_is_locked(
    live_server: Any, database_url: str
) -> None:
    server = live_server()
    world = World(server.runtime).build()
    writer = world.token("olivia", name="writer")  # an owner's token: approved at once
    # Writers go on until every CLI command is done (bounded in count): the commands' commits
    # land among theirs.
    threads, least, most = 6, 4, 200
    clis_done = threading.Event()
    statuses: list[tuple[int, str]] = []
    answered_at: list[float] = []

    def post_issues(n: int) -> None:
        headers = {"Authorization": f"Bearer {writer.secret}"}
        with httpx.Client(timeout=30.0, headers=headers) as client:
            for i in range(most):
                if i >= least and clis_done.is_set():
                    return
                answer = client.post(
                    f"{server.api}{PRIVATE}/issues", json={"title": f"thread {n} issue {i}"}
                )
                statuses.append((answer.status_code, answer.text[:200]))
                answered_at.append(time.monotonic())
                time.sleep(0.05)

    env = patgate_env(database_url, base_url=server.url)
    commands = [
        ["repo", "create", "acme/cli-repo-1"],
        ["user", "create", "cli-user", "--email", "cli-user@example.com"],
        ["org", "set-policy", "acme", "--classic", "restrict"],
        ["token", "create", "--user", "mona", "--name", "from-cli", "--resource-owner", "acme",
         "--repositories", "all", "--permission", "issues=read", "--reason", "cli"],
    ]  # fmt: skip
    workers = [threading.Thread(target=post_issues, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    cli_started = time.monotonic()
    clis = [
        subprocess.Popen(
            [PATGATE, *command, "--json"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for command in commands
    ]  # fmt: skip
    results = []
    for process in clis:
        try:
            _, err = process.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate(timeout=10)
        results.append((process.returncode, err))
    clis_ended = time.monotonic()
    clis_done.set()
    for thread in workers:
        thread.join(120)
    assert not any(t.is_alive() for t in workers), "a writer hangs"

    assert [s for s in statuses if s[0] != 201] == []
    assert [code for code, _ in results] == [0] * len(commands), results
    assert threads * least <= len(statuses) <= threads * most
    during = [t for t in answered_at if cli_started <= t <= clis_ended]
    assert len(during) >= threads, "the API writers did not overlap the CLI commands"
    with server.runtime.unit_of_work() as ctx:
        numbers = list(ctx.session.scalars(select(Issue.number)))
    assert sorted(numbers) == list(range(1, len(statuses) + 1))


# ---- kill -9 of a worker in the middle of a delivery ------------------------------------


class SlowSmtp:
    """A real SMTP server whose first DATA takes a minute (the worker is killed meanwhile);
    it notes each message when its DATA arrives, and again when it accepts it."""

    def __init__(self) -> None:
        self.received: list[str] = []  # Message-IDs whose whole DATA arrived
        self.accepted: list[str] = []  # ... and that were answered 250
        self.in_data = threading.Event()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        msg_id = str(message["Message-ID"])
        self.received.append(msg_id)
        if not self.in_data.is_set():
            self.in_data.set()
            await asyncio.sleep(60)  # cancelled when the client's connection drops
        self.accepted.append(msg_id)
        return "250 Message accepted for delivery"


@pytest.fixture
def slow_smtp() -> Iterator[SlowSmtp]:
    smtp = SlowSmtp()
    smtp.controller.start()
    yield smtp
    smtp.controller.stop()


def test_a_worker_killed_mid_delivery_delivers_after_restart(
    make_runtime: Callable[..., Runtime],
    database_url: str,
    slow_smtp: SlowSmtp,
    tmp_path: Path,
) -> None:
    """``kill -9`` while the SMTP server holds the whole message but has not answered: the
    message stays pending under the dead worker's lease (10 minutes, ``jobs.LEASE``; made to
    run out here at once), then a restarted worker delivers it — the one duplicate SPEC §7
    allows, with the same Message-ID."""
    runtime = make_runtime(smtp_url=slow_smtp.url)
    world = World(runtime).build()
    issued = world.token(name="to-deny")
    env = patgate_env(database_url, base_url=runtime.settings.base_url, smtp_url=slow_smtp.url)
    worker = start_worker(env, tmp_path, "worker-1")
    restarted = None
    try:
        world.run(approvals.deny, [issued.request.id], actor=world.actor(), reason="not now")
        assert slow_smtp.in_data.wait(20), f"the worker never sent DATA:\n{worker.log()}"
        assert worker.kill() == -9
        with runtime.unit_of_work() as ctx:
            (message,) = ctx.session.scalars(select(OutboxMessage)).all()
            assert message.state == MessageState.PENDING
            # The dead worker's lease holds the message for LEASE (10 minutes) ...
            assert message.leased_until is not None and message.leased_until > ctx.now
            # ... which pass here in an instant.
            ctx.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message.id)
                .values(leased_until=ctx.now - timedelta(seconds=1))
            )
            message_id = message.id

        restarted = start_worker(env, tmp_path, "worker-2")
        assert wait_until(lambda: len(slow_smtp.accepted) == 1, timeout=20), restarted.log()

        def state() -> tuple[str, int]:
            with runtime.unit_of_work() as ctx:
                row = ctx.session.get(OutboxMessage, message_id)
                assert row is not None
                attempts = ctx.session.scalar(
                    select(func.count()).where(DeliveryAttempt.message_id == message_id)
                )
                return row.state, int(attempts or 0)

        assert wait_until(lambda: state()[0] == MessageState.SENT, timeout=10)
        time.sleep(0.5)  # a second delivery, if any, would show by now
        assert restarted.stop() == 0, restarted.log()
    finally:
        worker.stop()
        if restarted is not None:
            restarted.stop()

    # Delivered: once completely; at most twice in all, with the same Message-ID.
    assert len(slow_smtp.accepted) == 1
    assert len(slow_smtp.received) == 2 and len(set(slow_smtp.received)) == 1
    assert slow_smtp.accepted[0] == slow_smtp.received[0]
    assert state() == (MessageState.SENT, 1)
