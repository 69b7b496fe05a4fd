"""The user's Settings → Developer settings → Personal access tokens → Fine-grained tokens
(``/settings/personal-access-tokens``), as on GitHub; classic tokens are in
:mod:`patgate.web.ui.classic_tokens`.

Create, view, edit, regenerate and delete, over ``tokens.services``. A new or regenerated
secret is handed to the page that shows it once (:mod:`patgate.web.ui.reveal`). Every token
page loads the token with ``user=`` the signed-in user: someone else's token is a 404.

The generate form depends on its resource owner (the owner's repositories, organization or
account permissions, the justification when the organization requires approval). Without
JavaScript a **Choose** button re-renders the form for the chosen owner, keeping what was
typed; with JavaScript the owner's parts of the form (``data-swap``) are fetched again from
``/settings/personal-access-tokens/new?owner=...`` when the owner changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.responses import Response

from patgate.accounts.models import Account, User
from patgate.approvals import services as approvals
from patgate.approvals.models import Grant, TokenRequest
from patgate.approvals.states import RequestState
from patgate.errors import InvalidInput, PolicyRefused
from patgate.orgs import services as orgs
from patgate.orgs.models import AccessPolicy, Organization, Role
from patgate.orgs.services import EffectivePolicies
from patgate.repos import services as repos
from patgate.repos.models import Repository
from patgate.tokens import services as tokens
from patgate.tokens.models import FineGrainedToken
from patgate.tokens.permissions import (
    ACCOUNT_PERMISSIONS,
    ORGANIZATION_PERMISSIONS,
    REPOSITORY_PERMISSIONS,
    grouped,
)
from patgate.web.ui import reveal
from patgate.web.ui.nav import USER_SETTINGS_NAV
from patgate.web.ui.pages import Page, Routes, level_label, nav_links, permission_label

routes = Routes()

FINE_GRAINED = "/settings/personal-access-tokens"
FINE_GRAINED_NEW = FINE_GRAINED + "/new"
FINE_GRAINED_ONE = FINE_GRAINED + "/{token_id:int}"

EXPIRATIONS = (
    ("7", "7 days"),
    ("30", "30 days"),
    ("60", "60 days"),
    ("90", "90 days"),
    ("custom", "Custom..."),
    ("none", "No expiration"),
)
DEFAULT_EXPIRATION = "30"
KEEP = "keep"  # the edit form's "keep the current expiration"

SELECTIONS = ("none", "all", "subset")
PERMISSION_FIELD = "permission."
# The form's fields that show their errors next to them; the service's names for two.
FORM_FIELDS = {"name", "description", "expiration", "resource_owner", "repositories",
               "permissions", "reason"}  # fmt: skip
SERVICE_FIELDS = {"expires_at": "expiration"}


def field_for(service_field: str, fields: set[str]) -> str:
    """The form field next to which a service's error on ``service_field`` is shown (the
    form's top, ``form``, when it has no such field)."""
    name = SERVICE_FIELDS.get(service_field, service_field)
    return name if name in fields else "form"


def _url(template: str, **params: Any) -> str:
    return template.replace(":int", "").format(**params)


def settings_page(page: Page, template: str, nav_key: str, **values: Any) -> Response:
    values.setdefault("errors", {})
    status = values.pop("status", 200)
    return page.render(
        template,
        status=status,
        nav=nav_links(USER_SETTINGS_NAV, {}),
        nav_key=nav_key,
        **values,
    )


def regenerate_page(
    page: Page,
    token: Any,
    *,
    kind: str,
    title: str,
    back: str,
    list_url: str,
    list_label: str,
    notes: list[str],
    errors: dict[str, str] | None = None,
) -> Response:
    """The regenerate form of a token of either kind; with ``errors``, the refused submission
    (422), its fields as they were sent."""
    refused = errors is not None
    return settings_page(
        page, "settings/developer/regenerate.html", kind,
        status=422 if refused else 200, errors=errors or {},
        kind=kind, title=title, token=token, back=back, list_url=list_url, list_label=list_label,
        expiration=page.field("expiration", DEFAULT_EXPIRATION) if refused else DEFAULT_EXPIRATION,
        expires_on=page.field("expires_on") if refused else "",
        expirations=EXPIRATIONS, notes=notes,
    )  # fmt: skip


# ---- expiration -------------------------------------------------------------------------


