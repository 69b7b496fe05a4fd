"""The worker's jobs (SPEC §7): claim due outbox messages, deliver them outside any
transaction, record every attempt, retry with backoff; and the daily digest to owners.

A message is claimed by setting a lease (``leased_until``) in a short transaction (rows
locked with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock, taken by the
``BEGIN IMMEDIATE`` of every transaction, serializes claimers). While the lease holds no other
worker takes the message; a worker that dies mid-delivery leaves a lease that runs out, and
the message is delivered again: the only duplicate allowed, with the same ``Message-ID``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from patgate.accounts.models import User
from patgate.approvals.models import RequestRepository, TokenRequest
from patgate.approvals.states import RequestState
from patgate.apps.models import App
from patgate.config import Settings
from patgate.context import Context
from patgate.notifications import mail
from patgate.notifications import services as outbox
from patgate.notifications.models import DeliveryAttempt, MessageState, OutboxMessage
from patgate.orgs.models import Membership, Organization, Role
from patgate.repos.models import Repository
from patgate.runtime import Runtime
from patgate.tokens.models import FineGrainedToken

log = logging.getLogger(__name__)

CLAIM_BATCH = 10
# Longer than a batch of deliveries can take (SMTP and webhook timeouts are 30 s and 10 s);
# a claim whose lease is about to run out is left for the next claimer instead.
LEASE = timedelta(minutes=10)
LEASE_MARGIN = timedelta(minutes=2)
MAX_BACKOFF_SECONDS = 60
PERMANENT_ATTEMPTS = 5
WEBHOOK_TIMEOUT_SECONDS = 10.0
USER_AGENT = "GitHub-Hookshot/patgate"
DEFAULT_DIGEST_HOUR = 9
# X-GitHub-Delivery is a UUID derived from the outbox row: the same on every attempt.
DELIVERY_NAMESPACE = uuid.UUID("5d1c3f0e-8a4b-4b55-9a44-2f6f1b0c7e11")


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    app_id: int
    url: str
    secret: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """A message this worker holds a lease on, detached from any session."""

    id: int
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    leased_until: datetime
    webhook: WebhookTarget | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt gave."""

    succeeded: bool
    permanent: bool = False
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None


# ---- claiming ---------------------------------------------------------------------------


def claim_due(
    runtime: Runtime, *, cutoff: datetime | None = None, limit: int = CLAIM_BATCH
) -> list[Claim]:
    """Lease up to ``limit`` pending messages due at ``cutoff`` (default: now) and return them.

    Messages leased by another worker whose lease has not run out are skipped, as are rows
    another transaction holds locked (PostgreSQL).
    """
    now = runtime.clock.now()
    cutoff = now if cutoff is None else cutoff
    lease = now + LEASE
    with runtime.sessions() as session, session.begin():
        rows = session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.state == MessageState.PENDING,
                OutboxMessage.next_attempt_at <= cutoff,
                or_(OutboxMessage.leased_until.is_(None), OutboxMessage.leased_until < now),
            )
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        claims = []
        for row in rows:
            row.leased_until = lease
            target = None
            if row.kind == outbox.WEBHOOK:
                app = session.get(App, row.payload.get("app_id"))
                if app is not None and app.webhook_url:
                    target = WebhookTarget(app.id, app.webhook_url, app.webhook_secret)
            claims.append(Claim(row.id, row.kind, dict(row.payload), row.created_at, lease, target))
    return claims


def next_due_at(runtime: Runtime) -> datetime | None:
    """When the next pending message becomes due (its retry time, or its lease's end)."""
    now = runtime.clock.now()
    with runtime.sessions() as session:
        free = session.scalar(
            select(func.min(OutboxMessage.next_attempt_at)).where(
                OutboxMessage.state == MessageState.PENDING,
                or_(OutboxMessage.leased_until.is_(None), OutboxMessage.leased_until < now),
            )
        )
        leased = session.scalar(
            select(func.min(OutboxMessage.leased_until)).where(
                OutboxMessage.state == MessageState.PENDING, OutboxMessage.leased_until >= now
            )
        )
    times = [t for t in (free, leased) if t is not None]
    return min(times) if times else None


