"""An organization's GitHub Apps, for its owners: the apps installed on it
(``/organizations/{org}/settings/installations``), the apps it registered
(``/organizations/{org}/settings/apps``), registering one (its private key handed over once)
and installing it, and an app's webhook deliveries with every attempt.

Every page starts with ``page.owned_org()``; an app is found by its slug among the apps the
organization owns (anything else is a 404).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from starlette.responses import Response

from patgate.apps import services as apps
from patgate.apps.models import App, Installation
from patgate.errors import AlreadyExists, Forbidden, InvalidInput, NotFound
from patgate.notifications import jobs
from patgate.notifications import services as outbox
from patgate.notifications.models import DeliveryAttempt, OutboxMessage
from patgate.orgs.models import Enterprise, Organization
from patgate.tokens.permissions import ORGANIZATION_PERMISSIONS, REPOSITORY_PERMISSIONS, grouped
from patgate.web.ui import reveal
from patgate.web.ui.nav import ORG_SETTINGS_NAV
from patgate.web.ui.pages import Page, Routes, level_label, nav_links, permission_label

routes = Routes()

BASE = "/organizations/{org}/settings"
INSTALLATIONS = BASE + "/installations"
APPS = BASE + "/apps"
APP = APPS + "/{slug}"
DELIVERIES_PER_PAGE = 30

# The events patgate delivers (SPEC §6), as the registration form offers them.
EVENTS = (
    (
        apps.REQUEST_EVENT,
        "Personal access token request",
        "A fine-grained personal access token request was created, approved, denied or "
        "cancelled. Needs the Organization personal access token requests permission.",
    ),
)


def _url(template: str, org: Organization, **params: Any) -> str:
    return template.format(org=org.login, **params)


def _render(page: Page, org: Organization, template: str, nav_key: str, **values: Any) -> Response:
    values.setdefault("errors", {})
    enterprise = page.ctx.session.get(Enterprise, org.enterprise_id) if org.enterprise_id else None
    return page.render(
        template,
        org=org,
        enterprise=enterprise,
        show_opt_in=False,
        nav=nav_links(ORG_SETTINGS_NAV, {"org": org.login}),
        nav_key=nav_key,
        **values,
    )


def _permission_rows(permissions: dict[str, str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """``[(group title, [(label, level label)])]`` for the groups that have permissions."""
    groups = grouped(permissions)
    titles = (
        ("repository", "Repository permissions"),
        ("organization", "Organization permissions"),
    )
    return [
        (
            title,
            [(permission_label(name), level_label(level)) for name, level in groups[key].items()],
        )
        for key, title in titles
        if groups[key]
    ]


# ---- reading ------------------------------------------------------------------------------
# Queries for these pages only (listing an organization's apps and an app's deliveries).


def _installations_on(page: Page, org: Organization) -> list[tuple[Installation, App]]:
    rows = page.ctx.session.execute(
        select(Installation, App)
        .join(App, App.id == Installation.app_id)
        .where(Installation.org_id == org.id)
        .order_by(App.name)
    )
    return [(installation, app) for installation, app in rows]


def _apps_of(page: Page, org: Organization) -> list[App]:
    return list(
        page.ctx.session.scalars(select(App).where(App.owner_id == org.id).order_by(App.name))
    )


def _app(page: Page, org: Organization) -> App:
    app = page.ctx.session.scalar(
        select(App).where(App.owner_id == org.id, App.slug == page.param("slug"))
    )
    if app is None:
        raise NotFound("app", page.param("slug"))
    return app


@dataclass
class Delivery:
    message: OutboxMessage
    guid: str
    installation_org: str | None
    attempts: list[DeliveryAttempt]

    @property
    def event(self) -> str:
        payload = self.message.payload
        return f"{payload.get('event', '?')}.{payload.get('action', '?')}"

    @property
    def body(self) -> str:
        return json.dumps(self.message.payload.get("body"), indent=2, sort_keys=True)


def _deliveries(page: Page, app: App, number: int) -> tuple[list[Delivery], int]:
    """A page of the app's webhook messages (newest first) with their attempts; and the total."""
    mine = (
        OutboxMessage.kind == outbox.WEBHOOK,
        OutboxMessage.payload["app_id"].as_integer() == app.id,
    )
    total = page.ctx.session.scalar(select(func.count()).select_from(OutboxMessage).where(*mine))
    messages = page.ctx.session.scalars(
        select(OutboxMessage)
        .where(*mine)
        .order_by(OutboxMessage.id.desc())
        .limit(DELIVERIES_PER_PAGE)
        .offset((number - 1) * DELIVERIES_PER_PAGE)
    ).all()
    deliveries = []
    for message in messages:
        org = page.ctx.session.get(Organization, message.payload.get("org_id"))
        # X-GitHub-Delivery, as the worker computes it from the outbox row.
        claim = jobs.Claim(message.id, message.kind, {}, message.created_at, message.created_at)
        deliveries.append(
            Delivery(
                message,
                jobs.delivery_id(claim),
                org.login if org else None,
                jobs.attempts_of(page.ctx, message.id),
            )
        )
    return deliveries, total or 0


# ---- installed apps -----------------------------------------------------------------------


@routes.get(INSTALLATIONS)
def installations(page: Page) -> Response:
    org = page.owned_org()
    rows = [
        (installation, app, _permission_rows(dict(installation.permissions)))
        for installation, app in _installations_on(page, org)
    ]
    return _render(
        page, org, "org/installations.html", "installations", rows=rows, events=dict(_events())
    )


def _events() -> list[tuple[str, str]]:
    return [(name, label) for name, label, _ in EVENTS]


# ---- registered apps ----------------------------------------------------------------------


