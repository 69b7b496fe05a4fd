"""The web UI's session: signed cookie, sign-in and sign-out, CSRF tokens, sign-in rate limit.

The session is Starlette's ``SessionMiddleware`` (a cookie signed with itsdangerous, HttpOnly,
``SameSite=Lax``, ``Secure`` when the site is served over https). It holds only the signed-in
user's id, the CSRF token and the next page's flash message; the user is loaded again on every
request, so a suspended or deleted user is signed out at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request

from patgate.config import Settings

SESSION_COOKIE = "patgate_session"
SESSION_MAX_AGE = 14 * 24 * 60 * 60  # GitHub keeps a browser signed in for two weeks
CSRF_FIELD = "authenticity_token"  # GitHub's name for the hidden field
USER_KEY = "user_id"
CSRF_KEY = "csrf"
FLASH_KEY = "flash"


def session_middleware(settings: Settings) -> Middleware:
    """The middleware that signs the session cookie with a key derived from the site secret."""
    # A key of its own (not the token-hashing key itself): one secret, separate purposes.
    key = hmac.new(settings.secret, b"patgate web session", hashlib.sha256).hexdigest()
    return Middleware(
        SessionMiddleware,
        secret_key=key,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE,
        same_site="lax",
        https_only=settings.base_url.startswith("https://"),
    )


# ---- signing in and out -----------------------------------------------------------------


def signed_in_user_id(request: Request) -> int | None:
    value = request.session.get(USER_KEY)
    return value if isinstance(value, int) else None


def sign_in(request: Request, user_id: int) -> None:
    """Start a fresh session for ``user_id`` (a new CSRF token: no fixation of the old one)."""
    request.session.clear()
    request.session[USER_KEY] = user_id
    request.session[CSRF_KEY] = secrets.token_urlsafe(32)


def sign_out(request: Request) -> None:
    request.session.clear()


# ---- CSRF -------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use (anonymous visitors get one too:
    the sign-in form is protected as well)."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


def csrf_valid(request: Request, submitted: Any) -> bool:
    """True if ``submitted`` is this session's token, compared in constant time."""
    expected = request.session.get(CSRF_KEY)
    if not isinstance(expected, str) or not expected or not isinstance(submitted, str):
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


def same_origin(request: Request, base_url: str) -> bool:
    """False when the browser says the form came from another site (``Origin`` header).

    The site is the one the request names (``Host``) or the configured base URL (behind a
    proxy that rewrites ``Host``). Browsers send ``Origin`` on every form POST; clients that
    send none (curl, httpx) are judged by the CSRF token alone.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    parts = urlsplit(base_url)
    return origin in (f"http://{host}", f"https://{host}", f"{parts.scheme}://{parts.netloc}")


# ---- flash messages ---------------------------------------------------------------------


def flash(request: Request, message: str, kind: str = "success") -> None:
    """Show ``message`` on the next page rendered (after a redirect)."""
    request.session[FLASH_KEY] = {"message": message, "kind": kind}


def pop_flash(request: Request) -> dict[str, str] | None:
    if FLASH_KEY not in request.session:
        return None
    value = request.session.pop(FLASH_KEY)
    return value if isinstance(value, dict) else None


# ---- the sign-in rate limit -------------------------------------------------------------


class RateLimiter:
    """At most ``limit`` sign-in attempts per ``window`` seconds per (login, client address).

    In-process: each patgate process counts on its own, so N processes behind a load
    balancer allow up to N times the limit. Memory is bounded: at most ``max_keys`` keys are
    kept, the least recently used forgotten first.
    """

    def __init__(
        self,
        limit: int = 10,
        window: float = 300.0,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._attempts: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def attempt(self, login: str, address: str) -> float | None:
        """Count one attempt. ``None`` if it may go ahead; else the seconds until it may."""
        key = (login.strip().lower(), address)
        now = self.clock()
        with self._lock:
            stamps = self._attempts.get(key)
            if stamps is None:
                stamps = self._attempts[key] = deque()
            self._attempts.move_to_end(key)
            while stamps and stamps[0] <= now - self.window:
                stamps.popleft()
            if len(stamps) >= self.limit:
                return stamps[0] + self.window - now
            stamps.append(now)
            while len(self._attempts) > self.max_keys:
                self._attempts.popitem(last=False)
            return None

    def reset(self, login: str, address: str) -> None:
        """Forget the attempts of a key (after a successful sign-in)."""
        with self._lock:
            self._attempts.pop((login.strip().lower(), address), None)
