"""Fuzzing the credential parsers: token strings, ``Authorization`` headers and App JWTs.

In process, with a real :class:`~patgate.context.Context` on both databases: whatever the
header, ``patgate.web.auth.authenticate`` (``credentials`` → ``authenticate_token`` or
``authenticate_jwt``, through the authorization cache) either finds nobody or raises the
clean ``Denied(bad_credentials)``; JWTs signed with the app's own key are accepted exactly
when their claims are (an oracle of SPEC §6's rule). Over HTTP: random header values, random
JWT-looking strings and forged JWTs always get ``401 Bad credentials`` in GitHub's body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import string
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hostile_world import Target, assert_github_error, build_target, sign
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from patgate.apps import services as apps
from patgate.authz.cache import AuthzCache, generation_source
from patgate.authz.decision import AppPrincipal, Reason
from patgate.authz.services import authenticate_token
from patgate.context import CLI_ACTOR
from patgate.orgs import services as orgs
from patgate.runtime import Runtime
from patgate.tokens import format as token_format
from patgate.web.auth import authenticate
from patgate.web.errors import Denied
from support.env import IN_CI

IN_PROCESS = settings(
    max_examples=60 if IN_CI else 200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OVER_HTTP = settings(
    max_examples=40 if IN_CI else 80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Endpoints of every flavour: a list of the eight (no anonymous access), the cached hot path,
# an anonymous-friendly read, and a JWT-only App endpoint.
HTTP_PATHS = (
    "/orgs/acme/personal-access-token-requests",
    "/repos/acme/public-site",
    "/orgs/acme",
    "/app",
)

# ---- strategies -------------------------------------------------------------------------

printable = st.text(alphabet=string.printable[:95], max_size=200)  # ASCII 0x20-0x7E
latin1 = st.text(alphabet=st.characters(max_codepoint=255), max_size=200)
schemes = st.sampled_from(["Bearer", "bearer", "BEARER", "token", "Token", "Basic", "", "Bearer "])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
claim_numbers = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([True, False, None, "0", "", [], {}]),
)


@st.composite
def jwt_looking(draw: st.DrawFn) -> str:
    """``eyJ...`` strings with two dots: random JSON or bytes in each segment."""
    header = draw(
        st.dictionaries(st.text(min_size=1, max_size=8), json_values, min_size=1, max_size=4)
    )
    header.update(draw(st.sampled_from([{}, {"alg": "RS256"}, {"alg": "none"}, {"alg": "HS256"}])))
    payload = draw(
        st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "iss": json_values | st.integers(min_value=0, max_value=2**64),
                    "iat": claim_numbers,
                    "exp": claim_numbers,
                }
            ),
        )
    )
    head = b64url(json.dumps(header).encode())
    body = draw(
        st.one_of(
            st.just(b64url(json.dumps(payload).encode())),
            printable.map(lambda s: s.replace(".", "")),
        )
    )
    signature = draw(
        st.one_of(st.binary(max_size=300).map(b64url), printable.map(lambda s: s.replace(".", "")))
    )
    return f"{head}.{body}.{signature}"


BASE62 = string.ascii_letters + string.digits


def tails(size: int, alphabet: str | None = None) -> st.SearchStrategy[str]:
    if alphabet is None:
        return st.text(min_size=size, max_size=size)
    return st.text(alphabet=alphabet, min_size=size, max_size=size)


classic_prefixes = st.sampled_from(["ghp_", "ghs_", "gho_", "ghu_", "ghr_"])
# Strings of a token's exact length and prefix, so that they reach the checksum: ASCII ones
# (what an HTTP header can carry) and any text (what a caller in process might pass).
ascii_near_tokens = st.one_of(
    st.builds(str.__add__, classic_prefixes, tails(36, BASE62)),
    st.builds(str.__add__, st.just("github_pat_"), tails(82, BASE62 + "_")),
    st.builds(str.__add__, st.just("github_pat_"), tails(82, string.printable[:94])),
)
near_tokens = st.one_of(
    ascii_near_tokens,
    st.builds(str.__add__, classic_prefixes, tails(36)),
    st.builds(str.__add__, st.just("github_pat_"), tails(82)),
)
header_values = st.one_of(
    printable,
    latin1,
    st.builds(lambda s, v: f"{s} {v}", schemes, printable),
    st.builds(lambda s, v: f"{s} {v}", schemes, near_tokens),
    st.builds(lambda s, v: f"{s} {v}", schemes, jwt_looking()),
)


# ---- the token parser -------------------------------------------------------------------


@given(
    st.one_of(
        near_tokens, latin1, st.text(min_size=40, max_size=40), st.text(min_size=93, max_size=93)
    )
)
@IN_PROCESS
def test_parse_never_raises_and_accepts_only_well_formed_tokens(value: str) -> None:
    parsed = token_format.parse(value)
    if parsed is not None:
        assert parsed.value == value and value.isascii()
        assert len(value) in (token_format.CLASSIC_LENGTH, token_format.FINE_GRAINED_LENGTH)


# ---- the whole header path, in process --------------------------------------------------


@pytest.fixture
def cached_runtime(live_server: Any) -> Iterator[tuple[Runtime, AuthzCache, Target]]:
    """A target world and an authorization cache of the kind the app uses, running."""
    target = build_target(live_server())
    runtime = target.server.runtime
    cache = AuthzCache(generation_source(runtime.engine))
    cache.source.start()
    try:
        yield runtime, cache, target
    finally:
        cache.source.stop()


def request_with(cache: AuthzCache, header: bytes) -> Request:
    app = SimpleNamespace(state=SimpleNamespace(authz_cache=cache, last_used=None))
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "app": app,
             "headers": [(b"authorization", header)]}  # fmt: skip
    return Request(scope)


def authenticate_header(runtime: Runtime, cache: AuthzCache, header: bytes) -> Any:
    """The principal for the header, or ``"401"`` for the clean refusal; anything else
    raised fails the test."""
    with runtime.unit_of_work() as ctx:
        try:
            return authenticate(request_with(cache, header), ctx)
        except Denied as denied:
            assert denied.decision.reason is Reason.BAD_CREDENTIALS
            return "401"


def authenticate_raw(runtime: Runtime, value: str) -> tuple[Any, Any]:
    """Both authenticators on the raw string (any text, as a caller in process may pass)."""
    with runtime.unit_of_work() as ctx:
        return authenticate_token(ctx, value), apps.authenticate_jwt(ctx, value)


@example("Bearer eyJ" + "W" * 5000 + ".e30.sig")
@example("token eyJhIjpbW1tbW1tbW1tbW1tbW1tbW1tb" + "W1tb" * 1500 + ".e30.x")
@example("Bearer ghp_" + "0" * 36)
@example("Bearer github_pat_" + "٣" * 82)
@example("Bearer\tghp_abc")
@given(value=header_values)
@IN_PROCESS
def test_any_header_is_bad_credentials_and_nothing_else(
    cached_runtime: tuple[Runtime, AuthzCache, Target], value: str
) -> None:
    runtime, cache, _ = cached_runtime
    # A header arrives as bytes, which Starlette reads as latin-1.
    result = authenticate_header(runtime, cache, value.encode("latin-1", "replace"))
    assert result == "401", result
    token = value.partition(" ")[2] or value
    assert authenticate_raw(runtime, token) == (None, None)


def claims_ok(claims: dict[str, Any], now: float) -> bool:
    """SPEC §6's rule for an RS256 JWT signed with the app's key: numbers (not booleans)
    for ``iat`` and ``exp``, ``iat`` at most 60 s ahead, ``now < exp <= iat + 600``."""

    def number(value: Any) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        try:
            value = float(value)
        except OverflowError:
            return None
        return value if math.isfinite(value) else None

    iat, exp = number(claims.get("iat")), number(claims.get("exp"))
    if iat is None or exp is None:
        return False
    return iat <= now + 60 and now < exp <= iat + 600 and exp > iat


offsets = st.one_of(
    st.integers(min_value=-1200, max_value=1200),
    st.sampled_from([-60, 0, 1, 59, 60, 61, 539, 540, 599, 600, 601]),
    st.floats(min_value=-1200, max_value=1200),
)


@example(iat=math.nan, exp=300.0)  # NaN compares false with everything: once accepted
@example(iat=-60, exp=10**400)
@example(iat=-(10**400), exp=300)
@example(iat=math.inf, exp=math.inf)
@example(iat=0, exp=True)
@given(iat=offsets | claim_numbers, exp=offsets | claim_numbers)
@IN_PROCESS
def test_signed_jwts_are_accepted_exactly_when_their_claims_are(
    cached_runtime: tuple[Runtime, AuthzCache, Target], iat: Any, exp: Any
) -> None:
    runtime, _, target = cached_runtime
    with runtime.unit_of_work() as ctx:
        now = ctx.now.timestamp()

        def at(offset: Any) -> Any:
            # Offsets near zero are relative to now; anything else (huge, NaN, junk) as is.
            small = (
                isinstance(offset, int | float)
                and not isinstance(offset, bool)
                and abs(offset) <= 1200  # (False for NaN; no float() of a huge int)
            )
            if not small:
                return offset
            return int(now) + offset if isinstance(offset, int) else now + offset

        claims = {"iss": str(target.app_id), "iat": at(iat), "exp": at(exp)}
        token = sign(claims, target.signing_key)
        principal = apps.authenticate_jwt(ctx, token)
        if claims_ok(claims, now):
            assert principal == AppPrincipal(app_id=target.app_id), claims
        else:
            assert principal is None, claims


# ---- over HTTP --------------------------------------------------------------------------


@pytest.fixture
def target(live_server: Any) -> Target:
    """A live server on the test's database (both backends) with :mod:`hostile_world`'s world."""
    return build_target(live_server())


def assert_bad_credentials(response: httpx.Response) -> None:
    body = assert_github_error(response, 401)
    assert body["message"] == "Bad credentials", body


@given(
    value=st.one_of(
        printable,
        st.builds(lambda s, v: f"{s} {v}", schemes, printable | ascii_near_tokens | jwt_looking()),
    )
)
@OVER_HTTP
def test_random_authorization_headers_get_401_over_http(target: Target, value: str) -> None:
    # What an HTTP client can send: no leading or trailing blanks, no control characters.
    value = value.strip(" \t")
    with httpx.Client(base_url=target.api) as client:
        for path in HTTP_PATHS:
            assert_bad_credentials(client.get(path, headers={"Authorization": value}))


def _hs256_with(secret: bytes, payload: dict[str, Any]) -> str:
    """What PyJWT refuses to make: HS256 keyed with an RSA public key (the classic confusion)."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(payload).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