def expires_at_of(page: Page, *, keep: bool = False) -> Any:
    """The expiry the form asks for: a datetime, ``None`` (no expiration) or :data:`KEEP`.

    Raises :class:`InvalidInput` (field ``expiration``) for a missing or past custom date.
    """
    choice = page.field("expiration", DEFAULT_EXPIRATION)
    if keep and choice == KEEP:
        return KEEP
    if choice == "custom":
        text = page.field("expires_on").strip()
        if not text:
            raise InvalidInput("Choose the custom expiration date.", field="expiration")
    elif choice in {value for value, _ in EXPIRATIONS}:
        text = choice
    else:
        raise InvalidInput("Choose an expiration from the list.", field="expiration")
    try:
        return tokens.expiry(page.ctx.now, text)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="expiration") from None


def _lifetime_error(
    page: Page, org: Organization | None, issued_at: datetime, expires_at: Any
) -> str | None:
    """Why the organization's maximum lifetime refuses a token living from ``issued_at`` to
    ``expires_at`` (the service refuses it too; this names the field), or ``None``."""
    if org is None or expires_at is KEEP:
        return None
    try:
        tokens.check_lifetime_policy(page.ctx, org, issued_at, expires_at)
    except PolicyRefused as exc:
        return exc.message
    return None


# ---- what a token's organization says of it ---------------------------------------------

STATE_LABELS = {
    "pending": ("Pending", "attention"),
    "approved": ("Approved", "success"),
    "denied": ("Denied", "danger"),
    "revoked": ("Revoked", "danger"),
    "cancelled": ("Cancelled", "muted"),
}


@dataclass
class OrgStatus:
    """A token's standing with the organization it targets: from its latest request and its
    active grant (an edit waiting for approval leaves the earlier approval working)."""

    org: Organization
    state: str  # pending | approved | denied | revoked | cancelled
    request: TokenRequest | None
    grant: Grant | None
    changes_pending: bool = False
    changes_denied: bool = False
    reviewer: str | None = None
    blocked: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return STATE_LABELS[self.state][0]

    @property
    def tone(self) -> str:
        return STATE_LABELS[self.state][1]


def org_status(page: Page, token: FineGrainedToken) -> OrgStatus | None:
    """``None`` for a token owned by its user (no organization to approve it)."""
    org = page.ctx.session.get(Organization, token.resource_owner_id)
    if org is None:
        return None
    request = approvals.latest_request_of(page.ctx, token)
    grant = approvals.active_grant_of(page.ctx, token, org)
    latest = request.state if request is not None else None
    reviewer = (
        page.ctx.session.get(User, request.reviewer_id)
        if request is not None and request.reviewer_id
        else None
    )
    if grant is not None:
        state = "approved"
    elif latest == RequestState.APPROVED:
        state = "revoked"  # approved once, its grant revoked since
    elif latest in (RequestState.PENDING, RequestState.DENIED, RequestState.CANCELLED):
        state = str(latest)
    else:
        state = "cancelled"
    status = OrgStatus(
        org,
        state,
        request,
        grant,
        changes_pending=grant is not None and latest == RequestState.PENDING,
        changes_denied=grant is not None and latest == RequestState.DENIED,
        reviewer=reviewer.login if reviewer is not None else None,
    )
    policies = orgs.effective_policies(page.ctx, org)
    if policies.fine_grained == AccessPolicy.RESTRICT:
        status.blocked.append(
            f"{org.login} forbids access via fine-grained personal access tokens: this token "
            "reads its public resources only."
        )
    limit = policies.fine_grained_max_lifetime_days
    if limit is not None and (
        token.expires_at is None or token.expires_at - token.issued_at > timedelta(days=limit)
    ):
        status.blocked.append(
            f"{org.login} forbids fine-grained personal access tokens that live longer than "
            f"{limit} days: regenerate this token with a shorter expiration to use it there."
        )
    return status


# ---- the resource owner -----------------------------------------------------------------


