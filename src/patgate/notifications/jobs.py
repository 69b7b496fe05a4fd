"""The worker's jobs (SPEC §7): claim due outbox messages, deliver them outside any
transaction, record every attempt, retry with backoff; and the daily digest to owners.

Messages are claimed a batch at a time by setting a lease (``leased_until``) in one short
transaction (rows locked with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock,
taken by the ``BEGIN IMMEDIATE`` of every transaction, serializes claimers), and the outcomes
of their attempts are recorded together, at least every second. While the lease holds no other
worker takes the message; a worker that dies mid-batch leaves leases that run out, and the
messages it had delivered but not yet recorded are delivered again: the only duplicate
allowed, with the same ``Message-ID``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import Text, cast, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from patgate.accounts.models import Account, User
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

# Claimed in one transaction; their outcomes are recorded together at least this often.
CLAIM_BATCH = 100
RECORD_EVERY = 100
RECORD_SECONDS = 1.0
# Messages handed over at once, each by a thread of its own (its own SMTP connection): while
# one waits for the server, another is built or sent. Twice as many are queued for them.
SENDERS = 2
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
    # An email's payload (``payload`` left empty) stays JSON text until it is prepared: a
    # batch of digests parsed at once lives long enough to make the cyclic garbage collector
    # sweep the whole heap, again and again.
    payload_json: str | None = None

    def content(self) -> dict[str, Any]:
        """The payload, parsed."""
        return orjson.loads(self.payload_json) if self.payload_json is not None else self.payload


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
    runtime: Runtime, *, cutoff: datetime | None = None, limit: int | None = None
) -> list[Claim]:
    """Lease up to ``limit`` pending messages due at ``cutoff`` (default: now) and return them,
    in one short transaction.

    Messages leased by another worker whose lease has not run out are skipped, as are rows
    another transaction holds locked (PostgreSQL).
    """
    now = runtime.clock.now()
    cutoff = now if cutoff is None else cutoff
    limit = CLAIM_BATCH if limit is None else limit
    lease = now + LEASE
    m = OutboxMessage
    with runtime.sessions() as session, session.begin():
        rows = session.execute(
            select(m.id, m.kind, cast(m.payload, Text), m.created_at)
            .where(
                m.state == MessageState.PENDING,
                m.next_attempt_at <= cutoff,
                or_(m.leased_until.is_(None), m.leased_until < now),
            )
            .order_by(m.next_attempt_at, m.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return []
        session.execute(update(m).where(m.id.in_([r.id for r in rows])).values(leased_until=lease))
        claims = []
        for message_id, kind, payload_json, created_at in rows:
            if kind == outbox.EMAIL:
                claims.append(Claim(message_id, kind, {}, created_at, lease, None, payload_json))
            else:
                claims.append(
                    Claim(message_id, kind, orjson.loads(payload_json), created_at, lease)
                )
        app_ids = {
            c.payload.get("app_id")
            for c in claims
            if c.kind == outbox.WEBHOOK and isinstance(c.payload.get("app_id"), int)
        }
        targets = {
            app.id: WebhookTarget(app.id, app.webhook_url, app.webhook_secret)
            for app in (session.scalars(select(App).where(App.id.in_(app_ids))) if app_ids else ())
            if app.webhook_url
        }
    return [
        replace(c, webhook=targets.get(c.payload.get("app_id"))) if c.kind == outbox.WEBHOOK else c
        for c in claims
    ]


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


@dataclass(frozen=True, slots=True)
class Prepared:
    """A claim made ready to hand over: the email and its bytes on the wire, or the
    webhook's headers and body; or why it cannot be."""

    claim: Claim
    email: mail.Outgoing | None = None
    webhook: tuple[dict[str, str], bytes] | None = None
    failure: Outcome | None = None
    seconds: float = 0.0


def deliver(
    claim: Claim, *, settings: Settings, mailer: mail.Mailer, http: httpx.Client
) -> Outcome:
    """Attempt one delivery; never raises for a delivery failure (it is the outcome)."""
    return transmit(prepare(claim, settings), settings=settings, mailer=mailer, http=http)


def prepare(claim: Claim, settings: Settings) -> Prepared:
    """Render the email or encode the webhook: everything but the sending. Pure CPU, safe in
    another thread; never raises for a message that cannot be built (that is its outcome)."""
    started = time.monotonic()
    try:
        if claim.kind == outbox.EMAIL:
            payload = claim.content()
            outgoing = mail.compose(
                settings,
                msg_id=email_message_id(claim, settings),
                to=payload["to"],
                template=payload["template"],
                data=payload["data"],
                date=claim.created_at,
            )
            prepared = Prepared(claim, email=outgoing)
        elif claim.kind == outbox.WEBHOOK:
            if claim.webhook is None:
                failure = "the app no longer exists or has no webhook URL"
                prepared = Prepared(claim, failure=Outcome(False, permanent=True, error=failure))
            else:
                prepared = Prepared(claim, webhook=webhook_request(claim))
        else:
            failure = f"unknown message kind {claim.kind!r}"
            prepared = Prepared(claim, failure=Outcome(False, permanent=True, error=failure))
    except Exception as exc:  # a template that fails to render: the same next time
        prepared = Prepared(claim, failure=Outcome(False, permanent=True, error=_describe(exc)))
    return Prepared(
        claim, prepared.email, prepared.webhook, prepared.failure, time.monotonic() - started
    )