def _claims(target: Target) -> dict[str, Any]:
    now = int(target.server.runtime.clock.now().timestamp())
    return {"iss": str(target.app_id), "iat": now - 60, "exp": now + 540}


def forged_jwts(target: Target, other: tuple[int, str, str]) -> dict[str, str]:
    """JWTs that must not pass, by what is wrong with them; ``other`` is another app
    registered on the same server: its id, client id and private key."""
    other_id, other_client_id, other_key = other
    good = _claims(target)
    now = good["iat"] + 60
    wrong_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = target.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = ".".join(
        [b64url(b'{"alg":"none","typ":"JWT"}'), b64url(json.dumps(good).encode()), ""]
    )
    forged = {
        "wrong key": sign(good, wrong_key),
        "alg none": unsigned,
        "alg none, signature kept": unsigned + target.jwt().rsplit(".", 1)[1],
        "HS256 keyed with the public key": _hs256_with(public, good),
        "HS256 keyed with the public key, stripped": _hs256_with(public.strip(), good),
        "exp far in the future": target.jwt(exp=now + 10 * 365 * 86400),
        "exp huge": target.jwt(exp=10**400),
        "iat in the future": target.jwt(iat=now + 3600, exp=now + 3900),
        "iat NaN": sign({**good, "iat": math.nan}, target.signing_key),
        "iat NaN, exp far": sign({**good, "iat": math.nan, "exp": now + 10**8}, target.signing_key),
        "iss beyond INTEGER": target.jwt(iss=2**40),
        "iss beyond INTEGER, as text": target.jwt(iss=str(2**40)),
        "iss with NUL": target.jwt(iss=target.client_id + "\x00"),
        "iss of no app": target.jwt(iss=str(target.app_id + 1000)),
        "header nested deeply": b64url(b'{"a":' + b"[" * 3000 + b"]" * 3000 + b"}") + ".e30.sig",
        "payload nested deeply": b64url(b'{"alg":"RS256"}')
        + "."
        + b64url(b"[" * 3000 + b"]" * 3000)
        + ".sig",
    }
    forged["signed by another app, iss ours"] = sign(good, other_key)
    forged["signed by us, iss another app's"] = target.jwt(iss=str(other_id))
    forged["signed by us, iss another app's client id"] = target.jwt(iss=other_client_id)
    return forged


def test_forged_jwts_get_401_over_http(target: Target) -> None:
    with target.server.runtime.unit_of_work() as ctx:
        done = apps.register_and_install(
            ctx, name="Other", org=orgs.get_org(ctx, "acme"), permissions={}, actor=CLI_ACTOR
        )
        other = (done.app.id, done.app.client_id, done.private_key_pem)
    with httpx.Client(base_url=target.api) as client:
        for number, (name, token) in enumerate(forged_jwts(target, other).items()):
            scheme = ("Bearer", "token", "bearer")[number % 3]
            for path in HTTP_PATHS:
                response = client.get(path, headers={"Authorization": f"{scheme} {token}"})
                assert response.status_code == 401, (name, path, response.text)
                assert_bad_credentials(response)
        for token in (target.jwt(), sign({**_claims(target), "iss": other[0]}, other[2])):
            sanity = client.get("/app", headers={"Authorization": f"Bearer {token}"})
            assert sanity.status_code == 200, sanity.text
