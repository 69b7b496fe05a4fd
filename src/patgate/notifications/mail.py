"""Emails (SPEC §7): rendered from templates when the worker sends them, then handed to SMTP
or, with no SMTP configured, written into the local mailbox directory."""

from __future__ import annotations

import os
import re
import smtplib
import ssl
import tempfile
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from patgate.config import Settings

TEMPLATES = Path(__file__).parent / "templates"
SMTP_TIMEOUT_SECONDS = 30
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
)
_text = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=False,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


# ---- rendering --------------------------------------------------------------------------


def message_id(outbox_id: int, created_at: datetime, base_url: str) -> str:
    """The ``Message-ID`` of an outbox email: the same for every send of one outbox row, so
    a re-send after a crash is recognisably the same message."""
    host = urlsplit(base_url).hostname or "localhost"
    return f"<outbox-{outbox_id}.{int(created_at.timestamp())}@{host}>"


def render(template: str, data: dict[str, Any]) -> tuple[str, str, str]:
    """Return ``(subject, text, html)`` for ``template`` (a key of :data:`SUBJECTS`).

    Raises :class:`KeyError` for an unknown template and ``jinja2.UndefinedError`` when
    ``data`` lacks a value the template uses.
    """
    subject = _text.from_string(SUBJECTS[template]).render(**data)
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


# ---- sending ----------------------------------------------------------------------------


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Hand the message over; raise on failure (see :func:`is_permanent`)."""


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


class SmtpMailer:
    """Sends each message over its own SMTP connection (``smtplib``)."""

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

    def send(self, message: EmailMessage) -> None:
        t = self.target
        client: smtplib.SMTP
        if t.security == "tls":
            client = smtplib.SMTP_SSL(
                t.host, t.port, timeout=self.timeout, context=self.ssl_context
            )
        else:
            client = smtplib.SMTP(t.host, t.port, timeout=self.timeout)
        with client:
            client.ehlo()
            if t.security == "starttls":
                client.starttls(context=self.ssl_context)
                client.ehlo()
            if t.username is not None:
                client.login(t.username, t.password or "")
            client.send_message(message)


class MailboxMailer:
    """Writes one ``.eml`` file per message into a directory that site admins read in the UI.

    The file is named after the ``Message-ID``: a re-send replaces the file, never adds one.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, msg_id: str) -> Path:
        name = re.sub(r"[^A-Za-z0-9._@-]", "_", msg_id.strip("<> "))
        return self.directory / f"{name}.eml"

    def send(self, message: EmailMessage) -> None:
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