def transmit(
    prepared: Prepared, *, settings: Settings, mailer: mail.Mailer, http: httpx.Client
) -> Outcome:
    """Hand a prepared message over (SMTP, the mailbox, the webhook's receiver); never
    raises for a delivery failure (it is the outcome)."""
    started = time.monotonic()
    if prepared.failure is not None:
        outcome = prepared.failure
    elif prepared.email is not None:
        outcome = _send_email(prepared.email, settings, mailer)
    else:
        assert prepared.webhook is not None and prepared.claim.webhook is not None
        outcome = _post_webhook(prepared.claim.webhook.url, *prepared.webhook, http)
    duration_ms = int((time.monotonic() - started + prepared.seconds) * 1000)
    return Outcome(
        outcome.succeeded, outcome.permanent, outcome.status_code, outcome.error, duration_ms
    )


def email_message_id(claim: Claim, settings: Settings) -> str:
    return mail.message_id(claim.id, claim.created_at, settings.base_url)


def _send_email(email: mail.Outgoing, settings: Settings, mailer: mail.Mailer) -> Outcome:
    try:
        mailer.send(email)
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


def _post_webhook(url: str, headers: dict[str, str], body: bytes, http: httpx.Client) -> Outcome:
    try:
        response = http.post(url, content=body, headers=headers)
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
    """Record one attempt (see :func:`record_outcomes`)."""
    record_outcomes(runtime, [(claim, outcome)])


def record_outcomes(
    runtime: Runtime, results: Sequence[tuple[Claim, Outcome]], *, release: Sequence[Claim] = ()
) -> None:
    """Record each attempt and move its message on (sent, retried later, or failed), and give
    up the leases of ``release`` (claimed, not attempted), all in one transaction."""
    if not results and not release:
        return
    now = runtime.clock.now()
    m = OutboxMessage
    ids = [claim.id for claim, _ in results]
    with runtime.sessions() as session, session.begin():
        current = {
            row.id: row
            for row in session.execute(
                select(
                    m.id, m.state, m.attempts, m.next_attempt_at, m.leased_until, m.sent_at,
                    m.last_error,
                )
                .where(m.id.in_(ids))
                .with_for_update()
            )
        }  # fmt: skip
        permanent_ids = [c.id for c, o in results if o.permanent and c.id in current]
        permanent_before: dict[int, int] = {}
        if permanent_ids:
            permanent_before = dict(
                session.execute(  # type: ignore[arg-type]
                    select(DeliveryAttempt.message_id, func.count())
                    .where(DeliveryAttempt.message_id.in_(permanent_ids), DeliveryAttempt.permanent)
                    .group_by(DeliveryAttempt.message_id)
                ).all()
            )
        attempts, changes = [], []
        for claim, outcome in results:
            row = current.get(claim.id)
            if row is None:
                continue  # deleted meanwhile
            attempts.append(
                {
                    "message_id": claim.id,
                    "attempted_at": now,
                    "succeeded": outcome.succeeded,
                    "permanent": outcome.permanent,
                    "status_code": outcome.status_code,
                    "error": outcome.error,
                    "duration_ms": outcome.duration_ms,
                }
            )
            changes.append(_moved_on(row, claim, outcome, now, permanent_before.get(claim.id, 0)))
        if attempts:
            session.execute(insert(DeliveryAttempt), attempts)
            session.execute(update(m), changes)
        if release:
            # Still ours only if our lease is still on it.
            for lease, claims in _by_lease(release).items():
                session.execute(
                    update(m)
                    .where(
                        m.id.in_([c.id for c in claims]),
                        m.state == MessageState.PENDING,
                        m.leased_until == lease,
                    )
                    .values(leased_until=None)
                )


