"""The request lifecycle (SPEC §4): one method per transition, each audited and notified in
the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, exists, func, insert, literal_column, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value

from patgate.accounts.models import User
from patgate.approvals.models import (
    Grant,
    GrantPermission,
    GrantRepository,
    RequestPermission,
    RequestRepository,
    TokenRequest,
)
from patgate.approvals.states import GrantState, RequestState, can_move
from patgate.audit import services as audit
from patgate.authz.decision import Actions, SessionPrincipal, decide
from patgate.context import Actor, Context
from patgate.db import MAX_ID, is_storable_id
from patgate.errors import Forbidden, InvalidInput, InvalidTransition, NotFound
from patgate.notifications import services as outbox
from patgate.orgs.models import Membership, Organization, Role
from patgate.orgs.services import effective_policies, org_facts
from patgate.repos.models import Repository
from patgate.tokens.models import FineGrainedToken, TokenRepository
from patgate.tokens.permissions import CATALOGUE, LEVEL_RANK

MAX_BULK = 100
MAX_REASON = 1024


# ---- who may decide ---------------------------------------------------------------------


def require_owner(ctx: Context, org: Organization, actor: Actor) -> None:
    """Raise :class:`Forbidden` unless ``actor`` may review this organization's tokens.

    People must be owners of this organization (``decide``); an app's bot was authorized by
    its installation's permission at the API, and the CLI operator is trusted.
    """
    if actor.kind != "user":
        return
    from patgate.authz.services import user_facts

    user = ctx.session.get(User, actor.id)
    if user is None:
        raise Forbidden(f"{actor.login} is not an owner of {org.login}")
    decision = decide(
        SessionPrincipal(user_facts(ctx, user)), Actions.ADMINISTER_ORG, org_facts(ctx, org),
        now=ctx.now,
    )  # fmt: skip
    if not decision.allowed:
        raise Forbidden(f"only owners of {org.login} can review its personal access tokens")


# ---- opening requests -------------------------------------------------------------------


def open_request(
    ctx: Context,
    token: FineGrainedToken,
    org: Organization,
    *,
    reason: str | None,
    actor: Actor,
    notify_approval: bool = False,
) -> TokenRequest:
    """Ask ``org`` for the token's current settings. Approved at once when the creator is
    an owner or the organization does not require approval; pending otherwise."""
    request = TokenRequest(
        token_id=token.id,
        org_id=org.id,
        requester_id=token.user_id,
        state=RequestState.PENDING,
        reason=reason,
        repository_selection=token.repository_selection,
        permissions=dict(token.permissions),
        created_at=ctx.now,
    )
    ctx.session.add(request)
    ctx.session.flush()
    repo_ids = _token_repository_ids(ctx, token)
    ctx.session.add_all(RequestRepository(request_id=request.id, repository_id=r) for r in repo_ids)
    ctx.session.flush()
    _insert(ctx, RequestPermission, _request_permission_rows([request]))
    creator = ctx.session.get(User, token.user_id)
    audit.record(
        ctx, "personal_access_token.request_created", actor=actor, org=org, user=creator,
        token_id=token.id, request_id=request.id,
    )  # fmt: skip
    _webhook(ctx, org, "created", request, sender=creator)
    owner_created = ctx.session.get(Membership, (org.id, token.user_id))
    if (owner_created is not None and owner_created.role == Role.OWNER) or not effective_policies(
        ctx, org
    ).approval_required:
        _approve(
            ctx, org, [request], reviewer=None, reason=None, actor=actor, email=notify_approval
        )
    return request


def on_token_updated(
    ctx: Context, token: FineGrainedToken, org: Organization, *, reason: str | None, actor: Actor
) -> TokenRequest | None:
    """After an edit: a pending request for older settings is cancelled; a new request is
    opened if the token now asks for more than its active grant (or has none)."""
    pending = _pending_of(ctx, token, org, lock=True)
    if pending is not None:
        _cancel(ctx, org, pending, actor=actor, why="superseded")
    grant = active_grant_of(ctx, token, org)
    if grant is not None and not _asks_more(ctx, token, grant):
        return None
    return open_request(ctx, token, org, reason=reason, actor=actor)


def on_token_deleted(
    ctx: Context, token: FineGrainedToken, org: Organization, *, actor: Actor
) -> None:
    pending = _pending_of(ctx, token, org, lock=True)
    if pending is not None:
        _cancel(ctx, org, pending, actor=actor, why="token_deleted")
    grant = active_grant_of(ctx, token, org, lock=True)
    if grant is not None:
        _revoke(ctx, org, grant, actor=actor, email=False)


# ---- decisions --------------------------------------------------------------------------


def approve(
    ctx: Context,
    org: Organization,
    request_ids: Sequence[int],
    *,
    actor: Actor,
    reason: str | None = None,
) -> list[TokenRequest]:
    """Approve pending requests, all or none (SPEC §6: atomic bulk).

    Raises :class:`Forbidden` (not an owner), :class:`InvalidInput` (no ids, too many, reason
    too long) and :class:`InvalidTransition` naming every unknown or already decided id.
    """
    requests = _lock_pending(ctx, org, request_ids, actor=actor, reason=reason)
    reviewer = ctx.session.get(User, actor.id) if actor.kind == "user" else None
    _approve(ctx, org, requests, reviewer=reviewer, reason=reason, actor=actor, email=True)
    return requests


def deny(
    ctx: Context,
    org: Organization,
    request_ids: Sequence[int],
    *,
    actor: Actor,
    reason: str | None = None,
) -> list[TokenRequest]:
    """Deny pending requests, all or none; the reason is stored and sent to each creator."""
    requests = _lock_pending(ctx, org, request_ids, actor=actor, reason=reason)
    reviewer = ctx.session.get(User, actor.id) if actor.kind == "user" else None
    _decide_all(ctx, requests, RequestState.DENIED, reviewer=reviewer, reason=reason)
    facts = _Facts.load(ctx, org, requests, revoking=False)
    entries: list[dict[str, Any]] = []
    messages: list[tuple[str, dict[str, Any]]] = []
    for request in requests:
        creator = facts.creators.get(request.requester_id)
        entry = audit.entry(
            ctx, "personal_access_token.request_denied", actor=actor, org=org, user=creator,
            token_id=request.token_id, request_id=request.id, reason=reason,
        )  # fmt: skip
        entries.append(entry)
        messages += facts.email(ctx, "request_denied", org, request, reason=reason, actor=actor)
        messages += facts.webhooks(ctx, org, "denied", request, sender=reviewer)
    audit.record_all(ctx, entries)
    outbox.enqueue_all(ctx, messages)
    ctx.session.flush()
    return requests


def revoke(
    ctx: Context, org: Organization, grant_ids: Sequence[int], *, actor: Actor
) -> list[Grant]:
    """Revoke active grants, all or none; the tokens keep reading public resources."""
    require_owner(ctx, org, actor)
    ids = _check_ids(grant_ids, "pat_ids")
    # Locked in id order, as _lock_pending does, so that overlapping bulk calls cannot
    # deadlock; populate_existing: what a concurrent revocation committed is what we check.
    grants = {
        g.id: g
        for g in ctx.session.scalars(
            select(Grant)
            .where(Grant.id.in_(_storable(ids)))
            .order_by(Grant.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if g.org_id == org.id  # checked here, not in SQL: see _lock_pending
    }
    bad = [i for i in ids if i not in grants or grants[i].state != GrantState.ACTIVE]
    if bad:
        raise InvalidTransition(
            f"personal access token grants {', '.join(map(str, bad))} "
            "are unknown or already revoked",
            ids=bad,
            resource="PatGrant",
        )
    for grant_id in ids:
        _revoke(ctx, org, grants[grant_id], actor=actor, email=True)
    return [grants[i] for i in ids]


def approve_all_pending(ctx: Context, org: Organization, *, actor: Actor) -> int:
    """Approval switched to not required: every pending request is approved (creators emailed)."""
    pending = ctx.session.scalars(
        _locked(
            select(TokenRequest)
            .where(TokenRequest.org_id == org.id, TokenRequest.state == RequestState.PENDING)
            .order_by(TokenRequest.id)
        )
    ).all()
    # Locked all at once in id order: the chunks below would each lock theirs in turn.
    _lock_replaced_grants(ctx, org, pending)
    for start in range(0, len(pending), MAX_BULK):
        chunk = list(pending[start : start + MAX_BULK])
        _approve(ctx, org, chunk, reviewer=None, reason=None, actor=actor, email=True)
    return len(pending)


def approve_pending_of_owner(ctx: Context, org: Organization, user: User, *, actor: Actor) -> None:
    pending = ctx.session.scalars(
        _locked(
            select(TokenRequest)
            .where(
                TokenRequest.org_id == org.id,
                TokenRequest.requester_id == user.id,
                TokenRequest.state == RequestState.PENDING,
            )
            .order_by(TokenRequest.id)
        )
    ).all()
    _approve(ctx, org, list(pending), reviewer=None, reason=None, actor=actor, email=True)


def end_access_of_member(ctx: Context, org: Organization, user: User, *, actor: Actor) -> None:
    """A member leaves: their grants here are revoked and their pending requests cancelled."""
    token_ids = select(FineGrainedToken.id).where(FineGrainedToken.user_id == user.id)
    for request in ctx.session.scalars(
        _locked(
            select(TokenRequest)
            .where(
                TokenRequest.org_id == org.id,
                TokenRequest.token_id.in_(token_ids),
                TokenRequest.state == RequestState.PENDING,
            )
            .order_by(TokenRequest.id)
        )
    ).all():
        _cancel(ctx, org, request, actor=actor, why="member_removed")
    for grant in ctx.session.scalars(
        _locked(
            select(Grant)
            .where(
                Grant.org_id == org.id,
                Grant.token_id.in_(token_ids),
                Grant.state == GrantState.ACTIVE,
            )
            .order_by(Grant.id)
        )
    ).all():
        _revoke(ctx, org, grant, actor=actor, email=False)


# ---- transitions ------------------------------------------------------------------------


def _decide_all(
    ctx: Context,
    requests: list[TokenRequest],
    target: RequestState,
    *,
    reviewer: User | None,
    reason: str | None,
) -> None:
    """Move locked pending ``requests`` to ``target`` with one ``UPDATE`` (their permission
    rows follow by the foreign key's cascade); the loaded objects are set to match, as if
    loaded after it. One statement, not one per request: ``docs/performance.md``, goal 3."""
    for request in requests:
        _check_move(request, target)
    values = {
        "state": target,
        "decided_at": ctx.now,
        "reviewer_id": reviewer.id if reviewer else None,
        "decision_reason": reason,
    }
    ctx.session.execute(
        update(TokenRequest)
        .where(TokenRequest.id.in_([r.id for r in requests]))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    for request in requests:
        for name, value in values.items():
            set_committed_value(request, name, value)


def _move(row: TokenRequest | Grant, target: RequestState | GrantState) -> None:
    _check_move(row, target)
    row.state = target


def _check_move(row: TokenRequest | Grant, target: RequestState | GrantState) -> None:
    current = (RequestState if isinstance(row, TokenRequest) else GrantState)(row.state)
    if not can_move(current, target):
        raise InvalidTransition(f"cannot move from {current} to {target}", ids=[row.id])


def _approve(
    ctx: Context,
    org: Organization,
    requests: list[TokenRequest],
    *,
    reviewer: User | None,
    reason: str | None,
    actor: Actor,
    email: bool,
) -> list[int]:
    """Approve ``requests`` (pending, this org's): each gets a grant replacing the token's
    previous one, an audit entry, an email to its creator (``email``) and its webhooks.
    Returns the new grants' ids.

    Whatever the number of requests, the reads are a handful of queries and the writes a
    handful of multi-row inserts (``docs/performance.md``, goal 3).
    """
    if not requests:
        return []
    _decide_all(ctx, requests, RequestState.APPROVED, reviewer=reviewer, reason=reason)
    facts = _Facts.load(ctx, org, requests, revoking=True)
    for previous in facts.grants.values():
        # Approval replaces the grant: the new one carries the newly approved settings.
        _move(previous, GrantState.REVOKED)
        previous.revoked_at = ctx.now
    # The revocations reach the database before the new grants (one active grant per token).
    ctx.session.flush()
    grants = [
        {
            "token_id": request.token_id,
            "org_id": org.id,
            "request_id": request.id,
            "state": GrantState.ACTIVE,
            "repository_selection": request.repository_selection,
            "permissions": dict(request.permissions),
            "granted_at": ctx.now,
        }
        for request in requests
    ]
    # One multi-row INSERT: RETURNING comes in no promised order, but each request of a batch
    # has its own token (one pending request per token and organization).
    returned = ctx.session.execute(insert(Grant).returning(Grant.id, Grant.token_id), grants)
    grant_ids = {token_id: grant_id for grant_id, token_id in returned}
    assert len(grant_ids) == len(requests), "two requests of one token in one batch"
    _insert(
        ctx,
        GrantPermission,
        [
            {"grant_id": grant_ids[g["token_id"]], "name": name, "level": level,
             "org_id": org.id, "state": GrantState.ACTIVE, "granted_at": ctx.now}
            for g in grants
            for name, level in g["permissions"].items()
        ],
    )  # fmt: skip
    _insert(
        ctx,
        GrantRepository,
        [
            {"grant_id": grant_ids[request.token_id], "repository_id": repo_id}
            for request in requests
            for repo_id in facts.repository_ids.get(request.id, [])
        ],
    )
    entries: list[dict[str, Any]] = []
    messages: list[tuple[str, dict[str, Any]]] = []
    for request in requests:
        creator = facts.creators.get(request.requester_id)
        entry = audit.entry(
            ctx, "personal_access_token.access_granted", actor=actor, org=org, user=creator,
            token_id=request.token_id, request_id=request.id, pat_id=grant_ids[request.token_id],
        )  # fmt: skip
        entries.append(entry)
        if email:
            messages += facts.email(
                ctx, "request_approved", org, request, reason=reason, actor=actor
            )
        messages += facts.webhooks(ctx, org, "approved", request, sender=reviewer or creator)
    audit.record_all(ctx, entries)
    outbox.enqueue_all(ctx, messages)
    return [grant_ids[r.token_id] for r in requests]


@dataclass(slots=True)
class _Facts:
    """What deciding a batch of requests needs, loaded with one query per kind of row."""

    tokens: dict[int, FineGrainedToken]
    creators: dict[int, User]
    # The token's active grant before the decision (what webhooks compare the request with).
    grants: dict[int, Grant]
    repository_ids: dict[int, list[int]]
    targets: list[tuple[Any, Any]]  # (Installation, App) to send webhooks to
    repositories: dict[int, Repository]
    bodies: Any = None  # payloads.EventBodies, made for the first webhook

    @classmethod
    def load(
        cls, ctx: Context, org: Organization, requests: list[TokenRequest], *, revoking: bool
    ) -> _Facts:
        # Imported here: apps builds on approvals (its API reads requests), not the other way.
        from patgate.apps import services as apps

        token_ids = sorted({r.token_id for r in requests})
        tokens = {
            t.id: t
            for t in ctx.session.scalars(
                select(FineGrainedToken).where(FineGrainedToken.id.in_(token_ids))
            )
        }
        creators = {
            u.id: u
            for u in ctx.session.scalars(
                select(User).where(User.id.in_(sorted({r.requester_id for r in requests})))
            )
        }
        targets = apps.request_event_targets(ctx, org)
        grants: dict[int, Grant] = {}
        if revoking or targets:
            # The org and state checked here, not in SQL: see _lock_pending. Replacing them,
            # they are locked all at once in id order, as revoke() locks them (an approval
            # and a revocation of the same tokens cannot deadlock on PostgreSQL).
            query = select(Grant).where(Grant.token_id.in_(token_ids)).order_by(Grant.id)
            grants = {
                g.token_id: g
                for g in ctx.session.scalars(_locked(query) if revoking else query)
                if g.org_id == org.id and g.state == GrantState.ACTIVE
            }
        repository_ids: dict[int, list[int]] = {}
        subset = [r.id for r in requests if r.repository_selection == "subset"]
        if subset:
            for request_id, repo_id in ctx.session.execute(
                select(RequestRepository.request_id, RequestRepository.repository_id)
                .where(RequestRepository.request_id.in_(subset))
                .order_by(RequestRepository.request_id, RequestRepository.repository_id)
            ):
                repository_ids.setdefault(request_id, []).append(repo_id)
        repositories: dict[int, Repository] = {}
        if targets and repository_ids:
            wanted = sorted({i for ids in repository_ids.values() for i in ids})
            repositories = {
                r.id: r
                for r in ctx.session.scalars(select(Repository).where(Repository.id.in_(wanted)))
            }
        return cls(tokens, creators, grants, repository_ids, targets, repositories)

    def email(
        self,
        ctx: Context,
        template: str,
        org: Organization,
        request: TokenRequest,
        *,
        reason: str | None,
        actor: Actor,
    ) -> list[tuple[str, dict[str, Any]]]:
        """The email to the request's creator, as an outbox message (none without a creator)."""
        token = self.tokens.get(request.token_id)
        creator = self.creators.get(request.requester_id)
        if creator is None or token is None:
            return []
        data = _email_data(ctx, org, token, creator, actor=actor, reason=reason)
        data["request_id"] = request.id
        return [(outbox.EMAIL, outbox.email_payload(template, to=creator.email, data=data))]

    def webhooks(
        self,
        ctx: Context,
        org: Organization,
        action: str,
        request: TokenRequest,
        *,
        sender: User | None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """The request's webhook to each subscribed app, as outbox messages."""
        if not self.targets:
            return []
        from patgate.approvals import payloads
        from patgate.apps import services as apps

        token = self.tokens[request.token_id]
        grant = self.grants.get(request.token_id)
        repositories = sorted(
            (self.repositories[i] for i in self.repository_ids.get(request.id, [])),
            key=lambda r: r.name_key,
        )
        if self.bodies is None:
            self.bodies = payloads.EventBodies(ctx, org)
        messages = []
        for installation, app in self.targets:
            body = self.bodies.body(
                action, request, installation, sender, token=token,
                owner=self.creators.get(request.requester_id),
                granted=grant.permissions if grant is not None else {},
                repositories=repositories,
            )  # fmt: skip
            messages.append(
                (
                    outbox.WEBHOOK,
                    apps.request_event_message(
                        app, installation, org, action, request, sender, body
                    ),
                )
            )
        return messages


def _request_permission_rows(requests: Iterable[TokenRequest]) -> list[dict[str, Any]]:
    """The :class:`RequestPermission` rows of requests just inserted (their state as is)."""
    return [
        {"request_id": r.id, "name": name, "level": level, "org_id": r.org_id,
         "state": r.state, "created_at": r.created_at}
        for r in requests
        for name, level in r.permissions.items()
    ]  # fmt: skip


def _insert(ctx: Context, model: Any, rows: list[dict[str, Any]]) -> None:
    """One multi-row INSERT (executemany), without an ORM object per row."""
    if rows:
        ctx.session.execute(insert(model), rows)


def _cancel(
    ctx: Context, org: Organization, request: TokenRequest, *, actor: Actor, why: str
) -> None:
    _move(request, RequestState.CANCELLED)
    request.decided_at = ctx.now
    creator = ctx.session.get(User, request.requester_id)
    audit.record(
        ctx, "personal_access_token.request_cancelled", actor=actor, org=org, user=creator,
        token_id=request.token_id, request_id=request.id, cause=why,
    )  # fmt: skip
    _webhook(ctx, org, "cancelled", request, sender=creator)
    ctx.session.flush()


def _revoke(ctx: Context, org: Organization, grant: Grant, *, actor: Actor, email: bool) -> None:
    _move(grant, GrantState.REVOKED)
    grant.revoked_at = ctx.now
    grant.revoked_by_id = actor.id if actor.kind == "user" else None
    token = ctx.session.get(FineGrainedToken, grant.token_id)
    creator = ctx.session.get(User, token.user_id) if token else None
    audit.record(
        ctx, "personal_access_token.access_revoked", actor=actor, org=org, user=creator,
        token_id=grant.token_id, request_id=grant.request_id, pat_id=grant.id,
    )  # fmt: skip
    if email and creator is not None and token is not None:
        outbox.enqueue_email(
            ctx,
            "grant_revoked",
            to=creator.email,
            data=_email_data(ctx, org, token, creator, actor=actor, reason=None),
        )
    ctx.session.flush()


def _lock_pending(
    ctx: Context,
    org: Organization,
    request_ids: Sequence[int],
    *,
    actor: Actor,
    reason: str | None,
) -> list[TokenRequest]:
    require_owner(ctx, org, actor)
    ids = _check_ids(request_ids, "pat_request_ids")
    if reason is not None and len(reason) > MAX_REASON:
        raise InvalidInput(
            f"reason is longer than {MAX_REASON} characters", field="reason", resource="PatRequest"
        )
    # Row locks (PostgreSQL) or the write lock (SQLite): a concurrent decision waits, then
    # finds the request decided, so exactly one decision is made. The locks are taken in id
    # order: two bulk decisions over overlapping ids would otherwise deadlock on PostgreSQL.
    # By id alone, the org checked here: given ``org_id = ?`` too, SQLite (no statistics)
    # walks the org's whole index instead of looking the ids up.
    rows = {
        r.id: r
        for r in ctx.session.scalars(
            select(TokenRequest)
            .where(TokenRequest.id.in_(_storable(ids)))
            .order_by(TokenRequest.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if r.org_id == org.id
    }
    bad = [i for i in ids if i not in rows or rows[i].state != RequestState.PENDING]
    if bad:
        raise InvalidTransition(
            f"personal access token requests {', '.join(map(str, bad))} "
            "are unknown or already decided",
            ids=bad,
        )
    return [rows[i] for i in ids]


def _lock_replaced_grants(
    ctx: Context, org: Organization, requests: Sequence[TokenRequest]
) -> None:
    """Lock the active grants that approving ``requests`` replaces, all at once in id order.

    revoke() locks grants in id order; replacing them a batch at a time locks them in batch
    order instead, and an approval of many batches and a bulk revocation of the same tokens
    would deadlock on PostgreSQL.
    """
    token_ids = sorted({r.token_id for r in requests})
    if len(token_ids) > 1:
        ctx.session.scalars(
            _locked(
                select(Grant)
                .where(
                    Grant.org_id == org.id,
                    Grant.token_id.in_(token_ids),
                    Grant.state == GrantState.ACTIVE,
                )
                .order_by(Grant.id)
            )
        ).all()


def _check_ids(ids: Sequence[int], field_name: str) -> list[int]:
    if not ids:
        raise InvalidInput(f"{field_name} is required", field=field_name, code="missing_field")
    if len(ids) > MAX_BULK:
        raise InvalidInput(f"at most {MAX_BULK} ids at once", field=field_name)
    if any(isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in ids):
        raise InvalidInput("ids must be positive integers", field=field_name)
    return list(dict.fromkeys(ids))


def _storable(ids: list[int]) -> list[int]:
    """The ids a row can have (larger ones are unknown, and must not reach a query)."""
    return [i for i in ids if i <= MAX_ID]


# ---- reading ----------------------------------------------------------------------------


def active_grant_of(
    ctx: Context, token: FineGrainedToken, org: Organization, *, lock: bool = False
) -> Grant | None:
    """The token's active grant on ``org``, if any; ``lock`` before changing it."""
    stmt = select(Grant).where(
        Grant.token_id == token.id, Grant.org_id == org.id, Grant.state == GrantState.ACTIVE
    )
    return ctx.session.scalar(_locked(stmt) if lock else stmt)


def _pending_of(
    ctx: Context, token: FineGrainedToken, org: Organization, *, lock: bool = False
) -> TokenRequest | None:
    stmt = select(TokenRequest).where(
        TokenRequest.token_id == token.id,
        TokenRequest.org_id == org.id,
        TokenRequest.state == RequestState.PENDING,
    )
    return ctx.session.scalar(_locked(stmt) if lock else stmt)


def _locked(stmt: Select[Any]) -> Select[Any]:
    # A row about to change may be held by a concurrent decision or revocation. FOR UPDATE
    # waits for it, and PostgreSQL then re-checks the WHERE clause (``state``) against what
    # was committed: a request just approved is no longer found pending (and is not
    # cancelled on top of its approval), a grant just revoked is no longer found active.
    # populate_existing: the session must not keep an older copy of the row.
    return stmt.with_for_update().execution_options(populate_existing=True)


def latest_request_of(ctx: Context, token: FineGrainedToken) -> TokenRequest | None:
    return ctx.session.scalar(
        select(TokenRequest)
        .where(TokenRequest.token_id == token.id)
        .order_by(TokenRequest.id.desc())
        .limit(1)
    )


def _token_repository_ids(ctx: Context, token: FineGrainedToken) -> list[int]:
    return list(
        ctx.session.scalars(
            select(TokenRepository.repository_id).where(TokenRepository.token_id == token.id)
        )
    )


def request_repository_ids(ctx: Context, request: TokenRequest) -> list[int]:
    return list(
        ctx.session.scalars(
            select(RequestRepository.repository_id).where(
                RequestRepository.request_id == request.id
            )
        )
    )


def grant_repository_ids(ctx: Context, grant: Grant) -> list[int]:
    return list(
        ctx.session.scalars(
            select(GrantRepository.repository_id).where(GrantRepository.grant_id == grant.id)
        )
    )


@dataclass(frozen=True, slots=True)
class PermissionChanges:
    """What a request adds or upgrades compared with the grant in force (for the review)."""

    added: dict[str, str]
    upgraded: dict[str, str]
    result: dict[str, str]
    repositories_added: list[int] = field(default_factory=list)


def permission_changes(
    asked: Mapping[str, str], granted: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """``(added, upgraded)``: what ``asked`` has that ``granted`` lacks, and what it asks at
    a higher level."""
    added = {n: lvl for n, lvl in asked.items() if n not in granted}
    upgraded = {
        n: lvl
        for n, lvl in asked.items()
        if n in granted and LEVEL_RANK[lvl] > LEVEL_RANK[granted[n]]
    }
    return added, upgraded


def changes_of(ctx: Context, request: TokenRequest) -> PermissionChanges:
    grant = ctx.session.scalar(
        select(Grant).where(
            Grant.token_id == request.token_id,
            Grant.org_id == request.org_id,
            Grant.state == GrantState.ACTIVE,
        )
    )
    granted: dict[str, str] = dict(grant.permissions) if grant else {}
    added, upgraded = permission_changes(request.permissions, granted)
    granted_repos = set(grant_repository_ids(ctx, grant)) if grant else set()
    repos_added = [r for r in request_repository_ids(ctx, request) if r not in granted_repos]
    if grant is not None and grant.repository_selection == "all":
        repos_added = []
    return PermissionChanges(added, upgraded, dict(request.permissions), repos_added)


def _asks_more(ctx: Context, token: FineGrainedToken, grant: Grant) -> bool:
    for name, level in token.permissions.items():
        if LEVEL_RANK[level] > LEVEL_RANK.get(grant.permissions.get(name, ""), 0):
            return True
    order = {"none": 0, "subset": 1, "all": 2}
    if order[token.repository_selection] > order[grant.repository_selection]:
        return True
    if token.repository_selection == "subset" and grant.repository_selection == "subset":
        return not set(_token_repository_ids(ctx, token)) <= set(grant_repository_ids(ctx, grant))
    return False


@dataclass(frozen=True)
class ListFilters:
    """The filters of GitHub's list endpoints (SPEC §6)."""

    owners: tuple[str, ...] = ()
    repository: str | None = None
    permission: str | None = None
    last_used_before: datetime | None = None
    last_used_after: datetime | None = None
    token_ids: tuple[int, ...] = ()
    direction: str = "desc"


def parse_permission_filter(text: str) -> tuple[str, str]:
    """``issues_read`` → ``("issues", "read")``; raise :class:`InvalidInput` otherwise."""
    name, _, level = text.rpartition("_")
    if name not in CATALOGUE or level not in CATALOGUE[name][1]:
        raise InvalidInput(
            f"permission {text!r} is not a permission name and level such as issues_read",
            field="permission",
        )
    return name, level


@dataclass(frozen=True, slots=True)
class _Listing:
    """What the request list and the grant list differ in."""

    model: Any  # TokenRequest or Grant
    state: str  # the state listed: pending requests, active grants
    time: Any  # the listing's order: created_at or granted_at, then id
    permission: Any  # RequestPermission or GrantPermission
    permission_of: Any  # its parent's id column
    permission_time: Any
    repository_of: Any  # RequestRepository.request_id or GrantRepository.grant_id
    repository_id: Any


_REQUESTS = _Listing(
    TokenRequest, RequestState.PENDING, TokenRequest.created_at,
    RequestPermission, RequestPermission.request_id, RequestPermission.created_at,
    RequestRepository.request_id, RequestRepository.repository_id,
)  # fmt: skip
_GRANTS = _Listing(
    Grant, GrantState.ACTIVE, Grant.granted_at,
    GrantPermission, GrantPermission.grant_id, GrantPermission.granted_at,
    GrantRepository.grant_id, GrantRepository.repository_id,
)  # fmt: skip
# The ``owner`` and ``token_id`` filters name at most 10 owners (50 tokens each) or 50 tokens:
# their matches are found without ORDER BY and put in order here. With an ORDER BY and LIMIT,
# SQLite (which patgate never ANALYZEs) walks the org's index in creation order instead.
_SELECTIVE_LIKELIHOOD = literal_column("0.00001")


def list_pending(
    ctx: Context, org: Organization, filters: ListFilters, *, page: int, per_page: int
) -> tuple[list[tuple[TokenRequest, FineGrainedToken]], int]:
    """A page of the org's pending requests (with their tokens) and the total count."""
    return _list(ctx, org, _REQUESTS, filters, page=page, per_page=per_page)


def list_active_grants(
    ctx: Context, org: Organization, filters: ListFilters, *, page: int, per_page: int
) -> tuple[list[tuple[Grant, FineGrainedToken]], int]:
    """A page of the org's active grants (with their tokens) and the total count."""
    return _list(ctx, org, _GRANTS, filters, page=page, per_page=per_page)


def _list(
    ctx: Context, org: Organization, kind: _Listing, f: ListFilters, *, page: int, per_page: int
) -> tuple[list[Any], int]:
    """Each filter is one index range (SPEC §6's filters, ``docs/performance.md``):

    - ``owner`` and ``token_id`` select a few hundred rows at most: their keys are read
      without an ORDER BY, sorted here, and the page loaded by id;
    - ``permission`` walks the permission rows' index, already in order, and counts there;
    - otherwise the org's (org, state, time) index gives the order and the count.
    """
    model = kind.model
    sqlite = ctx.session.get_bind().dialect.name == "sqlite"
    wheres: list[Any] = []  # on the listed rows beyond org and state
    token_wheres: list[Any] = []

    def selective(condition: Any) -> Any:
        # SQLite has no statistics: say that this condition keeps few rows.
        return func.likelihood(condition, _SELECTIVE_LIKELIHOOD) if sqlite else condition

    if f.owners:
        user_ids = ctx.session.scalars(
            select(User.id).where(User.login_key.in_(sorted({o.lower() for o in f.owners})))
        ).all()
        if not user_ids:
            return [], 0  # unknown logins match nothing
        if model is TokenRequest:
            wheres.append(selective(TokenRequest.requester_id.in_(user_ids)))
        else:
            tokens_of = select(FineGrainedToken.id).where(FineGrainedToken.user_id.in_(user_ids))
            wheres.append(selective(Grant.token_id.in_(tokens_of)))
    if f.token_ids:
        wheres.append(selective(model.token_id.in_(_storable(list(f.token_ids)))))
    if f.repository is not None:
        repo_id = ctx.session.scalar(
            select(Repository.id).where(
                Repository.owner_id == org.id, Repository.name_key == f.repository.lower()
            )
        )
        if repo_id is None:
            return [], 0  # an unknown repository matches nothing
        chosen = select(kind.repository_of).where(kind.repository_id == repo_id)
        wheres.append(
            or_(
                model.repository_selection == "all",
                and_(model.repository_selection == "subset", model.id.in_(chosen)),
            )
        )
    if f.last_used_before is not None:
        token_wheres.append(FineGrainedToken.last_used_at < f.last_used_before)
    if f.last_used_after is not None:
        token_wheres.append(FineGrainedToken.last_used_at > f.last_used_after)
    permission = parse_permission_filter(f.permission) if f.permission is not None else None
    live = (model.org_id == org.id, model.state == kind.state)
    offset = (page - 1) * per_page

    if f.owners or f.token_ids:
        if permission is not None:
            wheres.append(_has_permission(kind, model.id, *permission))
        keys_query = select(model.id, kind.time).where(*live, *wheres)
        if token_wheres:
            keys_query = keys_query.join(
                FineGrainedToken, FineGrainedToken.id == model.token_id
            ).where(*token_wheres)
        keys = sorted(ctx.session.execute(keys_query).all(), key=lambda k: (k[1], k[0]))
        if f.direction != "asc":
            keys.reverse()
        page_ids = [k[0] for k in keys[offset : offset + per_page]]
        if not page_ids:
            return [], len(keys)
        found = {
            row[0].id: tuple(row)
            for row in ctx.session.execute(
                select(model, FineGrainedToken)
                .join(FineGrainedToken, FineGrainedToken.id == model.token_id)
                .where(model.id.in_(page_ids))
            )
        }
        return [found[i] for i in page_ids], len(keys)

    if permission is not None:
        name, level = permission
        p = kind.permission
        by_permission = (
            p.org_id == org.id,
            p.state == kind.state,
            p.name == name,
            p.level == level,
        )
        count_query = select(func.count()).select_from(p).where(*by_permission)
        if wheres or token_wheres:
            count_query = count_query.join(model, model.id == kind.permission_of).where(*wheres)
        order: tuple[Any, Any] = (kind.permission_time, kind.permission_of)
        page_query = (
            select(model, FineGrainedToken)
            .select_from(p)
            .join(model, model.id == kind.permission_of)
            .where(*by_permission, *wheres)
        )
    else:
        count_query = select(func.count()).select_from(model).where(*live, *wheres)
        order = (kind.time, model.id)
        page_query = select(model, FineGrainedToken).where(*live, *wheres)
    page_query = page_query.join(FineGrainedToken, FineGrainedToken.id == model.token_id)
    if token_wheres:
        count_query = count_query.join(
            FineGrainedToken, FineGrainedToken.id == model.token_id
        ).where(*token_wheres)
        page_query = page_query.where(*token_wheres)
    total = ctx.session.scalar(count_query) or 0
    if offset >= total:
        return [], total
    ordering = [c.asc() if f.direction == "asc" else c.desc() for c in order]
    rows = ctx.session.execute(page_query.order_by(*ordering).limit(per_page).offset(offset))
    return [tuple(r) for r in rows], total


def _has_permission(kind: _Listing, row_id: Any, name: str, level: str) -> Any:
    p = kind.permission
    return exists().where(kind.permission_of == row_id, p.name == name, p.level == level)


def get_request(ctx: Context, org: Organization, request_id: int) -> TokenRequest:
    request = ctx.session.get(TokenRequest, request_id) if is_storable_id(request_id) else None
    if request is None or request.org_id != org.id:
        raise NotFound("personal access token request", request_id)
    return request


def get_grant(ctx: Context, org: Organization, grant_id: int) -> Grant:
    grant = ctx.session.get(Grant, grant_id) if is_storable_id(grant_id) else None
    if grant is None or grant.org_id != org.id:
        raise NotFound("personal access token grant", grant_id)
    return grant


def pending_filter_choices(ctx: Context, org: Organization) -> dict[str, list[str]]:
    """The values the UI's Owner, Repository and Permissions dropdowns offer."""
    # The requesters from the (org, state, requester) index first, then their logins: not a
    # join over every pending request.
    requesters = select(TokenRequest.requester_id).where(
        TokenRequest.org_id == org.id, TokenRequest.state == RequestState.PENDING
    )
    owners = ctx.session.scalars(
        select(User.login).where(User.id.in_(requesters.distinct())).order_by(User.login)
    ).all()
    repos = ctx.session.scalars(
        select(Repository.name).where(Repository.owner_id == org.id).order_by(Repository.name_key)
    ).all()
    permissions = [
        f"{name}_{level}"
        for name, (group, levels) in CATALOGUE.items()
        if group.value in ("repository", "organization")
        for level in levels
    ]
    return {"owners": list(owners), "repositories": list(repos), "permissions": permissions}


# ---- notifications ----------------------------------------------------------------------


def _email_data(
    ctx: Context,
    org: Organization,
    token: FineGrainedToken,
    creator: User,
    *,
    actor: Actor,
    reason: str | None,
) -> dict[str, Any]:
    return {
        "org": org.login,
        "token_id": token.id,
        "token_name": token.name,
        "user": creator.login,
        "reviewer": actor.login,
        "reason": reason,
        "token_url": f"{ctx.base_url}/settings/personal-access-tokens/{token.id}",
    }


def _webhook(
    ctx: Context, org: Organization, action: str, request: TokenRequest, *, sender: User | None
) -> None:
    # Imported here: apps builds on approvals (its API reads requests), not the other way.
    from patgate.apps import services as apps

    apps.enqueue_request_event(ctx, org, action, request, sender=sender)
