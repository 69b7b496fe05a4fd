"""``mail.compose`` writes the SMTP bytes of an email itself when its bodies allow ``7bit``:
what a client reads from them is what it reads from ``build_message``'s email."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# ---- the shortcuts compose and the SMTP client take ----------------------------------------


def folded(name: str, value: str) -> str:
    return policy.SMTP.header_factory(name, value).fold(policy=policy.SMTP)


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=90))
def test_a_plain_subject_is_written_as_the_email_package_writes_it(value: str) -> None:
    assert mail._header("Subject", value) == folded("Subject", value)


@given(
    st.datetimes(min_value=datetime(1970, 1, 1), timezones=st.just(UTC)),
    st.integers(min_value=1, max_value=10**12),
    st.from_regex(r"([a-z0-9][a-z0-9-]{0,20}\.){0,3}[a-z]{2,8}", fullmatch=True),
)
def test_patgates_date_and_message_id_are_written_as_the_email_package_writes_them(
    date: datetime, outbox_id: int, host: str
) -> None:
    msg_id = mail.message_id(outbox_id, date, f"https://{host}")
    for name, value in (("Date", format_datetime(date)), ("Message-ID", msg_id)):
        assert mail._header(name, value) == folded(name, value)
        if len(f"{name}: {value}") <= 78:  # else folded
            assert folded(name, value) == f"{name}: {value}\r\n"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Date", "0"),
        ("Date", "Thu, 01 Jan 0099 00:00:00 +0000"),
        ("Message-ID", "no-brackets@x"),
        ("Message-ID", "<a@b..c>"),
        ("Subject", "=?x?="),
    ],
)
def test_other_values_take_the_email_packages_way(name: str, value: str) -> None:
    assert mail._header(name, value) == folded(name, value)


@given(
    st.binary(max_size=200)
    | st.lists(st.sampled_from([b".", b"\r\n", b"\n", b"a", b"\r"])).map(b"".join)
)
def test_dot_stuffing_is_smtplibs(data: bytes) -> None:
    assert mail.dot_stuff(data) == smtplib._quote_periods(data)  # type: ignore[attr-defined]
