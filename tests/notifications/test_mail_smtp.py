"""Emails to token creators through a real SMTP server (aiosmtpd), over plain SMTP, STARTTLS
and implicit TLS, and into the mailbox directory when no SMTP server is configured."""

from __future__ import annotations

import html
import ipaddress
import shutil
import smtplib
import socket
import ssl
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
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from patgate import schema
from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.clock import FixedClock
from patgate.config import load_settings
from patgate.context import Actor
from patgate.notifications import jobs, mail
from patgate.notifications.models import DeliveryAttempt, MessageState, OutboxMessage
from patgate.orgs import services as orgs
from patgate.orgs.models import Role
from patgate.repos import services as repos
from patgate.runtime import Runtime
from patgate.tokens import services as tokens
from patgate.worker import Worker

START = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # before the digest hour: no digests here


class Crash(BaseException):
    """The worker process dying (not an error any code would catch)."""


REASON = "Use the <deploy key> & ask again\nonce the audit is done."


# ---- a real SMTP server -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Inbox:
    """An aiosmtpd handler keeping what it accepts; ``reply`` scripts its answer to DATA."""

    reply: str = "250 Message accepted for delivery"
    envelopes: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reply.startswith("2"):
            self.envelopes.append(envelope)
        return self.reply

    def messages(self) -> list[EmailMessage]:
        return [
            BytesParser(policy=policy.default).parsebytes(e.original_content)  # type: ignore[misc]
            for e in self.envelopes
        ]


@dataclass
class SmtpServer:
    inbox: Inbox
    port: int
    controller: Controller

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer(inbox, port, controller)
    controller.stop()


# ---- a database with a member's token requests ------------------------------------------


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.sqlite"
    runtime = Runtime(load_settings(database_url=f"sqlite:///{path}", secret_key="x" * 32))
    schema.upgrade(runtime.engine)
    runtime.close()
    return path


def make_runtime(tmp_path: Path, migrated_db: Path, *, smtp_url: str | None) -> Runtime:
    db = tmp_path / "patgate.sqlite"
    shutil.copy(migrated_db, db)
    settings = load_settings(
        database_url=f"sqlite:///{db}",
        secret_key="x" * 32,
        smtp_url=smtp_url,
        mailbox_dir=tmp_path / "mail",
        base_url="http://127.0.0.1:8000",
        digest_hour=9,
    )
    return Runtime(settings, clock=FixedClock(START))


@dataclass
class World:
    runtime: Runtime
    owner: Actor
    request_ids: dict[str, int]  # token name -> pending request id


def build_world(runtime: Runtime) -> World:
    with runtime.unit_of_work() as ctx:
        owner = accounts.create_user(ctx, "octo-owner", email="owner@example.com")
        mona = accounts.create_user(ctx, "mona", email="mona@example.com")
        actor = Actor(owner.id, owner.login)
        org = orgs.create_org(ctx, "octo-org", owner=owner, actor=actor)
        orgs.set_org_policy(ctx, org, actor=actor, opt_in=True)
        orgs.add_member(ctx, org, mona, role=Role.MEMBER, actor=actor)
        widgets = repos.create_repo(ctx, org, "widgets")
        request_ids = {}
        for name in ("deploy-bot", "ci-bot"):
            issued = tokens.create_fine_grained(
                ctx, mona, name=name, resource_owner=org, repository_selection="subset",
                repositories=[widgets], permissions={"contents": "read"},
                expires_at=ctx.now + timedelta(days=30), actor=Actor(mona.id, mona.login),
            )  # fmt: skip
            request_ids[name] = issued.request.id
    return World(runtime, actor, request_ids)


@pytest.fixture
def world(tmp_path: Path, migrated_db: Path, smtp: SmtpServer) -> Iterator[World]:
    runtime = make_runtime(tmp_path, migrated_db, smtp_url=smtp.url)
    yield build_world(runtime)
    runtime.close()


def run_worker(runtime: Runtime, **kwargs: Any) -> int:
    worker = Worker(runtime, **kwargs)
    try:
        return worker.run_once()
    finally:
        worker.close()


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text is not None and html_part is not None
    # SMTP carries CRLF line ends; the templates' own are LF.
    return (
        text.get_content().replace("\r\n", "\n"),
        html_part.get_content().replace("\r\n", "\n"),
    )


# ---- the creator's emails ---------------------------------------------------------------


