"""Site admins' tools: the local mailbox (``/stafftools/mailbox``: the ``.eml`` files the worker
writes when no SMTP server is configured) and the outbox messages given up after permanent
failures, each with its delivery attempts (SPEC §7).

Anyone but a site admin gets a 404: the pages do not exist for them. A message's HTML part is
shown in a sandboxed frame served with a Content-Security-Policy of its own (no scripts, no
requests: only the inline styles emails use), and as escaped source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path

from starlette.responses import Response

from patgate.errors import NotFound
from patgate.notifications import jobs
from patgate.notifications.models import DeliveryAttempt, OutboxMessage
from patgate.web.ui.pages import Page, Routes

routes = Routes()

MAILBOX = "/stafftools/mailbox"
PER_PAGE = 50
MESSAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,250}\.eml$")
HEADERS = ("From", "To", "Date", "Subject", "Message-ID")
# The frame that shows an email's HTML part: inline styles and data: images, nothing else.
HTML_PART_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
)


def _require_site_admin(page: Page) -> None:
    """A 404 for anyone who is not a site admin (the tools are not theirs to know about)."""
    if not page.signed_in.site_admin:
        raise NotFound("page")


def _mailbox_dir(page: Page) -> Path:
    return Path(page.runtime.settings.mailbox_dir)


@dataclass
class MailboxEntry:
    name: str
    date: datetime | None
    to: str
    subject: str


def _parse(path: Path, *, headers_only: bool) -> EmailMessage:
    with path.open("rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle, headersonly=headers_only)
    assert isinstance(message, EmailMessage)
    return message


def _date_of(message: EmailMessage, path: Path) -> datetime | None:
    try:
        return parsedate_to_datetime(str(message["Date"])).astimezone(UTC)
    except (TypeError, ValueError):
        try:
            return datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except OSError:
            return None


def _messages(directory: Path) -> list[Path]:
    """The mailbox's messages, newest first (dotfiles are the writer's temporary files)."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if path.name.startswith(".") or not MESSAGE_NAME.match(path.name):
            continue
        try:
            found.append((path.stat().st_mtime, path.name, path))
        except OSError:  # removed meanwhile
            continue
    return [path for _, _, path in sorted(found, reverse=True)]


def _entry(path: Path) -> MailboxEntry | None:
    try:
        message = _parse(path, headers_only=True)
    except OSError:
        return None
    return MailboxEntry(
        path.name, _date_of(message, path), str(message["To"] or ""), str(message["Subject"] or "")
    )


@dataclass
class FailedMessage:
    message: OutboxMessage
    attempts: list[DeliveryAttempt]

    @property
    def summary(self) -> str:
        payload = self.message.payload
        if self.message.kind == "email":
            return f"Email “{payload.get('template', '?')}” to {payload.get('to', '?')}"
        return f"Webhook {payload.get('event', '?')}.{payload.get('action', '?')} to app " + str(
            payload.get("app_id", "?")
        )


@routes.get(MAILBOX)
def mailbox(page: Page) -> Response:
    _require_site_admin(page)
    directory = _mailbox_dir(page)
    paths = _messages(directory)
    pagination = page.pagination(len(paths), per_page=PER_PAGE)
    start = (pagination.page - 1) * PER_PAGE
    entries = [e for e in (_entry(p) for p in paths[start : start + PER_PAGE]) if e is not None]
    failed = [
        FailedMessage(message, jobs.attempts_of(page.ctx, message.id))
        for message in jobs.failed_messages(page.ctx)
    ]
    return page.render(
        "stafftools/mailbox.html",
        entries=entries,
        pagination=pagination,
        directory=directory,
        smtp=bool(page.runtime.settings.smtp_url),
        failed=failed,
    )


def _message_path(page: Page) -> Path:
    name = page.param("name")
    directory = _mailbox_dir(page)
    path = directory / name
    if (
        not MESSAGE_NAME.match(name)
        or path.resolve().parent != directory.resolve()
        or not path.is_file()
    ):
        raise NotFound("message", name)
    return path


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


@routes.get(MAILBOX + "/{name}")
def mailbox_message(page: Page) -> Response:
    _require_site_admin(page)
    path = _message_path(page)
    message = _parse(path, headers_only=False)
    return page.render(
        "stafftools/message.html",
        name=path.name,
        headers=[(h, str(message[h])) for h in HEADERS if message[h] is not None],
        subject=str(message["Subject"] or "(no subject)"),
        text=_part(message, "plain"),
        html=_part(message, "html"),
    )


@routes.get(MAILBOX + "/{name}/html")
def mailbox_message_html(page: Page) -> Response:
    """The HTML part alone, for the sandboxed frame of the message page."""
    _require_site_admin(page)
    html = _part(_parse(_message_path(page), headers_only=False), "html")
    if html is None:
        raise NotFound("HTML part")
    return Response(
        html,
        media_type="text/html",
        headers={
            "Content-Security-Policy": HTML_PART_POLICY,
            "X-Frame-Options": "SAMEORIGIN",
        },
    )