def _moved_on(
    row: Any, claim: Claim, outcome: Outcome, now: datetime, permanent_before: int
) -> dict[str, Any]:
    """The message's columns after this attempt (an UPDATE by primary key)."""
    change = {
        "id": row.id,
        "attempts": row.attempts + 1,
        "state": row.state,
        "next_attempt_at": row.next_attempt_at,
        "leased_until": row.leased_until,
        "sent_at": row.sent_at,
        "last_error": outcome.error,
    }
    if outcome.succeeded:
        # Even if our lease ran out and another worker holds it now: it was delivered, and
        # marking it sent keeps that worker's attempt the last one.
        if row.state == MessageState.PENDING:
            change.update(state=MessageState.SENT, sent_at=now, leased_until=None, last_error=None)
        else:
            change["last_error"] = row.last_error
        return change
    if row.state != MessageState.PENDING or row.leased_until != claim.leased_until:
        return change  # sent, or re-claimed by another worker after our lease ran out: theirs now
    change["leased_until"] = None
    if outcome.permanent and permanent_before + 1 >= PERMANENT_ATTEMPTS:
        change["state"] = MessageState.FAILED
        log.warning(
            "outbox message %s given up after %s attempts: %s",
            claim.id,
            row.attempts + 1,
            outcome.error,
        )
    else:
        change["next_attempt_at"] = now + backoff(row.attempts + 1)
    return change


def _by_lease(claims: Sequence[Claim]) -> dict[datetime, list[Claim]]:
    grouped: dict[datetime, list[Claim]] = {}
    for claim in claims:
        grouped.setdefault(claim.leased_until, []).append(claim)
    return grouped


def deliver_due(
    runtime: Runtime,
    *,
    mailer: mail.Mailer,
    http: httpx.Client,
    limit: int | None = None,
) -> int:
    """Deliver every message due when called; return how many were delivered.

    Messages are claimed ``limit`` (default :data:`CLAIM_BATCH`) at a time and handed over
    :data:`SENDERS` at once; their outcomes are recorded together, in claim order, at least
    every :data:`RECORD_EVERY` deliveries or :data:`RECORD_SECONDS` (a crash re-sends at most
    those and the ones in flight, with the same ``Message-ID`` or ``X-GitHub-Delivery``).
    Messages that fail are rescheduled after the call's start, so one call ends even when
    every delivery fails; messages enqueued meanwhile are the next call's (the worker is woken
    for them).
    """
    cutoff = runtime.clock.now()
    settings = runtime.settings
    outcomes = _Outcomes(runtime)

    def hand_over(claim: Claim) -> Outcome:
        return deliver(claim, settings=settings, mailer=mailer, http=http)

    # Building a message is CPU work and sending it mostly a wait on the other end (a socket
    # wait releases the GIL): two threads keep both busy. A few messages are queued only, so
    # that a batch's built messages never outlive the collector's youngest generation.
    with _batch(mailer), ThreadPoolExecutor(SENDERS, thread_name_prefix="patgate-send") as pool:
        while claims := claim_due(runtime, cutoff=cutoff, limit=limit):
            in_flight: deque[tuple[Claim, Future[Outcome]]] = deque()
            unattempted: list[Claim] = []
            try:
                for index, claim in enumerate(claims):
                    if runtime.clock.now() > claim.leased_until - LEASE_MARGIN:
                        # The lease may end mid-delivery: the rest go back for a fresh claim.
                        unattempted = claims[index:]
                        break
                    in_flight.append((claim, pool.submit(hand_over, claim)))
                    if len(in_flight) >= 2 * SENDERS:
                        outcomes.add(*in_flight.popleft())
                while in_flight:
                    outcomes.add(*in_flight.popleft())
            finally:
                for _, future in in_flight:
                    future.cancel()
            outcomes.record(release=unattempted)
    return outcomes.delivered