def test_denial_with_a_reason_emails_the_creator_once(world: World, smtp: SmtpServer) -> None:
    with world.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "octo-org")
        approvals.deny(
            ctx, org, [world.request_ids["deploy-bot"]], actor=world.owner, reason=REASON
        )

    assert run_worker(world.runtime) == 1
    assert run_worker(world.runtime) == 0

    [envelope] = smtp.inbox.envelopes
    assert envelope.rcpt_tos == ["mona@example.com"]
    [message] = smtp.inbox.messages()
    assert message.get_content_type() == "multipart/alternative"
    assert message["From"] == "patgate@127.0.0.1"
    assert message["To"] == "mona@example.com"
    assert message["Date"] is not None
    assert message["Message-ID"].startswith("<outbox-") and message["Message-ID"].endswith(
        "@127.0.0.1>"
    )
    assert "deploy-bot" in message["Subject"] and "denied" in message["Subject"]
    text, body = parts(message)
    assert REASON in text.replace("\n    ", "\n")
    assert "deploy-bot" in text and "deploy-bot" in body
    assert html.escape(REASON) in body  # escaped, never raw HTML from a reviewer
    assert "<deploy key>" not in body
    assert "http://127.0.0.1:8000/settings/personal-access-tokens/" in text


def test_approval_and_revocation_email_the_creator(world: World, smtp: SmtpServer) -> None:
    with world.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "octo-org")
        approvals.approve(ctx, org, [world.request_ids["ci-bot"]], actor=world.owner)
    assert run_worker(world.runtime) == 1

    with world.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "octo-org")
        mona = accounts.get_user(ctx, "mona")
        [token] = [t for t in tokens.fine_grained_of(ctx, mona) if t.name == "ci-bot"]
        grant = approvals.active_grant_of(ctx, token, org)
        assert grant is not None
        approvals.revoke(ctx, org, [grant.id], actor=world.owner)
    assert run_worker(world.runtime) == 1

    approved, revoked = smtp.inbox.messages()
    assert "approved" in approved["Subject"] and "ci-bot" in approved["Subject"]
    assert "revoked" in revoked["Subject"] and "ci-bot" in revoked["Subject"]
    for message in (approved, revoked):
        assert message["To"] == "mona@example.com"
        text, body = parts(message)
        assert "ci-bot" in text and "ci-bot" in body and "octo-org" in text
    assert approved["Message-ID"] != revoked["Message-ID"]


def test_without_smtp_emails_are_files_in_the_mailbox(
    tmp_path: Path, migrated_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = make_runtime(tmp_path, migrated_db, smtp_url=None)
    try:
        world = build_world(runtime)
        with runtime.unit_of_work() as ctx:
            org = orgs.get_org(ctx, "octo-org")
            approvals.deny(ctx, org, list(world.request_ids.values()), actor=world.owner)

        # The sends are accepted, then the worker dies before marking them sent.
        real_record = jobs.record_outcomes

        def crash(*args: Any, **kwargs: Any) -> None:
            raise Crash

        monkeypatch.setattr(jobs, "record_outcomes", crash)
        with pytest.raises(Crash):
            run_worker(runtime)
        monkeypatch.setattr(jobs, "record_outcomes", real_record)
        runtime.clock.advance(jobs.LEASE + timedelta(seconds=1))  # type: ignore[attr-defined]
        assert run_worker(runtime) == 2

        files = sorted((tmp_path / "mail").iterdir())
        # The re-send replaced its file: one file per message, no temporary leftovers.
        assert [f.suffix for f in files] == [".eml", ".eml"]
        messages = [BytesParser(policy=policy.default).parsebytes(f.read_bytes()) for f in files]
        assert {m["To"] for m in messages} == {"mona@example.com"}
        assert {m["Message-ID"] for m in messages} == {
            mail.message_id(m.id, m.created_at, runtime.settings.base_url) for m in _outbox(runtime)
        }
        for message in messages:
            text, _ = parts(message)
            assert "denied" in message["Subject"]
            assert "No reason was given." in text
    finally:
        runtime.close()


def _outbox(runtime: Runtime) -> list[OutboxMessage]:
    with runtime.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


# ---- failures ---------------------------------------------------------------------------


def test_a_5xx_reply_is_given_up_after_five_attempts(world: World, smtp: SmtpServer) -> None:
    smtp.inbox.reply = "550 5.1.1 Mailbox unavailable"
    with world.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "octo-org")
        approvals.deny(ctx, org, [world.request_ids["deploy-bot"]], actor=world.owner)

    for _ in range(jobs.PERMANENT_ATTEMPTS):
        assert run_worker(world.runtime) == 0
        world.runtime.clock.advance(timedelta(seconds=61))  # type: ignore[attr-defined]
    assert run_worker(world.runtime) == 0

    [message] = _outbox(world.runtime)
    assert message.state == MessageState.FAILED
    assert message.attempts == jobs.PERMANENT_ATTEMPTS
    assert "550" in (message.last_error or "")
    with world.runtime.unit_of_work() as ctx:
        assert [m.id for m in jobs.failed_messages(ctx)] == [message.id]
        attempts = jobs.attempts_of(ctx, message.id)
    assert [(a.succeeded, a.permanent, a.status_code) for a in attempts] == [
        (False, True, 550)
    ] * jobs.PERMANENT_ATTEMPTS
    assert smtp.inbox.envelopes == []


