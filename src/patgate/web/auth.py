"""Authentication of API calls: it only produces a principal (or ``None``); it never decides."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request

from patgate.authz.cache import MISS, AuthzCache
from patgate.authz.decision import (
    ClassicPrincipal,
    Decision,
    FineGrainedPrincipal,
    Principal,
    Reason,
)
from patgate.authz.services import authenticate_token
from patgate.context import Context
from patgate.tokens import format as token_format
from patgate.tokens.jobs import LastUsedBuffer
from patgate.web.errors import Denied

SCHEMES = {"bearer", "token"}
TOKENS = "token"


def credentials(request: Request) -> str | None:
    """The token of ``Authorization: Bearer|token <t>`` (any case); ``None`` when absent.

    A header that is present but not of that form is bad credentials.
    """
    return credentials_of(request.headers.get("authorization"))


def credentials_of(header: str | None) -> str | None:
    """:func:`credentials` of the (first) ``Authorization`` header's value, as Starlette
    decodes it (latin-1)."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() not in SCHEMES or not value or " " in value:
        raise Denied(Decision(False, Reason.BAD_CREDENTIALS))
    return value


def authenticate(request: Request, ctx: Context) -> Principal:
    """The caller's principal; raises :class:`Denied` (401) for credentials that fail.

    Token principals come from the app's authorization cache when it holds them, else from
    the database (and are then cached under the generation read before loading).
    """
    raw = credentials(request)
    if raw is None:
        return None
    if raw.count(".") == 2 and raw.startswith("eyJ"):
        from patgate.apps.services import authenticate_jwt

        principal: Principal = authenticate_jwt(ctx, raw)
    else:
        cache: AuthzCache = request.app.state.authz_cache
        generation = cache.sync()
        principal = cached_token_principal(cache, raw)
        if principal is MISS:
            principal = authenticate_token(ctx, raw)
            cache.put(TOKENS, token_format.hash_token(raw), principal, generation)
    if principal is None:
        raise Denied(Decision(False, Reason.BAD_CREDENTIALS))
    note_use(request, principal, ctx.now)
    return principal


_TOKEN_LENGTHS = frozenset((token_format.CLASSIC_LENGTH, token_format.FINE_GRAINED_LENGTH))


def cached_token_principal(cache: AuthzCache, raw: str) -> Any:
    """The cached principal of a token string (``None`` for bad credentials) or ``MISS``.

    A malformed token is bad credentials without a lookup: one of the wrong length or not
    ASCII at once (no hashing of arbitrary input), any other when its checksum fails. A
    cached entry was filled by :func:`authenticate` for this very string, after the same
    format check, so a hit needs no second :func:`~patgate.tokens.format.parse`.
    """
    if len(raw) not in _TOKEN_LENGTHS or not raw.isascii():
        return None
    found = cache.get(TOKENS, token_format.hash_token(raw))
    if found is MISS and token_format.parse(raw) is None:
        return None
    return found


def note_use(request: Request, principal: Principal, now: datetime) -> None:
    note_use_in(getattr(request.app.state, "last_used", None), principal, now)


def note_use_in(buffer: LastUsedBuffer | None, principal: Principal, now: datetime) -> None:
    """Buffer the token's ``last_used_at`` (written off the request path)."""
    if buffer is not None and isinstance(principal, FineGrainedPrincipal | ClassicPrincipal):
        kind = "fine_grained" if isinstance(principal, FineGrainedPrincipal) else "classic"
        buffer.touch(kind, principal.token_id, now)