@dataclass
class OwnerView:
    """The chosen resource owner and what the form shows for it."""

    account: Account
    org: Organization | None
    role: str | None
    policies: EffectivePolicies | None
    repositories: list[Repository]

    @property
    def is_org(self) -> bool:
        return self.org is not None

    @property
    def needs_approval(self) -> bool:
        return (
            self.policies is not None
            and self.policies.approval_required
            and self.role != Role.OWNER
        )

    @property
    def refusal(self) -> str | None:
        """Why a token cannot target this organization now (the service refuses it too)."""
        if self.org is None or self.policies is None:
            return None
        if not self.policies.opted_in:
            return (
                f"{self.org.login} has not opted in to fine-grained personal access tokens: "
                "an owner of the organization must opt in first."
            )
        if self.policies.fine_grained == AccessPolicy.RESTRICT:
            return f"{self.org.login} forbids access via fine-grained personal access tokens."
        return None

    @property
    def approval_note(self) -> str | None:
        if self.org is None:
            return None
        login = self.org.login
        if self.role == Role.OWNER:
            return f"You are an owner of {login}: the token is approved at once."
        if self.needs_approval:
            return (
                f"{login} requires an owner to approve this token. Until then it can read "
                "public resources only."
            )
        return f"{login} does not require approval: the token works at once."

    @property
    def lifetime_note(self) -> str | None:
        days = self.policies.fine_grained_max_lifetime_days if self.policies else None
        if self.org is None or days is None:
            return None
        return f"{self.org.login} requires fine-grained tokens to expire within {days} days."


def _owners(page: Page) -> list[tuple[str, bool]]:
    """The logins a token may name as its resource owner: the user, then their orgs."""
    user = page.signed_in
    return [(user.login, False)] + [(org.login, True) for org, _ in orgs.orgs_of(page.ctx, user)]


def _owner_view(page: Page, login: str | None) -> OwnerView:
    """The owner called ``login`` if the user may choose it; the user themself otherwise."""
    user = page.signed_in
    if login and login.lower() != user.login.lower():
        found = repos.find_account(page.ctx, login)
        if isinstance(found, Organization) and orgs.role_of(page.ctx, found, user) is not None:
            return _view_of(page, found)
    return _view_of(page, user)


def _token_owner_view(page: Page, token: FineGrainedToken) -> OwnerView:
    """A token's own resource owner (even an organization the user has left since)."""
    return _view_of(page, page.ctx.session.get(Account, token.resource_owner_id))


def _view_of(page: Page, account: Any) -> OwnerView:
    org = account if isinstance(account, Organization) else None
    return OwnerView(
        account=account,
        org=org,
        role=orgs.role_of(page.ctx, org, page.signed_in) if org is not None else None,
        policies=orgs.effective_policies(page.ctx, org) if org is not None else None,
        repositories=sorted(repos.repos_of(page.ctx, account), key=lambda r: r.name.lower()),
    )


# ---- permissions ------------------------------------------------------------------------

PERMISSION_GROUPS = (
    (
        "repository",
        "Repository permissions",
        "Repository permissions permit access to repositories and related resources.",
        REPOSITORY_PERMISSIONS,
    ),
    (
        "organization",
        "Organization permissions",
        "Organization permissions permit access to organization related resources.",
        ORGANIZATION_PERMISSIONS,
    ),
    (
        "account",
        "Account permissions",
        "Account permissions permit access to resources of your personal account.",
        ACCOUNT_PERMISSIONS,
    ),
)


@dataclass
class PermissionRow:
    name: str
    label: str
    choices: list[tuple[str, str]]
    selected: str


@dataclass
class PermissionGroup:
    key: str
    title: str
    description: str
    rows: list[PermissionRow]
    applies: bool

    @property
    def selected_count(self) -> int:
        return sum(1 for row in self.rows if row.selected and row.name != "metadata")


def _permission_groups(owner_is_org: bool, selected: dict[str, str]) -> list[PermissionGroup]:
    groups = []
    for key, title, description, catalogue in PERMISSION_GROUPS:
        applies = key == "repository" or (key == "organization") == owner_is_org
        rows = []
        for name, levels in sorted(catalogue.items(), key=lambda item: permission_label(item[0])):
            # metadata: read is always included (GitHub marks it mandatory).
            none = [] if name == "metadata" else [("", "No access")]
            rows.append(
                PermissionRow(
                    name,
                    permission_label(name),
                    none + [(level, level_label(level)) for level in levels],
                    selected.get(name, "read" if name == "metadata" else ""),
                )
            )
        groups.append(PermissionGroup(key, title, description, rows, applies))
    return groups


def _submitted_permissions(page: Page, owner_is_org: bool) -> dict[str, str]:
    """``{name: level}`` from the form's selects, for the groups that apply to the owner."""
    result = {}
    for group in _permission_groups(owner_is_org, {}):
        if not group.applies:
            continue
        for row in group.rows:
            level = page.field(PERMISSION_FIELD + row.name)
            if level:
                result[row.name] = level
    return result


