"""Enterprises, organizations, memberships and personal access token policies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from patgate.accounts.models import User
from patgate.accounts.services import ensure_login_free, get_user, validate_login
from patgate.audit import services as audit
from patgate.authz.decision import OrgFacts
from patgate.context import Actor, Context
from patgate.errors import AlreadyExists, InvalidInput, NotFound, PolicyRefused
from patgate.orgs.models import (
    MAX_LIFETIME_RANGE,
    AccessPolicy,
    ApprovalPolicy,
    Enterprise,
    EnterpriseOwner,
    Membership,
    Organization,
    Role,
)

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){0,59}$")


class Unset:
    """Marks a policy argument that was not given (``None`` means "no maximum")."""


UNSET: Any = Unset()


# ---- enterprises ------------------------------------------------------------------------


def create_enterprise(
    ctx: Context, slug: str, *, name: str | None = None, owner: User | None = None
) -> Enterprise:
    """Create an enterprise; raise :class:`InvalidInput`/:class:`AlreadyExists` on a bad slug."""
    if not SLUG_PATTERN.match(slug or ""):
        raise InvalidInput(
            f"enterprise slug {slug!r} must be lowercase alphanumerics and single hyphens",
            field="slug",
            resource="Enterprise",
        )
    if find_enterprise(ctx, slug) is not None:
        raise AlreadyExists(f"enterprise {slug!r} already exists", field="slug")
    enterprise = Enterprise(slug=slug, slug_key=slug.lower(), name=name or slug, created_at=ctx.now)
    ctx.session.add(enterprise)
    ctx.session.flush()
    if owner is not None:
        ctx.session.add(EnterpriseOwner(enterprise_id=enterprise.id, user_id=owner.id))
    return enterprise


def find_enterprise(ctx: Context, slug: str) -> Enterprise | None:
    return ctx.session.scalar(select(Enterprise).where(Enterprise.slug_key == slug.lower()))


def get_enterprise(ctx: Context, slug: str) -> Enterprise:
    enterprise = find_enterprise(ctx, slug)
    if enterprise is None:
        raise NotFound("enterprise", slug)
    return enterprise


def is_enterprise_owner(ctx: Context, enterprise: Enterprise, user: User) -> bool:
    return ctx.session.get(EnterpriseOwner, (enterprise.id, user.id)) is not None


# ---- organizations and members ----------------------------------------------------------


def create_org(
    ctx: Context,
    login: str,
    *,
    owner: User,
    enterprise: Enterprise | None = None,
    name: str | None = None,
    actor: Actor,
) -> Organization:
    """Create an organization with ``owner`` as its first owner."""
    validate_login(login, resource="Organization")
    ensure_login_free(ctx, login, resource="Organization")
    org = Organization(
        login=login,
        login_key=login.lower(),
        name=name,
        enterprise_id=enterprise.id if enterprise else None,
        created_at=ctx.now,
        updated_at=ctx.now,
        opted_in=False,
        fine_grained_policy=AccessPolicy.ALLOW,
        approval_policy=ApprovalPolicy.REQUIRED,
        classic_policy=AccessPolicy.ALLOW,
    )
    ctx.session.add(org)
    ctx.session.flush()
    ctx.session.add(
        Membership(org_id=org.id, user_id=owner.id, role=Role.OWNER, created_at=ctx.now)
    )
    audit.record(ctx, "org.create", actor=actor, org=org, user=owner)
    return org


def find_org(ctx: Context, login: str) -> Organization | None:
    return ctx.session.scalar(select(Organization).where(Organization.login_key == login.lower()))


def get_org(ctx: Context, login: str) -> Organization:
    """Return the organization with this login (any case); raise :class:`NotFound`."""
    org = find_org(ctx, login)
    if org is None:
        raise NotFound("organization", login)
    return org


def role_of(ctx: Context, org: Organization, user: User) -> str | None:
    membership = ctx.session.get(Membership, (org.id, user.id))
    return membership.role if membership else None


def is_owner(ctx: Context, org: Organization, user: User) -> bool:
    return role_of(ctx, org, user) == Role.OWNER


def members(ctx: Context, org: Organization) -> list[tuple[User, str]]:
    rows = ctx.session.execute(
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org.id)
        .order_by(User.login_key)
    )
    return [(user, role) for user, role in rows]


def orgs_of(ctx: Context, user: User) -> list[tuple[Organization, str]]:
    rows = ctx.session.execute(
        select(Organization, Membership.role)
        .join(Membership, Membership.org_id == Organization.id)
        .where(Membership.user_id == user.id)
        .order_by(Organization.login_key)
    )
    return [(org, role) for org, role in rows]


def add_member(
    ctx: Context, org: Organization, user: User, *, role: str = Role.MEMBER, actor: Actor
) -> Membership:
    """Add ``user`` to ``org`` or change their role.

    A member promoted to owner has their pending requests approved (owners need no
    approval); a demotion changes no grant.
    """
    if role not in Role.__members__.values():
        raise InvalidInput(f"role {role!r} is not owner or member", field="role")
    membership = ctx.session.get(Membership, (org.id, user.id))
    promoted = role == Role.OWNER and (membership is None or membership.role != Role.OWNER)
    if membership is None:
        membership = Membership(org_id=org.id, user_id=user.id, role=role, created_at=ctx.now)
        ctx.session.add(membership)
        audit.record(ctx, "org.add_member", actor=actor, org=org, user=user, role=role)
    elif membership.role != role:
        membership.role = role
        audit.record(ctx, "org.update_member", actor=actor, org=org, user=user, role=role)
    ctx.session.flush()
    if promoted:
        # Imported here: approvals builds on orgs, and only these membership events reach back.
        from patgate.approvals import services as approvals

        approvals.approve_pending_of_owner(ctx, org, user, actor=actor)
    return membership


def remove_member(ctx: Context, org: Organization, user: User, *, actor: Actor) -> None:
    """Remove ``user``: their tokens lose their grants here, their pending requests end."""
    membership = ctx.session.get(Membership, (org.id, user.id))
    if membership is None:
        raise NotFound("member", user.login)
    if membership.role == Role.OWNER:
        owners = ctx.session.scalars(
            select(Membership).where(Membership.org_id == org.id, Membership.role == Role.OWNER)
        ).all()
        if len(owners) == 1:
            raise PolicyRefused(f"{user.login} is the last owner of {org.login}")
    from patgate.approvals import services as approvals

    approvals.end_access_of_member(ctx, org, user, actor=actor)
    ctx.session.delete(membership)
    audit.record(ctx, "org.remove_member", actor=actor, org=org, user=user)


def get_member(ctx: Context, org: Organization, login: str) -> User:
    user = get_user(ctx, login)
    if role_of(ctx, org, user) is None:
        raise NotFound("member", login)
    return user


# ---- policies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EffectivePolicies:
    """The policies in force for an organization, and which ones its enterprise forces."""

    opted_in: bool
    fine_grained: str
    approval: str
    classic: str
    fine_grained_max_lifetime_days: int | None
    classic_max_lifetime_days: int | None
    forced: frozenset[str]

    @property
    def approval_required(self) -> bool:
        return self.approval == ApprovalPolicy.REQUIRED


def effective_policies(ctx: Context, org: Organization) -> EffectivePolicies:
    enterprise = ctx.session.get(Enterprise, org.enterprise_id) if org.enterprise_id else None
    forced: set[str] = set()

    def pick(name: str, own: Any) -> Any:
        value = getattr(enterprise, f"{name}_policy", None) if enterprise else None
        if value is None:
            return own
        forced.add(name)
        return value

    def lifetime(name: str, own: int | None) -> int | None:
        if enterprise is None or not getattr(enterprise, f"{name}_max_lifetime_forced"):
            return own
        forced.add(f"{name}_max_lifetime")
        cap = getattr(enterprise, f"{name}_max_lifetime_days")
        return cap

    return EffectivePolicies(
        opted_in=(not ctx.opt_in_required)
        or org.opted_in
        or bool(enterprise and enterprise.opted_in),
        fine_grained=pick("fine_grained", org.fine_grained_policy),
        approval=pick("approval", org.approval_policy),
        classic=pick("classic", org.classic_policy),
        fine_grained_max_lifetime_days=lifetime("fine_grained", org.fine_grained_max_lifetime_days),
        classic_max_lifetime_days=lifetime("classic", org.classic_max_lifetime_days),
        forced=frozenset(forced),
    )


def org_facts(ctx: Context, org: Organization) -> OrgFacts:
    """The organization as :func:`patgate.authz.decision.decide` sees it."""
    policies = effective_policies(ctx, org)
    return OrgFacts(
        id=org.id,
        login=org.login,
        enterprise_id=org.enterprise_id,
        fine_grained_allowed=policies.fine_grained == AccessPolicy.ALLOW,
        classic_allowed=policies.classic == AccessPolicy.ALLOW,
        fine_grained_max_lifetime_days=policies.fine_grained_max_lifetime_days,
        classic_max_lifetime_days=policies.classic_max_lifetime_days,
    )


def _check_choice(
    value: str, allowed: type[AccessPolicy] | type[ApprovalPolicy], field: str
) -> str:
    if value not in [v.value for v in allowed]:
        choices = " or ".join(v.value for v in allowed)
        raise InvalidInput(f"{field} must be {choices}, not {value!r}", field=field)
    return value


def _optional_choice(
    value: str | None, allowed: type[AccessPolicy] | type[ApprovalPolicy], field: str
) -> str | None:
    return None if value is None else _check_choice(value, allowed, field)


def check_lifetime(days: int | None, field: str) -> int | None:
    if days is not None and days not in MAX_LIFETIME_RANGE:
        raise InvalidInput(f"{field} must be between 1 and 366 days, or none", field=field)
    return days


def set_org_policy(
    ctx: Context,
    org: Organization,
    *,
    actor: Actor,
    opt_in: bool = False,
    fine_grained: str | None = None,
    approval: str | None = None,
    classic: str | None = None,
    fine_grained_max_lifetime_days: int | None = UNSET,
    classic_max_lifetime_days: int | None = UNSET,
) -> EffectivePolicies:
    """Change an organization's policies; each change is audited.

    Raises :class:`PolicyRefused`, changing nothing, if any given value differs from one the
    enterprise forces, and :class:`InvalidInput` for a value out of range. Switching approval
    to ``not_required`` approves every pending request (audited, creators emailed).
    """
    current = effective_policies(ctx, org)
    wanted = {
        "fine_grained": _optional_choice(fine_grained, AccessPolicy, "fine_grained"),
        "approval": _optional_choice(approval, ApprovalPolicy, "approval"),
        "classic": _optional_choice(classic, AccessPolicy, "classic"),
    }  # fmt: skip
    lifetimes = {
        "fine_grained_max_lifetime": fine_grained_max_lifetime_days,
        "classic_max_lifetime": classic_max_lifetime_days,
    }
    for name, days in lifetimes.items():
        if days is not UNSET:
            check_lifetime(days, name)
    for name, value in [*wanted.items(), *lifetimes.items()]:
        if (value is None and name in wanted) or value is UNSET:
            continue
        in_force = getattr(current, name if name in wanted else f"{name}_days")
        if name in current.forced and value != in_force:
            raise PolicyRefused(
                f"the {name.replace('_', ' ')} policy of {org.login} is set by its enterprise "
                "and cannot be changed here"
            )
    if opt_in and not org.opted_in:
        org.opted_in = True
        audit.record(ctx, audit.POLICY_ACTIONS["opt_in"], actor=actor, org=org)
    for name in ("fine_grained", "classic"):
        value = wanted[name]
        if (
            value is not None
            and name not in current.forced
            and value != getattr(org, f"{name}_policy")
        ):
            setattr(org, f"{name}_policy", value)
            audit.record(ctx, audit.POLICY_ACTIONS[name], actor=actor, org=org, policy=value)
    approval_value = wanted["approval"]
    if (
        approval_value is not None
        and "approval" not in current.forced
        and approval_value != org.approval_policy
    ):
        org.approval_policy = approval_value
        action = "enable" if approval_value == ApprovalPolicy.NOT_REQUIRED else "disable"
        audit.record(
            ctx, f"auto_approve_personal_access_token_requests.{action}", actor=actor, org=org
        )
    for name, days in lifetimes.items():
        column = f"{name}_days"
        if days is not UNSET and name not in current.forced and days != getattr(org, column):
            setattr(org, column, days)
            audit.record(ctx, audit.POLICY_ACTIONS[name], actor=actor, org=org, max_days=days)
    org.updated_at = ctx.now
    ctx.session.flush()
    result = effective_policies(ctx, org)
    if current.approval_required and not result.approval_required:
        from patgate.approvals import services as approvals

        approvals.approve_all_pending(ctx, org, actor=actor)
    return result


ENTERPRISE_POLICY_ACTION = "business.personal_access_token_policy_update"


def set_enterprise_policy(
    ctx: Context,
    enterprise: Enterprise,
    *,
    actor: Actor,
    opt_in: bool = False,
    fine_grained: str | None = UNSET,
    approval: str | None = UNSET,
    classic: str | None = UNSET,
    fine_grained_max_lifetime: tuple[bool, int | None] | None = None,
    classic_max_lifetime: tuple[bool, int | None] | None = None,
) -> Enterprise:
    """Force (a value) or release (``None``: let organizations choose) enterprise policies.

    Lifetimes are ``(forced, days)``; ``days`` None with ``forced`` True means no maximum.
    Forcing ``approval=not_required`` approves the pending requests of every organization.
    """
    before = {}
    orgs = ctx.session.scalars(
        select(Organization).where(Organization.enterprise_id == enterprise.id)
    ).all()
    for org in orgs:
        before[org.id] = effective_policies(ctx, org).approval_required
    changes: dict[str, Any] = {}
    if opt_in and not enterprise.opted_in:
        enterprise.opted_in = True
        changes["opt_in"] = True
    for name, value, choices in (
        ("fine_grained", fine_grained, AccessPolicy),
        ("approval", approval, ApprovalPolicy),
        ("classic", classic, AccessPolicy),
    ):
        if value is UNSET:
            continue
        if value is not None:
            _check_choice(value, choices, name)
        setattr(enterprise, f"{name}_policy", value)
        changes[name] = value or "organizations choose"
    for name, lifetime in (
        ("fine_grained", fine_grained_max_lifetime),
        ("classic", classic_max_lifetime),
    ):
        if lifetime is None:
            continue
        forced, days = lifetime
        check_lifetime(days, f"{name}_max_lifetime")
        setattr(enterprise, f"{name}_max_lifetime_forced", forced)
        setattr(enterprise, f"{name}_max_lifetime_days", days if forced else None)
        changes[f"{name}_max_lifetime"] = (days or "none") if forced else "organizations choose"
    if changes:
        audit.record(
            ctx, ENTERPRISE_POLICY_ACTION, actor=actor, enterprise=enterprise.slug, **changes
        )
    ctx.session.flush()
    from patgate.approvals import services as approvals

    for org in orgs:
        if before[org.id] and not effective_policies(ctx, org).approval_required:
            approvals.approve_all_pending(ctx, org, actor=actor)
    return enterprise


def enterprise_orgs(ctx: Context, enterprise: Enterprise) -> list[Organization]:
    return list(
        ctx.session.scalars(
            select(Organization)
            .where(Organization.enterprise_id == enterprise.id)
            .order_by(Organization.login_key)
        )
    )
