"""GitHub's JSON for requests, grants and their webhook events, shared by the API and the
webhooks (the shapes of ``organization-programmatic-access-grant[-request]``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from patgate import representations as rep
from patgate.accounts.models import Account, User
from patgate.approvals.models import Grant, TokenRequest
from patgate.approvals.services import active_grant_of, permission_changes, request_repository_ids
from patgate.apps.models import Installation
from patgate.context import Context
from patgate.orgs.models import Organization
from patgate.repos.models import Repository
from patgate.repos.services import repos_by_ids
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
    """The ``personal_access_token_request`` webhook body, loading what it shows (the
    changes are against the grant in force)."""
    token = ctx.session.get(FineGrainedToken, request.token_id)
    owner = ctx.session.get(User, request.requester_id)
    assert token is not None
    grant = active_grant_of(ctx, token, org)
    repositories = repos_by_ids(ctx, request_repository_ids(ctx, request))
    return EventBodies(ctx, org).body(
        action, request, installation, sender, token=token, owner=owner,
        granted=grant.permissions if grant is not None else {}, repositories=repositories,
    )  # fmt: skip


class EventBodies:
    """Builds the webhook bodies of one organization's events from what the caller loaded,
    rendering each user, repository and installation once: a bulk decision's hundred events
    share most of them."""

    def __init__(self, ctx: Context, org: Organization) -> None:
        self.ctx = ctx
        self.org = org
        api, _ = urls(ctx)
        self.org_json = {
            "login": org.login,
            "id": org.id,
            "node_id": rep.node_id("Organization", org.id),
            "url": f"{api}/orgs/{org.login}",
        }
        self._users: dict[int, dict[str, Any] | None] = {}
        self._repositories: dict[int, dict[str, Any]] = {}
        self._installations: dict[int, dict[str, Any]] = {}

    def user(self, account: Account | None) -> dict[str, Any] | None:
        if account is None:
            return None
        if account.id not in self._users:
            self._users[account.id] = user_json(self.ctx, account)
        return self._users[account.id]

    def repository(self, repo: Repository) -> dict[str, Any]:
        if repo.id not in self._repositories:
            self._repositories[repo.id] = repository_json(self.ctx, repo, self.org)
        return self._repositories[repo.id]

    def installation(self, installation: Installation) -> dict[str, Any]:
        if installation.id not in self._installations:
            self._installations[installation.id] = {
                "id": installation.id,
                "node_id": rep.node_id("Installation", installation.id),
            }
        return self._installations[installation.id]

    def body(
        self,
        action: str,
        request: TokenRequest,
        installation: Installation,
        sender: User | None,
        *,
        token: FineGrainedToken,
        owner: User | None,
        granted: Mapping[str, str],
        repositories: Sequence[Repository],
    ) -> dict[str, Any]:
        """The ``personal_access_token_request`` body: ``granted`` is the permissions of the
        grant the request is compared with, ``repositories`` the request's (shown when its
        selection is ``subset``)."""
        added, upgraded = permission_changes(request.permissions, granted)
        subset = request.repository_selection == "subset"
        return {
            "action": action,
            "personal_access_token_request": {
                "id": request.id,
                "owner": self.user(owner),
                "permissions_added": grouped(added),
                "permissions_upgraded": grouped(upgraded),
                "permissions_result": grouped(request.permissions),
                "repository_selection": request.repository_selection,
                "repository_count": len(repositories) if subset else None,
                "repositories": [self.repository(r) for r in repositories] if subset else None,
                "created_at": rep.timestamp(request.created_at),
                "token_id": token.id,
                "token_name": token.name,
                "token_expired": token.expires_at is not None and token.expires_at <= self.ctx.now,
                "token_expires_at": rep.timestamp(token.expires_at),
                "token_last_used_at": rep.timestamp(token.last_used_at),
            },
            "organization": self.org_json,
            "sender": self.user(sender),
            "installation": self.installation(installation),
        }
