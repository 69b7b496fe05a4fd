"""Fine-grained and classic personal access tokens: issue, edit, regenerate, delete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from patgate.accounts.models import Account, User
from patgate.audit import services as audit
from patgate.context import Actor, Context
from patgate.db import is_storable_id
from patgate.errors import AlreadyExists, InvalidInput, NotFound, PolicyRefused
from patgate.orgs.models import AccessPolicy, Organization
from patgate.orgs.services import effective_policies, role_of
from patgate.repos.models import Repository
from patgate.tokens import format as token_format
from patgate.tokens.models import (
    ClassicToken,
    FineGrainedToken,
    RepositorySelection,
    TokenRepository,
)
from patgate.tokens.permissions import CLASSIC_SCOPES, normalize

MAX_TOKENS_PER_USER = 50
MAX_NAME = 40
MAX_SELECTED_REPOSITORIES = 50
MAX_REASON = 1024
DEFAULT_EXPIRY_DAYS = 30


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token and its secret, which is shown once and never stored."""

    token: FineGrainedToken | ClassicToken
    secret: str
    request: Any = None  # the org's TokenRequest for a fine-grained token, if any


def expiry(now: datetime, text: str | None) -> datetime | None:
    """``"30"`` days (``expires_at = now + N * 24 h``), a date ``YYYY-MM-DD`` or ``"none"``.

    ``None`` gives the default of 30 days. Raises :class:`InvalidInput` for anything else.
    """
    if text is None:
        return now + timedelta(days=DEFAULT_EXPIRY_DAYS)
    text = text.strip().lower()
    if text == "none":
        return None
    if text.isdigit():
        days = int(text)
        if not 1 <= days <= 3650:
            raise InvalidInput("expiration must be between 1 and 3650 days", field="expires_at")
        return now + timedelta(days=days)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"expiration {text!r} is not a number of days, a date (YYYY-MM-DD) or none",
            field="expires_at",
        ) from None
    at = datetime.combine(day, time(23, 59, 59), tzinfo=UTC)
    if at <= now:
        raise InvalidInput("expiration date must be in the future", field="expires_at")
    return at


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(f"token name must have 1 to {MAX_NAME} characters", field="name")
    if not name.isprintable():
        raise InvalidInput("token name must not contain control characters", field="name")
    return name


def _check_description(description: str | None) -> str | None:
    if description is not None and len(description) > MAX_REASON:
        raise InvalidInput("description is too long", field="description")
    return description


def _check_reason(reason: str | None) -> str | None:
    if reason is not None and len(reason) > MAX_REASON:
        raise InvalidInput(f"reason is longer than {MAX_REASON} characters", field="reason")
    return reason or None


def check_lifetime_policy(
    ctx: Context, org: Organization, issued_at: datetime, expires_at: datetime | None
) -> None:
    """Raise :class:`PolicyRefused` if a token living ``issued_at``→``expires_at`` breaks
    the organization's maximum lifetime for fine-grained tokens."""
    limit = effective_policies(ctx, org).fine_grained_max_lifetime_days
    if limit is None:
        return
    if expires_at is None or expires_at - issued_at > timedelta(days=limit):
        raise PolicyRefused(
            f"{org.login} requires fine-grained personal access tokens to expire within "
            f"{limit} days"
        )


def _selection(
    ctx: Context, owner: Account, selection: str, repositories: list[Repository]
) -> tuple[str, list[Repository]]:
    if selection not in [s.value for s in RepositorySelection]:
        raise InvalidInput(
            f"repository access must be none, all or a list of repositories, not {selection!r}",
            field="repositories",
        )
    if selection != RepositorySelection.SUBSET:
        return selection, []
    if not repositories:
        raise InvalidInput("select at least one repository", field="repositories")
    if len(repositories) > MAX_SELECTED_REPOSITORIES:
        raise InvalidInput(
            f"select at most {MAX_SELECTED_REPOSITORIES} repositories", field="repositories"
        )
    for repo in repositories:
        if repo.owner_id != owner.id:
            raise InvalidInput(
                f"repository {repo.name} is not owned by {owner.login}", field="repositories"
            )
    return selection, list({r.id: r for r in repositories}.values())