class _Outcomes:
    """The attempts of a delivery pass, recorded every :data:`RECORD_EVERY` of them or
    :data:`RECORD_SECONDS`, whichever comes first."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.delivered = 0
        self.pending: list[tuple[Claim, Outcome]] = []
        self.since = time.monotonic()

    def add(self, claim: Claim, attempt: Future[Outcome]) -> None:
        outcome = attempt.result()
        self.pending.append((claim, outcome))
        self.delivered += outcome.succeeded
        if len(self.pending) >= RECORD_EVERY or time.monotonic() - self.since >= RECORD_SECONDS:
            self.record()

    def record(self, *, release: Sequence[Claim] = ()) -> None:
        record_outcomes(self.runtime, self.pending, release=release)
        self.pending, self.since = [], time.monotonic()


def _batch(mailer: mail.Mailer) -> AbstractContextManager[None]:
    batch = getattr(mailer, "batch", None)  # a mailer of a test or plugin may have none
    return batch() if batch is not None else contextlib.nullcontext()


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
    after days of downtime only today's is queued. A few queries for all organizations and
    one multi-row INSERT (``docs/performance.md``, goal 4).
    """
    now = ctx.now.astimezone(UTC)
    if not force and not digest_due(now, digest_hour):
        return 0
    today = now.date().isoformat()
    pending_here = (
        select(TokenRequest.id)
        .where(TokenRequest.org_id == Membership.org_id, TokenRequest.state == RequestState.PENDING)
        .exists()
    )
    owners = ctx.session.execute(
        select(Membership.org_id, User.id, User.login, User.email)
        .join(User, User.id == Membership.user_id)
        .where(Membership.role == Role.OWNER, User.suspended_at.is_(None), pending_here)
        .order_by(Membership.org_id, User.id)
    ).all()
    keys = {
        (org_id, user_id): f"digest:{user_id}:{org_id}:{today}" for org_id, user_id, *_ in owners
    }
    sent = set()
    for chunk in _chunks(list(keys.values())):
        sent.update(
            ctx.session.scalars(
                select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.in_(chunk))
            )
        )
    owed = [o for o in owners if keys[(o.org_id, o.id)] not in sent]
    if not owed:
        return 0
    org_ids = sorted({o.org_id for o in owed})
    logins = dict(
        ctx.session.execute(select(Account.id, Account.login).where(Account.id.in_(org_ids))).all()  # type: ignore[arg-type]
    )
    summaries = _pending_summaries(ctx, {org_id: logins[org_id] for org_id in org_ids})
    rows = []
    for org_id, user_id, login, email in owed:
        org_login = logins[org_id]
        data = {
            "org": org_login,
            "owner": login,
            "date": today,
            "requests": summaries.get(org_id, []),
            "review_url": _review_url(ctx, org_login),
        }
        rows.append(
            {
                "kind": outbox.EMAIL,
                "dedupe_key": keys[(org_id, user_id)],
                "payload": outbox.email_payload("digest", to=email, data=data),
                "state": MessageState.PENDING,
                "attempts": 0,
                "next_attempt_at": ctx.now,
                "created_at": ctx.now,
            }
        )
    # A worker and `patgate digest run` racing on PostgreSQL both pass the check above: the
    # unique dedupe key keeps one of each, and the other's row is skipped, not an error.
    dialect_insert = (
        pg_insert if ctx.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    )
    statement = (
        dialect_insert(OutboxMessage)
        .on_conflict_do_nothing(index_elements=[OutboxMessage.dedupe_key])
        .returning(OutboxMessage.id)
    )
    return len(ctx.session.execute(statement, rows).all())


def pending_summary(ctx: Context, org: Organization) -> list[dict[str, Any]]:
    """The org's pending requests as the digest lists them, oldest first."""
    return _pending_summaries(ctx, {org.id: org.login}).get(org.id, [])


def _pending_summaries(ctx: Context, orgs: dict[int, str]) -> dict[int, list[dict[str, Any]]]:
    """:func:`pending_summary` of each org of ``{id: login}``, with a few queries in all."""
    summaries: dict[int, list[dict[str, Any]]] = {}
    for chunk in _chunks(sorted(orgs)):
        pending = (TokenRequest.org_id.in_(chunk), TokenRequest.state == RequestState.PENDING)
        names: dict[int, list[str]] = {}
        for request_id, name in ctx.session.execute(
            select(RequestRepository.request_id, Repository.name)
            .join(TokenRequest, TokenRequest.id == RequestRepository.request_id)
            .join(Repository, Repository.id == RequestRepository.repository_id)
            .where(*pending, TokenRequest.repository_selection == "subset")
            .order_by(Repository.name_key)
        ):
            names.setdefault(request_id, []).append(name)
        rows = ctx.session.execute(
            select(
                TokenRequest.id,
                TokenRequest.org_id,
                TokenRequest.repository_selection,
                TokenRequest.permissions,
                TokenRequest.created_at,
                FineGrainedToken.name,
                Account.login,
            )
            .join(FineGrainedToken, FineGrainedToken.id == TokenRequest.token_id)
            .join(Account, Account.id == TokenRequest.requester_id)
            .where(*pending)
            .order_by(TokenRequest.org_id, TokenRequest.created_at, TokenRequest.id)
        )
        for request_id, org_id, selection, permissions, created_at, token_name, login in rows:
            summaries.setdefault(org_id, []).append(
                {
                    "id": request_id,
                    "requester": login,
                    "token_name": token_name,
                    "repositories": _repositories_text(selection, names.get(request_id, [])),
                    "permissions": [f"{n}: {lvl}" for n, lvl in sorted(permissions.items())],
                    "created_at": created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "age": age_text(ctx.now - created_at),
                    "url": f"{_review_url(ctx, orgs[org_id])}/{request_id}",
                }
            )
    return summaries


def _review_url(ctx: Context, org_login: str) -> str:
    return f"{ctx.base_url}/organizations/{org_login}/settings/personal-access-token-requests"


def _chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """Pieces small enough for an IN list on every database."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _repositories_text(selection: str, names: list[str]) -> str:
    if selection == "all":
        return "all repositories"
    if selection == "none":
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
