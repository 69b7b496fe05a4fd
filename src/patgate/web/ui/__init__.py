"""The web UI: server-rendered pages over the same services as the API.

``create_ui(runtime)`` builds a Starlette app of its own, mounted at ``/`` after the API, so
that its session cookie, CSRF checks, security headers and HTML error pages never touch the
API's hot path.

Adding a page:

1. In a module of this package (``account.py``, ``org_settings.py``, or a new one whose
   ``routes`` you add to :func:`ui_routes`), write a sync function over the services::

       @routes.get("/settings/tokens")
       def tokens(page: Page) -> Response:
           return page.render("settings/tokens.html", nav=nav_links(USER_SETTINGS_NAV, {}),
                              nav_key="tokens", tokens=tokens_service.fine_grained_of(...))

   ``@routes.post`` forms get CSRF checking for free; read fields with ``page.field()``,
   ``page.fields()``, ``page.ids()``; answer with ``page.redirect(url, flash=...)`` (committed)
   or ``page.redirect(url, error=...)`` / a re-rendered form with ``status=422`` (rolled back).
2. Owner checks: ``page.owned_org()`` for ``/organizations/{org}/...``; anything else through
   ``page.require(action, resource, message=...)`` (``decide()`` on the signed-in user).
3. The template extends ``base.html`` (or ``settings/layout.html`` / ``org/layout.html`` for a
   sidebar page), puts ``{{ ui.csrf_field() }}`` in every POST form, and shows errors with
   ``{{ ui.field_error(errors, 'name') }}`` next to the field. No inline styles or scripts: the
   Content-Security-Policy refuses them.
4. A sidebar entry is one ``NavItem`` in ``nav.py``.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from patgate.runtime import Runtime
from patgate.web.errors import DATABASE_UNAVAILABLE
from patgate.web.ui import (
    account,
    classic_tokens,
    developer_settings,
    enterprise,
    org_apps,
    org_settings,
    stafftools,
)
from patgate.web.ui.pages import (
    STATIC_DIR,
    SecurityHeadersMiddleware,
    conflict_page,
    database_unavailable_page,
    http_error_page,
    make_templates,
)
from patgate.web.ui.session import RateLimiter, session_middleware


def ui_routes() -> list[BaseRoute]:
    return [
        *account.routes.routes,
        *account.avatar_routes,
        *org_settings.routes.routes,
        *developer_settings.routes.routes,
        *classic_tokens.routes.routes,
        *enterprise.routes.routes,
        *org_apps.routes.routes,
        *stafftools.routes.routes,
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]


def create_ui(runtime: Runtime) -> Starlette:
    app = Starlette(
        routes=ui_routes(),
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            session_middleware(runtime.settings),
        ],
        exception_handlers={
            HTTPException: http_error_page,
            IntegrityError: conflict_page,
            **dict.fromkeys(DATABASE_UNAVAILABLE, database_unavailable_page),
        },
    )
    app.state.runtime = runtime
    app.state.templates = make_templates()
    app.state.sign_in_limiter = RateLimiter(limit=10, window=300.0)
    return app