def create_fine_grained(
    ctx: Context,
    user: User,
    *,
    name: str,
    resource_owner: Account,
    repository_selection: str = RepositorySelection.NONE,
    repositories: list[Repository] | None = None,
    permissions: dict[str, str] | None = None,
    expires_at: datetime | None,
    description: str | None = None,
    reason: str | None = None,
    actor: Actor,
) -> IssuedToken:
    """Issue a fine-grained token; when it targets an organization, open its request there.

    Raises :class:`InvalidInput` (name, owner, repositories, permissions), :class:`AlreadyExists`
    (name taken), :class:`PolicyRefused` (not opted in, restricted, lifetime too long, too many
    tokens).
    """
    name = _check_name(name)
    reason = _check_reason(reason)
    _check_description(description)
    count = ctx.session.scalar(
        select(func.count())
        .select_from(FineGrainedToken)
        .where(FineGrainedToken.user_id == user.id)
    )
    if (count or 0) >= MAX_TOKENS_PER_USER:
        raise PolicyRefused(f"a user may have at most {MAX_TOKENS_PER_USER} fine-grained tokens")
    if _find_by_name(ctx, user, name) is not None:
        raise AlreadyExists(f"you already have a token named {name!r}", field="name")
    org = ctx.session.get(Organization, resource_owner.id)
    if org is None and resource_owner.id != user.id:
        raise InvalidInput(
            f"resource owner {resource_owner.login!r} must be you or one of your organizations",
            field="resource_owner",
        )
    if org is not None:
        _check_org_target(ctx, org, user)
        check_lifetime_policy(ctx, org, ctx.now, expires_at)
    if expires_at is not None and expires_at <= ctx.now:
        raise InvalidInput("expiration must be in the future", field="expires_at")
    selection, repos = _selection(ctx, resource_owner, repository_selection, repositories or [])
    secret = token_format.generate_fine_grained()
    token = FineGrainedToken(
        user_id=user.id,
        resource_owner_id=resource_owner.id,
        name=name,
        name_key=name.lower(),
        description=description,
        token_hash=token_format.hash_token(secret),
        repository_selection=selection,
        permissions=normalize(permissions or {}, owner_is_org=org is not None),
        created_at=ctx.now,
        issued_at=ctx.now,
        updated_at=ctx.now,
        expires_at=expires_at,
    )
    ctx.session.add(token)
    ctx.session.flush()
    ctx.session.add_all(TokenRepository(token_id=token.id, repository_id=r.id) for r in repos)
    ctx.session.flush()
    audit.record(
        ctx, "personal_access_token.create", actor=actor, org=org, user=user, token_id=token.id
    )
    request = None
    if org is not None:
        from patgate.approvals import services as approvals

        request = approvals.open_request(ctx, token, org, reason=reason, actor=actor)
    return IssuedToken(token, secret, request)


def _check_org_target(ctx: Context, org: Organization, user: User) -> None:
    if role_of(ctx, org, user) is None:
        raise InvalidInput(
            f"resource owner {org.login!r} must be you or one of your organizations",
            field="resource_owner",
        )
    policies = effective_policies(ctx, org)
    if not policies.opted_in:
        raise PolicyRefused(
            f"{org.login} has not opted in to fine-grained personal access tokens: "
            "an owner must opt in first"
        )
    if policies.fine_grained == AccessPolicy.RESTRICT:
        raise PolicyRefused(f"{org.login} forbids access via fine-grained personal access tokens")


def _find_by_name(ctx: Context, user: User, name: str) -> FineGrainedToken | None:
    return ctx.session.scalar(
        select(FineGrainedToken).where(
            FineGrainedToken.user_id == user.id, FineGrainedToken.name_key == name.lower()
        )
    )


def get_fine_grained(ctx: Context, token_id: int, *, user: User | None = None) -> FineGrainedToken:
    """The token with this id (of ``user`` when given); raise :class:`NotFound`."""
    token = ctx.session.get(FineGrainedToken, token_id) if is_storable_id(token_id) else None
    if token is None or (user is not None and token.user_id != user.id):
        raise NotFound("token", token_id)
    return token


def fine_grained_of(ctx: Context, user: User) -> list[FineGrainedToken]:
    return list(
        ctx.session.scalars(
            select(FineGrainedToken)
            .where(FineGrainedToken.user_id == user.id)
            .order_by(FineGrainedToken.created_at.desc(), FineGrainedToken.id.desc())
        )
    )


def selected_repository_ids(ctx: Context, token: FineGrainedToken) -> set[int]:
    return set(
        ctx.session.scalars(
            select(TokenRepository.repository_id).where(TokenRepository.token_id == token.id)
        )
    )


def update_fine_grained(
    ctx: Context,
    token: FineGrainedToken,
    *,
    repository_selection: str | None = None,
    repositories: list[Repository] | None = None,
    permissions: dict[str, str] | None = None,
    expires_at: datetime | Any | None = None,
    change_expiry: bool = False,
    description: str | None = None,
    reason: str | None = None,
    actor: Actor,
) -> Any:
    """Edit a token. Narrowing takes effect at once; asking for more opens a new request
    while the approved grant keeps working. Returns the new request, if one was opened."""
    reason = _check_reason(reason)
    # Two edits of one token must not interleave: on PostgreSQL (READ COMMITTED) both would
    # delete the old repository rows and insert the new ones (a duplicate key), and both would
    # cancel the same pending request. The row lock makes the second wait and read the first.
    # NO KEY UPDATE (key_share), as a plain UPDATE takes: it does not block the foreign-key
    # checks of an approval inserting this token's grant, which would deadlock with the lock
    # that approval holds on the pending request this edit cancels.
    ctx.session.refresh(token, with_for_update={"key_share": True})
    owner = ctx.session.get(Account, token.resource_owner_id)
    assert owner is not None
    org = ctx.session.get(Organization, owner.id)
    if change_expiry:
        if org is not None:
            check_lifetime_policy(ctx, org, token.issued_at, expires_at)
        if expires_at is not None and expires_at <= ctx.now:
            raise InvalidInput("expiration must be in the future", field="expires_at")
        token.expires_at = expires_at
    if repository_selection is not None or repositories is not None:
        selection, repos = _selection(
            ctx,
            owner,
            repository_selection
            or (RepositorySelection.SUBSET if repositories else token.repository_selection),
            repositories or [],
        )
        token.repository_selection = selection
        ctx.session.execute(delete(TokenRepository).where(TokenRepository.token_id == token.id))
        ctx.session.add_all(TokenRepository(token_id=token.id, repository_id=r.id) for r in repos)
    if permissions is not None:
        token.permissions = normalize(permissions, owner_is_org=org is not None)
    if description is not None:
        token.description = _check_description(description) or None
    token.updated_at = ctx.now
    ctx.session.flush()
    audit.record(
        ctx,
        "personal_access_token.update",
        actor=actor,
        org=org,
        user=_user(ctx, token),
        token_id=token.id,
    )
    if org is None:
        return None
    from patgate.approvals import services as approvals

    return approvals.on_token_updated(ctx, token, org, reason=reason, actor=actor)


