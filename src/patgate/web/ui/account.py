"""Signing in and out, the dashboard, the user's own settings and the generated avatars."""

from __future__ import annotations

import hashlib
import math
from html import escape
from types import SimpleNamespace
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from patgate.accounts import services as accounts
from patgate.accounts.services import LOGIN_PATTERN
from patgate.orgs import services as orgs
from patgate.web.ui import session
from patgate.web.ui.nav import USER_SETTINGS_NAV
from patgate.web.ui.pages import Page, Routes, nav_links, safe_return_to

routes = Routes()

# Compared with when nobody has the login, so that timing does not tell who exists.
_NOBODY: Any = SimpleNamespace(password_hash=None)


@routes.get("/login", signed_in=False)
def sign_in_form(page: Page) -> Response:
    return_to = safe_return_to(page.query("return_to"))
    if page.user is not None:
        return RedirectResponse(return_to, status_code=303)
    return page.render("login.html", login="", errors={}, return_to=return_to)


@routes.post("/login", signed_in=False)
def sign_in(page: Page) -> Response:
    login = page.field("login").strip()
    password = page.field("password")
    return_to = safe_return_to(page.field("return_to"))

    def again(status: int, **errors: str) -> Response:
        return page.render(
            "login.html", status=status, login=login, errors=errors, return_to=return_to
        )

    if not login or not password:
        return again(
            422,
            **({"login": "Enter your username."} if not login else {}),
            **({"password": "Enter your password."} if not password else {}),
        )
    client = page.request.client
    address = client.host if client else "unknown"
    limiter: session.RateLimiter = page.request.app.state.sign_in_limiter
    wait = limiter.attempt(login, address)
    if wait is not None:
        minutes = max(1, math.ceil(wait / 60))
        return again(
            429,
            login=f"Too many sign-in attempts for this username. Try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''}.",
        )
    user = accounts.find_user(page.ctx, login)
    if not accounts.verify_password(user or _NOBODY, password) or user is None:
        return again(401, password="Incorrect username or password.")
    if user.suspended:
        return again(403, login="This account is suspended. Contact your site administrator.")
    limiter.reset(login, address)
    session.sign_in(page.request, user.id)
    return RedirectResponse(return_to, status_code=303)


@routes.post("/logout", signed_in=False)
def sign_out(page: Page) -> Response:
    session.sign_out(page.request)
    return page.redirect("/login", flash="You have signed out.")


@routes.get("/")
def dashboard(page: Page) -> Response:
    return page.render("home.html", memberships=orgs.orgs_of(page.ctx, page.signed_in))


@routes.get("/settings/profile")
def profile(page: Page) -> Response:
    return page.render(
        "settings/profile.html",
        nav=nav_links(USER_SETTINGS_NAV, page.request.path_params),
        nav_key="profile",
    )


@routes.get("/settings/organizations")
def your_organizations(page: Page) -> Response:
    return page.render(
        "settings/organizations.html",
        nav=nav_links(USER_SETTINGS_NAV, page.request.path_params),
        nav_key="organizations",
        memberships=orgs.orgs_of(page.ctx, page.signed_in),
    )


# ---- avatars ----------------------------------------------------------------------------


def avatar_svg(login: str) -> str:
    """Initials on a colour picked from a hash of the login: nothing from the internet."""
    digest = hashlib.sha256(login.lower().encode()).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    parts = [p for p in login.split("-") if p]
    initials = (parts[0][0] + (parts[1][0] if len(parts) > 1 else "")).upper()
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128" viewBox="0 0 128 128" '
        f'role="img" aria-label="{escape(login)}">'
        f'<rect width="128" height="128" fill="hsl({hue}, 55%, 42%)"/>'
        '<text x="64" y="64" dy="0.35em" text-anchor="middle" fill="#ffffff" '
        "font-family=\"-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\" "
        f'font-size="{60 if len(initials) == 1 else 50}" font-weight="600">'
        f"{escape(initials)}</text></svg>"
    )


async def avatar(request: Request) -> Response:
    login = request.path_params["login"]
    if not LOGIN_PATTERN.match(login):
        return Response("Not Found", status_code=404, media_type="text/plain")
    return Response(
        avatar_svg(login),
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=3600"},
    )


avatar_routes = [Route("/avatars/{login}", avatar, methods=["GET"])]
