"""Enterprise owners' pages: the enterprises a user owns (``/settings/enterprises``) and an
enterprise's personal access token policies (``/enterprises/{enterprise}/settings/
personal-access-tokens``), which bind every organization of the enterprise (SPEC §3).

Each policy is either left to the organizations or forced; a forced value shows on the
organizations' own settings page as set by the enterprise, read-only. Only the enterprise's
owners see or change these pages (``decide()`` with ``ADMINISTER_ENTERPRISE``).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from patgate.authz.decision import Actions, EnterpriseFacts
from patgate.authz.services import user_facts
from patgate.errors import InvalidInput
from patgate.orgs import services as orgs
from patgate.orgs.models import AccessPolicy, ApprovalPolicy, Enterprise
from patgate.orgs.services import UNSET
from patgate.web.ui.nav import ENTERPRISE_SETTINGS_NAV, USER_SETTINGS_NAV
from patgate.web.ui.pages import Page, Routes, is_number, nav_links

routes = Routes()

POLICIES = "/enterprises/{enterprise}/settings/personal-access-tokens"
ORGANIZATIONS_CHOOSE = "orgs"

# (field, legend, description, [(value, label, help)]); "orgs" leaves it to the organizations.
POLICY_CHOICES: tuple[tuple[str, str, str, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "fine_grained",
        "Fine-grained personal access tokens",
        "Whether fine-grained personal access tokens can access the resources of the "
        "enterprise's organizations.",
        (
            (ORGANIZATIONS_CHOOSE, "Allow organizations to configure access requirements",
             "Each organization chooses for itself."),
            (AccessPolicy.ALLOW, "Allow access via fine-grained personal access tokens",
             "Every organization allows them; their owners cannot restrict them."),
            (AccessPolicy.RESTRICT, "Restrict access via fine-grained personal access tokens",
             "No organization's private resources are reachable with them. Public resources "
             "stay readable."),
        ),
    ),
    (
        "approval",
        "Require approval of fine-grained personal access tokens",
        "Whether an owner must approve each fine-grained token that asks for an "
        "organization's resources.",
        (
            (ORGANIZATIONS_CHOOSE, "Allow organizations to configure approval requirements",
             "Each organization chooses for itself."),
            (ApprovalPolicy.REQUIRED, "Require organizations to use the approval flow",
             "Every token of a member needs an owner's approval."),
            (ApprovalPolicy.NOT_REQUIRED, "Disable the approval flow in all organizations",
             "Tokens work as soon as they are created. Forcing this approves every pending "
             "request."),
        ),
    ),
    (
        "classic",
        "Personal access tokens (classic)",
        "Whether personal access tokens (classic) can access the resources of the "
        "enterprise's organizations.",
        (
            (ORGANIZATIONS_CHOOSE, "Allow organizations to configure access requirements",
             "Each organization chooses for itself."),
            (AccessPolicy.ALLOW, "Allow access via personal access tokens (classic)",
             "Every organization allows them; their owners cannot restrict them."),
            (AccessPolicy.RESTRICT, "Restrict access via personal access tokens (classic)",
             "No organization's private resources are reachable with them. Public resources "
             "stay readable."),
        ),
    ),
)  # fmt: skip

LIFETIMES = (
    ("fine_grained", "Maximum lifetime of fine-grained personal access tokens"),
    ("classic", "Maximum lifetime of personal access tokens (classic)"),
)


def _owned_enterprise(page: Page) -> Enterprise:
    """The path's enterprise if the signed-in user owns it: :class:`NotFound` for an unknown
    slug, a 403 page for anyone else."""
    enterprise = orgs.get_enterprise(page.ctx, page.param("enterprise"))
    page.require(
        Actions.ADMINISTER_ENTERPRISE,
        EnterpriseFacts(enterprise.id, enterprise.slug),
        message=f"Only owners of the {enterprise.name} enterprise can view and change its "
        "policies.",
    )
    return enterprise


def _lifetime_state(enterprise: Enterprise, name: str) -> tuple[str, str]:
    """The lifetime policy as the form shows it: (``orgs`` | ``days`` | ``none``, days)."""
    if not getattr(enterprise, f"{name}_max_lifetime_forced"):
        return ORGANIZATIONS_CHOOSE, ""
    days = getattr(enterprise, f"{name}_max_lifetime_days")
    return ("none", "") if days is None else ("days", str(days))


def _current(enterprise: Enterprise) -> dict[str, str]:
    values = {
        name: getattr(enterprise, f"{name}_policy") or ORGANIZATIONS_CHOOSE
        for name, *_ in POLICY_CHOICES
    }
    for name, _ in LIFETIMES:
        mode, days = _lifetime_state(enterprise, name)
        values[f"{name}_max_lifetime"] = mode
        values[f"{name}_max_lifetime_days"] = days
    return values


def _render(
    page: Page,
    enterprise: Enterprise,
    *,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return page.render(
        "enterprise/pat_policies.html",
        status=status,
        enterprise=enterprise,
        organizations=orgs.enterprise_orgs(page.ctx, enterprise),
        values=values,
        errors=errors or {},
        policy_choices=POLICY_CHOICES,
        lifetimes=LIFETIMES,
        opt_in_required=page.ctx.opt_in_required,
        nav=nav_links(ENTERPRISE_SETTINGS_NAV, {"enterprise": enterprise.slug}),
        nav_key="pat-policies",
    )


@routes.get("/settings/enterprises")
def your_enterprises(page: Page) -> Response:
    owned = user_facts(page.ctx, page.signed_in).enterprise_owner_of
    enterprises = sorted(
        (e for e in (page.ctx.session.get(Enterprise, i) for i in owned) if e is not None),
        key=lambda e: e.slug,
    )
    return page.render(
        "settings/enterprises.html",
        enterprises=[(e, len(orgs.enterprise_orgs(page.ctx, e))) for e in enterprises],
        nav=nav_links(USER_SETTINGS_NAV, {}),
        nav_key="enterprises",
    )


@routes.get("/enterprises/{enterprise}/settings")
def enterprise_settings(page: Page) -> Response:
    enterprise = _owned_enterprise(page)
    return page.redirect(POLICIES.format(enterprise=enterprise.slug))


@routes.get(POLICIES)
def policies(page: Page) -> Response:
    enterprise = _owned_enterprise(page)
    return _render(page, enterprise, values=_current(enterprise))


@routes.post(POLICIES)
def save_policies(page: Page) -> Response:
    enterprise = _owned_enterprise(page)
    values = _current(enterprise)
    errors: dict[str, str] = {}
    choices: dict[str, Any] = {}
    for name, _legend, _help, options in POLICY_CHOICES:
        value = page.field(name, values[name])
        values[name] = value
        if value not in {option for option, *_ in options}:
            errors[name] = "Choose one of the options."
        choices[name] = None if value == ORGANIZATIONS_CHOOSE else value
    lifetimes: dict[str, Any] = {}
    for name, _label in LIFETIMES:
        field = f"{name}_max_lifetime"
        mode = page.field(field, values[field])
        days_text = page.field(f"{field}_days").strip()
        values[field], values[f"{field}_days"] = mode, days_text
        if mode == ORGANIZATIONS_CHOOSE:
            lifetimes[field] = (False, None)
        elif mode == "none":
            lifetimes[field] = (True, None)
        elif mode == "days" and is_number(days_text) and 1 <= int(days_text) <= 366:
            lifetimes[field] = (True, int(days_text))
        elif mode == "days":
            errors[field] = "Enter a number of days between 1 and 366."
        else:
            errors[field] = "Choose one of the options."
    if not errors:
        try:
            orgs.set_enterprise_policy(
                page.ctx,
                enterprise,
                actor=page.actor,
                opt_in=page.has_field("opt_in"),
                fine_grained=choices.get("fine_grained", UNSET),
                approval=choices.get("approval", UNSET),
                classic=choices.get("classic", UNSET),
                fine_grained_max_lifetime=lifetimes["fine_grained_max_lifetime"],
                classic_max_lifetime=lifetimes["classic_max_lifetime"],
            )
        except InvalidInput as exc:
            errors[exc.field] = exc.message
    if errors:
        return _render(page, enterprise, values=values, errors=errors, status=422)
    return page.redirect(
        POLICIES.format(enterprise=enterprise.slug),
        flash=f"Personal access token policies of {enterprise.name} saved.",
    )