# ---- delivering -------------------------------------------------------------------------


def deliver(
    claim: Claim, *, settings: Settings, mailer: mail.Mailer, http: httpx.Client
) -> Outcome:
    """Attempt one delivery; never raises for a delivery failure (it is the outcome)."""
    started = time.monotonic()
    if claim.kind == outbox.EMAIL:
        outcome = _send_email(claim, settings, mailer)
    elif claim.kind == outbox.WEBHOOK:
        outcome = _post_webhook(claim, http)
    else:
        outcome = Outcome(False, permanent=True, error=f"unknown message kind {claim.kind!r}")
    duration_ms = int((time.monotonic() - started) * 1000)
    return Outcome(
        outcome.succeeded, outcome.permanent, outcome.status_code, outcome.error, duration_ms
    )


def email_message_id(claim: Claim, settings: Settings) -> str:
    return mail.message_id(claim.id, claim.created_at, settings.base_url)


def _send_email(claim: Claim, settings: Settings, mailer: mail.Mailer) -> Outcome:
    payload = claim.payload
    try:
        message = mail.build_message(
            settings,
            msg_id=email_message_id(claim, settings),
            to=payload["to"],
            template=payload["template"],
            data=payload["data"],
            date=claim.created_at,
        )
        mailer.send(message)
    except Exception as exc:
        return Outcome(
            False,
            permanent=mail.is_permanent(exc),
            status_code=mail.smtp_code(exc),
            error=_describe(exc),
        )
    return Outcome(True, status_code=250 if settings.smtp_url else None)


def delivery_id(claim: Claim) -> str:
    """The ``X-GitHub-Delivery`` of a webhook message: stable across its attempts."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{claim.id}.{int(claim.created_at.timestamp())}"))


def signature(secret: str, body: bytes) -> str:
    """GitHub's ``X-Hub-Signature-256`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_request(claim: Claim) -> tuple[dict[str, str], bytes]:
    """The headers and raw body of a webhook message, as sent on every attempt."""
    assert claim.webhook is not None
    body = json.dumps(claim.payload["body"], separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-GitHub-Event": str(claim.payload["event"]),
        "X-GitHub-Delivery": delivery_id(claim),
        "X-GitHub-Hook-ID": str(claim.webhook.app_id),
        "X-GitHub-Hook-Installation-Target-ID": str(claim.webhook.app_id),
        "X-GitHub-Hook-Installation-Target-Type": "integration",
    }
    if claim.webhook.secret:
        headers["X-Hub-Signature-256"] = signature(claim.webhook.secret, body)
    return headers, body


