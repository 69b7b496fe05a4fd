"""``SmtpMailer.batch()``: the worker's delivery pass sends over one SMTP connection per
sending thread, opens another when the server closed an idle one (nothing of the message was
sent), and never re-sends a message the server may have received."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from patgate.notifications import mail


class Server:
    """Counts connections (EHLO) and QUITs; ``drop`` closes a connection after that many
    messages were accepted on it, or (``mid_data``) instead of answering that message."""

    def __init__(self) -> None:
        self.ehlo = 0
        self.quit = 0
        self.subjects: list[str] = []
        self.drop_after: int | None = None
        self.drop_mid_data = False
        self._lock = threading.Lock()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self._lock:
            self.ehlo += 1
        session.host_name = hostname
        session.accepted = 0
        return responses

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.quit += 1
        return "221 Bye"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.drop_mid_data and session.accepted == self.drop_after:
            server.transport.close()
            await asyncio.sleep(1)  # never answered
        subject = next(
            line.split(b": ", 1)[1].decode()
            for line in envelope.original_content.splitlines()
            if line.startswith(b"Subject: ")
        )
        with self._lock:
            self.subjects.append(subject)
        session.accepted += 1
        if not self.drop_mid_data and session.accepted == self.drop_after:
            # The server ends an idle connection (a timeout, a limit of messages).
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server() -> Iterator[tuple[Server, str]]:
    handler, port = Server(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, f"smtp://127.0.0.1:{port}"
    controller.stop()


def message(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "patgate@example.com", "mona@example.com", subject
    msg.set_content(".a line that starts with a period\n")
    return msg


def test_a_batch_sends_over_one_connection_per_thread(server: tuple[Server, str]) -> None:
    handler, url = server
    mailer = mail.SmtpMailer(url)
    with mailer.batch():
        threads = [
            threading.Thread(
                target=lambda t=t: [mailer.send(message(f"{t}-{n}")) for n in range(10)]
            )
            for t in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert handler.ehlo == 2
    assert sorted(handler.subjects) == sorted(f"{t}-{n}" for t in range(2) for n in range(10))
    assert handler.quit == 2  # both connections closed at the end of the batch


def test_a_connection_the_server_closed_while_idle_is_opened_again(
    server: tuple[Server, str],
) -> None:
    handler, url = server
    handler.drop_after = 1
    mailer = mail.SmtpMailer(url)
    with mailer.batch():
        mailer.send(message("first"))
        threading.Event().wait(0.3)  # the server has closed the connection meanwhile
        mailer.send(message("second"))
        mailer.send(message("third"))
    assert handler.subjects == ["first", "second", "third"]
    assert handler.ehlo == 2


def test_a_connection_lost_during_data_is_the_attempts_failure(
    server: tuple[Server, str],
) -> None:
    handler, url = server
    handler.drop_after, handler.drop_mid_data = 1, True
    mailer = mail.SmtpMailer(url, timeout=5)
    with mailer.batch():
        mailer.send(message("first"))
        # The server may have the message: sending it again could deliver it twice.
        with pytest.raises(smtplib.SMTPServerDisconnected):
            mailer.send(message("second"))
        assert handler.ehlo == 1
        mailer.send(message("third"))  # the next one opens a new connection
    assert handler.subjects == ["first", "third"]
    assert handler.ehlo == 2
