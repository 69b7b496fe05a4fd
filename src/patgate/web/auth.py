"""Authentication of API calls: it only produces a principal (or ``None``); it never decides."""

from __future__ import annotations

from starlette.requests import Request

from patgate.authz.decision import (
    ClassicPrincipal,
    Decision,
    FineGrainedPrincipal,
    Principal,
    Reason,
)
from patgate.authz.services import authenticate_token
from patgate.context import Context
from patgate.web.errors import Denied

SCHEMES = {"bearer", "token"}


def credentials(request: Request) -> str | None:
    """The token of ``Authorization: Bearer|token <t>`` (any case); ``None`` when absent.

    A header that is present but not of that form is bad credentials.
    """
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() not in SCHEMES or not value or " " in value:
        raise Denied(Decision(False, Reason.BAD_CREDENTIALS))
    return value


def authenticate(request: Request, ctx: Context) -> Principal:
    """The caller's principal; raises :class:`Denied` (401) for credentials that fail."""
    raw = credentials(request)
    if raw is None:
        return None
    if raw.count(".") == 2 and raw.startswith("eyJ"):
        from patgate.apps.services import authenticate_jwt

        principal: Principal = authenticate_jwt(ctx, raw)
    else:
        principal = authenticate_token(ctx, raw)
    if principal is None:
        raise Denied(Decision(False, Reason.BAD_CREDENTIALS))
    buffer = getattr(request.app.state, "last_used", None)
    if buffer is not None and isinstance(principal, FineGrainedPrincipal | ClassicPrincipal):
        kind = "fine_grained" if isinstance(principal, FineGrainedPrincipal) else "classic"
        buffer.touch(kind, principal.token_id, ctx.now)
    return principal
