"""The web UI's page machinery: how a route is declared, what it is given, how it answers.

A page is a plain sync function ``def view(page: Page) -> Response`` registered on a module's
:class:`Routes`::

    routes = Routes()

    @routes.get("/organizations/{org}/settings/audit-log")
    def audit_log(page: Page) -> Response:
        org = page.owned_org()
        ...
        return page.render("org/audit_log.html", org=org, nav_key="audit-log", ...)

Around every page the machinery (1) parses a POST's form and refuses it (403, nothing
changes) without this session's CSRF token; (2) opens one unit of work and loads the
signed-in user (anonymous visitors are sent to ``/login`` unless ``signed_in=False``); (3) runs
the function in Starlette's threadpool; (4) commits when it answers below 400 and rolls back
otherwise (so a form re-rendered with an error next to a field has changed nothing); (5) turns
:class:`Refused` and the domain errors into readable error pages.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patgate.accounts.models import User
from patgate.authz.decision import Action, Actions, Resource, SessionPrincipal, decide
from patgate.authz.services import user_facts
from patgate.context import Actor, Context
from patgate.errors import (
    Forbidden,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PolicyRefused,
)
from patgate.orgs import services as orgs
from patgate.orgs.models import Organization
from patgate.runtime import Runtime
from patgate.tokens.permissions import LEVEL_RANK
from patgate.web.errors import RETRY_AFTER_SECONDS, log_database_unavailable
from patgate.web.ui import session
from patgate.web.ui.nav import NavSection

log = logging.getLogger(__name__)


def is_number(text: str) -> bool:
    """ASCII digits only, and not absurdly many (``str.isdigit`` accepts "²", which ``int``
    refuses, and other scripts' digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

MAX_FORM_BYTES = 256 * 1024
MAX_FORM_FIELDS = 1000
PER_PAGE = 50


class Refused(Exception):
    """Raised by a page: answer with an error page (403 unless told otherwise)."""

    def __init__(self, message: str, *, title: str = "Access denied", status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.title = title
        self.status = status


class FailedRedirect(RedirectResponse):
    """A redirect after a failure: the unit of work is rolled back, not committed."""


class _Rollback(Exception):
    """Leaves the unit of work without committing, carrying the answer to send."""

    def __init__(self, response: Response) -> None:
        self.response = response


# ---- templates --------------------------------------------------------------------------


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


LEVEL_LABELS = {"read": "Read-only", "write": "Read and write", "admin": "Admin"}
PERMISSION_WORDS = {"pat": "PAT", "org": "org", "ssh": "SSH", "gpg": "GPG"}


def permission_label(name: str) -> str:
    """``pull_requests`` → ``Pull requests`` (GitHub's labels)."""
    words = [PERMISSION_WORDS.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def level_label(level: str) -> str:
    return LEVEL_LABELS.get(level, level)


def permission_choice_label(value: str) -> str:
    """``issues_write`` → ``Issues: Read and write``."""
    name, _, level = value.rpartition("_")
    return f"{permission_label(name)}: {level_label(level)}"


def format_datetime(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%b %-d, %Y, %H:%M UTC")


def format_date(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%b %-d, %Y")


def time_ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - value).total_seconds())
    if seconds < 60:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"  # pragma: no cover


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else (words or word + 's')}"


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    version = _static_version()
    env.globals["static"] = lambda name: f"/static/{name}?v={version}"
    env.globals["CSRF_FIELD"] = session.CSRF_FIELD
    env.filters["datetime"] = format_datetime
    env.filters["date"] = format_date
    env.filters["ago"] = time_ago
    env.filters["permission"] = permission_label
    env.filters["level"] = level_label
    env.filters["permission_choice"] = permission_choice_label
    env.globals["plural"] = plural
    env.globals["permission_choice"] = permission_choice_label
    env.globals["level_rank"] = LEVEL_RANK
    return env


# ---- the page object --------------------------------------------------------------------


@dataclass
class Pagination:
    page: int
    per_page: int
    total: int
    url: Callable[[int], str]

    @property
    def last(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first_index(self) -> int:
        return (self.page - 1) * self.per_page + 1

    @property
    def last_index(self) -> int:
        return min(self.total, self.page * self.per_page)

    @property
    def previous_url(self) -> str | None:
        return self.url(self.page - 1) if self.page > 1 else None

    @property
    def next_url(self) -> str | None:
        return self.url(self.page + 1) if self.page < self.last else None

    @property
    def window(self) -> list[int | None]:
        """Page numbers to show: the first, the last and two either side (``None``: a gap)."""
        shown = sorted(
            {1, self.last, *range(max(1, self.page - 2), min(self.last, self.page + 2) + 1)}
        )
        result: list[int | None] = []
        for number in shown:
            if result and number - (result[-1] or 0) > 1:
                result.append(None)
            result.append(number)
        return result


@dataclass
class Page:
    """What a page function is given: the request, its unit of work and who is signed in."""

    request: Request
    ctx: Context
    user: User | None
    runtime: Runtime
    templates: jinja2.Environment
    form: FormData | None = None
    _facts: Any = field(default=None, repr=False)

    # -- reading the request

    def param(self, name: str) -> Any:
        return self.request.path_params[name]

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else default

    def fields(self, name: str) -> list[str]:
        if self.form is None:
            return []
        return [v for v in self.form.getlist(name) if isinstance(v, str)]

    def has_field(self, name: str) -> bool:
        return self.form is not None and name in self.form

    def ids(self, name: str) -> list[int]:
        """The positive integers submitted as ``name`` (checkboxes); others are dropped."""
        return [int(v) for v in self.fields(name) if is_number(v) and int(v) > 0]

    def page_number(self) -> int:
        text = self.query("page", "1")
        return int(text) if is_number(text) and 0 < int(text) < 1_000_000 else 1

    def url_with(self, **changes: Any) -> str:
        """This page's URL with query parameters changed (``None`` removes one)."""
        params = dict(self.request.query_params)
        for key, value in changes.items():
            if value is None or value == "":
                params.pop(key, None)
            else:
                params[key] = str(value)
        query = urlencode(params)
        return self.request.url.path + (f"?{query}" if query else "")

    def pagination(self, total: int, per_page: int = PER_PAGE) -> Pagination:
        return Pagination(
            self.page_number(), per_page, total, lambda n: self.url_with(page=n if n > 1 else None)
        )

    # -- who is asking

    @property
    def signed_in(self) -> User:
        assert self.user is not None, "the route is declared signed_in=True"
        return self.user

    @property
    def actor(self) -> Actor:
        user = self.signed_in
        return Actor(user.id, user.login, "user")

    def require(self, action: Action, resource: Resource, *, message: str) -> None:
        """Refuse (403, ``message``) unless ``decide()`` lets the signed-in user do ``action``."""
        if self._facts is None:
            self._facts = user_facts(self.ctx, self.signed_in)
        decision = decide(SessionPrincipal(self._facts), action, resource, now=self.ctx.now)
        if not decision.allowed:
            raise Refused(message)

    def owned_org(self, login: str | None = None) -> Organization:
        """The organization of the path's ``{org}``, if the signed-in user may administer it.

        Every owner check of the UI goes through here (``decide()`` with ``ADMINISTER_ORG``).
        Raises :class:`NotFound` for an unknown organization and :class:`Refused` otherwise.
        """
        org = orgs.get_org(self.ctx, login or self.param("org"))
        self.require(
            Actions.ADMINISTER_ORG,
            orgs.org_facts(self.ctx, org),
            message=f"Only owners of the {org.login} organization can view and change its "
            "settings. Ask an owner of the organization if you need something changed.",
        )
        return org

    # -- answering

    def render(self, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
        context = {
            "request": self.request,
            "user": self.user,
            "csrf_token": session.csrf_token(self.request),
            "flash": session.pop_flash(self.request),
            "now": self.ctx.now,
            "nav": None,
            "nav_key": None,
            "path_params": self.request.path_params,
            **values,
        }
        body = self.templates.get_template(template).render(context)
        return HTMLResponse(body, status_code=status)

    def error(self, status: int, title: str, message: str) -> HTMLResponse:
        return self.render("error.html", status=status, title=title, message=message)

    def redirect(
        self, url: str, *, flash: str | None = None, error: str | None = None
    ) -> RedirectResponse:
        """303 to ``url``; ``error`` shows a failure there and rolls this unit of work back."""
        if error is not None:
            session.flash(self.request, error, "error")
        elif flash is not None:
            session.flash(self.request, flash)
        if error is not None:
            return FailedRedirect(url, status_code=303)
        return RedirectResponse(url, status_code=303)


def nav_links(nav: Iterable[NavSection], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sidebar with its ``href``s formatted from the page's path parameters."""
    return [
        {
            "label": section.label,
            "links": [
                {"key": item.key, "label": item.label, "href": item.href.format(**params)}
                for item in section.items
            ],
        }
        for section in nav
    ]


# ---- declaring routes -------------------------------------------------------------------

PageFunction = Callable[[Page], Response]


class Routes:
    """The routes of one module of pages."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def get(self, path: str, *, signed_in: bool = True) -> Callable[[PageFunction], PageFunction]:
        return self.page(path, methods=("GET",), signed_in=signed_in)

    def post(self, path: str, *, signed_in: bool = True) -> Callable[[PageFunction], PageFunction]:
        return self.page(path, methods=("POST",), signed_in=signed_in)

    def page(
        self, path: str, *, methods: tuple[str, ...], signed_in: bool
    ) -> Callable[[PageFunction], PageFunction]:
        def register(fn: PageFunction) -> PageFunction:
            self.routes.append(
                Route(path, _endpoint(fn, signed_in=signed_in), methods=list(methods))
            )
            return fn

        return register


def _endpoint(fn: PageFunction, *, signed_in: bool) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        form = None
        csrf_ok = True
        if request.method == "POST":
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_FORM_BYTES:
                return HTMLResponse("Request too large", status_code=413)
            form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
            base_url = request.app.state.runtime.settings.base_url
            csrf_ok = session.same_origin(request, base_url) and session.csrf_valid(
                request, form.get(session.CSRF_FIELD)
            )
        try:
            return await run_in_threadpool(_run, fn, request, form, signed_in, csrf_ok)
        finally:
            if form is not None:
                await form.close()

    endpoint.__name__ = fn.__name__
    return endpoint


def _run(
    fn: PageFunction, request: Request, form: FormData | None, signed_in: bool, csrf_ok: bool
) -> Response:
    runtime: Runtime = request.app.state.runtime
    templates: jinja2.Environment = request.app.state.templates
    try:
        with runtime.unit_of_work() as ctx:
            user = _signed_in_user(request, ctx)
            page = Page(request, ctx, user, runtime, templates, form)
            if not csrf_ok:
                raise _Rollback(
                    page.error(
                        403,
                        "This form has expired",
                        "The form was not sent with this session's security token (it may "
                        "be from an older page, another site, or your session ended), so "
                        "nothing was changed. Go back, reload the page and try again.",
                    )
                )
            if signed_in and user is None:
                raise _Rollback(_to_sign_in(request))
            response = _answer(page, fn)
            if response.status_code >= 400 or isinstance(response, FailedRedirect):
                raise _Rollback(response)
            return response
    except _Rollback as done:
        return done.response


def _answer(page: Page, fn: PageFunction) -> Response:
    try:
        return fn(page)
    except Refused as exc:
        return page.error(exc.status, exc.title, exc.message)
    except NotFound:
        return page.error(404, "Page not found", "There is nothing here, or you cannot see it.")
    except (Forbidden, PolicyRefused) as exc:
        return page.error(403, "Not allowed", exc.message)
    except InvalidTransition as exc:
        return page.error(422, "Already decided", exc.message)
    except InvalidInput as exc:
        return page.error(422, "Something is not right", exc.message)


def _signed_in_user(request: Request, ctx: Context) -> User | None:
    user_id = session.signed_in_user_id(request)
    if user_id is None:
        return None
    user = ctx.session.get(User, user_id)
    if user is None or user.suspended:
        session.sign_out(request)
        return None
    return user


def _to_sign_in(request: Request) -> RedirectResponse:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method != "GET":
        target = "/"
    return RedirectResponse(f"/login?{urlencode({'return_to': target})}", status_code=303)


def safe_return_to(value: str | None) -> str:
    """A local path to go back to after signing in; anything else becomes ``/``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 32 for c in value):
        return "/"
    return value


# ---- what every page answer carries -----------------------------------------------------

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeadersMiddleware:
    """Adds the security headers to every UI answer, and ``no-store`` to every HTML page
    (pages show who is signed in and what they may see). Pure ASGI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in names)
                content_type = dict(headers).get(b"content-type", b"")
                if content_type.startswith(b"text/html") and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def http_error_page(request: Request, exc: Exception) -> Response:
    """Unknown URLs and wrong methods, as pages (no database: nobody is looked up)."""
    assert isinstance(exc, HTTPException)
    titles = {404: "Page not found", 405: "Method not allowed"}
    message = (
        "There is nothing here, or you cannot see it."
        if exc.status_code == 404
        else str(exc.detail)
    )
    title = titles.get(exc.status_code, "Error")
    return _error_page(request, exc.status_code, title, message, headers=exc.headers)


async def database_unavailable_page(request: Request, exc: Exception) -> Response:
    """The database is down or busy: a page that says so, and a 503 a browser may retry
    (the API answers the same with GitHub's JSON)."""
    log_database_unavailable(request, exc)
    return _error_page(
        request,
        503,
        "Service unavailable",
        "patgate cannot reach its database right now. Please try again in a moment.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def conflict_page(request: Request, exc: Exception) -> Response:
    """A unique constraint caught what a form's own checks could not see: the same name, say,
    saved by another request a moment earlier. The transaction rolled back."""
    log.warning(
        "conflicting write (%s %s): %s", request.method, request.url.path, type(exc).__name__
    )
    return _error_page(
        request,
        409,
        "Conflicting change",
        "This change conflicts with another one made at the same time, so nothing was "
        "changed. Go back, reload the page and try again.",
        headers=None,
    )


def _error_page(
    request: Request, status: int, title: str, message: str, *, headers: Mapping[str, str] | None
) -> Response:
    # No database: nobody is looked up, so the page shows no signed-in user.
    templates: jinja2.Environment = request.app.state.templates
    body = templates.get_template("error.html").render(
        request=request, user=None, csrf_token="", flash=None, nav=None, nav_key=None,
        title=title, message=message,
    )  # fmt: skip
    return HTMLResponse(body, status_code=status, headers=headers)
