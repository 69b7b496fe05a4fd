"""No secret leaks: not into a log, an error body, the audit log, the outbox, a webhook or an
email — and the one comparison of a secret made in Python is constant-time.

A full scenario runs on both databases, through every way in: the CLI (``user create
--password-stdin``, ``app create``, ``token create``, ``token regenerate``, ``request deny``,
``digest run``, ``worker --once``), a ``patgate serve`` process, a server in this process
with the root logger at DEBUG (SQL statements and their parameters included), the REST API
(JWTs, installation tokens, PATs, bad tokens, passwords sent as credentials, denials with
their reasons, decisions with reasons) and the web UI (sign-in, wrong passwords, tokens
created and regenerated, an app registered, requests denied, grants revoked), with webhooks
delivered to a receiver of this test and emails to the local mailbox.

Every secret made or sent on the way — fine-grained, classic and installation tokens, JWTs
(forged and expired ones too), passwords (wrong ones too), the private keys' PEM bodies, the
webhook secret — is then looked for in everything that was written or sent: every log line,
every CLI output, every HTTP answer (body and headers), every row of every table (the audit
entries' ``data`` and the outbox payloads included), every webhook delivered and every email.
A secret may appear only where it is handed over once: the output of ``token create`` /
``token regenerate``, the answer to ``POST .../access_tokens``, the page that shows a new
token or a new app's key (and the webhook secret in the ``apps`` table, which signs with it).
"""

from __future__ import annotations

import ast
import base64
import hmac
import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

import patgate
from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.clock import FixedClock, utcnow
from patgate.context import CLI_ACTOR
from patgate.db import Base
from patgate.orgs import services as orgs
from patgate.repos import services as repos
from patgate.runtime import Runtime
from patgate.tokens import format as token_format
from patgate.tokens import services as tokens
from patgate.web.ui import session as ui_session
from patgate.worker import run_worker
from support.principals import CSRF, app_jwt
from support.processes import (
    PATGATE,
    PatgateProcess,
    ServerProcess,
    patgate_env,
    start_server,
)
from support.server import LiveServer

PASSWORDS = {
    "olivia": "olivia-Secret-Passw0rd",
    "mona": "mona-Secret-Passw0rd",
}
WRONG_PASSWORD = "mona-Wrong-Passw0rd-typed"
WEBHOOK_SECRET = "whsec-matrix-0123456789abcdef"
UI_WEBHOOK_SECRET = "whsec-ui-registered-abcdef0123"
WEBHOOK_SECRETS = ("the webhook secret", "the UI-registered app's webhook secret")
PEM_BEGIN, PEM_END = "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----"
REQUESTS = "/orgs/acme/personal-access-token-requests"
UI_ORG = "/organizations/acme/settings"


# ---- what is looked for, and where ------------------------------------------------------


@dataclass
class Sink:
    """Something written or sent: ``allowed`` names the secrets it hands over on purpose."""

    name: str
    text: str
    allowed: frozenset[str] = frozenset()


@dataclass
class Evidence:
    secrets: dict[str, str] = field(default_factory=dict)
    sinks: list[Sink] = field(default_factory=list)

    def secret(self, label: str, value: str) -> str:
        assert value, label
        self.secrets[label] = value
        return value

    def sink(self, name: str, text: str | bytes, *allowed: str) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        self.sinks.append(Sink(name, text, frozenset(allowed)))

    def answer(self, name: str, response: httpx.Response, *allowed: str) -> httpx.Response:
        """Record an HTTP answer: its status line, headers and body."""
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        self.sink(
            f"answer to {name}", f"{response.status_code}\n{headers}\n{response.text}", *allowed
        )
        return response

    def leaks(self) -> list[str]:
        found = []
        for sink in self.sinks:
            for label, value in self.secrets.items():
                if label in sink.allowed:
                    continue
                for form in _forms(value):
                    at = sink.text.find(form)
                    if at >= 0:
                        # Where it was, the secret itself masked (a test log is a log too).
                        context = sink.text[max(0, at - 80) : at + len(form) + 40]
                        context = context.replace(form, f"<{label}>")
                        found.append(f"{label} in {sink.name}: ...{context!r}...")
                        break
        return found


