"""The daily digest to owners: one email per owner, organization and UTC date, sent by the
worker once the digest hour has passed, with a single catch-up after downtime."""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from patgate import schema
from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.clock import FixedClock
from patgate.config import load_settings
from patgate.context import Actor
from patgate.notifications import jobs
from patgate.notifications.models import OutboxMessage
from patgate.orgs import services as orgs
from patgate.orgs.models import Role
from patgate.repos import services as repos
from patgate.runtime import Runtime
from patgate.tokens import services as tokens
from patgate.worker import Worker, run_digest

DAY1 = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
DIGEST_HOUR = 9
LINK = re.compile(
    r"http://127\.0\.0\.1:8000/organizations/(\w+)/settings/personal-access-token-requests/(\d+)"
)


# ---- a real SMTP server -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Inbox:
    envelopes: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def take(self) -> list[EmailMessage]:
        """The messages received since the last call."""
        parser = BytesParser(policy=policy.default)
        messages = [parser.parsebytes(e.original_content) for e in self.envelopes]
        self.envelopes.clear()
        return messages  # type: ignore[return-value]


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, str]]:
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, f"smtp://127.0.0.1:{port}"
    controller.stop()


# ---- three organizations, two owners each, pending requests in two ----------------------


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.sqlite"
    runtime = Runtime(load_settings(database_url=f"sqlite:///{path}", secret_key="x" * 32))
    schema.upgrade(runtime.engine)
    runtime.close()
    return path


@pytest.fixture
def runtime(tmp_path: Path, migrated_db: Path, inbox: tuple[Inbox, str]) -> Iterator[Runtime]:
    db = tmp_path / "patgate.sqlite"
    shutil.copy(migrated_db, db)
    settings = load_settings(
        database_url=f"sqlite:///{db}",
        secret_key="x" * 32,
        smtp_url=inbox[1],
        mailbox_dir=tmp_path / "mail",
        base_url="http://127.0.0.1:8000",
        digest_hour=DIGEST_HOUR,
    )
    rt = Runtime(settings, clock=FixedClock(DAY1))
    yield rt
    rt.close()


@dataclass
class World:
    pending: dict[str, set[int]]  # org login -> its pending request ids
    owner_emails: dict[str, set[str]]  # org login -> the emails of its active owners


def build_world(runtime: Runtime) -> World:
    with runtime.unit_of_work() as ctx:

        def user(login: str) -> Any:
            return accounts.create_user(ctx, login, email=f"{login}@example.com")

        def as_actor(u: Any) -> Actor:
            return Actor(u.id, u.login)

        mona, max_ = user("mona"), user("max")
        pending: dict[str, set[int]] = {}
        owner_emails: dict[str, set[str]] = {}
        made = {}
        for login, owner_logins in {
            "alpha": ("ann", "amy", "axel"),
            "bravo": ("ben", "bea"),
            "charlie": ("cal", "cat"),
        }.items():
            first, *others = [user(o) for o in owner_logins]
            org = orgs.create_org(ctx, login, owner=first, actor=as_actor(first))
            orgs.set_org_policy(ctx, org, actor=as_actor(first), opt_in=True)
            for owner in others:
                orgs.add_member(ctx, org, owner, role=Role.OWNER, actor=as_actor(first))
            for member in (mona, max_):
                orgs.add_member(ctx, org, member, role=Role.MEMBER, actor=as_actor(first))
            made[login] = (org, first)
            owner_emails[login] = {f"{o}@example.com" for o in owner_logins if o != "axel"}
            pending[login] = set()
        accounts.set_suspended(ctx, "axel", True)

        def request(login: str, by: Any, name: str, **kwargs: Any) -> int:
            issued = tokens.create_fine_grained(
                ctx, by, name=name, resource_owner=made[login][0],
                expires_at=ctx.now + timedelta(days=30), actor=as_actor(by), **kwargs,
            )  # fmt: skip
            return issued.request.id

        alpha = made["alpha"][0]
        widgets = repos.create_repo(ctx, alpha, "widgets")
        gadgets = repos.create_repo(ctx, alpha, "gadgets")
        pending["alpha"] |= {
            request("alpha", mona, "alpha-deploy", repository_selection="subset",
                    repositories=[widgets, gadgets],
                    permissions={"contents": "read", "issues": "write"}),
            request("alpha", max_, "alpha-ci", repository_selection="all",
                    permissions={"actions": "read"}),
        }  # fmt: skip
        denied = request("alpha", mona, "alpha-denied", repository_selection="all")
        approvals.deny(ctx, alpha, [denied], actor=as_actor(made["alpha"][1]))
        pending["bravo"].add(
            request("bravo", mona, "bravo-members", permissions={"members": "read"})
        )
        charlie, cal = made["charlie"]
        approved = request("charlie", mona, "charlie-ok", repository_selection="all")
        approvals.approve(ctx, charlie, [approved], actor=as_actor(cal))
        del owner_emails["charlie"], pending["charlie"]
    return World(pending, owner_emails)


