"""Secrets shown once: a new token's secret, an app's private key.

The POST that makes a secret answers with a redirect (so that reloading cannot repeat it) and
hands the secret to the page it redirects to in a cookie of its own: encrypted and authenticated
(Fernet, with a key derived from the site secret), bound to the signed-in user and to that page,
scoped to that page's path, ``HttpOnly`` and short-lived. That page shows the secret and deletes
the cookie in the same answer, so a reload shows nothing. Nothing is kept on the server (any
number of processes may serve the site) and the secret never appears in a URL or a log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from cryptography.fernet import Fernet, InvalidToken
from starlette.responses import Response

from patgate.config import Settings
from patgate.web.ui.pages import Page

COOKIE = "patgate_reveal"
MAX_AGE = 300  # seconds: enough to follow the redirect, not enough to linger


def _fernet(settings: Settings) -> Fernet:
    key = hmac.new(settings.secret, b"patgate web reveal", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def hand_over(page: Page, response: Response, *, where: str, secret: str) -> Response:
    """Attach ``secret`` to ``response`` (a redirect to ``where``) for :func:`take` to show."""
    settings = page.runtime.settings
    payload = json.dumps({"user": page.signed_in.id, "where": where, "secret": secret})
    response.set_cookie(
        COOKIE,
        _fernet(settings).encrypt(payload.encode()).decode("ascii"),
        max_age=MAX_AGE,
        path=where,
        httponly=True,
        samesite="lax",
        secure=settings.base_url.startswith("https://"),
    )
    return response


def take(page: Page, where: str) -> str | None:
    """The secret handed over to the page at ``where`` for the signed-in user, if any.

    Call :func:`forget` on the page's answer afterwards so that it is shown only once.
    """
    raw = page.request.cookies.get(COOKIE)
    if not raw or page.user is None:
        return None
    try:
        data = json.loads(_fernet(page.runtime.settings).decrypt(raw.encode(), ttl=MAX_AGE))
    except (InvalidToken, ValueError):
        return None
    if data.get("user") != page.user.id or data.get("where") != where:
        return None
    secret = data.get("secret")
    return secret if isinstance(secret, str) else None


def forget(page: Page, response: Response, *, where: str) -> Response:
    """Delete the hand-over cookie of ``where`` (if the browser sent one) with ``response``."""
    if COOKIE in page.request.cookies:
        response.delete_cookie(
            COOKIE,
            path=where,
            httponly=True,
            samesite="lax",
            secure=page.runtime.settings.base_url.startswith("https://"),
        )
    return response