def _forms(secret: str) -> list[str]:
    """The ways a secret can show up in text: as it is, URL-encoded, and — for a PEM — each
    line of its base64 body; for a JWT, its signature alone as well."""
    if "-----BEGIN" in secret:
        return [line for line in secret.splitlines() if len(line) >= 40 and "-----" not in line]
    forms = {secret, quote_plus(secret), quote(secret, safe="")}
    if secret.count(".") == 2 and secret.startswith("eyJ"):
        forms.add(secret.rsplit(".", 1)[1])
    return sorted(forms)


# ---- capturing ----------------------------------------------------------------------------


class Collect(logging.Handler):
    """Every record, formatted with its traceback, as it would reach a log file."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[tuple[str, str]] = []
        self.lock_lines = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception as exc:  # a broken record must not hide the others
            line = f"unformattable record {record.name}: {exc!r} {record.msg!r} {record.args!r}"
        with self.lock_lines:
            self.lines.append((record.name, line))

    def text(self, *, sql: bool | None = None) -> str:
        """Every line; ``sql``: only SQLAlchemy's (True) or only the others' (False)."""
        with self.lock_lines:
            return "\n".join(
                line
                for name, line in self.lines
                if sql is None or name.startswith("sqlalchemy") == sql
            )


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


@pytest.fixture
def logs() -> Iterator[Collect]:
    """The root logger at DEBUG (patgate, SQLAlchemy, httpx, ... propagate to it) and
    uvicorn's loggers (which do not propagate), all into one collector. Call ``attach()``
    again after starting a uvicorn server: its logging configuration drops handlers."""
    handler = Collect()
    root = logging.getLogger()
    # SQLAlchemy pins its logger at WARNING; lowered too: every statement and its parameters.
    names = ("", "sqlalchemy", *UVICORN_LOGGERS)
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]

    def attach() -> None:
        for name in names:
            logger = logging.getLogger(name)
            if handler not in logger.handlers:
                logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)

    handler.attach = attach  # type: ignore[attr-defined]
    attach()
    try:
        yield handler
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
        root.removeHandler(handler)


class Receiver(ThreadingHTTPServer):
    """A webhook receiver: keeps every request's headers and body."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler) -> None:
                length = int(handler.headers.get("content-length") or 0)
                body = handler.rfile.read(length)
                self.received.append((str(handler.headers), body))
                handler.send_response(204)
                handler.end_headers()

            def log_message(handler, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---- the CLI ------------------------------------------------------------------------------


@dataclass
class Cli:
    env: dict[str, str]
    evidence: Evidence

    def __call__(
        self,
        *args: str,
        stdin: str | None = None,
        hands_over: Callable[[Any], dict[str, str]] | None = None,
    ) -> Any:
        """Run ``patgate ARGS --json``; record its output (stdout may hand over the secrets
        that ``hands_over(output)`` names and returns); return the parsed output."""
        done = subprocess.run(
            [PATGATE, *args, "--json"], env=self.env, input=stdin, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"patgate {' '.join(args)}: {done.stderr}"
        output = json.loads(done.stdout)
        allowed: list[str] = []
        if hands_over is not None:
            for label, value in hands_over(output).items():
                self.evidence.secret(label, value)
                assert value in done.stdout
                allowed.append(label)
        name = f"patgate {args[0]} {args[1] if len(args) > 1 else ''}".strip()
        self.evidence.sink(f"stdout of {name}", done.stdout, *allowed)
        self.evidence.sink(f"stderr of {name}", done.stderr)
        return output


# ---- the web UI -----------------------------------------------------------------------------


def csrf(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


def revealed(html: str, prefix: str) -> str:
    """The token a page shows once (the first one starting with ``prefix``)."""
    at = html.find(prefix)
    assert at >= 0, f"the page shows no {prefix}..."
    end = at
    while end < len(html) and (html[end].isalnum() or html[end] == "_"):
        end += 1
    assert token_format.parse(html[at:end]) is not None, html[at:end]
    return html[at:end]


@dataclass
class Browser:
    """An HTTP client of the UI, keeping its session cookie like a browser."""

    url: str
    evidence: Evidence
    who: str
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)

    def get(self, path: str, *allowed: str) -> httpx.Response:
        return self.evidence.answer(f"{self.who}: GET {path}", self.client.get(path), *allowed)

    def post(self, path: str, data: dict[str, Any], *, form_from: str) -> httpx.Response:
        token = csrf(self.get(form_from).text)
        answer = self.client.post(path, data={**data, "authenticity_token": token})
        return self.evidence.answer(f"{self.who}: POST {path}", answer)

    def sign_in(self, login: str, password: str) -> httpx.Response:
        return self.post("/login", {"login": login, "password": password}, form_from="/login")

    def close(self) -> None:
        self.client.close()


# ---- the scenario ---------------------------------------------------------------------------


def token_header(token: str, scheme: str = "token") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


def flipped(token: str) -> str:
    """The token with one character changed (its checksum then fails)."""
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


def stranger_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def expired_jwt(app_id: int, key: str) -> str:
    now = int(time.time())
    return jwt.encode({"iss": str(app_id), "iat": now - 1200, "exp": now - 600}, key, "RS256")


def dump_database(runtime: Runtime) -> dict[str, str]:
    """Every table as text (``repr`` of every row, every column)."""
    import patgate.models  # noqa: F401

    found = {}
    with runtime.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            rows = connection.execute(select(table)).all()
            found[table.name] = "\n".join(repr(tuple(row)) for row in rows)
    return found


@dataclass
class Scenario:
    """Everything the test does, phase by phase, recording what it sees in ``evidence``."""

    evidence: Evidence
    server: LiveServer  # in this process: its logs are the ``logs`` fixture's
    cli: Cli
    receiver: Receiver
    folder: Path
    app: dict[str, Any] = field(default_factory=dict)
    private_key: str = ""
    tokens: dict[str, Any] = field(default_factory=dict)
    installation_tokens: list[str] = field(default_factory=list)
    stranger: str = ""  # a private key of nobody's, to forge JWTs with

    @property
    def runtime(self) -> Runtime:
        return self.server.runtime

    def secret(self, label: str, value: str) -> str:
        return self.evidence.secret(label, value)

    def call(
        self, where: str, api: str, method: str, path: str, headers: dict[str, str],
        *allowed: str, **kwargs: Any,
    ) -> httpx.Response:  # fmt: skip
        answer = httpx.request(method, api + path, headers=headers, timeout=30, **kwargs)
        return self.evidence.answer(f"{where}: {method} {path}", answer, *allowed)

    def setup(self) -> None:
        """People, an organization, an app and tokens: through the CLI (a password on stdin,
        the app's key to a file, tokens printed once) and the services."""
        self.cli("user", "create", "olivia", "--email", "olivia@example.com",
                 "--password-stdin", stdin=PASSWORDS["olivia"] + "\n")  # fmt: skip
        with self.runtime.unit_of_work() as ctx:
            mona = accounts.create_user(ctx, "mona", email="mona@example.com",
                                        password=PASSWORDS["mona"])  # fmt: skip
            org = orgs.create_org(ctx, "acme", owner=accounts.get_user(ctx, "olivia"),
                                  actor=CLI_ACTOR)  # fmt: skip
            orgs.add_member(ctx, org, mona, actor=CLI_ACTOR)
            orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, opt_in=True)
            repos.create_repo(ctx, org, "public-site", visibility="public")
            repos.create_repo(ctx, org, "private-api", visibility="private")
        key_path = self.folder / "governor.pem"
        self.app = self.cli(
            "app", "create", "Governor", "--org", "acme",
            "--permission", "organization_personal_access_token_requests=write",
            "--permission", "organization_personal_access_tokens=write",
            "--permission", "organization_administration=read",
            "--webhook-url", self.receiver.url, "--webhook-secret", WEBHOOK_SECRET,
            "--event", "personal_access_token_request", "--private-key-out", str(key_path),
        )  # fmt: skip
        self.private_key = self.secret("the app's private key", key_path.read_text())
        for name, repositories, permission in (
            ("ci", "all", "issues=write"),
            ("second", "private-api", "issues=read"),
        ):
            self.tokens[name] = self.cli(
                "token", "create", "--user", "mona", "--name", name, "--resource-owner", "acme",
                "--repositories", repositories, "--permission", permission, "--reason", "deploys",
                hands_over=lambda out, name=name: {f"fine-grained token {name}": out["token"]},
            )  # fmt: skip
        self.tokens["classic"] = self.cli(
            "token", "create", "--classic", "--user", "mona", "--name", "classic-ci",
            "--scope", "repo", "--scope", "read:org",
            hands_over=lambda out: {"classic token": out["token"]},
        )  # fmt: skip
        with self.runtime.unit_of_work() as ctx:
            self.tokens["later"] = tokens.create_fine_grained(
                ctx, accounts.get_user(ctx, "mona"), name="later",
                resource_owner=orgs.get_org(ctx, "acme"), repository_selection="all",
                permissions={"issues": "read"}, expires_at=tokens.expiry(ctx.now, "7"),
                reason="for the digest", actor=CLI_ACTOR,
            )  # fmt: skip
        self.secret("fine-grained token later", self.tokens["later"].secret)
        # A token that expired: made a month ago through a runtime whose clock says so.
        past = Runtime(self.runtime.settings, clock=FixedClock(utcnow() - timedelta(days=30)))
        try:
            with past.unit_of_work() as ctx:
                expired = tokens.create_fine_grained(
                    ctx, accounts.get_user(ctx, "mona"), name="expired",
                    resource_owner=accounts.get_user(ctx, "mona"),
                    expires_at=tokens.expiry(ctx.now, "7"), actor=CLI_ACTOR,
                )  # fmt: skip
        finally:
            past.close()
        self.tokens["expired"] = self.secret("an expired fine-grained token", expired.secret)

    def api(self, where: str, api: str) -> None:
        """JWTs, an installation token, PATs, every kind of bad credential, denials."""
        app_id, first = self.app["id"], self.tokens["ci"]["token"]
        classic, second = self.tokens["classic"]["token"], self.tokens["second"]["token"]
        token_jwt = self.secret(f"a JWT ({where})", app_jwt(app_id, self.private_key))
        bearer = token_header(token_jwt, "Bearer")
        assert self.call(where, api, "GET", "/app", bearer).status_code == 200
        label = f"installation token ({where})"
        created = httpx.post(
            f"{api}/app/installations/{self.app['installation_id']}/access_tokens",
            headers=bearer, timeout=30,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        installation = self.secret(label, created.json()["token"])
        self.evidence.answer(f"{where}: POST access_tokens", created, label)
        self.installation_tokens.append(installation)
        as_app = token_header(installation)
        assert self.call(where, api, "GET", REQUESTS, as_app).status_code == 200
        assert self.call(where, api, "GET", "/orgs/acme/audit-log", as_app).status_code == 200
        repo = "/repos/acme/private-api"
        assert self.call(where, api, "GET", repo, token_header(first)).status_code == 404
        assert self.call(where, api, "GET", repo, token_header(classic)).status_code == 200
        # Bad credentials of every kind: each is a secret, or a typo of one.
        bad = {
            "a typo of token ci": flipped(first),
            "a typo of the classic token": flipped(classic),
            "a typo of an installation token": flipped(installation),
            "an unknown classic token": token_format.generate_classic(),
            "an unknown fine-grained token": token_format.generate_fine_grained(),
        }
        for name, value in bad.items():
            self.secret(f"{name} ({where})", value)
        for value in [*bad.values(), self.tokens["expired"], PASSWORDS["mona"]]:
            assert self.call(where, api, "GET", "/user", token_header(value)).status_code == 401
        if not self.stranger:
            self.stranger = self.secret("a stranger's private key", stranger_key())
        forged = self.secret(f"a forged JWT ({where})", app_jwt(app_id, self.stranger))
        expired = self.secret(f"an expired JWT ({where})", expired_jwt(app_id, self.private_key))
        for value in (forged, expired):
            answer = self.call(where, api, "GET", "/app", token_header(value, "Bearer"))
            assert answer.status_code == 401
        basic = base64.b64encode(f"olivia:{PASSWORDS['olivia']}".encode()).decode()
        self.secret(f"olivia's password as Basic credentials ({where})", basic)
        answer = self.call(where, api, "GET", "/user", {"Authorization": f"Basic {basic}"})
        assert answer.status_code == 401
        # Denials, logged with their reasons: a PAT on the App-only endpoints, a token that
        # may not write, an installation that is no user.
        assert self.call(where, api, "GET", REQUESTS, token_header(first)).status_code == 403
        assert self.call(where, api, "GET", "/user", as_app).status_code == 403
        answer = self.call(where, api, "POST", repo + "/issues", token_header(second),
                           json={"title": "no"})  # fmt: skip
        assert answer.status_code == 404

    def decisions(self, sub: ServerProcess) -> None:
        """Decisions with reasons: the app (API) approves, the CLI denies; then uses."""
        first = self.tokens["ci"]
        answer = httpx.post(
            f"{self.server.api}{REQUESTS}/{first['request_id']}",
            headers=token_header(self.installation_tokens[0]),
            json={"action": "approve", "reason": "approved by the governor"}, timeout=30,
        )  # fmt: skip
        self.evidence.answer("approve through the API", answer)
        assert answer.status_code == 204, answer.text
        self.cli("request", "deny", "acme", str(self.tokens["second"]["request_id"]),
                 "--reason", "too broad", "--as", "olivia")  # fmt: skip
        answer = self.call("patgate serve", sub.api, "GET", "/repos/acme/private-api",
                           token_header(first["token"]))  # fmt: skip
        assert answer.status_code == 200
        answer = self.call(
            "in-process", self.server.api, "POST", "/repos/acme/private-api/issues",
            token_header(first["token"]), json={"title": "from the pipeline"},
        )  # fmt: skip
        assert answer.status_code == 201

    def web_ui(self, sub: ServerProcess) -> None:
        """Wrong and right passwords, a token made and one regenerated (each shown once), an
        app registered (its key shown once), a request denied, a grant revoked."""
        mona = Browser(self.server.url, self.evidence, "mona")
        olivia = Browser(sub.url, self.evidence, "olivia")
        try:
            assert mona.sign_in("mona", WRONG_PASSWORD).status_code == 401
            assert mona.sign_in("mona", PASSWORDS["mona"]).status_code == 303
            made = mona.post(
                "/settings/personal-access-tokens",
                {"name": "from-the-ui", "resource_owner": "acme", "expiration": "30",
                 "repository_selection": "all", "permission.issues": "read",
                 "reason": "made in the UI"},
                form_from="/settings/personal-access-tokens/new",
            )  # fmt: skip
            assert made.status_code == 303, made.text
            label = "fine-grained token from the UI"
            page = mona.client.get("/settings/personal-access-tokens")
            shown = self.secret(label, revealed(page.text, "github_pat_"))
            self.evidence.answer("mona: the page showing the new token", page, label)
            assert shown not in mona.get("/settings/personal-access-tokens").text  # once
            regenerate = f"/settings/tokens/{self.tokens['classic']['id']}/regenerate"
            answer = mona.post(regenerate, {"expiration": "30"}, form_from=regenerate)
            assert answer.status_code == 303, answer.text
            label = "regenerated classic token"
            page = mona.client.get("/settings/tokens")
            renewed = self.secret(label, revealed(page.text, "ghp_"))
            self.evidence.answer("mona: the page showing the regenerated token", page, label)
            old = self.tokens["classic"]["token"]  # stopped working
            answer = self.call("in-process", self.server.api, "GET", "/user", token_header(old))
            assert answer.status_code == 401
            answer = self.call("patgate serve", sub.api, "GET", "/user", token_header(renewed))
            assert answer.status_code == 200

            assert olivia.sign_in("olivia", PASSWORDS["olivia"]).status_code == 303
            with self.runtime.unit_of_work() as ctx:
                acme = orgs.get_org(ctx, "acme")
                newest = tokens.fine_grained_of(ctx, accounts.get_user(ctx, "mona"))[0]
                request = approvals.latest_request_of(ctx, newest)
                grant = approvals.active_grant_of(
                    ctx, tokens.get_fine_grained(ctx, self.tokens["ci"]["id"]), acme
                )
                assert newest.name == "from-the-ui" and request is not None and grant is not None
                request_id, grant_id = request.id, grant.id
            review = f"{UI_ORG}/personal-access-token-requests/{request_id}"
            answer = olivia.post(review + "/deny", {"reason": "not from the UI"}, form_from=review)
            assert answer.status_code == 303, answer.text
            active = f"{UI_ORG}/personal-access-tokens-active"
            answer = olivia.post(active + "/revoke", {"grant_ids": [grant_id]}, form_from=active)
            assert answer.status_code == 303, answer.text
            registered = olivia.post(
                f"{UI_ORG}/apps",
                {"name": "Second App", "webhook_url": self.receiver.url,
                 "webhook_secret": UI_WEBHOOK_SECRET, "events": "personal_access_token_request",
                 "permission.organization_personal_access_token_requests": "read",
                 "install": "on"},
                form_from=f"{UI_ORG}/apps/new",
            )  # fmt: skip
            assert registered.status_code == 303, registered.text
            page = olivia.client.get(registered.headers["location"])
            label = "the UI-registered app's private key"
            begin, end = page.text.index(PEM_BEGIN), page.text.index(PEM_END) + len(PEM_END)
            self.secret(label, page.text[begin:end])
            self.evidence.answer("olivia: the page showing the new app's key", page, label)
            assert PEM_BEGIN not in olivia.get(registered.headers["location"]).text  # once
            answer = olivia.post("/logout", {}, form_from="/")
            assert answer.status_code == 303
        finally:
            mona.close()
            olivia.close()

    def regenerate(self, sub: ServerProcess) -> None:
        """A new secret through the CLI: the old one is then a bad credential."""
        old = self.tokens["ci"]["token"]
        renewed = self.cli(
            "token", "regenerate", str(self.tokens["ci"]["id"]),
            hands_over=lambda out: {"regenerated token ci": out["token"]},
        )  # fmt: skip
        assert self.call("patgate serve", sub.api, "GET", "/user", token_header(old)
                         ).status_code == 401  # fmt: skip
        assert self.call("patgate serve", sub.api, "GET", "/user", token_header(renewed["token"])
                         ).status_code == 200  # fmt: skip

    def deliveries(self, sub: ServerProcess) -> None:
        """The digest, a ``patgate worker --once``, more events, then a worker here."""
        self.cli("digest", "run", "--now")
        worker = PatgateProcess("worker", ["worker", "--once"], self.cli.env,
                                self.folder / "worker.log")  # fmt: skip
        worker.start()
        assert worker.process is not None
        assert worker.process.wait(120) == 0, worker.log()
        self.evidence.sink("the output of patgate worker --once", worker.log())
        by_the_worker = len(self.receiver.received)
        assert by_the_worker > 0
        answer = httpx.post(
            f"{sub.api}{REQUESTS}", headers=token_header(self.installation_tokens[1]),
            json={"pat_request_ids": [self.tokens["later"].request.id], "action": "deny",
                  "reason": "denied by the governor"}, timeout=30,
        )  # fmt: skip
        self.evidence.answer("deny through the API", answer)
        assert answer.status_code == 202, answer.text
        assert run_worker(self.runtime, once=True) > 0
        assert len(self.receiver.received) > by_the_worker


def test_no_secret_reaches_a_log_a_body_a_table_a_webhook_or_an_email(
    backend: str,
    database_url: str,
    live_server: Callable[..., LiveServer],
    logs: Collect,
    receiver: Receiver,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    evidence = Evidence()
    mailbox = tmp_path / "mail"
    server = live_server(mailbox_dir=mailbox)
    logs.attach()  # type: ignore[attr-defined]  (uvicorn's access log on, everything at DEBUG)
    env = patgate_env(database_url, mailbox_dir=mailbox)
    scenario = Scenario(evidence, server, Cli(env, evidence), receiver, tmp_path)
    for login, password in PASSWORDS.items():
        evidence.secret(f"{login}'s password", password)
    evidence.secret("a wrong password", WRONG_PASSWORD)
    for label, value in zip(WEBHOOK_SECRETS, (WEBHOOK_SECRET, UI_WEBHOOK_SECRET), strict=True):
        evidence.secret(label, value)

    scenario.setup()
    sub = start_server(env, tmp_path, "serve")
    try:
        scenario.api("in-process", server.api)
        scenario.api("patgate serve", sub.api)
        scenario.decisions(sub)
        scenario.web_ui(sub)
        scenario.regenerate(sub)
        scenario.deliveries(sub)
    finally:
        sub.stop()
    serve_log = sub.log(tail=100_000_000)
    evidence.sink("the log of patgate serve", serve_log)

    # -- everything that was written or sent
    evidence.sink("the logs of this process (root at DEBUG, uvicorn)", logs.text(sql=False))
    # SQLAlchemy's statement log (what ``echo`` shows: statements, parameters, rows) shows
    # what the database holds, and the database holds the webhook secrets (it signs with
    # them): those two may appear there, nothing else (no token, JWT, password or key).
    evidence.sink("SQLAlchemy's statement log at DEBUG", logs.text(sql=True), *WEBHOOK_SECRETS)
    out, err = capfd.readouterr()
    evidence.sink("this process's stdout", out)
    evidence.sink("this process's stderr", err)
    for table, text in dump_database(server.runtime).items():
        evidence.sink(f"the table {table}", text, *(WEBHOOK_SECRETS if table == "apps" else ()))
    for headers, body in receiver.received:
        evidence.sink("a webhook delivered", headers + "\n" + body.decode())
    emails = sorted(mailbox.glob("*.eml"))
    assert emails, "no email reached the mailbox"
    for path in emails:
        raw = path.read_bytes()
        message = BytesParser(policy=policy.default).parsebytes(raw)
        parts = [p.get_content() for p in message.walk() if p.get_content_maintype() == "text"]
        # As stored, and decoded (a part may be quoted-printable or base64 on disk).
        evidence.sink(f"the email {path.name}", raw.decode(errors="replace") + "\n".join(parts))

    # The capture is real: each log holds what it should (else this test could not fail).
    assert "denied: not_an_app" in logs.text()  # patgate's denials, with their reason
    assert "INSERT INTO" in logs.text(sql=True)  # SQL at DEBUG
    assert "POST /login" in serve_log  # uvicorn's access log of patgate serve
    assert '"POST /settings/personal-access-tokens HTTP/1.1" 303' in logs.text()
    assert any("personal_access_token_request" in h for h, _ in receiver.received)
    assert any("too broad" in s.text for s in evidence.sinks if s.name.startswith("the email"))
    leaks = evidence.leaks()
    assert not leaks, "secrets found where they must not be:\n" + "\n".join(leaks)


# ---- comparisons of secrets -----------------------------------------------------------------


class _Session:
    def __init__(self, data: dict[str, Any]) -> None:
        self.session = data


def test_the_csrf_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(ui_session.hmac, "compare_digest", spy)
    request: Any = _Session({ui_session.CSRF_KEY: "the-session-token"})
    assert ui_session.csrf_valid(request, "the-session-token")
    assert not ui_session.csrf_valid(request, "the-session-tokeN")
    assert calls == [(b"the-session-token", b"the-session-token"),
                     (b"the-session-token", b"the-session-tokeN")]  # fmt: skip


# Where patgate's own code compares something secret-looking with ``==``, and why that is not
# a timing leak. Token secrets are never compared in Python: the token's SHA-256 is looked up
# through a unique index (``token_hash == digest`` below builds SQL, not a comparison), so the
# time taken says nothing about how much of a guess was right. Passwords are checked by
# argon2's ``verify`` (constant-time), sessions and the reveal cookie by itsdangerous and
# Fernet (HMAC, constant-time), JWTs by PyJWT (RSA signature), the CSRF token by
# ``hmac.compare_digest`` (above).
NOT_SECRET_COMPARISONS = {
    ("authz/services.py", "model.token_hash == digest"): "SQL: an indexed lookup by hash",
    ("authz/services.py", "InstallationToken.token_hash == digest"): "SQL: an indexed lookup",
    ("tokens/format.py", "checksum == base62_crc32(body)"): (
        "the checksum is a public function of the token's text (GitHub's CRC32 scheme): "
        "comparing it tells an attacker nothing they could not compute"
    ),
}
# An identifier is secret-looking if one of its words is one of these, or if it is a hash.
SECRET_WORDS = {"secret", "password", "passwd", "csrf", "signature", "checksum", "hmac"}
SECRET_IDENTIFIERS = {"digest", "hexdigest", "token_hash", "password_hash"}


def _secret_looking(node: ast.AST) -> bool:
    for inner in ast.walk(node):
        name = (
            inner.id
            if isinstance(inner, ast.Name)
            else inner.attr
            if isinstance(inner, ast.Attribute)
            else None
        )
        if name is None:
            continue
        lowered = name.lower()
        if lowered in SECRET_IDENTIFIERS or SECRET_WORDS & set(lowered.strip("_").split("_")):
            return True
    return False


def test_no_secret_is_compared_with_equality_in_python() -> None:
    """Every ``==``/``!=`` in patgate's code with a secret-looking operand is either known not
    to compare a secret (:data:`NOT_SECRET_COMPARISONS`, with the reason) or a failure here."""
    root = Path(patgate.__file__).parent
    found: dict[tuple[str, str], int] = {}
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                continue
            text = ast.get_source_segment(source, node) or ""
            operands = [node.left, *node.comparators]
            if any(
                isinstance(o, ast.Constant) and o.value is None for o in operands
            ):  # ``x == None`` compares nothing secret
                continue
            if any(_secret_looking(o) for o in operands):
                found[(str(path.relative_to(root)), " ".join(text.split()))] = node.lineno
    unexplained = sorted(set(found) - set(NOT_SECRET_COMPARISONS))
    assert not unexplained, "secret-looking values compared with ==/!= (use " + (
        "hmac.compare_digest, or explain below):\n"
        + "\n".join(f"  {where}:{found[(where, text)]}: {text}" for where, text in unexplained)
    )
    # The table is kept honest: every entry still names a comparison that exists.
    assert set(NOT_SECRET_COMPARISONS) <= set(found), sorted(
        set(NOT_SECRET_COMPARISONS) - set(found)
    )