def at(runtime: Runtime, moment: datetime) -> None:
    clock = runtime.clock
    assert isinstance(clock, FixedClock)
    clock.at = moment


def run_fresh_worker(runtime: Runtime) -> int:
    """A worker as started by a new process (nothing remembered from earlier passes)."""
    worker = Worker(runtime)
    try:
        return worker.run_once()
    finally:
        worker.close()


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content().replace("\r\n", "\n")


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return part.get_content()


def check_digests(messages: list[EmailMessage], world: World, date: str) -> None:
    """One email per (active owner, org with pending requests), each listing exactly the
    org's pending requests."""
    expected = {(org, email) for org, emails in world.owner_emails.items() for email in emails}
    seen = set()
    for message in messages:
        links = LINK.findall(text_of(message))
        orgs_listed = {org for org, _ in links}
        assert len(orgs_listed) == 1, links
        [org] = orgs_listed
        assert {int(i) for _, i in links} == world.pending[org]
        assert {int(i) for _, i in LINK.findall(html_of(message))} == world.pending[org]
        assert date in text_of(message)
        assert org in message["Subject"]
        seen.add((org, str(message["To"])))
    assert seen == expected
    assert len(messages) == len(expected) == 4


# ---- the acceptance scenario ------------------------------------------------------------


def test_one_digest_per_owner_org_and_day_with_one_catch_up_after_downtime(
    runtime: Runtime, inbox: tuple[Inbox, str]
) -> None:
    mailbox = inbox[0]
    world = build_world(runtime)
    assert run_fresh_worker(runtime) == 2  # the denial and the approval, no digest yet
    assert {str(m["To"]) for m in mailbox.take()} == {"mona@example.com"}

    at(runtime, DAY1.replace(hour=DIGEST_HOUR - 1, minute=59))
    assert run_fresh_worker(runtime) == 0

    at(runtime, DAY1.replace(hour=DIGEST_HOUR))
    assert run_fresh_worker(runtime) == 4
    check_digests(mailbox.take(), world, "2026-11-25")

    # Again the same day: by the same worker, a new one, or `patgate digest run --now`.
    at(runtime, DAY1.replace(hour=18))
    assert run_fresh_worker(runtime) == 0
    assert run_digest(runtime, now=True) == 0
    at(runtime, DAY1.replace(hour=23, minute=59))
    assert run_fresh_worker(runtime) == 0
    assert mailbox.take() == []

    # Three days without a worker: one catch-up for today, not one per missed day.
    at(runtime, DAY1.replace(hour=12) + timedelta(days=3))
    assert run_fresh_worker(runtime) == 4
    check_digests(mailbox.take(), world, "2026-11-28")
    with runtime.sessions() as session:
        keys = session.scalars(
            select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.like("digest:%"))
        ).all()
    assert len(keys) == 8
    assert {k.rsplit(":", 1)[1] for k in keys} == {"2026-11-25", "2026-11-28"}


def test_a_worker_started_after_the_hour_sends_at_once_and_only_once(
    runtime: Runtime, inbox: tuple[Inbox, str]
) -> None:
    build_world(runtime)
    at(runtime, DAY1.replace(hour=22))
    worker = Worker(runtime)
    try:
        assert worker.run_once() == 6  # the two decisions, and the four digests
        assert worker.run_once() == 0
        # The same worker, the next day: a new date, new digests.
        at(runtime, DAY1.replace(hour=DIGEST_HOUR) + timedelta(days=1))
        assert worker.run_once() == 4
    finally:
        worker.close()