def _post_webhook(claim: Claim, http: httpx.Client) -> Outcome:
    if claim.webhook is None:
        return Outcome(
            False, permanent=True, error="the app no longer exists or has no webhook URL"
        )
    headers, body = webhook_request(claim)
    try:
        response = http.post(claim.webhook.url, content=body, headers=headers)
    except httpx.TransportError as exc:  # connection refused, timeout, TLS, ...
        return Outcome(False, error=_describe(exc))
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(True, status_code=code)
    # 5xx is the receiver's passing trouble; a 3xx or 4xx answer would be the same next time.
    return Outcome(
        False, permanent=code < 500, status_code=code, error=f"HTTP {code} {response.reason_phrase}"
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


# ---- recording --------------------------------------------------------------------------


def backoff(attempts: int) -> timedelta:
    """The wait before the next try after ``attempts`` failed ones: 1, 2, 4, ... 60 s."""
    return timedelta(seconds=min(MAX_BACKOFF_SECONDS, 2 ** max(0, attempts - 1)))


def record_outcome(runtime: Runtime, claim: Claim, outcome: Outcome) -> None:
    """Record the attempt and move the message on: sent, retried later, or failed."""
    now = runtime.clock.now()
    with runtime.sessions() as session, session.begin():
        message = session.get(OutboxMessage, claim.id, with_for_update=True, populate_existing=True)
        if message is None:
            return
        permanent_before = 0
        if outcome.permanent:
            permanent_before = (
                session.scalar(
                    select(func.count())
                    .select_from(DeliveryAttempt)
                    .where(DeliveryAttempt.message_id == claim.id, DeliveryAttempt.permanent)
                )
                or 0
            )
        session.add(
            DeliveryAttempt(
                message_id=claim.id,
                attempted_at=now,
                succeeded=outcome.succeeded,
                permanent=outcome.permanent,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
        )
        message.attempts += 1
        if outcome.succeeded:
            # Even if our lease ran out and another worker holds it now: it was delivered, and
            # marking it sent keeps that worker's attempt the last one.
            if message.state == MessageState.PENDING:
                message.state = MessageState.SENT
                message.sent_at = now
                message.leased_until = None
                message.last_error = None
            return
        message.last_error = outcome.error
        if message.state != MessageState.PENDING or message.leased_until != claim.leased_until:
            return  # sent, or re-claimed by another worker after our lease ran out: theirs now
        message.leased_until = None
        if outcome.permanent and permanent_before + 1 >= PERMANENT_ATTEMPTS:
            message.state = MessageState.FAILED
            log.warning(
                "outbox message %s given up after %s attempts: %s",
                claim.id,
                message.attempts,
                outcome.error,
            )
        else:
            message.next_attempt_at = now + backoff(message.attempts)


def deliver_due(
    runtime: Runtime,
    *,
    mailer: mail.Mailer,
    http: httpx.Client,
    limit: int = CLAIM_BATCH,
) -> int:
    """Deliver every message due when called; return how many were delivered.

    Messages that fail are rescheduled after the call's start, so one call ends even when
    every delivery fails; messages enqueued meanwhile are the next call's (the worker is
    woken for them).
    """
    cutoff = runtime.clock.now()
    delivered = 0
    while claims := claim_due(runtime, cutoff=cutoff, limit=limit):
        for claim in claims:
            if runtime.clock.now() > claim.leased_until - LEASE_MARGIN:
                continue  # the lease may end mid-delivery; the next claimer takes it
            outcome = deliver(claim, settings=runtime.settings, mailer=mailer, http=http)
            record_outcome(runtime, claim, outcome)
            delivered += outcome.succeeded
    return delivered


def failed_messages(ctx: Context, *, limit: int = 100) -> list[OutboxMessage]:
    """Messages given up after permanent failures, newest first (for site admins)."""
    return list(
        ctx.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.state == MessageState.FAILED)
            .order_by(OutboxMessage.id.desc())
            .limit(limit)
        )
    )


def attempts_of(ctx: Context, message_id: int) -> list[DeliveryAttempt]:
    """Every recorded delivery attempt of one message, oldest first."""
    return list(
        ctx.session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.message_id == message_id)
            .order_by(DeliveryAttempt.id)
        )
    )


# ---- the daily digest -------------------------------------------------------------------


def digest_due(now: datetime, digest_hour: int) -> bool:
    """Whether today's (UTC) digest hour has come."""
    return now.astimezone(UTC).hour >= digest_hour


def next_digest_at(now: datetime, digest_hour: int) -> datetime:
    """The next moment the digest hour comes (today's if it is still ahead, else tomorrow's)."""
    now = now.astimezone(UTC)
    today = now.replace(hour=digest_hour, minute=0, second=0, microsecond=0)
    return today if now < today else today + timedelta(days=1)


