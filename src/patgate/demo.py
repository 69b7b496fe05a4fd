"""Demo data: an enterprise, two organizations, their people, repositories and tokens.

:func:`seed` is idempotent: it creates only what is missing, so running it twice changes
nothing the second time. Every demo user signs in with :data:`DEMO_PASSWORD`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from patgate.accounts import services as accounts
from patgate.accounts.models import User
from patgate.approvals import services as approvals
from patgate.context import CLI_ACTOR, Actor, Context
from patgate.orgs import services as orgs
from patgate.orgs.models import Enterprise, Organization, Role
from patgate.repos import services as repos
from patgate.repos.models import Visibility
from patgate.tokens import services as tokens
from patgate.tokens.models import ClassicToken, FineGrainedToken

DEMO_PASSWORD = "patgate-demo"
ENTERPRISE = "acme-corp"
EMAIL_DOMAIN = "example.com"

# login -> (name, site admin, what the summary says about them)
USERS: dict[str, tuple[str, bool, str]] = {
    "admin": ("Site Admin", True, "site administrator"),
    "ada": ("Ada Lovelace", False, "owner of acme and of the acme-corp enterprise"),
    "grace": ("Grace Hopper", False, "member of acme (two fine-grained tokens, one classic)"),
    "linus": ("Linus Torvalds", False, "member of acme (a pending request)"),
    "peter": ("Peter Gibbons", False, "owner of initech"),
    "milton": ("Milton Waddams", False, "member of initech (a pending request)"),
}

# org -> (enterprise, owner, members, repositories with their visibility)
ORGS: dict[str, tuple[str | None, str, tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "acme": (
        ENTERPRISE,
        "ada",
        ("grace", "linus"),
        (
            ("website", Visibility.PUBLIC),
            ("api", Visibility.PRIVATE),
            ("infra", Visibility.INTERNAL),
        ),
    ),
    "initech": (
        None,
        "peter",
        ("milton",),
        (("tps-reports", Visibility.PRIVATE), ("handbook", Visibility.PUBLIC)),
    ),
}


@dataclass(frozen=True, slots=True)
class DemoToken:
    """A demo fine-grained token for ``org``; no ``repositories`` means all of them."""

    user: str
    name: str
    org: str
    repositories: tuple[str, ...]
    permissions: dict[str, str]
    reason: str
    approve: bool = False


TOKENS = (
    DemoToken(
        "grace",
        "website-triage",
        "acme",
        ("website", "api"),
        {"issues": "write", "contents": "read"},
        "Triage bot for the website's and the API's issue trackers.",
    ),
    DemoToken(
        "grace",
        "api-release-notes",
        "acme",
        ("api",),
        {"contents": "read", "pull_requests": "read"},
        "Generates the release notes of the API from merged pull requests.",
        approve=True,
    ),
    DemoToken(
        "linus",
        "infra-deploy",
        "acme",
        (),
        {"contents": "read", "deployments": "write"},
        "Deploys from CI to the staging cluster.",
    ),
    DemoToken(
        "milton",
        "tps-report-sync",
        "initech",
        ("tps-reports",),
        {"issues": "read", "contents": "write"},
        "Syncs the TPS reports with the new cover sheets.",
    ),
)
CLASSIC_TOKEN = ("grace", "grace's laptop", ("repo", "read:org"))


@dataclass(frozen=True, slots=True)
class DemoUserInfo:
    login: str
    role: str


@dataclass(frozen=True, slots=True)
class DemoTokenInfo:
    """A demo token; ``secret`` only when this run created it (secrets are shown once)."""

    id: int
    kind: str
    user: str
    name: str
    org: str | None
    request_id: int | None
    state: str | None
    secret: str | None


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What :func:`seed` left in place, and what it created this time (``created``)."""

    base_url: str
    password: str
    login_url: str
    pending_requests_url: str
    users: list[DemoUserInfo]
    tokens: list[DemoTokenInfo]
    created: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed(ctx: Context, *, actor: Actor = CLI_ACTOR) -> DemoSummary:
    """Create whatever part of the demo data is missing and return its summary.

    Administrative steps are audited with ``actor``; each token is created by its own user
    and approvals are given by the organization's owner, as people would have done it.
    """
    created: list[str] = []
    users = {login: _user(ctx, login, created) for login in USERS}
    enterprise = orgs.find_enterprise(ctx, ENTERPRISE)
    if enterprise is None:
        enterprise = orgs.create_enterprise(
            ctx, ENTERPRISE, name="Acme Corporation", owner=users["ada"]
        )
        created.append(f"enterprise {ENTERPRISE}")
    if not enterprise.opted_in:
        orgs.set_enterprise_policy(ctx, enterprise, actor=actor, opt_in=True)
    organizations = {
        login: _org(ctx, login, enterprise, users, created, actor=actor) for login in ORGS
    }
    token_infos = [_fine_grained(ctx, spec, users, organizations, created) for spec in TOKENS]
    token_infos.append(_classic(ctx, users[CLASSIC_TOKEN[0]], created))
    base = ctx.base_url
    return DemoSummary(
        base_url=base,
        password=DEMO_PASSWORD,
        login_url=f"{base}/login",
        pending_requests_url=f"{base}/organizations/acme/settings/personal-access-token-requests",
        users=[DemoUserInfo(login, role) for login, (_, _, role) in USERS.items()],
        tokens=token_infos,
        created=created,
    )


