"""Emails (SPEC §7): rendered from templates when the worker sends them, then handed to SMTP
or, with no SMTP configured, written into the local mailbox directory."""

from __future__ import annotations

import contextlib
import email.policy
import functools
import os
import re
import secrets
import smtplib
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape

from patgate.config import Settings

TEMPLATES = Path(__file__).parent / "templates"
SMTP_TIMEOUT_SECONDS = 30
# RFC 5322 §2.1.1: a line is at most 998 characters, CRLF excluded.
MAX_LINE_OCTETS = 998
DEFAULT_PORTS = {"smtp": 25, "starttls": 587, "smtps": 465}

# Rendered with the message's data, like the bodies.
SUBJECTS = {
    "request_approved": "Your personal access token “{{ token_name }}” was approved by {{ org }}",
    "request_denied": "Your personal access token “{{ token_name }}” was denied by {{ org }}",
    "grant_revoked": "{{ org }} revoked the access of your personal access token "
    "“{{ token_name }}”",
    "digest": "{{ requests | length }} personal access token "
    "request{{ '' if requests | length == 1 else 's' }} awaiting review in {{ org }}",
}

_html = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    auto_reload=False,  # the templates ship with the code: no stat() of the file per message
)
_text = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=False,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    auto_reload=False,  # the templates ship with the code: no stat() of the file per message
)


# ---- rendering --------------------------------------------------------------------------


def message_id(outbox_id: int, created_at: datetime, base_url: str) -> str:
    """The ``Message-ID`` of an outbox email: the same for every send of one outbox row, so
    a re-send after a crash is recognisably the same message."""
    host = urlsplit(base_url).hostname or "localhost"
    return f"<outbox-{outbox_id}.{int(created_at.timestamp())}@{host}>"


@functools.cache
def _subject_template(template: str) -> Template:
    return _text.from_string(SUBJECTS[template])


def render(template: str, data: dict[str, Any]) -> tuple[str, str, str]:
    """Return ``(subject, text, html)`` for ``template`` (a key of :data:`SUBJECTS`).

    Raises :class:`KeyError` for an unknown template and ``jinja2.UndefinedError`` when
    ``data`` lacks a value the template uses.
    """
    subject = _subject_template(template).render(**data)
    text = _text.get_template(f"{template}.txt").render(**data)
    html = _html.get_template(f"{template}.html").render(**data)
    # A header is one line, whatever a token name holds.
    return " ".join(subject.split()), text, html


def build_message(
    settings: Settings,
    *,
    msg_id: str,
    to: str,
    template: str,
    data: dict[str, Any],
    date: datetime,
) -> EmailMessage:
    """A multipart/alternative email (plain text, then HTML) ready to send."""
    subject, text, html = render(template, data)
    return _message(settings, msg_id, to, subject, text, html, date)