# ---- the form's state -------------------------------------------------------------------


@dataclass
class FineGrainedForm:
    """What the generate or edit form shows (as submitted, or from the token)."""

    name: str = ""
    description: str = ""
    owner: str = ""
    expiration: str = DEFAULT_EXPIRATION
    expires_on: str = ""
    repository_selection: str = "none"
    repository_ids: set[int] = field(default_factory=set)
    permissions: dict[str, str] = field(default_factory=dict)
    reason: str = ""


def _submitted_form(page: Page, owner: OwnerView, *, default_expiration: str) -> FineGrainedForm:
    selection = page.field("repository_selection", "none")
    return FineGrainedForm(
        name=page.field("name").strip(),
        description=page.field("description").strip(),
        owner=owner.account.login,
        expiration=page.field("expiration", default_expiration),
        expires_on=page.field("expires_on").strip(),
        repository_selection=selection,
        repository_ids=set(page.ids("repository_ids")),
        permissions=_submitted_permissions(page, owner.is_org),
        # The justification is on the form only when the owner reviews requests.
        reason=page.field("reason").strip() if owner.needs_approval else "",
    )


def _chosen_repositories(
    page: Page, owner: OwnerView, form: FineGrainedForm, errors: dict[str, str]
) -> list[Repository]:
    if form.repository_selection not in SELECTIONS:
        errors["repositories"] = "Choose which repositories the token can access."
        return []
    if form.repository_selection != "subset":
        return []
    own = {repo.id: repo for repo in owner.repositories}
    chosen = [own[i] for i in sorted(form.repository_ids) if i in own]
    if not chosen:
        errors["repositories"] = "Select at least one repository."
    elif len(chosen) < len(form.repository_ids):
        errors["repositories"] = f"Select repositories owned by {owner.account.login}."
    elif len(chosen) > tokens.MAX_SELECTED_REPOSITORIES:
        errors["repositories"] = f"Select at most {tokens.MAX_SELECTED_REPOSITORIES} repositories."
    return chosen