def _user(ctx: Context, login: str, created: list[str]) -> User:
    user = accounts.find_user(ctx, login)
    if user is None:
        name, site_admin, _ = USERS[login]
        user = accounts.create_user(
            ctx,
            login,
            email=f"{login}@{EMAIL_DOMAIN}",
            password=DEMO_PASSWORD,
            site_admin=site_admin,
            name=name,
        )
        created.append(f"user {login}")
    return user


def _org(
    ctx: Context,
    login: str,
    enterprise: Enterprise,
    users: dict[str, User],
    created: list[str],
    *,
    actor: Actor,
) -> Organization:
    enterprise_slug, owner, members, repositories = ORGS[login]
    org = orgs.find_org(ctx, login)
    if org is None:
        org = orgs.create_org(
            ctx,
            login,
            owner=users[owner],
            enterprise=enterprise if enterprise_slug == enterprise.slug else None,
            name=login.capitalize(),
            actor=actor,
        )
        created.append(f"organization {login}")
    if org.enterprise_id is None and not org.opted_in:
        orgs.set_org_policy(ctx, org, actor=actor, opt_in=True)
    for member in members:
        # Only add missing members: a role changed since the last run is left alone.
        if orgs.role_of(ctx, org, users[member]) is None:
            orgs.add_member(ctx, org, users[member], role=Role.MEMBER, actor=actor)
            created.append(f"membership {login}/{member}")
    for name, visibility in repositories:
        if repos.find_repo(ctx, org, name) is None:
            repos.create_repo(ctx, org, name, visibility=visibility)
            created.append(f"repository {login}/{name}")
    return org


def _fine_grained(
    ctx: Context,
    spec: DemoToken,
    users: dict[str, User],
    organizations: dict[str, Organization],
    created: list[str],
) -> DemoTokenInfo:
    user, org = users[spec.user], organizations[spec.org]
    token = ctx.session.scalar(
        select(FineGrainedToken).where(
            FineGrainedToken.user_id == user.id, FineGrainedToken.name_key == spec.name.lower()
        )
    )
    secret = None
    if token is None:
        issued = tokens.create_fine_grained(
            ctx,
            user,
            name=spec.name,
            resource_owner=org,
            repository_selection="subset" if spec.repositories else "all",
            repositories=repos.resolve_names(ctx, org, list(spec.repositories)),
            permissions=spec.permissions,
            expires_at=tokens.expiry(ctx.now, None),
            reason=spec.reason,
            actor=Actor(user.id, user.login, "user"),
        )
        assert isinstance(issued.token, FineGrainedToken)
        token, secret = issued.token, issued.secret
        created.append(f"token {spec.user}/{spec.name}")
        if spec.approve and issued.request is not None and issued.request.state == "pending":
            owner = users[ORGS[spec.org][1]]
            approvals.approve(
                ctx, org, [issued.request.id], actor=Actor(owner.id, owner.login, "user")
            )
    request = approvals.latest_request_of(ctx, token)
    return DemoTokenInfo(
        id=token.id,
        kind="fine_grained",
        user=spec.user,
        name=token.name,
        org=spec.org,
        request_id=request.id if request else None,
        state=request.state if request else None,
        secret=secret,
    )


def _classic(ctx: Context, user: User, created: list[str]) -> DemoTokenInfo:
    _, note, scopes = CLASSIC_TOKEN
    token = ctx.session.scalar(
        select(ClassicToken).where(ClassicToken.user_id == user.id, ClassicToken.note == note)
    )
    secret = None
    if token is None:
        issued = tokens.create_classic(
            ctx, user, note=note, scopes=list(scopes), expires_at=tokens.expiry(ctx.now, None)
        )
        assert isinstance(issued.token, ClassicToken)
        token, secret = issued.token, issued.secret
        created.append(f"classic token {user.login}/{note}")
    return DemoTokenInfo(
        id=token.id,
        kind="classic",
        user=user.login,
        name=token.note,
        org=None,
        request_id=None,
        state=None,
        secret=secret,
    )
