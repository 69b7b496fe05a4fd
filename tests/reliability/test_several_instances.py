"""Several patgate processes on one PostgreSQL database (SPEC §10, §7): two
``patgate serve --no-worker`` instances and one ``patgate worker``, real processes.

A decision made through instance A is honoured by instance B within one second (B is polled
every 50 ms; the bound is SPEC §10's, not a benchmark), and the worker — the only process
that delivers — puts the creator's email into the local mailbox exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.apps import services as apps
from patgate.config import load_settings
from patgate.context import CLI_ACTOR
from patgate.notifications.models import DeliveryAttempt, MessageState, OutboxMessage
from patgate.orgs import services as orgs
from patgate.repos import services as repos
from patgate.runtime import Runtime
from patgate.tokens import services as tokens
from support.db import listening
from support.env import TEST_SECRET_KEY
from support.processes import (
    PatgateProcess,
    ServerProcess,
    first_time,
    patgate_env,
    start_servers,
    start_worker,
    wait_until,
)

pytestmark = pytest.mark.postgres

# The address in front of the instances (a load balancer's): links and Message-IDs name it.
BASE_URL = "http://patgate.test"
PROPAGATION_BOUND = 1.0
POLL_INTERVAL = 0.05
REQUEST_TIMEOUT = 5.0
DELIVERY_TIMEOUT = 15.0
SETTLE_SECONDS = 1.0  # after a delivery, how long a duplicate is given to show up


@dataclass
class Deployment:
    a: ServerProcess
    b: ServerProcess
    worker: PatgateProcess
    runtime: Runtime  # the test's own, for setting up and for reading the outbox
    mailbox: Path
    latencies: dict[str, tuple[float, float]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def deployment(
    postgres_server: Any, _database_templates: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("deployment")
    url = _database_templates.fresh("postgres", folder)
    mailbox = folder / "mail"
    env = patgate_env(url, base_url=BASE_URL, mailbox_dir=mailbox)
    runtime = Runtime(
        load_settings(
            _env_file=None, database_url=url, secret_key=TEST_SECRET_KEY,
            base_url=BASE_URL, mailbox_dir=folder / "unused-mail",
        )
    )  # fmt: skip
    processes: list[PatgateProcess] = []
    try:
        processes.append(start_worker(env, folder))
        processes.extend(start_servers(env, folder, ["serve-a", "serve-b"]))
        worker, a, b = processes
        # Both instances cache (each has its LISTEN connection); the worker is woken by NOTIFY.
        assert wait_until(lambda: listening(runtime.engine, "patgate_authz") >= 2, timeout=10)
        assert wait_until(lambda: listening(runtime.engine, "patgate_outbox") >= 1, timeout=10)
        found = Deployment(a, b, worker, runtime, mailbox)  # type: ignore[arg-type]
        yield found
        for name, (after, before) in sorted(found.latencies.items()):
            print(
                f"{name}: B honoured it {after * 1000:.0f} ms after A answered "
                f"({before * 1000:.0f} ms after A was asked)"
            )
        for process in processes:
            assert process.alive(), f"{process.name} died:\n{process.log()}"
    finally:
        for process in processes:
            process.stop()
        runtime.close()
        _database_templates.release(url)


# ---- an organization with a member's token and a reviewing app --------------------------


@dataclass
class Setup:
    org: str
    member_email: str
    token_id: int
    secret: str
    request_id: int
    installation_secret: str


def set_up(runtime: Runtime, tag: str) -> Setup:
    with runtime.unit_of_work() as ctx:
        owner = accounts.create_user(ctx, f"own-{tag}", email=f"own-{tag}@example.com")
        member = accounts.create_user(ctx, f"mem-{tag}", email=f"mem-{tag}@example.com")
        org = orgs.create_org(ctx, f"org-{tag}", owner=owner, actor=CLI_ACTOR)
        orgs.add_member(ctx, org, member, actor=CLI_ACTOR)
        orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, opt_in=True)
        repo = repos.create_repo(ctx, org, "priv", visibility="private")
        issued = tokens.create_fine_grained(
            ctx, member, name=f"ci-{tag}", resource_owner=org, repository_selection="subset",
            repositories=[repo], permissions={"issues": "read"},
            expires_at=ctx.now + timedelta(days=30), reason="ci", actor=CLI_ACTOR,
        )  # fmt: skip
        app, _key = apps.create_app(
            ctx, name=f"reviewer-{tag}", owner_org=org, actor=CLI_ACTOR,
            permissions={"organization_personal_access_token_requests": "write",
                         "organization_personal_access_tokens": "write"},
        )  # fmt: skip
        installation = apps.install(ctx, app, org, actor=CLI_ACTOR)
        _, installation_secret = apps.create_installation_token(ctx, installation)
        return Setup(
            org.login,
            member.email,
            issued.token.id,
            issued.secret,
            issued.request.id,
            installation_secret,
        )


def get_repo(server: ServerProcess, setup: Setup) -> httpx.Response:
    return httpx.get(
        f"{server.api}/repos/{setup.org}/priv",
        headers={"Authorization": f"Bearer {setup.secret}"},
        timeout=REQUEST_TIMEOUT,
    )


def through_a(
    deployment: Deployment, setup: Setup, path: str, body: dict[str, Any]
) -> tuple[float, float]:
    """POST to instance A as the reviewing app; return the moments just before it was asked
    and just after it answered (A commits, then answers: the commit lies in between)."""
    asked_at = time.monotonic()
    answer = httpx.post(
        f"{deployment.a.api}/orgs/{setup.org}{path}", json=body, timeout=REQUEST_TIMEOUT,
        headers={"Authorization": f"token {setup.installation_secret}"},
    )  # fmt: skip
    assert answer.status_code == 204, answer.text
    return asked_at, time.monotonic()


def honoured_by_b(deployment: Deployment, name: str, made: tuple[float, float], check: Any) -> None:
    """B (polled every 50 ms) honours the change within a second of A's answer, which
    follows A's commit by a few milliseconds."""
    seen_at = first_time(check, interval=POLL_INTERVAL, timeout=5.0)
    assert seen_at is not None, f"B never honoured the {name}:\n{deployment.b.log()}"
    asked_at, answered_at = made
    elapsed = max(0.0, seen_at - answered_at)
    deployment.latencies[name] = (elapsed, seen_at - asked_at)
    assert elapsed < PROPAGATION_BOUND, f"B honoured the {name} {elapsed:.3f} s after A's commit"