def _form_page(
    page: Page,
    form: FineGrainedForm,
    owner: OwnerView,
    *,
    token: FineGrainedToken | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    groups = _permission_groups(owner.is_org, form.permissions)
    return settings_page(
        page,
        "settings/developer/fine_grained_form.html",
        "fine-grained",
        status=status,
        form=form,
        owner=owner,
        owners=_owners(page),
        groups=groups,
        token=token,
        status_of=org_status(page, token) if token is not None else None,
        errors=errors or {},
        expirations=EXPIRATIONS,
        max_repositories=tokens.MAX_SELECTED_REPOSITORIES,
        max_reason=tokens.MAX_REASON,
        max_name=tokens.MAX_NAME,
    )


# ---- fine-grained tokens: the list ------------------------------------------------------


@routes.get(FINE_GRAINED)
def fine_grained_list(page: Page) -> Response:
    rows = [
        (token, org_status(page, token), page.ctx.session.get(Account, token.resource_owner_id))
        for token in tokens.fine_grained_of(page.ctx, page.signed_in)
    ]
    secret = reveal.take(page, FINE_GRAINED)
    response = settings_page(
        page,
        "settings/developer/fine_grained_list.html",
        "fine-grained",
        rows=rows,
        new_secret=secret,
        max_tokens=tokens.MAX_TOKENS_PER_USER,
    )
    return reveal.forget(page, response, where=FINE_GRAINED)


# ---- fine-grained tokens: generate ------------------------------------------------------


@routes.get(FINE_GRAINED_NEW)
def fine_grained_new(page: Page) -> Response:
    owner = _owner_view(page, page.query("owner"))
    return _form_page(page, FineGrainedForm(owner=owner.account.login), owner)


@routes.post(FINE_GRAINED)
def fine_grained_create(page: Page) -> Response:
    owner = _owner_view(page, page.field("resource_owner"))
    form = _submitted_form(page, owner, default_expiration=DEFAULT_EXPIRATION)
    if page.has_field("choose_owner"):
        # The no-JavaScript way to change the owner: the same form, for the chosen owner.
        return _form_page(page, form, owner)
    errors: dict[str, str] = {}
    requested = page.field("resource_owner").strip()
    if requested and requested.lower() != owner.account.login.lower():
        errors["resource_owner"] = "Choose yourself or one of your organizations."
    if not form.name:
        errors["name"] = "Enter a name for the token."
    elif len(form.name) > tokens.MAX_NAME:
        errors["name"] = f"Use at most {tokens.MAX_NAME} characters."
    if len(form.reason) > tokens.MAX_REASON:
        errors["reason"] = f"The justification can be at most {tokens.MAX_REASON} characters long."
    expires_at: Any = None
    try:
        expires_at = expires_at_of(page)
    except InvalidInput as exc:
        errors["expiration"] = exc.message
    else:
        refused = _lifetime_error(page, owner.org, page.ctx.now, expires_at)
        if refused and not owner.refusal:
            errors["expiration"] = refused
    if owner.refusal:
        errors["resource_owner"] = owner.refusal
    chosen = _chosen_repositories(page, owner, form, errors)
    issued = None
    if not errors:
        try:
            issued = tokens.create_fine_grained(
                page.ctx,
                page.signed_in,
                name=form.name,
                resource_owner=owner.account,
                repository_selection=form.repository_selection,
                repositories=chosen,
                permissions=form.permissions,
                expires_at=expires_at,
                description=form.description or None,
                reason=form.reason or None,
                actor=page.actor,
            )
        except InvalidInput as exc:
            errors[field_for(exc.field, FORM_FIELDS)] = exc.message
        except PolicyRefused as exc:
            at_limit = (
                len(tokens.fine_grained_of(page.ctx, page.signed_in)) >= tokens.MAX_TOKENS_PER_USER
            )
            errors["resource_owner" if owner.is_org and not at_limit else "form"] = exc.message
    if issued is None:
        return _form_page(page, form, owner, errors=errors, status=422)
    return reveal.hand_over(
        page,
        page.redirect(FINE_GRAINED, flash=_created_message(issued.token, issued.request, owner)),
        where=FINE_GRAINED,
        secret=issued.secret,
    )


def _created_message(token: Any, request: TokenRequest | None, owner: OwnerView) -> str:
    login = owner.account.login
    if request is None:
        return f"Created {token.name}."
    if request.state == RequestState.PENDING:
        return (
            f"Created {token.name}. It asks {login} for access and reads public resources "
            "only until an owner approves it."
        )
    return f"Created {token.name}. Its access to {login} is approved."


# ---- fine-grained tokens: one token -----------------------------------------------------


def _token(page: Page) -> FineGrainedToken:
    return tokens.get_fine_grained(page.ctx, page.param("token_id"), user=page.signed_in)


def _token_values(page: Page, token: FineGrainedToken) -> dict[str, Any]:
    owner = page.ctx.session.get(Account, token.resource_owner_id)
    return {
        "token": token,
        "owner": owner,
        "status_of": org_status(page, token),
        "repositories": repos.repos_by_ids(
            page.ctx, tokens.selected_repository_ids(page.ctx, token)
        ),
        "groups": grouped(token.permissions),
        "token_url": _url(FINE_GRAINED_ONE, token_id=token.id),
    }


@routes.get(FINE_GRAINED_ONE)
def fine_grained_show(page: Page) -> Response:
    token = _token(page)
    where = _url(FINE_GRAINED_ONE, token_id=token.id)
    secret = reveal.take(page, where)
    response = settings_page(
        page,
        "settings/developer/fine_grained_show.html",
        "fine-grained",
        new_secret=secret,
        **_token_values(page, token),
    )
    return reveal.forget(page, response, where=where)


# ---- fine-grained tokens: edit ----------------------------------------------------------


@routes.get(FINE_GRAINED_ONE + "/edit")
def fine_grained_edit(page: Page) -> Response:
    token = _token(page)
    owner = _token_owner_view(page, token)
    form = FineGrainedForm(
        name=token.name,
        description=token.description or "",
        owner=owner.account.login,
        expiration=KEEP,
        repository_selection=token.repository_selection,
        repository_ids=tokens.selected_repository_ids(page.ctx, token),
        permissions=dict(token.permissions),
    )
    return _form_page(page, form, owner, token=token)


@routes.post(FINE_GRAINED_ONE + "/edit")
def fine_grained_update(page: Page) -> Response:
    token = _token(page)
    owner = _token_owner_view(page, token)
    form = _submitted_form(page, owner, default_expiration=KEEP)
    form.name = token.name
    errors: dict[str, str] = {}
    if len(form.reason) > tokens.MAX_REASON:
        errors["reason"] = f"The justification can be at most {tokens.MAX_REASON} characters long."
    expires_at: Any = KEEP
    try:
        expires_at = expires_at_of(page, keep=True)
    except InvalidInput as exc:
        errors["expiration"] = exc.message
    else:
        refused = _lifetime_error(page, owner.org, token.issued_at, expires_at)
        if refused:
            errors["expiration"] = refused
    chosen = _chosen_repositories(page, owner, form, errors)
    request = None
    if not errors:
        try:
            request = tokens.update_fine_grained(
                page.ctx,
                token,
                repository_selection=form.repository_selection,
                repositories=chosen,
                permissions=form.permissions,
                expires_at=None if expires_at is KEEP else expires_at,
                change_expiry=expires_at is not KEEP,
                description=form.description,
                reason=form.reason or None,
                actor=page.actor,
            )
        except InvalidInput as exc:
            errors[field_for(exc.field, FORM_FIELDS)] = exc.message
        except PolicyRefused as exc:
            errors["form"] = exc.message
    if errors:
        return _form_page(page, form, owner, token=token, errors=errors, status=422)
    if request is not None and request.state == RequestState.PENDING:
        message = (
            f"Saved {token.name}. What it now asks of {owner.account.login} waits for an "
            "owner's approval; the access approved before keeps working meanwhile."
        )
    else:
        message = f"Saved {token.name}."
    return page.redirect(_url(FINE_GRAINED_ONE, token_id=token.id), flash=message)


# ---- fine-grained tokens: regenerate and delete -----------------------------------------


def _lifetime_notes(page: Page, token: FineGrainedToken) -> list[str]:
    note = _token_owner_view(page, token).lifetime_note
    return [note] if note else []


def _regenerate_page(
    page: Page, token: FineGrainedToken, errors: dict[str, str] | None = None
) -> Response:
    return regenerate_page(
        page, token, kind="fine-grained", title=token.name,
        back=_url(FINE_GRAINED_ONE, token_id=token.id), list_url=FINE_GRAINED,
        list_label="Fine-grained tokens", notes=_lifetime_notes(page, token), errors=errors,
    )  # fmt: skip


@routes.get(FINE_GRAINED_ONE + "/regenerate")
def fine_grained_regenerate_form(page: Page) -> Response:
    return _regenerate_page(page, _token(page))


@routes.post(FINE_GRAINED_ONE + "/regenerate")
def fine_grained_regenerate(page: Page) -> Response:
    token = _token(page)
    errors: dict[str, str] = {}
    issued = None
    try:
        expires_at = expires_at_of(page)
        issued = tokens.regenerate(page.ctx, token, expires_at=expires_at, actor=page.actor)
    except InvalidInput as exc:
        errors["expiration"] = exc.message
    except PolicyRefused as exc:
        errors["expiration"] = exc.message
    if issued is None:
        return _regenerate_page(page, token, errors)
    where = _url(FINE_GRAINED_ONE, token_id=token.id)
    return reveal.hand_over(
        page,
        page.redirect(
            where, flash=f"Regenerated {token.name}: the previous secret stopped working."
        ),
        where=where,
        secret=issued.secret,
    )


@routes.get(FINE_GRAINED_ONE + "/delete")
def fine_grained_delete_form(page: Page) -> Response:
    """The confirmation as a page, for browsers without JavaScript (a dialog with it)."""
    token = _token(page)
    return settings_page(
        page,
        "settings/developer/delete.html",
        "fine-grained",
        title=token.name,
        action=_url(FINE_GRAINED_ONE, token_id=token.id) + "/delete",
        back=_url(FINE_GRAINED_ONE, token_id=token.id),
        list_url=FINE_GRAINED,
        list_label="Fine-grained tokens",
        consequence=_delete_consequence(page, token),
    )


def _delete_consequence(page: Page, token: FineGrainedToken) -> str:
    org = page.ctx.session.get(Organization, token.resource_owner_id)
    text = "Any applications or scripts using this token will no longer be able to access the API."
    if org is not None:
        text += f" Its pending request is cancelled and its access to {org.login} removed."
    return text


@routes.post(FINE_GRAINED_ONE + "/delete")
def fine_grained_delete(page: Page) -> Response:
    token = _token(page)
    name = token.name
    tokens.delete_fine_grained(page.ctx, token, actor=page.actor)
    return page.redirect(FINE_GRAINED, flash=f"Deleted {name}.")
