"""An organization's settings: General, the Personal access tokens section (Settings, Active
tokens, Pending requests and the review of one request) and the Audit log.

Every page and every form starts with ``page.owned_org()``: members and strangers get a 403
page, and nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import RedirectResponse, Response

from patgate.accounts import services as accounts
from patgate.accounts.models import User
from patgate.approvals import services as approvals
from patgate.approvals.models import Grant, TokenRequest
from patgate.approvals.services import MAX_BULK, MAX_REASON, ListFilters
from patgate.approvals.states import RequestState
from patgate.audit import services as audit
from patgate.errors import InvalidInput, InvalidTransition, PolicyRefused
from patgate.orgs import services as orgs
from patgate.orgs.models import Enterprise, Organization
from patgate.orgs.services import UNSET, EffectivePolicies
from patgate.repos import services as repos
from patgate.repos.models import Repository
from patgate.tokens.models import FineGrainedToken
from patgate.tokens.permissions import grouped
from patgate.web.ui.nav import ORG_SETTINGS_NAV
from patgate.web.ui.pages import Page, Routes, nav_links, plural

routes = Routes()

BASE = "/organizations/{org}/settings"
PAT_SETTINGS = BASE + "/personal-access-tokens"
ACTIVE = BASE + "/personal-access-tokens-active"
REQUESTS = BASE + "/personal-access-token-requests"
REQUEST = REQUESTS + "/{request_id:int}"
AUDIT_PER_PAGE = 30

POLICY_FIELDS = ("fine_grained", "approval", "classic")
LIFETIME_FIELDS = ("fine_grained_max_lifetime", "classic_max_lifetime")
FORCED_MESSAGE = "Set by the enterprise: this policy cannot be changed here."


def _url(template: str, org: Organization, **params: Any) -> str:
    return template.replace(":int", "").format(org=org.login, **params)


def _render(page: Page, org: Organization, template: str, nav_key: str, **values: Any) -> Response:
    """An org settings page: the sidebar, and the opt-in prompt on the Personal access tokens
    pages until the organization has opted in (SPEC §3)."""
    policies = orgs.effective_policies(page.ctx, org)
    enterprise = page.ctx.session.get(Enterprise, org.enterprise_id) if org.enterprise_id else None
    values.setdefault("errors", {})
    values.setdefault("status", 200)
    return page.render(
        template,
        org=org,
        enterprise=enterprise,
        policies=policies,
        show_opt_in=nav_key.startswith("pat-") and not policies.opted_in,
        opt_in_url=_url(PAT_SETTINGS, org) + "/opt-in",
        nav=nav_links(ORG_SETTINGS_NAV, {"org": org.login}),
        nav_key=nav_key,
        **values,
    )


# ---- General ----------------------------------------------------------------------------


@routes.get("/organizations/{org}/settings")
def settings_home(page: Page) -> Response:
    org = page.owned_org()
    return RedirectResponse(_url(BASE, org) + "/profile", status_code=303)


@routes.get(BASE + "/profile")
def general(page: Page) -> Response:
    org = page.owned_org()
    return _render(page, org, "org/profile.html", "profile", members=orgs.members(page.ctx, org))


# ---- Personal access tokens: Settings ---------------------------------------------------


@routes.get(PAT_SETTINGS)
def pat_settings(page: Page) -> Response:
    org = page.owned_org()
    return _render(page, org, "org/pat_settings.html", "pat-settings", submitted={})


@routes.post(PAT_SETTINGS)
def save_pat_settings(page: Page) -> Response:
    org = page.owned_org()
    current = orgs.effective_policies(page.ctx, org)
    errors: dict[str, str] = {}
    choices = {name: page.field(name) or None for name in POLICY_FIELDS}
    lifetimes: dict[str, Any] = {}
    for name in LIFETIME_FIELDS:
        if not page.has_field(name):
            lifetimes[name] = UNSET  # a disabled (enterprise-forced) field is not sent
            continue
        text = page.field(name).strip()
        if text == "":
            lifetimes[name] = None
        elif text.isdigit():
            lifetimes[name] = int(text)
        else:
            lifetimes[name] = UNSET
            errors[name] = "Enter a number of days between 1 and 366, or leave empty."
    errors.update(_forced_errors(current, choices, lifetimes))
    if not errors:
        try:
            orgs.set_org_policy(
                page.ctx,
                org,
                actor=page.actor,
                fine_grained=choices["fine_grained"],
                approval=choices["approval"],
                classic=choices["classic"],
                fine_grained_max_lifetime_days=lifetimes["fine_grained_max_lifetime"],
                classic_max_lifetime_days=lifetimes["classic_max_lifetime"],
            )
        except InvalidInput as exc:
            errors[exc.field] = exc.message
        except PolicyRefused as exc:
            errors["form"] = exc.message
    if errors:
        status = 403 if any(e == FORCED_MESSAGE for e in errors.values()) else 422
        submitted = {**choices, **{n: page.field(n) for n in LIFETIME_FIELDS}}
        return _render(
            page, org, "org/pat_settings.html", "pat-settings",
            status=status, errors=errors, submitted=submitted,
        )  # fmt: skip
    return page.redirect(_url(PAT_SETTINGS, org), flash="Personal access token settings saved.")


@routes.post(PAT_SETTINGS + "/opt-in")
def opt_in(page: Page) -> Response:
    org = page.owned_org()
    current = orgs.effective_policies(page.ctx, org)
    choices = {name: page.field(name) or None for name in POLICY_FIELDS}
    errors = {
        name: "Choose one."
        for name in POLICY_FIELDS
        if choices[name] is None and name not in current.forced
    }
    errors.update(_forced_errors(current, choices, {}))
    if not errors:
        try:
            orgs.set_org_policy(page.ctx, org, actor=page.actor, opt_in=True, **choices)
        except InvalidInput as exc:
            errors[exc.field] = exc.message
        except PolicyRefused as exc:
            errors["form"] = exc.message
    if errors:
        status = 403 if any(e == FORCED_MESSAGE for e in errors.values()) else 422
        return _render(
            page, org, "org/pat_settings.html", "pat-settings",
            status=status, errors=errors, submitted=choices,
        )  # fmt: skip
    back = page.field("return_to")
    section = (_url(PAT_SETTINGS, org), _url(ACTIVE, org), _url(REQUESTS, org))
    return page.redirect(
        back if back in section else section[0],
        flash=f"{org.login} is opted in to fine-grained personal access tokens.",
    )


def _forced_errors(
    current: EffectivePolicies, choices: dict[str, str | None], lifetimes: dict[str, Any]
) -> dict[str, str]:
    """A value sent for an enterprise-forced policy that differs from the forced one.

    The service refuses it too (``PolicyRefused``); this names the field next to which the
    page says so.
    """
    errors = {}
    for name, value in choices.items():
        if name in current.forced and value is not None and value != getattr(current, name):
            errors[name] = FORCED_MESSAGE
    for name, days in lifetimes.items():
        if (
            name in current.forced
            and days is not UNSET
            and days != getattr(current, name + "_days")
        ):
            errors[name] = FORCED_MESSAGE
    return errors


# ---- the lists' filters and rows --------------------------------------------------------


@dataclass
class Filters:
    owner: str
    repository: str
    permission: str
    error: str | None
    choices: dict[str, list[str]]

    @property
    def active(self) -> bool:
        return bool(self.owner or self.repository or self.permission)

    def list_filters(self) -> ListFilters:
        return ListFilters(
            owners=(self.owner,) if self.owner else (),
            repository=self.repository or None,
            permission=self.permission if self.permission and not self.error else None,
        )


def _filters(page: Page, choices: dict[str, list[str]]) -> Filters:
    permission = page.query("permission")
    error = None
    if permission:
        try:
            approvals.parse_permission_filter(permission)
        except InvalidInput:
            error = "Choose a permission from the list."
    return Filters(page.query("owner"), page.query("repository"), permission, error, choices)


@dataclass
class Row:
    """One pending request or active grant, with what the list shows of it."""

    id: int
    token: FineGrainedToken
    owner: User
    repository_selection: str
    repository_count: int
    permissions: dict[str, str]
    created_at: Any


def _owner(page: Page, user_id: int) -> User:
    return accounts.get_user_by_id(page.ctx, user_id)


def _repository_summary(selection: str, count: int) -> str:
    if selection == "all":
        return "All repositories"
    if selection == "none":
        return "Public repositories (read-only)"
    return plural(count, "repository", "repositories")


def _back(page: Page, list_url: str) -> str:
    """Where a bulk form returns: the list it came from, filters and page kept."""
    back = page.field("return_to")
    return back if back == list_url or back.startswith(list_url + "?") else list_url


# ---- Personal access tokens: Pending requests -------------------------------------------


@routes.get(REQUESTS)
def pending_requests(page: Page) -> Response:
    org = page.owned_org()
    filters = _filters(page, approvals.pending_filter_choices(page.ctx, org))
    pagination = page.pagination(0)
    found, total = approvals.list_pending(
        page.ctx, org, filters.list_filters(), page=pagination.page, per_page=pagination.per_page
    )
    pagination.total = total
    rows = [
        Row(
            request.id,
            token,
            _owner(page, request.requester_id),
            request.repository_selection,
            len(approvals.request_repository_ids(page.ctx, request)),
            dict(request.permissions),
            request.created_at,
        )
        for request, token in found
    ]
    return _render(
        page, org, "org/pending_requests.html", "pat-requests",
        rows=rows, filters=filters, pagination=pagination,
        repository_summary=_repository_summary, max_bulk=MAX_BULK,
    )  # fmt: skip


@routes.post(REQUESTS + "/confirm")
def confirm_requests(page: Page) -> Response:
    """The no-JavaScript confirmation of **Approve...** / **Deny...** (a dialog with JS)."""
    org = page.owned_org()
    back = _back(page, _url(REQUESTS, org))
    decision = page.field("decision")
    ids = page.ids("request_ids")
    if decision not in ("approve", "deny"):
        return page.redirect(back, error="Choose Approve... or Deny... from the menu.")
    if not ids:
        return page.redirect(back, error="Select at least one request.")
    return _confirm_page(page, org, decision, ids, back=back)


def _confirm_page(
    page: Page,
    org: Organization,
    decision: str,
    ids: list[int],
    *,
    back: str,
    reason: str = "",
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    if len(ids) > MAX_BULK:
        return page.redirect(back, error=f"Select at most {MAX_BULK} requests at once.")
    chosen = [approvals.get_request(page.ctx, org, i) for i in ids]
    rows = [
        (r, page.ctx.session.get(FineGrainedToken, r.token_id), _owner(page, r.requester_id))
        for r in chosen
    ]
    return _render(
        page, org, "org/confirm_requests.html", "pat-requests",
        status=status, decision=decision, rows=rows, back=back, reason=reason,
        errors=errors or {},
    )  # fmt: skip


@routes.post(REQUESTS + "/approve")
def approve_selected(page: Page) -> Response:
    return _decide_selected(page, "approve")


@routes.post(REQUESTS + "/deny")
def deny_selected(page: Page) -> Response:
    return _decide_selected(page, "deny")


def _decide_selected(page: Page, decision: str) -> Response:
    org = page.owned_org()
    back = _back(page, _url(REQUESTS, org))
    ids = page.ids("request_ids")
    reason = page.field("reason").strip() if decision == "deny" else ""
    if not ids:
        return page.redirect(back, error="Select at least one request.")
    if len(reason) > MAX_REASON:
        return _confirm_page(
            page, org, decision, ids, back=back, reason=reason, status=422,
            errors={"reason": f"The reason can be at most {MAX_REASON} characters long."},
        )  # fmt: skip
    action = approvals.approve if decision == "approve" else approvals.deny
    try:
        decided = action(page.ctx, org, ids, actor=page.actor, reason=reason or None)
    except (InvalidTransition, InvalidInput) as exc:
        return page.redirect(back, error=f"Nothing was changed: {exc.message}.")
    done = "Approved" if decision == "approve" else "Denied"
    return page.redirect(back, flash=f"{done} {plural(len(decided), 'request')}.")


# ---- Personal access tokens: reviewing one request --------------------------------------


def _review_values(page: Page, org: Organization, request: TokenRequest) -> dict[str, Any]:
    token = page.ctx.session.get(FineGrainedToken, request.token_id)
    changes = approvals.changes_of(page.ctx, request)
    repositories: list[Repository] = repos.repos_by_ids(
        page.ctx, approvals.request_repository_ids(page.ctx, request)
    )
    reviewer = (
        accounts.get_user_by_id(page.ctx, request.reviewer_id) if request.reviewer_id else None
    )
    return {
        "req": request,
        "token": token,
        "owner": _owner(page, request.requester_id),
        "reviewer": reviewer,
        "changes": changes,
        "repositories": repositories,
        "groups": grouped(request.permissions),
        "pending": request.state == RequestState.PENDING,
        # An edit of an approved token: what it adds or upgrades is marked as such.
        "is_edit": token is not None
        and approvals.active_grant_of(page.ctx, token, org) is not None,
        "list_url": _url(REQUESTS, org),
        "review_url": _url(REQUEST, org, request_id=request.id),
        "reason": "",
    }


@routes.get(REQUEST)
def review_request(page: Page) -> Response:
    org = page.owned_org()
    request = approvals.get_request(page.ctx, org, page.param("request_id"))
    return _render(
        page, org, "org/request_review.html", "pat-requests", **_review_values(page, org, request)
    )


@routes.post(REQUEST + "/approve")
def approve_request(page: Page) -> Response:
    org = page.owned_org()
    request = approvals.get_request(page.ctx, org, page.param("request_id"))
    token = page.ctx.session.get(FineGrainedToken, request.token_id)
    try:
        approvals.approve(page.ctx, org, [request.id], actor=page.actor)
    except InvalidTransition:
        return _already_decided(page, org, request)
    owner = _owner(page, request.requester_id)
    name = token.name if token else "the token"
    return page.redirect(
        _url(REQUESTS, org), flash=f"Approved access for {name} (requested by {owner.login})."
    )


@routes.get(REQUEST + "/deny")
def deny_request_form(page: Page) -> Response:
    """The confirmation box as a page of its own, for browsers without JavaScript."""
    org = page.owned_org()
    request = approvals.get_request(page.ctx, org, page.param("request_id"))
    return _render(
        page, org, "org/request_deny.html", "pat-requests", **_review_values(page, org, request)
    )


@routes.post(REQUEST + "/deny")
def deny_request(page: Page) -> Response:
    org = page.owned_org()
    request = approvals.get_request(page.ctx, org, page.param("request_id"))
    token = page.ctx.session.get(FineGrainedToken, request.token_id)
    reason = page.field("reason").strip()
    if len(reason) > MAX_REASON:
        values = _review_values(page, org, request)
        values["reason"] = reason
        return _render(
            page, org, "org/request_deny.html", "pat-requests", status=422,
            errors={"reason": f"The reason can be at most {MAX_REASON} characters long."},
            **values,
        )  # fmt: skip
    try:
        approvals.deny(page.ctx, org, [request.id], actor=page.actor, reason=reason or None)
    except InvalidTransition:
        return _already_decided(page, org, request)
    owner = _owner(page, request.requester_id)
    name = token.name if token else "the token"
    return page.redirect(
        _url(REQUESTS, org), flash=f"Denied access for {name} (requested by {owner.login})."
    )


def _already_decided(page: Page, org: Organization, request: TokenRequest) -> Response:
    return page.redirect(
        _url(REQUEST, org, request_id=request.id),
        error="This request has already been decided: nothing was changed.",
    )


# ---- Personal access tokens: Active tokens ----------------------------------------------


@routes.get(ACTIVE)
def active_tokens(page: Page) -> Response:
    org = page.owned_org()
    choices = approvals.pending_filter_choices(page.ctx, org)
    choices["owners"] = [user.login for user, _ in orgs.members(page.ctx, org)]
    filters = _filters(page, choices)
    pagination = page.pagination(0)
    found, total = approvals.list_active_grants(
        page.ctx, org, filters.list_filters(), page=pagination.page, per_page=pagination.per_page
    )
    pagination.total = total
    rows = [_grant_row(page, grant, token) for grant, token in found]
    return _render(
        page, org, "org/active_tokens.html", "pat-active",
        rows=rows, filters=filters, pagination=pagination,
        repository_summary=_repository_summary, max_bulk=MAX_BULK,
    )  # fmt: skip


def _grant_row(page: Page, grant: Grant, token: FineGrainedToken) -> Row:
    return Row(
        grant.id,
        token,
        _owner(page, token.user_id),
        grant.repository_selection,
        len(approvals.grant_repository_ids(page.ctx, grant)),
        dict(grant.permissions),
        grant.granted_at,
    )


@routes.post(ACTIVE + "/confirm")
def confirm_revoke(page: Page) -> Response:
    """The no-JavaScript confirmation of **Revoke...** (a dialog with JS)."""
    org = page.owned_org()
    back = _back(page, _url(ACTIVE, org))
    ids = page.ids("grant_ids")
    if not ids:
        return page.redirect(back, error="Select at least one token.")
    if len(ids) > MAX_BULK:
        return page.redirect(back, error=f"Select at most {MAX_BULK} tokens at once.")
    grants = [approvals.get_grant(page.ctx, org, i) for i in ids]
    rows = [_grant_row(page, g, page.ctx.session.get(FineGrainedToken, g.token_id)) for g in grants]
    return _render(page, org, "org/confirm_revoke.html", "pat-active", rows=rows, back=back)


@routes.post(ACTIVE + "/revoke")
def revoke_selected(page: Page) -> Response:
    org = page.owned_org()
    back = _back(page, _url(ACTIVE, org))
    ids = page.ids("grant_ids")
    if not ids:
        return page.redirect(back, error="Select at least one token.")
    try:
        revoked = approvals.revoke(page.ctx, org, ids, actor=page.actor)
    except (InvalidTransition, InvalidInput) as exc:
        return page.redirect(back, error=f"Nothing was changed: {exc.message}.")
    return page.redirect(back, flash=f"Revoked access for {plural(len(revoked), 'token')}.")


# ---- Audit log --------------------------------------------------------------------------


@routes.get(BASE + "/audit-log")
def audit_log(page: Page) -> Response:
    org = page.owned_org()
    phrase = page.query("phrase").strip()
    errors = {}
    pagination = page.pagination(0, per_page=AUDIT_PER_PAGE)
    entries: list[Any] = []
    try:
        query = audit.parse_phrase(phrase)
    except InvalidInput as exc:
        errors["phrase"] = exc.message
    else:
        entries, pagination.total = audit.list_entries(
            page.ctx, org.id, query, page=pagination.page, per_page=pagination.per_page
        )
    return _render(
        page, org, "org/audit_log.html", "audit-log",
        entries=entries, phrase=phrase, errors=errors, pagination=pagination,
    )  # fmt: skip