# ---- the emails -------------------------------------------------------------------------


def mailbox(deployment: Deployment, to: str) -> list[EmailMessage]:
    parser = BytesParser(policy=policy.default)
    messages = []
    for path in sorted(deployment.mailbox.glob("*.eml")):
        message = parser.parsebytes(path.read_bytes())
        if message["To"] == to:
            messages.append(message)  # type: ignore[arg-type]
    return messages


def delivered_once(deployment: Deployment, to: str, template: str) -> EmailMessage:
    """The one email of ``template`` to ``to``: one outbox row, sent with one attempt, one
    file in the mailbox — also after giving a duplicate time to show up."""

    def rows() -> list[tuple[OutboxMessage, int]]:
        with deployment.runtime.unit_of_work() as ctx:
            found = [
                m
                for m in ctx.session.scalars(select(OutboxMessage))
                if m.payload.get("template") == template and m.payload.get("to") == to
            ]
            return [
                (
                    m,
                    int(
                        ctx.session.scalar(
                            select(func.count()).where(DeliveryAttempt.message_id == m.id)
                        )
                        or 0
                    ),
                )
                for m in found
            ]

    def sent() -> bool:
        found = rows()
        return len(found) == 1 and found[0][0].state == MessageState.SENT

    assert wait_until(sent, timeout=DELIVERY_TIMEOUT), (rows(), deployment.worker.log())
    time.sleep(SETTLE_SECONDS)
    ((message, attempts),) = rows()
    assert (message.state, message.attempts, attempts) == (MessageState.SENT, 1, 1)
    subjects = {
        "request_approved": "was approved by",
        "request_denied": "was denied by",
        "grant_revoked": "revoked the access",
    }
    emails = [m for m in mailbox(deployment, to) if subjects[template] in str(m["Subject"])]
    assert len(emails) == 1, [str(m["Subject"]) for m in mailbox(deployment, to)]
    return emails[0]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()  # type: ignore[no-any-return]


# ---- the tests --------------------------------------------------------------------------


def test_an_approval_then_a_revocation_through_one_instance(deployment: Deployment) -> None:
    setup = set_up(deployment.runtime, "granted")
    for server in (deployment.a, deployment.b):
        for _ in range(2):  # the second answer comes from the instance's cache
            assert get_repo(server, setup).status_code == 404

    made = through_a(
        deployment, setup, f"/personal-access-token-requests/{setup.request_id}",
        {"action": "approve"},
    )  # fmt: skip
    honoured_by_b(
        deployment, "approval", made, lambda: get_repo(deployment.b, setup).status_code == 200
    )
    assert get_repo(deployment.a, setup).status_code == 200
    delivered_once(deployment, setup.member_email, "request_approved")

    with deployment.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, setup.org)
        grant = approvals.active_grant_of(ctx, tokens.get_fine_grained(ctx, setup.token_id), org)
        assert grant is not None
        grant_id = grant.id
    for server in (deployment.a, deployment.b):
        for _ in range(2):
            assert get_repo(server, setup).status_code == 200

    made = through_a(deployment, setup, f"/personal-access-tokens/{grant_id}", {"action": "revoke"})
    honoured_by_b(
        deployment, "revocation", made,
        lambda: get_repo(deployment.b, setup).status_code == 404,
    )  # fmt: skip
    assert get_repo(deployment.a, setup).status_code == 404
    email = delivered_once(deployment, setup.member_email, "grant_revoked")
    assert f"{BASE_URL}/" in text_of(email)


def test_a_denial_through_one_instance(deployment: Deployment) -> None:
    setup = set_up(deployment.runtime, "denied")
    b_log = deployment.b.log_path.stat().st_size

    def b_logged(reason: str) -> bool:
        # Pending and denied are both 404 (SPEC §5): B's log of its decision tells them apart.
        with open(deployment.b.log_path, "rb") as log:
            log.seek(b_log)
            return f"denied: not_visible {reason}".encode() in log.read()

    for server in (deployment.a, deployment.b):
        for _ in range(2):
            assert get_repo(server, setup).status_code == 404
    assert wait_until(lambda: b_logged("approval_pending"), timeout=2)
    b_log = deployment.b.log_path.stat().st_size

    made = through_a(
        deployment, setup, f"/personal-access-token-requests/{setup.request_id}",
        {"action": "deny", "reason": "Use the shared deploy key."},
    )  # fmt: skip

    def b_honours_it() -> bool:
        return get_repo(deployment.b, setup).status_code == 404 and b_logged("request_denied")

    honoured_by_b(deployment, "denial", made, b_honours_it)
    assert get_repo(deployment.a, setup).status_code == 404
    email = delivered_once(deployment, setup.member_email, "request_denied")
    assert "Use the shared deploy key." in text_of(email)
    assert str(email["Message-ID"]).endswith("@patgate.test>")
