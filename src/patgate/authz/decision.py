"""``decide()``: the one place that says yes or no. Pure: callers load the facts first.

Every API route and UI action builds a principal (who is asking, with the facts of its
token) and a resource (what is asked about, with its owner's effective policies), then asks
``decide(principal, action, resource, now=...)``. The answer carries the reason code that
``web/errors.py`` turns into GitHub's status, message and headers (SPEC §5).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from patgate.tokens.permissions import narrowed, satisfies


class Reason(enum.StrEnum):
    ALLOWED = "allowed"
    BAD_CREDENTIALS = "bad_credentials"
    NOT_VISIBLE = "not_visible"
    PERMISSION_MISSING = "permission_missing"
    SCOPE_MISSING = "scope_missing"
    CLASSIC_RESTRICTED = "classic_restricted"
    FINE_GRAINED_RESTRICTED = "fine_grained_restricted"
    LIFETIME_EXCEEDED = "lifetime_exceeded"
    INTEGRATION_PERMISSION_MISSING = "integration_permission_missing"
    NOT_AN_APP = "not_an_app"
    NOT_AN_OWNER = "not_an_owner"


class Detail(enum.StrEnum):
    """Why a resource is not visible: logged, never shown (GitHub answers a bare 404)."""

    NONE = ""
    APPROVAL_PENDING = "approval_pending"
    REQUEST_DENIED = "request_denied"
    GRANT_REVOKED = "grant_revoked"
    REPOSITORY_NOT_SELECTED = "repository_not_selected"
    NOT_A_MEMBER = "not_a_member"
    WRONG_RESOURCE_OWNER = "wrong_resource_owner"
    NO_ACCESS = "no_access"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason
    detail: Detail = Detail.NONE
    # For answers that name things: the org login, the permission or scopes wanted, the
    # maximum lifetime and the token id (for the lifetime message's URL).
    org_login: str | None = None
    accepted_permissions: str | None = None
    accepted_scopes: str | None = None
    max_lifetime_days: int | None = None
    token_id: int | None = None


ALLOW = Decision(True, Reason.ALLOWED)


# ---- facts about the resource -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrgFacts:
    """An organization with its *effective* policies (enterprise-forced values applied)."""

    id: int
    login: str
    enterprise_id: int | None = None
    fine_grained_allowed: bool = True
    classic_allowed: bool = True
    fine_grained_max_lifetime_days: int | None = 366
    classic_max_lifetime_days: int | None = None


@dataclass(frozen=True, slots=True)
class RepoFacts:
    id: int
    owner_id: int
    visibility: str  # public | private | internal
    org: OrgFacts | None = None  # None: owned by a user

    @property
    def public(self) -> bool:
        return self.visibility == "public"


@dataclass(frozen=True, slots=True)
class EnterpriseFacts:
    id: int
    slug: str


Resource = OrgFacts | RepoFacts | EnterpriseFacts | None


# ---- facts about who asks ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserFacts:
    id: int
    login: str
    site_admin: bool = False
    # org id -> "owner" | "member"
    roles: Mapping[int, str] = field(default_factory=dict)
    # enterprises of the orgs the user belongs to (internal repositories are visible to them)
    enterprise_ids: frozenset[int] = frozenset()
    enterprise_owner_of: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class GrantFacts:
    repository_selection: str
    repository_ids: frozenset[int]
    permissions: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class FineGrainedPrincipal:
    user: UserFacts
    token_id: int
    resource_owner_id: int
    repository_selection: str  # none | all | subset
    repository_ids: frozenset[int]
    permissions: Mapping[str, str]
    issued_at: datetime
    expires_at: datetime | None
    # The active grant of the resource owner organization, if any, and otherwise the state
    # of the token's latest request there (to log why it cannot see).
    grant: GrantFacts | None = None
    request_state: str | None = None
    grant_revoked: bool = False


@dataclass(frozen=True, slots=True)
class ClassicPrincipal:
    user: UserFacts
    token_id: int
    scopes: frozenset[str]
    issued_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class InstallationPrincipal:
    installation_id: int
    app_id: int
    org_id: int
    permissions: Mapping[str, str]
    repository_ids: frozenset[int] | None = None  # None: every repository of the org
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionPrincipal:
    """A user signed in to the web UI: acts with the user's own access."""

    user: UserFacts


@dataclass(frozen=True, slots=True)
class AppPrincipal:
    """A GitHub App authenticated by its JWT."""

    app_id: int