def enqueue_digests(ctx: Context, *, force: bool, digest_hour: int = DEFAULT_DIGEST_HOUR) -> int:
    """Queue today's (UTC) digest email to every owner who is not suspended, of every
    organization with pending requests; return how many were queued.

    Before ``digest_hour`` nothing is queued unless ``force``. One email per owner,
    organization and date (``dedupe_key``): calling again the same day queues nothing, and
    after days of downtime only today's is queued.
    """
    now = ctx.now.astimezone(UTC)
    if not force and not digest_due(now, digest_hour):
        return 0
    today = now.date().isoformat()
    org_ids = ctx.session.scalars(
        select(TokenRequest.org_id)
        .where(TokenRequest.state == RequestState.PENDING)
        .distinct()
        .order_by(TokenRequest.org_id)
    ).all()
    queued = 0
    for org_id in org_ids:
        org = ctx.session.get(Organization, org_id)
        if org is None:
            continue
        owners = ctx.session.scalars(
            select(User)
            .join(Membership, Membership.user_id == User.id)
            .where(
                Membership.org_id == org.id,
                Membership.role == Role.OWNER,
                User.suspended_at.is_(None),
            )
            .order_by(User.id)
        ).all()
        if not owners:
            continue
        requests = pending_summary(ctx, org)
        review_url = (
            f"{ctx.base_url}/organizations/{org.login}/settings/personal-access-token-requests"
        )
        for owner in owners:
            data = {
                "org": org.login,
                "owner": owner.login,
                "date": today,
                "requests": requests,
                "review_url": review_url,
            }
            try:
                # A savepoint: a worker and `patgate digest run` racing on PostgreSQL both
                # pass the dedupe check; the loser's unique violation undoes only this row.
                with ctx.session.begin_nested():
                    message = outbox.enqueue_email(
                        ctx,
                        "digest",
                        to=owner.email,
                        data=data,
                        dedupe_key=f"digest:{owner.id}:{org.id}:{today}",
                    )
            except IntegrityError:
                message = None
            queued += message is not None
    return queued


def pending_summary(ctx: Context, org: Organization) -> list[dict[str, Any]]:
    """The org's pending requests as the digest lists them, oldest first."""
    rows = ctx.session.execute(
        select(TokenRequest, FineGrainedToken.name, User.login)
        .join(FineGrainedToken, FineGrainedToken.id == TokenRequest.token_id)
        .join(User, User.id == TokenRequest.requester_id)
        .where(TokenRequest.org_id == org.id, TokenRequest.state == RequestState.PENDING)
        .order_by(TokenRequest.created_at, TokenRequest.id)
    ).all()
    names: dict[int, list[str]] = {}
    subset_ids = [r.id for r, _, _ in rows if r.repository_selection == "subset"]
    if subset_ids:
        for request_id, name in ctx.session.execute(
            select(RequestRepository.request_id, Repository.name)
            .join(Repository, Repository.id == RequestRepository.repository_id)
            .where(RequestRepository.request_id.in_(subset_ids))
            .order_by(Repository.name_key)
        ):
            names.setdefault(request_id, []).append(name)
    base = f"{ctx.base_url}/organizations/{org.login}/settings/personal-access-token-requests"
    return [
        {
            "id": request.id,
            "requester": login,
            "token_name": token_name,
            "repositories": _repositories_text(request, names.get(request.id, [])),
            "permissions": [f"{n}: {lvl}" for n, lvl in sorted(request.permissions.items())],
            "created_at": request.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "age": age_text(ctx.now - request.created_at),
            "url": f"{base}/{request.id}",
        }
        for request, token_name, login in rows
    ]


def _repositories_text(request: TokenRequest, names: list[str]) -> str:
    if request.repository_selection == "all":
        return "all repositories"
    if request.repository_selection == "none":
        return "public repositories only"
    return ", ".join(names) if names else "no repositories"


def age_text(delta: timedelta) -> str:
    """``3 days``, ``5 hours``, ``12 minutes`` or ``less than a minute``."""
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return "less than a minute"