def test_a_4xx_reply_is_retried_forever_with_backoff_capped_at_a_minute(
    world: World, smtp: SmtpServer
) -> None:
    smtp.inbox.reply = "451 4.3.0 Try again later"
    with world.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "octo-org")
        approvals.deny(ctx, org, [world.request_ids["deploy-bot"]], actor=world.owner)

    clock: FixedClock = world.runtime.clock  # type: ignore[assignment]
    waits = []
    for _ in range(9):
        assert run_worker(world.runtime) == 0
        [message] = _outbox(world.runtime)
        waits.append((message.next_attempt_at - clock.now()).total_seconds())
        clock.advance(timedelta(seconds=60))
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert message.state == MessageState.PENDING

    smtp.inbox.reply = "250 OK"
    assert run_worker(world.runtime) == 1
    [message] = _outbox(world.runtime)
    assert (message.state, message.attempts) == (MessageState.SENT, 10)
    with world.runtime.sessions() as session:
        count = session.scalar(select(func.count()).select_from(DeliveryAttempt))
    assert count == 10


# ---- SMTP URLs, TLS and credentials -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example", ("mail.example", 25, "none", None, None)),
        ("smtp://mail.example:2525", ("mail.example", 2525, "none", None, None)),
        ("smtp://mail.example?starttls=true", ("mail.example", 587, "starttls", None, None)),
        ("smtp://mail.example:25?starttls=True", ("mail.example", 25, "starttls", None, None)),
        ("smtps://mail.example", ("mail.example", 465, "tls", None, None)),
        (
            "smtps://bob%40example.com:p%40ss%3Aw%2Frd@mail.example:4650",
            ("mail.example", 4650, "tls", "bob@example.com", "p@ss:w/rd"),
        ),
    ],
)
def test_smtp_urls(url: str, expected: tuple[Any, ...]) -> None:
    t = mail.parse_smtp_url(url)
    assert (t.host, t.port, t.security, t.username, t.password) == expected


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (smtplib.SMTPDataError(550, b"no such user"), True),
        (smtplib.SMTPSenderRefused(553, b"sender refused", "a@b"), True),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), True),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), True),
        (smtplib.SMTPRecipientsRefused({"a@b": (550, b"unknown")}), True),
        (smtplib.SMTPRecipientsRefused({"a@b": (450, b"greylisted")}), False),
        (smtplib.SMTPDataError(421, b"shutting down"), False),
        (smtplib.SMTPServerDisconnected("gone"), False),
        (ConnectionRefusedError(111, "refused"), False),
        (TimeoutError("timed out"), False),
        (ssl.SSLError("handshake"), False),
    ],
)
def test_failure_classes(exc: BaseException, permanent: bool) -> None:
    assert mail.is_permanent(exc) is permanent


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert_pem, key_pem = _self_signed()
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(key_pem)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    client = ssl.create_default_context(cafile=str(folder / "cert.pem"))
    return server, client


def _message(to: str = "mona@example.com") -> EmailMessage:
    settings = load_settings(secret_key="x" * 32, base_url="https://patgate.example")
    return mail.build_message(
        settings,
        msg_id=mail.message_id(7, START, settings.base_url),
        to=to,
        template="request_denied",
        data={
            "org": "octo-org", "token_id": 1, "token_name": "deploy-bot", "user": "mona",
            "reviewer": "octo-owner", "reason": "no", "request_id": 1,
            "token_url": "https://patgate.example/settings/personal-access-tokens/1",
        },
        date=START,
    )  # fmt: skip


@dataclass
class Credentials:
    """An aiosmtpd authenticator that accepts anyone and remembers what it was given."""

    seen: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        assert isinstance(data, LoginPassword)
        self.seen.append((data.login, data.password))
        return AuthResult(success=True)


def test_starttls_with_percent_encoded_credentials(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = tls
    inbox, port, credentials = Inbox(), free_port(), Credentials()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, tls_context=server_ctx,
        require_starttls=True, authenticator=credentials, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    try:
        url = f"smtp://bob%40example.com:p%40ss%3Aw%2Frd@127.0.0.1:{port}?starttls=true"
        mail.SmtpMailer(url, ssl_context=client_ctx).send(_message())
    finally:
        controller.stop()
    assert credentials.seen == [(b"bob@example.com", b"p@ss:w/rd")]
    [message] = inbox.messages()
    assert message["Message-ID"] == "<outbox-7.1795586400@patgate.example>"
    assert message["From"] == "patgate@patgate.example"


def test_implicit_tls(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=server_ctx)
    controller.start()
    try:
        mail.SmtpMailer(f"smtps://127.0.0.1:{port}", ssl_context=client_ctx).send(_message())
    finally:
        controller.stop()
    [message] = inbox.messages()
    assert message["To"] == "mona@example.com"