def _message(
    settings: Settings, msg_id: str, to: str, subject: str, text: str, html: str, date: datetime
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.sender_address
    message["To"] = to
    message["Date"] = format_datetime(date)
    message["Message-ID"] = msg_id
    message["Subject"] = subject
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An email ready to hand over: its envelope, and its bytes as SMTP carries them (CRLF
    line ends, before dot-stuffing); ``wire`` is ``None`` when the message needs SMTPUTF8
    (non-ASCII addresses), left to ``smtplib`` with ``message``."""

    msg_id: str
    sender: str
    recipients: tuple[str, ...]
    wire: bytes | None
    message: EmailMessage | None = None

    def as_message(self) -> EmailMessage:
        if self.message is not None:
            return self.message
        assert self.wire is not None
        parsed = BytesParser(policy=email.policy.default).parsebytes(self.wire)
        assert isinstance(parsed, EmailMessage)
        return parsed


def compose(
    settings: Settings,
    *,
    msg_id: str,
    to: str,
    template: str,
    data: dict[str, Any],
    date: datetime,
) -> Outgoing:
    """:func:`build_message`, flattened for SMTP.

    ASCII bodies whose lines SMTP carries as they are (at most 998 octets, RFC 5322 §2.1.1)
    are written out here as ``7bit`` parts, the headers folded by the email package: the
    package itself would encode them quoted-printable (its lines stop at 78 characters) in
    pure Python, and build and flatten a tree of header objects, 50 times the cost for a
    digest (``docs/performance.md``, goal 4). Other bodies take the package's way.
    """
    subject, text, html = render(template, data)
    sender = settings.sender_address
    if any("\r" in v or "\n" in v for v in (sender, to, msg_id)):
        raise ValueError("a header value holds a line break")  # as EmailMessage refuses it
    # The envelope, as smtplib's send_message takes it from the headers.
    envelope_from = getaddresses([sender])[0][1]
    recipients = tuple(address for _, address in getaddresses([to]))
    if not (to.isascii() and sender.isascii()):
        message = _message(settings, msg_id, to, subject, text, html, date)
        return Outgoing(msg_id, envelope_from, recipients, None, message)
    parts = [_lines(text), _lines(html)]
    if any(p is None for p in parts):
        message = _message(settings, msg_id, to, subject, text, html, date)
        wire = message.as_bytes(policy=_WIRE)
        return Outgoing(msg_id, envelope_from, recipients, wire, message)
    boundary = _boundary(parts)  # type: ignore[arg-type]
    head = "".join(
        _header(name, value)
        for name, value in (
            ("From", sender), ("To", to), ("Date", format_datetime(date)),
            ("Message-ID", msg_id), ("Subject", subject),
        )
    ) + (
        "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'
    )  # fmt: skip
    # The CRLF before a delimiter line belongs to the delimiter (RFC 2046 §5.1.1).
    body = "".join(
        f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: 7bit\r\n\r\n{part}\r\n"
        for subtype, part in zip(("plain", "html"), parts, strict=True)
    )
    wire = (head + body + f"--{boundary}--\r\n").encode("ascii")
    return Outgoing(msg_id, envelope_from, recipients, wire)


_WIRE = email.policy.SMTP
# Values the email package writes out unchanged when the line is short enough: any printable
# ASCII for the unstructured Subject; for Date and Message-ID, the forms patgate makes.
_LITERAL_VALUES = {
    "Subject": re.compile(r"[!-~]+(?: [!-~]+)*"),
    "Date": re.compile(
        r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} [1-9]\d{3} \d{2}:\d{2}:\d{2} [+-]\d{4}"
    ),
    "Message-ID": re.compile(
        r"<[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>"
    ),
}


def _header(name: str, value: str) -> str:
    """The header as EmailMessage keeps and writes it: folded, text that is not ASCII
    encoded (RFC 2047). A short plain value is written as it is, which is what the package
    writes for it, at a fraction of the cost of its header objects."""
    literal = _LITERAL_VALUES.get(name)
    if (
        literal is not None
        and len(name) + 2 + len(value) <= _WIRE.max_line_length
        and "=?" not in value
        and literal.fullmatch(value)
    ):
        return f"{name}: {value}\r\n"
    return _folded_header(name, value)


@functools.lru_cache(maxsize=1024)  # From is the same for every message, To often repeats
def _folded_header(name: str, value: str) -> str:
    return _WIRE.header_factory(name, value).fold(policy=_WIRE)


def _lines(body: str) -> str | None:
    """``body`` with CRLF line ends, as a ``7bit`` part carries it; ``None`` when it cannot
    (not ASCII, or a line longer than SMTP allows)."""
    if not body.isascii():
        return None
    lines = body.splitlines()
    if max(map(len, lines), default=0) > MAX_LINE_OCTETS:
        return None
    return "\r\n".join(lines) + "\r\n"


def _boundary(parts: list[str]) -> str:
    """A multipart boundary that no line of the parts starts with (as the email package
    makes them)."""
    while True:
        boundary = "=" * 15 + str(secrets.randbelow(10**19)) + "=="
        if not any(f"\r\n--{boundary}" in "\r\n" + p for p in parts):
            return boundary


# ---- sending ----------------------------------------------------------------------------


class Mailer(Protocol):
    def send(self, message: EmailMessage | Outgoing) -> None:
        """Hand the message over; raise on failure (see :func:`is_permanent`)."""

    def batch(self) -> AbstractContextManager[None]:
        """Sends inside may come from several threads at once, and may share what they need
        (an SMTP connection per thread), released at the end."""


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    security: str  # "none", "starttls" or "tls"
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpTarget:
    """``smtp://host[:port]`` (25), ``smtp://...?starttls=true`` (587, STARTTLS),
    ``smtps://host[:port]`` (465, implicit TLS); user and password are percent-decoded.

    Raises :class:`ValueError` for another scheme or a missing host.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
        raise ValueError(f"not an smtp:// or smtps:// URL with a host: {url!r}")
    query = parse_qs(parts.query)
    starttls = query.get("starttls", ["false"])[-1].lower() in {"1", "true", "yes", "on"}
    if parts.scheme == "smtps":
        security, default_port = "tls", DEFAULT_PORTS["smtps"]
    elif starttls:
        security, default_port = "starttls", DEFAULT_PORTS["starttls"]
    else:
        security, default_port = "none", DEFAULT_PORTS["smtp"]
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


class _DataTracking:
    """Knows whether the current transaction reached ``DATA``: a failure before it sent
    nothing of the message, so trying again on another connection cannot deliver it twice."""

    data_started = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_started = True
        if not isinstance(msg, bytes):
            return super().data(msg)  # type: ignore[misc, no-any-return]
        # smtplib's DATA for bytes, with its dot-stuffing done by bytes.replace instead of a
        # multi-line regex: a tenth of the time for a 80 kB digest (docs/performance.md).
        self.putcmd("data")  # type: ignore[attr-defined]
        code, reply = self.getreply()  # type: ignore[attr-defined]
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        stuffed = dot_stuff(msg)
        if stuffed[-2:] != b"\r\n":
            stuffed += b"\r\n"
        self.send(stuffed + b".\r\n")  # type: ignore[attr-defined]
        return self.getreply()  # type: ignore[attr-defined, no-any-return]


def dot_stuff(data: bytes) -> bytes:
    """A period doubled at the start of every line (RFC 5321 §4.5.2), as smtplib does it:
    after every LF, and at the very start."""
    stuffed = data.replace(b"\n.", b"\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


class _Smtp(_DataTracking, smtplib.SMTP):
    pass


class _SmtpSsl(_DataTracking, smtplib.SMTP_SSL):
    pass


class SmtpMailer:
    """Sends over SMTP (``smtplib``): each message over its own connection, or the messages
    sent inside :meth:`batch` over one per sending thread (opened at its first, re-opened
    after a failure, all closed at the end)."""

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = SMTP_TIMEOUT_SECONDS,
    ) -> None:
        self.target = parse_smtp_url(url)
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.timeout = timeout
        self._batching = False
        # The batch's connections: the current thread's, and all of them to close at its end.
        self._local = threading.local()
        self._open: set[_Smtp | _SmtpSsl] = set()
        self._open_lock = threading.Lock()

    @property
    def _client(self) -> _Smtp | _SmtpSsl | None:
        return getattr(self._local, "client", None)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
            with self._open_lock:
                clients, self._open = self._open, set()
            for client in clients:
                _close(client, quit=True)
            self._local = threading.local()

    def send(self, message: EmailMessage | Outgoing) -> None:
        if not self._batching:
            with self._connect() as client:
                _transmit(client, message)
            return
        reused = self._client is not None
        try:
            self._send(message)
        except OSError as exc:  # smtplib's errors are OSErrors too
            # The server may have closed a connection that waited (an idle timeout, a limit
            # of messages per connection: 421). Failing so before DATA, this message was not
            # sent: once more on a new connection. Any other failure is the attempt's outcome.
            if not (reused and _closed_by_server(exc)) or getattr(exc, "data_started", True):
                raise
            self._send(message)

    def _send(self, message: EmailMessage | Outgoing) -> None:
        client = self._client
        if client is None:
            client = self._local.client = self._connect()
            with self._open_lock:
                self._open.add(client)
        client.data_started = False
        try:
            _transmit(client, message)
        except BaseException as exc:
            # The connection's state is unknown after a failure: the next send opens another.
            exc.data_started = client.data_started  # type: ignore[attr-defined]
            self._discard(quit=False)
            raise

    def _connect(self) -> _Smtp | _SmtpSsl:
        t = self.target
        client: _Smtp | _SmtpSsl
        if t.security == "tls":
            client = _SmtpSsl(t.host, t.port, timeout=self.timeout, context=self.ssl_context)
        else:
            client = _Smtp(t.host, t.port, timeout=self.timeout)
        try:
            client.ehlo()
            if t.security == "starttls":
                client.starttls(context=self.ssl_context)
                client.ehlo()
            if t.username is not None:
                client.login(t.username, t.password or "")
        except BaseException:
            client.close()
            raise
        return client

    def _discard(self, *, quit: bool) -> None:
        client, self._local.client = self._client, None
        if client is None:
            return
        with self._open_lock:
            self._open.discard(client)
        _close(client, quit=quit)


def _close(client: smtplib.SMTP, *, quit: bool) -> None:
    try:
        if quit:
            client.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        client.close()


def _transmit(client: smtplib.SMTP, message: EmailMessage | Outgoing) -> None:
    if isinstance(message, EmailMessage):
        client.send_message(message)
    elif message.wire is None:
        assert message.message is not None
        client.send_message(message.message)
    else:
        client.sendmail(message.sender, list(message.recipients), message.wire)


def _closed_by_server(exc: OSError) -> bool:
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == 421
    return not isinstance(exc, smtplib.SMTPException | TimeoutError)


class MailboxMailer:
    """Writes one ``.eml`` file per message into a directory that site admins read in the UI.

    The file is named after the ``Message-ID``: a re-send replaces the file, never adds one.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def batch(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def path_for(self, msg_id: str) -> Path:
        name = re.sub(r"[^A-Za-z0-9._@-]", "_", msg_id.strip("<> "))
        return self.directory / f"{name}.eml"

    def send(self, message: EmailMessage | Outgoing) -> None:
        if isinstance(message, Outgoing):
            message = message.as_message()
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path_for(str(message["Message-ID"]))
        # Temp file and rename in the same directory: a reader never sees half a message.
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".incoming-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.as_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def mailer_for(settings: Settings) -> Mailer:
    """SMTP when ``PATGATE_SMTP_URL`` is set, else the mailbox directory."""
    if settings.smtp_url:
        return SmtpMailer(settings.smtp_url)
    return MailboxMailer(settings.mailbox_dir)


# ---- classifying failures ---------------------------------------------------------------


def smtp_code(exc: BaseException) -> int | None:
    """The SMTP reply code behind a failure, if the server gave one."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        return max(code for code, _ in exc.recipients.values())
    return None


def is_permanent(exc: BaseException) -> bool:
    """A 5xx SMTP reply (or a message that cannot be built) is permanent; a 4xx reply, a
    refused or dropped connection, a timeout or a TLS failure is temporary."""
    code = smtp_code(exc)
    if code is not None:
        return code >= 500
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return False
    if isinstance(exc, smtplib.SMTPException):
        # A refusal without a reply code (no STARTTLS, no usable AUTH mechanism) is the
        # configuration's fault and would fail the same way again. Checked before OSError,
        # which every SMTPException also is.
        return True
    # Other OSErrors (refused, reset, timed out, TLS) pass; anything else (a template that
    # fails to render) would fail the same way again.
    return not isinstance(exc, OSError)
