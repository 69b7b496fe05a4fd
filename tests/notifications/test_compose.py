"""``mail.compose`` writes the SMTP bytes of an email itself when its bodies allow ``7bit``:
what a client reads from them is what it reads from ``build_message``'s email."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest

from patgate.config import load_settings
from patgate.notifications import mail

DATE = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
HEADERS = ("From", "To", "Date", "Message-ID", "Subject", "Auto-Submitted", "MIME-Version")


def digest(rows: int, **extra: Any) -> dict[str, Any]:
    return {
        "org": "acme",
        "owner": "olivia",
        "date": "2026-11-25",
        "review_url": "http://patgate.example/organizations/acme/settings/x",
        "requests": [
            {
                "id": i,
                "requester": f"dev<{i}>",
                "token_name": f"token-{i} & co",
                "repositories": "api, web",
                "permissions": ["contents: read"] if i % 2 else [],
                "created_at": "2026-11-20T00:00:00Z",
                "age": "5 days",
                "url": f"http://patgate.example/r/{i}",
                **extra,
            }
            for i in range(rows)
        ],
    }


def parsed(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    assert message.defects == [] and all(p.defects == [] for p in message.iter_parts())
    return message


@pytest.mark.parametrize(
    ("mail_from", "to", "data", "hand_built"),
    [
        (None, "mona@example.com", digest(3), True),
        ("Patgate Bot <bot@example.com>", "Mona Lisa <mona@example.com>", digest(40), True),
        # A subject that is not ASCII: encoded words, the bodies still 7bit.
        (None, "mona@example.com", digest(1, token_name="“quoted”"), False),
        # A line SMTP cannot carry as it is: the email package encodes the body.
        (None, "mona@example.com", digest(1, repositories="r" * 1200), False),
    ],
)
def test_compose_reads_as_build_message(
    mail_from: str | None, to: str, data: dict[str, Any], hand_built: bool
) -> None:
    settings = load_settings(
        _env_file=None, database_url="sqlite:///unused.db", secret_key="x" * 32, mail_from=mail_from
    )
    kwargs: dict[str, Any] = {"msg_id": "<outbox-7.1@patgate.example>", "to": to, "date": DATE}
    composed = mail.compose(settings, template="digest", data=data, **kwargs)
    built = mail.build_message(settings, template="digest", data=data, **kwargs)

    assert composed.wire is not None
    assert (composed.message is None) == hand_built
    assert composed.recipients == ("mona@example.com",)
    assert composed.sender == ("bot@example.com" if mail_from else "patgate@127.0.0.1")
    assert composed.wire.isascii() and b"\r\n" in composed.wire
    assert max(len(line) for line in composed.wire.split(b"\r\n")) <= 998
    ours, theirs = parsed(composed.wire), parsed(built.as_bytes(policy=policy.SMTP))
    assert [str(ours[h]) for h in HEADERS] == [str(theirs[h]) for h in HEADERS]
    for subtype in ("plain", "html"):
        ours_body, theirs_body = ours.get_body((subtype,)), theirs.get_body((subtype,))
        assert ours_body is not None and theirs_body is not None
        assert ours_body.get_content() == theirs_body.get_content()


def test_a_recipient_that_is_not_ascii_is_left_to_smtplib() -> None:
    settings = load_settings(
        _env_file=None, database_url="sqlite:///unused.db", secret_key="x" * 32
    )
    composed = mail.compose(
        settings, msg_id="<outbox-7.1@patgate.example>", to="møna@example.com",
        template="digest", data=digest(1), date=DATE,
    )  # fmt: skip
    assert composed.wire is None and composed.message is not None


def test_a_line_break_in_a_header_value_is_refused() -> None:
    settings = load_settings(
        _env_file=None, database_url="sqlite:///unused.db", secret_key="x" * 32
    )
    with pytest.raises(ValueError, match="line break"):
        mail.compose(
            settings, msg_id="<outbox-7.1@patgate.example>", to="a@example.com\r\nBcc: b@x",
            template="digest", data=digest(1), date=DATE,
        )  # fmt: skip


def test_a_subject_that_is_not_ascii_is_encoded_over_7bit_bodies() -> None:
    settings = load_settings(
        _env_file=None, database_url="sqlite:///unused.db", secret_key="x" * 32
    )
    data = {
        "org": "acme", "token_id": 1, "token_name": "deploy", "user": "mona",
        "reviewer": "olivia", "reason": None, "request_id": 3, "token_url": "http://x/t/1",
    }  # fmt: skip
    kwargs: dict[str, Any] = {"msg_id": "<outbox-8.1@x>", "to": "mona@example.com", "date": DATE}
    composed = mail.compose(settings, template="request_denied", data=data, **kwargs)
    built = mail.build_message(settings, template="request_denied", data=data, **kwargs)
    assert composed.message is None and composed.wire is not None
    assert b"=?utf-8?" in composed.wire.split(b"\r\n\r\n")[0]
    ours, theirs = parsed(composed.wire), parsed(built.as_bytes(policy=policy.SMTP))
    assert (
        str(ours["Subject"])
        == str(theirs["Subject"])
        == "Your personal access token “deploy” was denied by acme"
    )
    assert ours.get_body(("plain",)).get_content() == theirs.get_body(("plain",)).get_content()  # type: ignore[union-attr]