Principal = (
    FineGrainedPrincipal
    | ClassicPrincipal
    | InstallationPrincipal
    | SessionPrincipal
    | AppPrincipal
    | None
)


# ---- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Action:
    """What an entry point wants to do, and what each kind of principal needs for it."""

    name: str
    permission: str | None = None  # fine-grained (and installation) permission name
    level: str = "read"
    classic_private: tuple[str, ...] = ()  # scopes, any of which suffices on private/org data
    classic_public: tuple[str, ...] = ()  # scopes needed even on public data ((): none)
    role: str | None = None  # the user's own role needed: "read", "member", "owner"
    writes: bool = False
    app_only: bool = False  # the eight governance endpoints: installation tokens only
    session_only: bool = False  # web UI actions of a signed-in person; never a token


class Actions:
    READ_USER = Action("read_user")
    READ_ORG = Action("read_org")
    READ_REPO = Action("read_repo", "metadata", "read", ("repo",), role="read")
    READ_ISSUES = Action("read_issues", "issues", "read", ("repo",), role="read")
    WRITE_ISSUES = Action(
        "write_issues", "issues", "write", ("repo",), ("repo", "public_repo"), "read", True
    )
    READ_MEMBERS = Action(
        "read_members", "members", "read", ("read:org", "write:org", "admin:org"), role="member"
    )
    READ_AUDIT_LOG = Action(
        "read_audit_log",
        "organization_administration",
        "read",
        ("admin:org", "read:audit_log", "audit_log"),
        role="owner",
    )
    LIST_REQUESTS = Action(
        "list_requests", "organization_personal_access_token_requests", "read", app_only=True
    )
    REVIEW_REQUESTS = Action(
        "review_requests",
        "organization_personal_access_token_requests",
        "write",
        writes=True,
        app_only=True,
    )
    LIST_GRANTS = Action(
        "list_grants", "organization_personal_access_tokens", "read", app_only=True
    )
    REVOKE_GRANTS = Action(
        "revoke_grants",
        "organization_personal_access_tokens",
        "write",
        writes=True,
        app_only=True,
    )
    # Web UI and CLI actions of people (sessions), not tokens.
    ADMINISTER_ORG = Action("administer_org", role="owner", writes=True, session_only=True)
    ADMINISTER_ENTERPRISE = Action(
        "administer_enterprise", role="enterprise_owner", writes=True, session_only=True
    )


# ---- the decision -----------------------------------------------------------------------


def decide(principal: Principal, action: Action, resource: Resource, *, now: datetime) -> Decision:
    """Whether ``principal`` may do ``action`` on ``resource`` at ``now``, and why not."""
    if principal is None:
        return _anonymous(action, resource)
    expires_at = getattr(principal, "expires_at", None)
    if expires_at is not None and expires_at <= now:
        # A cached principal may outlive its token: expiry is checked on every decision.
        return Decision(False, Reason.BAD_CREDENTIALS)
    if action.app_only:
        return _app_only(principal, action, resource)
    if action.session_only and not isinstance(principal, SessionPrincipal):
        return Decision(False, Reason.PERMISSION_MISSING)
    if isinstance(principal, FineGrainedPrincipal):
        return _fine_grained(principal, action, resource)
    if isinstance(principal, ClassicPrincipal):
        return _classic(principal, action, resource)
    if isinstance(principal, InstallationPrincipal):
        return _installation(principal, action, resource)
    if isinstance(principal, SessionPrincipal):
        return _user_access(principal.user, action, resource)
    return Decision(False, Reason.NOT_VISIBLE, Detail.NO_ACCESS)


def _anonymous(action: Action, resource: Resource) -> Decision:
    if action.app_only or action.writes or action.role not in (None, "read"):
        return Decision(False, Reason.BAD_CREDENTIALS)
    if isinstance(resource, RepoFacts) and not resource.public:
        return Decision(False, Reason.NOT_VISIBLE, Detail.NO_ACCESS)
    return ALLOW


def _app_only(principal: Principal, action: Action, resource: Resource) -> Decision:
    if not isinstance(principal, InstallationPrincipal):
        return Decision(False, Reason.NOT_AN_APP)
    return _installation(principal, action, resource)


