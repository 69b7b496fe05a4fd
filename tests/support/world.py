"""A small organization built through the services, shared by end-to-end tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from patgate.accounts import services as accounts
from patgate.context import CLI_ACTOR, Actor
from patgate.orgs import services as orgs
from patgate.repos import services as repos
from patgate.runtime import Runtime
from patgate.tokens import services as tokens


@dataclass
class World:
    runtime: Runtime
    org_login: str = "acme"

    def build(self) -> World:
        with self.runtime.unit_of_work() as ctx:
            owner = accounts.create_user(ctx, "olivia", email="olivia@example.com")
            member = accounts.create_user(ctx, "mona", email="mona@example.com")
            accounts.create_user(ctx, "stranger", email="stranger@example.com")
            org = orgs.create_org(ctx, self.org_login, owner=owner, actor=CLI_ACTOR)
            orgs.add_member(ctx, org, member, actor=CLI_ACTOR)
            orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, opt_in=True)
            repos.create_repo(ctx, org, "public-site", visibility="public")
            repos.create_repo(ctx, org, "private-api", visibility="private")
            repos.create_repo(ctx, org, "private-ops", visibility="private")
        return self

    def token(
        self,
        user: str = "mona",
        *,
        name: str = "ci",
        repositories: str | list[str] = "all",
        permissions: dict[str, str] | None = None,
        expires_in: str | None = None,
        reason: str | None = "deploys",
        owner: str | None = None,
    ) -> Any:
        """Create a fine-grained token; returns the IssuedToken (``.secret``, ``.token.id``,
        ``.request``)."""
        with self.runtime.unit_of_work() as ctx:
            account = repos.get_account(ctx, owner or self.org_login)
            selection = repositories if isinstance(repositories, str) else "subset"
            chosen = (
                repos.resolve_names(ctx, account, repositories)
                if isinstance(repositories, list)
                else []
            )
            return tokens.create_fine_grained(
                ctx,
                accounts.get_user(ctx, user),
                name=name,
                resource_owner=account,
                repository_selection=selection,
                repositories=chosen,
                permissions=permissions or {"issues": "write"},
                expires_at=tokens.expiry(ctx.now, expires_in),
                reason=reason,
                actor=CLI_ACTOR,
            )

    def classic(self, user: str = "mona", scopes: list[str] | None = None) -> str:
        with self.runtime.unit_of_work() as ctx:
            issued = tokens.create_classic(
                ctx,
                accounts.get_user(ctx, user),
                note="classic",
                scopes=scopes if scopes is not None else ["repo", "read:org"],
                expires_at=tokens.expiry(ctx.now, None),
            )
            return issued.secret

    def actor(self, login: str = "olivia") -> Actor:
        with self.runtime.unit_of_work() as ctx:
            user = accounts.get_user(ctx, login)
            return Actor(user.id, user.login, "user")

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(ctx, org, *args, **kwargs)`` in one unit of work."""
        with self.runtime.unit_of_work() as ctx:
            return fn(ctx, orgs.get_org(ctx, self.org_login), *args, **kwargs)