@routes.get(APPS)
def registered_apps(page: Page) -> Response:
    org = page.owned_org()
    installed = {app.id for _, app in _installations_on(page, org)}
    return _render(
        page, org, "org/apps.html", "apps", apps=_apps_of(page, org), installed=installed
    )


@dataclass
class AppForm:
    name: str = ""
    description: str = ""
    webhook_url: str = ""
    permissions: dict[str, str] | None = None
    events: set[str] | None = None
    install: bool = True


def _permission_choices(selected: dict[str, str]) -> list[tuple[str, list[Any]]]:
    groups = []
    for title, catalogue in (
        ("Repository permissions", REPOSITORY_PERMISSIONS),
        ("Organization permissions", ORGANIZATION_PERMISSIONS),
    ):
        rows = [
            (
                name,
                permission_label(name),
                [("", "No access")] + [(level, level_label(level)) for level in levels],
                selected.get(name, ""),
            )
            for name, levels in sorted(catalogue.items(), key=lambda i: permission_label(i[0]))
        ]
        groups.append((title, rows))
    return groups


def _new_app_page(
    page: Page,
    org: Organization,
    form: AppForm,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return _render(
        page,
        org,
        "org/app_new.html",
        "apps",
        status=status,
        form=form,
        permission_groups=_permission_choices(form.permissions or {}),
        event_choices=EVENTS,
        errors=errors or {},
        max_name=apps.MAX_NAME,
    )


@routes.get(APPS + "/new")
def new_app(page: Page) -> Response:
    org = page.owned_org()
    return _new_app_page(page, org, AppForm(permissions={}, events=set()))


# The registration form's fields that show their errors next to them.
FORM_FIELDS = {"name", "description", "webhook_url", "webhook_secret", "permissions", "events"}


@routes.post(APPS)
def register_app(page: Page) -> Response:
    org = page.owned_org()
    permissions = {}
    for _, rows in _permission_choices({}):
        for name, *_ in rows:
            level = page.field("permission." + name)
            if level:
                permissions[name] = level
    form = AppForm(
        name=page.field("name").strip(),
        description=page.field("description").strip(),
        webhook_url=page.field("webhook_url").strip(),
        permissions=permissions,
        events=set(page.fields("events")),
        install=page.has_field("install"),
    )
    errors: dict[str, str] = {}
    if not form.name:
        errors["name"] = "Enter a name for the app."
    if form.events and not form.webhook_url:
        errors["webhook_url"] = "Enter the URL that receives the events you subscribe to."
    if not form.events <= {event for event, _, _ in EVENTS}:
        errors["events"] = "Choose the events from the list."
    if len(form.description) > 1024:
        errors["description"] = "Use at most 1024 characters."
    registered = None
    if not errors:
        try:
            app, private_key = apps.create_app(
                page.ctx,
                name=form.name,
                owner_org=org,
                permissions=permissions,
                events=sorted(form.events or ()),
                webhook_url=form.webhook_url or None,
                webhook_secret=page.field("webhook_secret") or None,
                description=form.description or None,
                actor=page.actor,
            )
            if form.install:
                apps.install(page.ctx, app, org, actor=page.actor)
            registered = app, private_key
        except InvalidInput as exc:
            errors[exc.field if exc.field in FORM_FIELDS else "form"] = exc.message
        except Forbidden as exc:
            errors["form"] = exc.message
    if registered is None:
        return _new_app_page(page, org, form, errors=errors, status=422)
    app, private_key = registered
    where = _url(APP, org, slug=app.slug)
    installed = f" and installed it on {org.login}" if form.install else ""
    return reveal.hand_over(
        page,
        page.redirect(where, flash=f"Registered {app.name}{installed}."),
        where=where,
        secret=private_key,
    )


@routes.get(APP)
def app_page(page: Page) -> Response:
    org = page.owned_org()
    app = _app(page, org)
    where = _url(APP, org, slug=app.slug)
    private_key = reveal.take(page, where)
    installs, _ = apps.installations_of(page.ctx, app, per_page=100)
    installed_on = [page.ctx.session.get(Organization, i.org_id) for i in installs]
    response = _render(
        page,
        org,
        "org/app.html",
        "apps",
        app=app,
        permission_rows=_permission_rows(dict(app.permissions)),
        events=dict(_events()),
        installed_on=[o for o in installed_on if o is not None],
        installed_here=any(i.org_id == org.id for i in installs),
        private_key=private_key,
        key_download=(
            "data:application/x-pem-file;base64,"
            + base64.b64encode(private_key.encode("ascii")).decode("ascii")
            if private_key
            else None
        ),
        app_url=where,
    )
    return reveal.forget(page, response, where=where)


@routes.post(APP + "/installations")
def install_app(page: Page) -> Response:
    org = page.owned_org()
    app = _app(page, org)
    where = _url(APP, org, slug=app.slug)
    try:
        apps.install(page.ctx, app, org, actor=page.actor)
    except AlreadyExists:
        return page.redirect(where, error=f"{app.name} is already installed on {org.login}.")
    return page.redirect(where, flash=f"Installed {app.name} on {org.login}.")


@routes.get(APP + "/advanced")
def app_deliveries(page: Page) -> Response:
    """GitHub's Advanced tab: the app's recent webhook deliveries, each attempt shown."""
    org = page.owned_org()
    app = _app(page, org)
    pagination = page.pagination(0, per_page=DELIVERIES_PER_PAGE)
    deliveries, pagination.total = _deliveries(page, app, pagination.page)
    return _render(
        page,
        org,
        "org/app_deliveries.html",
        "apps",
        app=app,
        deliveries=deliveries,
        pagination=pagination,
        app_url=_url(APP, org, slug=app.slug),
    )