def _installation(p: InstallationPrincipal, action: Action, resource: Resource) -> Decision:
    if resource is None:
        # The authenticated user's own endpoints (`GET /user`): an installation acts for none.
        return Decision(False, Reason.INTEGRATION_PERMISSION_MISSING)
    org_id = _org_id(resource)
    public = isinstance(resource, RepoFacts) and resource.public
    if public and not action.writes:
        return ALLOW

    needed = f"{action.permission}={action.level}" if action.permission else None

    def hidden(detail: Detail) -> Decision:
        # A public repository is seen by everyone: what may not change it gets a 403, not a 404.
        if public:
            return Decision(
                False, Reason.INTEGRATION_PERMISSION_MISSING, detail, accepted_permissions=needed
            )
        return Decision(False, Reason.NOT_VISIBLE, detail)

    if org_id != p.org_id:
        return hidden(Detail.WRONG_RESOURCE_OWNER)
    if (
        isinstance(resource, RepoFacts)
        and p.repository_ids is not None
        and resource.id not in p.repository_ids
    ):
        return hidden(Detail.REPOSITORY_NOT_SELECTED)
    if action.permission is not None and not satisfies(
        p.permissions.get(action.permission), action.level
    ):
        return Decision(
            False,
            Reason.INTEGRATION_PERMISSION_MISSING,
            accepted_permissions=f"{action.permission}={action.level}",
        )
    return ALLOW


def _fine_grained(p: FineGrainedPrincipal, action: Action, resource: Resource) -> Decision:
    needed = f"{action.permission}={action.level}" if action.permission else None
    public_read = _public_read(action, resource)
    if action.permission is None and action.role is None:
        return ALLOW
    if public_read:
        return ALLOW
    org = _org_of(resource)
    visible = isinstance(resource, OrgFacts) or (
        isinstance(resource, RepoFacts) and resource.public
    )

    def hidden(detail: Detail) -> Decision:
        # What the token may not see is a 404; what it sees but may not change is a 403.
        if visible:
            return Decision(False, Reason.PERMISSION_MISSING, detail, accepted_permissions=needed)
        return Decision(False, Reason.NOT_VISIBLE, detail)

    if org is not None:
        if not org.fine_grained_allowed:
            return Decision(False, Reason.FINE_GRAINED_RESTRICTED, org_login=org.login)
        limit = org.fine_grained_max_lifetime_days
        if limit is not None and not _within_lifetime(p.issued_at, p.expires_at, limit):
            return Decision(
                False,
                Reason.LIFETIME_EXCEEDED,
                org_login=org.login,
                max_lifetime_days=limit,
                token_id=p.token_id,
            )
    owner_id = _owner_id(resource)
    if owner_id != p.resource_owner_id:
        return hidden(Detail.WRONG_RESOURCE_OWNER)

    selection, repo_ids, permissions = p.repository_selection, p.repository_ids, p.permissions
    if org is not None:
        if p.grant is None:
            if p.grant_revoked:
                return hidden(Detail.GRANT_REVOKED)
            if p.request_state == "denied":
                return hidden(Detail.REQUEST_DENIED)
            return hidden(Detail.APPROVAL_PENDING)
        # Effective access: the active grant narrowed by the token's current settings.
        selection, repo_ids, permissions = _intersect(p, p.grant)

    unselected = selection == "none" or (
        selection == "subset" and isinstance(resource, RepoFacts) and resource.id not in repo_ids
    )
    if isinstance(resource, RepoFacts) and unselected:
        return hidden(Detail.REPOSITORY_NOT_SELECTED)
    if action.permission is not None and not satisfies(
        permissions.get(action.permission), action.level
    ):
        if not satisfies(permissions.get("metadata"), "read") and not visible:
            return Decision(False, Reason.NOT_VISIBLE, Detail.NO_ACCESS)
        return Decision(False, Reason.PERMISSION_MISSING, accepted_permissions=needed)
    user_answer = _user_access(p.user, action, resource)
    if not user_answer.allowed and user_answer.reason is Reason.NOT_AN_OWNER:
        return Decision(False, Reason.PERMISSION_MISSING, accepted_permissions=needed)
    return user_answer