def regenerate(
    ctx: Context, token: FineGrainedToken, *, expires_at: datetime | None, actor: Actor
) -> IssuedToken:
    """A new secret for the same token id; the lifetime policy is checked again."""
    org = ctx.session.get(Organization, token.resource_owner_id)
    if org is not None:
        check_lifetime_policy(ctx, org, ctx.now, expires_at)
    if expires_at is not None and expires_at <= ctx.now:
        raise InvalidInput("expiration must be in the future", field="expires_at")
    secret = token_format.generate_fine_grained()
    token.token_hash = token_format.hash_token(secret)
    token.issued_at = ctx.now
    token.updated_at = ctx.now
    token.expires_at = expires_at
    audit.record(
        ctx,
        "personal_access_token.credential_regenerated",
        actor=actor,
        org=org,
        user=_user(ctx, token),
        token_id=token.id,
    )
    return IssuedToken(token, secret)


def delete_fine_grained(ctx: Context, token: FineGrainedToken, *, actor: Actor) -> None:
    """Delete a token: its pending request is cancelled and its grant removed."""
    org = ctx.session.get(Organization, token.resource_owner_id)
    if org is not None:
        from patgate.approvals import services as approvals

        approvals.on_token_deleted(ctx, token, org, actor=actor)
    audit.record(
        ctx,
        "personal_access_token.destroy",
        actor=actor,
        org=org,
        user=_user(ctx, token),
        token_id=token.id,
    )
    ctx.session.delete(token)
    ctx.session.flush()


def _user(ctx: Context, token: FineGrainedToken | ClassicToken) -> User | None:
    return ctx.session.get(User, token.user_id)


# ---- classic tokens ---------------------------------------------------------------------


def create_classic(
    ctx: Context,
    user: User,
    *,
    note: str,
    scopes: list[str],
    expires_at: datetime | None,
) -> IssuedToken:
    """Issue a classic token (``ghp_``); raise :class:`InvalidInput` for unknown scopes."""
    note = (note or "").strip()
    if not note or len(note) > 255:
        raise InvalidInput("note must have 1 to 255 characters", field="note")
    unknown = [s for s in scopes if s not in CLASSIC_SCOPES]
    if unknown:
        raise InvalidInput(f"unknown scope {unknown[0]!r}", field="scopes")
    if expires_at is not None and expires_at <= ctx.now:
        raise InvalidInput("expiration must be in the future", field="expires_at")
    secret = token_format.generate_classic()
    token = ClassicToken(
        user_id=user.id,
        note=note,
        token_hash=token_format.hash_token(secret),
        scopes={"scopes": sorted(set(scopes))},
        created_at=ctx.now,
        issued_at=ctx.now,
        expires_at=expires_at,
    )
    ctx.session.add(token)
    ctx.session.flush()
    return IssuedToken(token, secret)


def classic_of(ctx: Context, user: User) -> list[ClassicToken]:
    return list(
        ctx.session.scalars(
            select(ClassicToken)
            .where(ClassicToken.user_id == user.id)
            .order_by(ClassicToken.id.desc())
        )
    )


def get_classic(ctx: Context, token_id: int, *, user: User | None = None) -> ClassicToken:
    token = ctx.session.get(ClassicToken, token_id) if is_storable_id(token_id) else None
    if token is None or (user is not None and token.user_id != user.id):
        raise NotFound("classic token", token_id)
    return token


def regenerate_classic(
    ctx: Context, token: ClassicToken, *, expires_at: datetime | None
) -> IssuedToken:
    if expires_at is not None and expires_at <= ctx.now:
        raise InvalidInput("expiration must be in the future", field="expires_at")
    secret = token_format.generate_classic()
    token.token_hash = token_format.hash_token(secret)
    token.issued_at = ctx.now
    token.expires_at = expires_at
    return IssuedToken(token, secret)


def delete_classic(ctx: Context, token: ClassicToken) -> None:
    ctx.session.delete(token)
    ctx.session.flush()
