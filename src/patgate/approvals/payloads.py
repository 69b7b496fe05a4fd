"""GitHub's JSON for requests, grants and their webhook events, shared by the API and the
webhooks (the shapes of ``organization-programmatic-access-grant[-request]``)."""

from __future__ import annotations

from typing import Any

from patgate import representations as rep
from patgate.accounts.models import Account, User
from patgate.approvals.models import Grant, TokenRequest
from patgate.approvals.services import changes_of, request_repository_ids
from patgate.apps.models import Installation
from patgate.context import Context
from patgate.orgs.models import Organization
from patgate.repos.models import Repository
from patgate.tokens.models import FineGrainedToken
from patgate.tokens.permissions import grouped


def urls(ctx: Context) -> tuple[str, str]:
    return f"{ctx.base_url}/api/v3", ctx.base_url


def user_json(ctx: Context, account: Account | None) -> dict[str, Any] | None:
    if account is None:
        return None
    api, web = urls(ctx)
    return rep.simple_user(
        api=api,
        web=web,
        id=account.id,
        login=account.login,
        type="Organization" if isinstance(account, Organization) else "User",
        site_admin=isinstance(account, User) and account.site_admin,
        name=account.name,
    )


def repository_json(ctx: Context, repo: Repository, owner: Account) -> dict[str, Any]:
    api, web = urls(ctx)
    owner_json = user_json(ctx, owner)
    assert owner_json is not None
    return rep.minimal_repository(
        api=api,
        web=web,
        id=repo.id,
        name=repo.name,
        owner=owner_json,
        visibility=repo.visibility,  # type: ignore[arg-type]
        description=repo.description,
        created_at=repo.created_at,
        updated_at=repo.updated_at,
        pushed_at=repo.pushed_at,
    )


def _token_fields(token: FineGrainedToken, ctx: Context) -> dict[str, Any]:
    return {
        "token_id": token.id,
        "token_name": token.name,
        "token_expired": token.expires_at is not None and token.expires_at <= ctx.now,
        "token_expires_at": rep.timestamp(token.expires_at),
        "token_last_used_at": rep.timestamp(token.last_used_at),
    }


def request_item(
    ctx: Context, org: Organization, request: TokenRequest, token: FineGrainedToken, owner: User
) -> dict[str, Any]:
    api, _ = urls(ctx)
    return {
        "id": request.id,
        "reason": request.reason,
        "owner": user_json(ctx, owner),
        "repository_selection": request.repository_selection,
        "repositories_url": (
            f"{api}/organizations/{org.id}/personal-access-token-requests/{request.id}/repositories"
        ),
        "permissions": grouped(request.permissions),
        "created_at": rep.timestamp(request.created_at),
        **_token_fields(token, ctx),
    }


def grant_item(
    ctx: Context, org: Organization, grant: Grant, token: FineGrainedToken, owner: User
) -> dict[str, Any]:
    api, _ = urls(ctx)
    return {
        "id": grant.id,
        "owner": user_json(ctx, owner),
        "repository_selection": grant.repository_selection,
        "repositories_url": (
            f"{api}/organizations/{org.id}/personal-access-tokens/{grant.id}/repositories"
        ),
        "permissions": grouped(grant.permissions),
        "access_granted_at": rep.timestamp(grant.granted_at),
        **_token_fields(token, ctx),
    }


def request_event(
    ctx: Context,
    org: Organization,
    action: str,
    request: TokenRequest,
    installation: Installation,
    sender: User | None,
) -> dict[str, Any]:
    """The ``personal_access_token_request`` webhook body."""
    token = ctx.session.get(FineGrainedToken, request.token_id)
    owner = ctx.session.get(User, request.requester_id)
    assert token is not None
    changes = changes_of(ctx, request)
    repos = [ctx.session.get(Repository, rid) for rid in request_repository_ids(ctx, request)]
    api, _ = urls(ctx)
    return {
        "action": action,
        "personal_access_token_request": {
            "id": request.id,
            "owner": user_json(ctx, owner),
            "permissions_added": grouped(changes.added),
            "permissions_upgraded": grouped(changes.upgraded),
            "permissions_result": grouped(changes.result),
            "repository_selection": request.repository_selection,
            "repository_count": len(repos) if request.repository_selection == "subset" else None,
            "repositories": [repository_json(ctx, r, org) for r in repos if r is not None]
            if request.repository_selection == "subset"
            else None,
            "created_at": rep.timestamp(request.created_at),
            "token_id": token.id,
            "token_name": token.name,
            "token_expired": token.expires_at is not None and token.expires_at <= ctx.now,
            "token_expires_at": rep.timestamp(token.expires_at),
            "token_last_used_at": rep.timestamp(token.last_used_at),
        },
        "organization": {
            "login": org.login,
            "id": org.id,
            "node_id": rep.node_id("Organization", org.id),
            "url": f"{api}/orgs/{org.login}",
        },
        "sender": user_json(ctx, sender),
        "installation": {
            "id": installation.id,
            "node_id": rep.node_id("Installation", installation.id),
        },
    }