def test_the_digest_lists_requester_token_repositories_permissions_age_and_link(
    runtime: Runtime, inbox: tuple[Inbox, str]
) -> None:
    world = build_world(runtime)
    run_fresh_worker(runtime)
    inbox[0].take()

    at(runtime, DAY1.replace(hour=DIGEST_HOUR))
    run_fresh_worker(runtime)
    by_owner = {str(m["To"]): m for m in inbox[0].take()}
    alpha = text_of(by_owner["ann@example.com"])
    deploy, ci = sorted(world.pending["alpha"])
    assert '"alpha-deploy" requested by mona 4 hours ago' in alpha
    assert "Repositories: gadgets, widgets" in alpha
    assert "Permissions: contents: read, issues: write, metadata: read" in alpha
    assert (
        f"http://127.0.0.1:8000/organizations/alpha/settings/personal-access-token-requests/{deploy}"
        in alpha
    )
    assert '"alpha-ci" requested by max 4 hours ago' in alpha
    assert "Repositories: all repositories" in alpha
    assert "alpha-denied" not in alpha
    assert ci in {int(i) for _, i in LINK.findall(alpha)}
    assert (
        str(by_owner["ann@example.com"]["Subject"])
        == "2 personal access token requests awaiting review in alpha"
    )

    bravo = by_owner["ben@example.com"]
    assert "Repositories: public repositories only" in text_of(bravo)
    assert "members: read" in text_of(bravo)
    assert str(bravo["Subject"]) == "1 personal access token request awaiting review in bravo"
    html = html_of(bravo)
    assert "bravo-members" in html and "public repositories only" in html
    assert "axel@example.com" not in by_owner  # suspended owners are skipped


def test_digest_run_without_now_waits_for_the_hour_and_with_now_does_not(
    runtime: Runtime, inbox: tuple[Inbox, str]
) -> None:
    world = build_world(runtime)
    assert run_digest(runtime, now=False) == 0
    assert run_digest(runtime, now=True) == 4
    assert run_digest(runtime, now=True) == 0
    assert run_fresh_worker(runtime) == 6  # the worker sends what was queued
    digests = [m for m in inbox[0].take() if "awaiting review" in str(m["Subject"])]
    check_digests(digests, world, "2026-11-25")
    # Later the same day the worker's own check finds today's digests queued already.
    at(runtime, DAY1.replace(hour=DIGEST_HOUR + 1))
    assert run_fresh_worker(runtime) == 0


def test_no_digest_for_an_org_without_pending_requests_or_active_owners(
    runtime: Runtime,
) -> None:
    build_world(runtime)
    with runtime.unit_of_work() as ctx:
        for login in ("ben", "bea"):
            accounts.set_suspended(ctx, login, True)
        alpha = orgs.get_org(ctx, "alpha")
        ids = [r.id for r, _ in approvals.list_pending(
            ctx, alpha, approvals.ListFilters(), page=1, per_page=100)[0]]  # fmt: skip
        approvals.approve(ctx, alpha, ids, actor=Actor(None, "cli", "cli"))
        assert jobs.enqueue_digests(ctx, force=True) == 0


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=59), "less than a minute"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(minutes=59, seconds=59), "59 minutes"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(hours=23), "23 hours"),
        (timedelta(days=1, hours=5), "1 day"),
        (timedelta(days=12), "12 days"),
        (timedelta(seconds=-5), "less than a minute"),
    ],
)
def test_age_text(delta: timedelta, text: str) -> None:
    assert jobs.age_text(delta) == text


def test_next_digest_moment() -> None:
    before = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
    after = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert jobs.next_digest_at(before, 9) == datetime(2026, 11, 25, 9, tzinfo=UTC)
    assert jobs.next_digest_at(after, 9) == datetime(2026, 11, 26, 9, tzinfo=UTC)
    assert not jobs.digest_due(before, 9) and jobs.digest_due(after, 9)