def _classic(p: ClassicPrincipal, action: Action, resource: Resource) -> Decision:
    if action.permission is None and action.role is None:
        return ALLOW
    if _public_read(action, resource):
        return ALLOW
    org = _org_of(resource)
    if org is not None:
        if not org.classic_allowed:
            return Decision(False, Reason.CLASSIC_RESTRICTED, org_login=org.login)
        limit = org.classic_max_lifetime_days
        if limit is not None and not _within_lifetime(p.issued_at, p.expires_at, limit):
            return Decision(
                False, Reason.LIFETIME_EXCEEDED, org_login=org.login, max_lifetime_days=limit
            )
    user_answer = _user_access(p.user, action, resource)
    if not user_answer.allowed:
        if user_answer.reason is Reason.NOT_AN_OWNER:
            return Decision(
                False, Reason.SCOPE_MISSING, accepted_scopes=", ".join(action.classic_private)
            )
        return user_answer
    public = isinstance(resource, RepoFacts) and resource.public
    wanted = action.classic_public if public else action.classic_private
    if wanted and not (_expand_scopes(p.scopes) & set(wanted)):
        if isinstance(resource, RepoFacts) and not public:
            # Without ``repo`` a classic token cannot see private repositories at all.
            return Decision(False, Reason.NOT_VISIBLE, Detail.NO_ACCESS)
        return Decision(False, Reason.SCOPE_MISSING, accepted_scopes=", ".join(wanted))
    return ALLOW


def _user_access(user: UserFacts, action: Action, resource: Resource) -> Decision:
    """What the person may do, whatever the token: a token only ever narrows this."""
    if action.role is None:
        return ALLOW
    if action.role == "enterprise_owner":
        ok = isinstance(resource, EnterpriseFacts) and resource.id in user.enterprise_owner_of
        return ALLOW if ok else Decision(False, Reason.NOT_AN_OWNER)
    if isinstance(resource, RepoFacts):
        if resource.org is None:
            if resource.owner_id == user.id or (resource.public and action.role == "read"):
                return ALLOW
            return Decision(False, Reason.NOT_VISIBLE, Detail.NO_ACCESS)
        role = user.roles.get(resource.org.id)
        if role is None and not resource.public:
            internal_ok = (
                resource.visibility == "internal"
                and resource.org.enterprise_id is not None
                and resource.org.enterprise_id in user.enterprise_ids
                and action.role == "read"
            )
            if not internal_ok:
                return Decision(False, Reason.NOT_VISIBLE, Detail.NOT_A_MEMBER)
        if action.role == "owner" and role != "owner":
            return Decision(False, Reason.NOT_AN_OWNER)
        return ALLOW
    if isinstance(resource, OrgFacts):
        role = user.roles.get(resource.id)
        if action.role == "owner" and role != "owner":
            return Decision(False, Reason.NOT_AN_OWNER)
        if action.role == "member" and role is None:
            return Decision(False, Reason.NOT_AN_OWNER, Detail.NOT_A_MEMBER)
        return ALLOW
    # A role is wanted but the resource has no organization to hold it.
    return Decision(False, Reason.NOT_AN_OWNER)


def _public_read(action: Action, resource: Resource) -> bool:
    return (
        not action.writes
        and action.role in (None, "read")
        and isinstance(resource, RepoFacts)
        and resource.public
    )


def _intersect(
    p: FineGrainedPrincipal, grant: GrantFacts
) -> tuple[str, frozenset[int], dict[str, str]]:
    permissions = narrowed(p.permissions, grant.permissions)
    kinds = {p.repository_selection, grant.repository_selection}
    if "none" in kinds:
        return "none", frozenset(), permissions
    if kinds == {"all"}:
        return "all", frozenset(), permissions
    if p.repository_selection == "subset" and grant.repository_selection == "subset":
        return "subset", p.repository_ids & grant.repository_ids, permissions
    ids = p.repository_ids if p.repository_selection == "subset" else grant.repository_ids
    return "subset", ids, permissions


def _within_lifetime(issued_at: datetime, expires_at: datetime | None, days: int) -> bool:
    return expires_at is not None and expires_at - issued_at <= timedelta(days=days)


def _org_of(resource: Resource) -> OrgFacts | None:
    if isinstance(resource, OrgFacts):
        return resource
    if isinstance(resource, RepoFacts):
        return resource.org
    return None


def _org_id(resource: Resource) -> int | None:
    org = _org_of(resource)
    return org.id if org else None


def _owner_id(resource: Resource) -> int | None:
    if isinstance(resource, RepoFacts):
        return resource.owner_id
    if isinstance(resource, OrgFacts):
        return resource.id
    return None


_IMPLIED_SCOPES = {
    "repo": {"public_repo", "repo:status", "repo_deployment", "repo:invite", "security_events"},
    "admin:org": {"write:org", "read:org"},
    "write:org": {"read:org"},
    "user": {"read:user", "user:email", "user:follow"},
    "audit_log": {"read:audit_log"},
}


def _expand_scopes(scopes: frozenset[str]) -> set[str]:
    expanded = set(scopes)
    for scope in scopes:
        expanded |= _IMPLIED_SCOPES.get(scope, set())
    return expanded
