"""Loading the facts that ``decide()`` needs: who a token or a user is, with their grants."""

from __future__ import annotations

from sqlalchemy import select

from patgate.accounts.models import User
from patgate.approvals.models import Grant, GrantRepository, TokenRequest
from patgate.approvals.states import GrantState, RequestState
from patgate.apps.models import Installation, InstallationToken
from patgate.authz.decision import (
    ClassicPrincipal,
    FineGrainedPrincipal,
    GrantFacts,
    InstallationPrincipal,
    Principal,
    UserFacts,
)
from patgate.context import Context
from patgate.orgs.models import EnterpriseOwner, Membership, Organization
from patgate.tokens import format as token_format
from patgate.tokens.format import TokenKind
from patgate.tokens.models import ClassicToken, FineGrainedToken, TokenRepository


def user_facts(ctx: Context, user: User) -> UserFacts:
    memberships = ctx.session.execute(
        select(Membership.org_id, Membership.role, Organization.enterprise_id)
        .join(Organization, Organization.id == Membership.org_id)
        .where(Membership.user_id == user.id)
    ).all()
    owned = ctx.session.scalars(
        select(EnterpriseOwner.enterprise_id).where(EnterpriseOwner.user_id == user.id)
    ).all()
    return UserFacts(
        id=user.id,
        login=user.login,
        site_admin=user.site_admin,
        roles={org_id: role for org_id, role, _ in memberships},
        enterprise_ids=frozenset(e for _, _, e in memberships if e is not None),
        enterprise_owner_of=frozenset(owned),
    )


def authenticate_token(ctx: Context, raw: str) -> Principal | None:
    """The principal a token string stands for, or ``None`` for bad credentials.

    Malformed tokens are rejected by their checksum before any query; unknown, expired and
    suspended users' tokens are ``None`` too (the caller answers ``401 Bad credentials``).
    """
    parsed = token_format.parse(raw)
    if parsed is None or parsed.kind is TokenKind.FOREIGN:
        return None
    digest = token_format.hash_token(raw)
    if parsed.kind is TokenKind.INSTALLATION:
        return _installation(ctx, digest)
    model = FineGrainedToken if parsed.kind is TokenKind.FINE_GRAINED else ClassicToken
    token = ctx.session.scalar(select(model).where(model.token_hash == digest))
    if token is None or (token.expires_at is not None and token.expires_at <= ctx.now):
        return None
    user = ctx.session.get(User, token.user_id)
    if user is None or user.suspended:
        return None
    facts = user_facts(ctx, user)
    if isinstance(token, ClassicToken):
        return ClassicPrincipal(
            user=facts,
            token_id=token.id,
            scopes=frozenset(token.scopes.get("scopes", [])),
            issued_at=token.issued_at,
            expires_at=token.expires_at,
        )
    return fine_grained_principal(ctx, token, facts)


def fine_grained_principal(
    ctx: Context, token: FineGrainedToken, facts: UserFacts
) -> FineGrainedPrincipal:
    repo_ids = frozenset(
        ctx.session.scalars(
            select(TokenRepository.repository_id).where(TokenRepository.token_id == token.id)
        )
    )
    grant_facts = None
    request_state = None
    revoked = False
    if ctx.session.get(Organization, token.resource_owner_id) is not None:
        grant = ctx.session.scalar(
            select(Grant).where(Grant.token_id == token.id, Grant.state == GrantState.ACTIVE)
        )
        if grant is not None:
            grant_facts = GrantFacts(
                repository_selection=grant.repository_selection,
                repository_ids=frozenset(
                    ctx.session.scalars(
                        select(GrantRepository.repository_id).where(
                            GrantRepository.grant_id == grant.id
                        )
                    )
                ),
                permissions=dict(grant.permissions),
            )
        else:
            latest = ctx.session.scalar(
                select(TokenRequest.state)
                .where(TokenRequest.token_id == token.id)
                .order_by(TokenRequest.id.desc())
                .limit(1)
            )
            request_state = latest
            revoked = latest == RequestState.APPROVED  # approved once, grant since revoked
    return FineGrainedPrincipal(
        user=facts,
        token_id=token.id,
        resource_owner_id=token.resource_owner_id,
        repository_selection=token.repository_selection,
        repository_ids=repo_ids,
        permissions=dict(token.permissions),
        issued_at=token.issued_at,
        expires_at=token.expires_at,
        grant=grant_facts,
        request_state=request_state,
        grant_revoked=revoked,
    )


def _installation(ctx: Context, digest: str) -> InstallationPrincipal | None:
    row = ctx.session.execute(
        select(InstallationToken, Installation)
        .join(Installation, Installation.id == InstallationToken.installation_id)
        .where(InstallationToken.token_hash == digest)
    ).first()
    if row is None:
        return None
    token, installation = row
    if token.expires_at <= ctx.now:
        return None
    ids = token.repository_ids.get("ids") if token.repository_ids else None
    return InstallationPrincipal(
        installation_id=installation.id,
        app_id=installation.app_id,
        org_id=installation.org_id,
        permissions=dict(token.permissions),
        repository_ids=frozenset(ids) if ids is not None else None,
        expires_at=token.expires_at,
    )
