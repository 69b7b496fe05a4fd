"""GitHub Apps: registration, JWT authentication and the four App endpoints, over real HTTP on
both databases; every answer is held against GitHub's OpenAPI description."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from patgate.accounts import services as accounts
from patgate.apps import services as apps
from patgate.apps.models import App, InstallationToken
from patgate.clock import FixedClock
from patgate.context import CLI_ACTOR, Actor
from patgate.errors import AlreadyExists, Forbidden, InvalidInput
from patgate.orgs import services as orgs
from patgate.repos import services as repos
from support.openapi import assert_github_timestamp, validate_against, validate_response
from support.world import World

JWT_REQUIRED = "A JSON web token could not be decoded"
TOKENS = "/app/installations/{installation_id}/access_tokens"
GOVERNANCE = {
    "organization_personal_access_token_requests": "write",
    "organization_personal_access_tokens": "write",
}


@dataclass(frozen=True)
class RegisteredApp:
    id: int
    client_id: str
    slug: str
    installation_id: int
    private_key: str


def register_app(
    runtime: Any, name: str, *, org: str = "acme", permissions: dict[str, str] | None = None
) -> RegisteredApp:
    """Register an app through the services and install it on ``org``."""
    with runtime.unit_of_work() as ctx:
        done = apps.register_and_install(
            ctx,
            name=name,
            org=orgs.get_org(ctx, org),
            permissions=GOVERNANCE if permissions is None else permissions,
            events=["personal_access_token_request"],
            actor=CLI_ACTOR,
        )
        app = done.app
        return RegisteredApp(
            app.id, app.client_id, app.slug, done.installation.id, done.private_key_pem
        )


def app_jwt(
    app: RegisteredApp,
    *,
    iss: Any = None,
    iat: int = -60,
    exp: int = 540,
    key: str | None = None,
    now: float | None = None,
    **claims: Any,
) -> str:
    """A JWT as githubkit makes it (``iat`` now-60, ``exp`` iat+10 min), offsets in seconds."""
    at = int(time.time() if now is None else now)
    payload = {"iss": str(app.id) if iss is None else iss, "iat": at + iat, "exp": at + exp}
    payload.update(claims)
    return sign(payload, key or app.private_key)


def sign(payload: dict[str, Any], key: Any, algorithm: str = "RS256") -> str:
    """Sign any claims, a numeric ``iss`` included (octokit's), which ``jwt.encode`` refuses."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return jwt.api_jws.encode(body, key, algorithm=algorithm, headers={"typ": "JWT"})


def bearer(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


def access_token(server: Any, app: RegisteredApp, **body: Any) -> str:
    response = httpx.post(
        f"{server.api}/app/installations/{app.installation_id}/access_tokens",
        headers=bearer(app_jwt(app)),
        json=body,
    )
    assert response.status_code == 201, response.text
    return response.json()["token"]


def check(response: httpx.Response, method: str, template: str) -> Any:
    """Validate the answer against GitHub's description of the operation; return its JSON."""
    body = response.json() if response.content else None
    validate_response(method, template, response.status_code, body)
    return body


@pytest.fixture
def server(live_server: Any) -> Any:
    return live_server()


@pytest.fixture
def world(server: Any) -> World:
    return World(server.runtime).build()


@pytest.fixture
def app(server: Any, world: World) -> RegisteredApp:
    return register_app(server.runtime, "Token Governor")


# ---- registration -----------------------------------------------------------------------


def test_create_app_hands_over_a_pkcs1_private_key_and_keeps_only_the_public_one(
    ctx: Any,
) -> None:
    owner = accounts.create_user(ctx, "owner", email="owner@example.com")
    org = orgs.create_org(ctx, "acme", owner=owner, actor=CLI_ACTOR)
    app, key = apps.create_app(
        ctx,
        name="My Great App!",
        owner_org=org,
        permissions={"issues": "read", "organization_personal_access_tokens": "write"},
        events=["personal_access_token_request"],
        webhook_url="https://hooks.example.com/x",
        webhook_secret="s3cret",
        actor=Actor(owner.id, owner.login),
    )
    assert key.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    private = serialization.load_pem_private_key(key.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    assert app.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert "PRIVATE" not in app.public_key_pem
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert app.public_key_pem == public.decode()
    assert app.slug == "my-great-app"
    assert re.fullmatch(r"Iv1\.[0-9a-f]{16}", app.client_id)
    installation = apps.install(ctx, app, org, actor=CLI_ACTOR)
    assert installation.permissions == app.permissions
    assert installation.events == {"events": ["personal_access_token_request"]}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"permissions": {"issues": "admin"}}, "permissions"),
        ({"permissions": {"no_such_thing": "read"}}, "permissions"),
        ({"webhook_url": "ftp://example.com/hook"}, "webhook_url"),
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"events": ["Not An Event"]}, "events"),
        ({"name": ""}, "name"),
        ({"name": "x" * 35}, "name"),
        ({"name": "!!!"}, "name"),
    ],
)
def test_create_app_refuses_bad_input(ctx: Any, changes: dict[str, Any], field: str) -> None:
    owner = accounts.create_user(ctx, "owner", email="owner@example.com")
    org = orgs.create_org(ctx, "acme", owner=owner, actor=CLI_ACTOR)
    values: dict[str, Any] = {
        "name": "app",
        "permissions": {"issues": "read"},
        "events": [],
        "webhook_url": None,
        "webhook_secret": None,
        **changes,
    }
    with pytest.raises(InvalidInput) as raised:
        apps.create_app(ctx, owner_org=org, actor=CLI_ACTOR, **values)
    assert raised.value.field == field


def test_only_owners_register_and_install_and_names_are_unique(ctx: Any) -> None:
    owner = accounts.create_user(ctx, "owner", email="owner@example.com")
    member = accounts.create_user(ctx, "member", email="member@example.com")
    admin = accounts.create_user(ctx, "admin", email="admin@example.com", site_admin=True)
    org = orgs.create_org(ctx, "acme", owner=owner, actor=CLI_ACTOR)
    orgs.add_member(ctx, org, member, actor=CLI_ACTOR)
    common: dict[str, Any] = {"owner_org": org, "permissions": {}, "events": []}
    with pytest.raises(Forbidden):
        apps.create_app(ctx, name="a", actor=Actor(member.id, member.login), **common)
    app, _ = apps.create_app(ctx, name="a", actor=Actor(admin.id, admin.login), **common)
    with pytest.raises(AlreadyExists):
        apps.create_app(ctx, name="A", actor=CLI_ACTOR, **common)
    with pytest.raises(Forbidden):
        apps.install(ctx, app, org, actor=Actor(member.id, member.login))
    apps.install(ctx, app, org, actor=Actor(owner.id, owner.login))
    with pytest.raises(AlreadyExists):
        apps.install(ctx, app, org, actor=CLI_ACTOR)


# ---- JWT authentication -----------------------------------------------------------------


def _jwt_world(make_runtime: Any) -> tuple[Any, RegisteredApp, FixedClock]:
    clock = FixedClock(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    runtime = make_runtime(clock=clock)
    World(runtime).build()
    return runtime, register_app(runtime, "jwt-app"), clock


def test_authenticate_jwt_accepts_every_issuer_form(make_runtime: Any) -> None:
    runtime, app, clock = _jwt_world(make_runtime)
    now = clock.now().timestamp()
    with runtime.unit_of_work() as ctx:
        for iss in (app.id, str(app.id), app.client_id):
            principal = apps.authenticate_jwt(ctx, app_jwt(app, iss=iss, now=now))
            assert principal is not None and principal.app_id == app.id
        # octokit's timing: iat now-30, exp now+570; a clock 59 s behind the client's.
        assert apps.authenticate_jwt(ctx, app_jwt(app, iat=-30, exp=570, now=now))
        assert apps.authenticate_jwt(ctx, app_jwt(app, iat=59, exp=600, now=now))


def _other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda app, now: app_jwt(app, iat=-700, exp=-60, now=now), id="expired"),
        pytest.param(lambda app, now: app_jwt(app, iat=-10, exp=0, now=now), id="expires-now"),
        pytest.param(lambda app, now: app_jwt(app, iat=0, exp=601, now=now), id="too-long"),
        pytest.param(lambda app, now: app_jwt(app, iat=61, exp=300, now=now), id="iat-ahead"),
        pytest.param(lambda app, now: app_jwt(app, iat=0, exp=-5, now=now), id="exp-before-iat"),
        pytest.param(lambda app, now: app_jwt(app, key=_other_key(), now=now), id="wrong-key"),
        pytest.param(lambda app, now: app_jwt(app, iss=app.id + 1000, now=now), id="unknown-app"),
        pytest.param(
            lambda app, now: app_jwt(app, iss="Iv1.0000000000000000", now=now),
            id="unknown-client-id",
        ),
        pytest.param(lambda app, now: app_jwt(app, iss=True, now=now), id="iss-bool"),
        pytest.param(
            lambda app, now: app_jwt(app, iss=None, now=now, nbf=now + 3600), id="not-before"
        ),
        pytest.param(
            lambda app, now: sign({"iss": str(app.id), "iat": int(now) - 60}, app.private_key),
            id="no-exp",
        ),
        pytest.param(
            lambda app, now: sign({"iss": str(app.id), "exp": int(now) + 60}, app.private_key),
            id="no-iat",
        ),
        pytest.param(
            lambda app, now: sign(
                {"iss": str(app.id), "iat": "yesterday", "exp": int(now) + 60}, app.private_key
            ),
            id="iat-not-a-number",
        ),
        pytest.param(
            lambda app, now: sign(
                {"iss": str(app.id), "iat": int(now) - 60, "exp": int(now) + 60},
                "a-shared-secret-that-is-long-enough-for-hs256",
                "HS256",
            ),
            id="hs256",
        ),
        pytest.param(
            lambda app, now: sign(
                {"iss": str(app.id), "iat": int(now) - 60, "exp": int(now) + 60}, None, "none"
            ),
            id="alg-none",
        ),
        pytest.param(lambda app, now: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", id="garbage"),
        pytest.param(lambda app, now: "eyJ" + "A" * 20000 + ".x.y", id="huge"),
        pytest.param(lambda app, now: "eyJ!!.@@.##", id="not-base64"),
        pytest.param(lambda app, now: "", id="empty"),
    ],
)
def test_authenticate_jwt_refuses_without_raising(make_runtime: Any, make: Any) -> None:
    runtime, app, clock = _jwt_world(make_runtime)
    with runtime.unit_of_work() as ctx:
        assert apps.authenticate_jwt(ctx, make(app, clock.now().timestamp())) is None


def test_a_tampered_jwt_is_refused(make_runtime: Any) -> None:
    runtime, app, clock = _jwt_world(make_runtime)
    token = app_jwt(app, now=clock.now().timestamp())
    head, payload, signature = token.split(".")
    other = app_jwt(app, iss=app.client_id, now=clock.now().timestamp()).split(".")[1]
    with runtime.unit_of_work() as ctx:
        assert apps.authenticate_jwt(ctx, f"{head}.{payload}.{signature}") is not None
        assert apps.authenticate_jwt(ctx, f"{head}.{other}.{signature}") is None


# ---- GET /app -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "token", "TOKEN"])
def test_get_app(server: Any, app: RegisteredApp, scheme: str) -> None:
    response = httpx.get(f"{server.api}/app", headers=bearer(app_jwt(app), scheme))
    body = check(response, "GET", "/app")
    assert response.status_code == 200
    assert (body["id"], body["slug"], body["client_id"]) == (app.id, app.slug, app.client_id)
    assert body["owner"]["login"] == "acme" and body["owner"]["type"] == "Organization"
    assert body["permissions"] == GOVERNANCE
    assert body["events"] == ["personal_access_token_request"]
    assert body["installations_count"] == 1
    assert_github_timestamp(body["created_at"])


def test_get_app_by_client_id_and_numeric_issuer(server: Any, app: RegisteredApp) -> None:
    for iss in (app.id, app.client_id):
        response = httpx.get(f"{server.api}/app", headers=bearer(app_jwt(app, iss=iss)))
        assert check(response, "GET", "/app")["id"] == app.id


# ---- who may not call the App endpoints ---------------------------------------------------


APP_ENDPOINTS = [
    ("GET", "/app", "/app"),
    ("GET", "/app/installations", None),
    ("GET", "/orgs/acme/installation", "/orgs/{org}/installation"),
    ("POST", "/app/installations/{id}/access_tokens", TOKENS),
]


def _call_app_endpoint(
    server: Any, app: RegisteredApp, method: str, path: str, headers: dict[str, str]
) -> httpx.Response:
    url = server.api + path.replace("{id}", str(app.installation_id))
    return httpx.request(method, url, headers=headers)


def _check_error(response: httpx.Response, method: str, template: str | None) -> Any:
    body = response.json()
    if template is None:
        validate_against("basic-error", body)
    else:
        validate_response(method, template, response.status_code, body)
    return body


@pytest.mark.parametrize(("method", "path", "template"), APP_ENDPOINTS)
def test_app_endpoints_want_a_jwt(
    server: Any, world: World, app: RegisteredApp, method: str, path: str, template: str | None
) -> None:
    olivia_fine = world.token("olivia", name="owner-token")
    callers = {
        "nobody": {},
        "fine-grained": bearer(olivia_fine.secret),
        "classic": bearer(world.classic("olivia", ["admin:org", "repo"])),
        "installation": bearer(access_token(server, app), "token"),
    }
    before = _token_count(server)
    for who, headers in callers.items():
        response = _call_app_endpoint(server, app, method, path, headers)
        assert response.status_code == 401, (who, response.text)
        assert _check_error(response, method, template)["message"] == JWT_REQUIRED
    assert _token_count(server) == before


def _token_count(server: Any) -> int:
    with server.runtime.unit_of_work() as ctx:
        return len(ctx.session.query(InstallationToken).all())


@pytest.mark.parametrize(("method", "path", "template"), APP_ENDPOINTS)
def test_expired_and_malformed_jwts_are_bad_credentials(
    server: Any, app: RegisteredApp, method: str, path: str, template: str | None
) -> None:
    before = _token_count(server)
    for token in (
        app_jwt(app, iat=-1200, exp=-600),
        app_jwt(app, iat=0, exp=3600),
        app_jwt(app, key=_other_key()),
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
    ):
        response = _call_app_endpoint(server, app, method, path, bearer(token))
        assert response.status_code == 401
        assert _check_error(response, method, template)["message"] == "Bad credentials"
    assert _token_count(server) == before


# ---- installations ------------------------------------------------------------------------


def test_list_installations_pages_with_links(server: Any, world: World) -> None:
    app = register_app(server.runtime, "multi-org")
    with server.runtime.unit_of_work() as ctx:
        other = orgs.create_org(
            ctx, "globex", owner=accounts.get_user(ctx, "olivia"), actor=CLI_ACTOR
        )
        second = apps.install(ctx, ctx.session.get(App, app.id), other, actor=CLI_ACTOR).id
    headers = bearer(app_jwt(app))
    response = httpx.get(f"{server.api}/app/installations", headers=headers)
    assert response.status_code == 200
    items = response.json()
    assert [i["id"] for i in items] == [app.installation_id, second]
    for item in items:
        validate_against("installation", item)
        assert item["app_id"] == app.id and item["target_type"] == "Organization"
    assert [i["account"]["login"] for i in items] == ["acme", "globex"]
    first = httpx.get(f"{server.api}/app/installations?per_page=1", headers=headers)
    assert [i["id"] for i in first.json()] == [app.installation_id]
    assert (
        f'<{server.api}/app/installations?page=2&per_page=1>; rel="next"' in (first.headers["link"])
    )
    response = httpx.get(f"{server.api}/app/installations?per_page=x", headers=headers)
    assert response.status_code == 422
    validate_against("validation-error", response.json())


def test_get_org_installation(server: Any, world: World, app: RegisteredApp) -> None:
    headers = bearer(app_jwt(app))
    response = httpx.get(f"{server.api}/orgs/ACME/installation", headers=headers)
    body = check(response, "GET", "/orgs/{org}/installation")
    assert response.status_code == 200
    assert body["id"] == app.installation_id
    assert body["account"]["login"] == "acme"
    assert body["permissions"] == GOVERNANCE
    assert body["access_tokens_url"] == (
        f"{server.api}/app/installations/{app.installation_id}/access_tokens"
    )
    with server.runtime.unit_of_work() as ctx:
        orgs.create_org(ctx, "globex", owner=accounts.get_user(ctx, "olivia"), actor=CLI_ACTOR)
    for org in ("globex", "no-such-org"):
        response = httpx.get(f"{server.api}/orgs/{org}/installation", headers=headers)
        assert response.status_code == 404
        assert check(response, "GET", "/orgs/{org}/installation")["message"] == "Not Found"
    # Another app sees only its own installations.
    other = register_app(server.runtime, "other-app", org="acme")
    response = httpx.get(f"{server.api}/orgs/acme/installation", headers=bearer(app_jwt(other)))
    assert check(response, "GET", "/orgs/{org}/installation")["id"] == other.installation_id


# ---- installation access tokens ----------------------------------------------------------


def _post_token(
    server: Any, app: RegisteredApp, installation_id: Any = None, **kwargs: Any
) -> httpx.Response:
    kwargs.setdefault("headers", {})
    kwargs["headers"].update(bearer(app_jwt(app)))
    target = app.installation_id if installation_id is None else installation_id
    return httpx.post(f"{server.api}/app/installations/{target}/access_tokens", **kwargs)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-body"),  # octokit: no body, no content type
        pytest.param(
            {"content": b"{}", "headers": {"Content-Type": "application/json"}}, id="empty-object"
        ),
        pytest.param({"json": {"permissions": {}}}, id="empty-permissions"),  # PyGithub
        pytest.param({"content": b"  "}, id="blank"),
    ],
)
def test_access_token_with_the_installation_permissions(
    server: Any, app: RegisteredApp, body: dict[str, Any]
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    response = _post_token(server, app, **body)
    answer = check(response, "POST", TOKENS)
    assert response.status_code == 201
    assert re.fullmatch(r"ghs_[A-Za-z0-9]{36}", answer["token"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", answer["expires_at"])
    expires = datetime.strptime(answer["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + timedelta(hours=1) <= expires <= before + timedelta(hours=1, seconds=5)
    assert answer["permissions"] == GOVERNANCE
    assert answer["repository_selection"] == "all"
    assert "repositories" not in answer
    listed = httpx.get(
        f"{server.api}/orgs/acme/personal-access-token-requests",
        headers=bearer(answer["token"], "token"),
    )
    assert listed.status_code == 200


def test_narrowed_access_token(server: Any, world: World, app: RegisteredApp) -> None:
    with server.runtime.unit_of_work() as ctx:
        ops = repos.get_repo(ctx, "acme", "private-ops").id
    response = _post_token(
        server,
        app,
        json={
            "permissions": {"organization_personal_access_token_requests": "read"},
            "repositories": ["private-api"],
            "repository_ids": [ops],
        },
    )
    answer = check(response, "POST", TOKENS)
    assert response.status_code == 201
    assert answer["permissions"] == {"organization_personal_access_token_requests": "read"}
    assert answer["repository_selection"] == "selected"
    assert [r["name"] for r in answer["repositories"]] == ["private-api", "private-ops"]
    headers = bearer(answer["token"])
    requests_url = f"{server.api}/orgs/acme/personal-access-token-requests"
    assert httpx.get(requests_url, headers=headers).status_code == 200
    refused = httpx.post(
        requests_url, headers=headers, json={"action": "approve", "pat_request_ids": [1]}
    )
    assert refused.status_code == 403
    assert refused.json()["message"] == "Resource not accessible by integration"
    grants = httpx.get(f"{server.api}/orgs/acme/personal-access-tokens", headers=headers)
    assert grants.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"permissions": {"organization_personal_access_tokens": "admin"}}, "permissions"),
        ({"permissions": {"issues": "read"}}, "permissions"),
        ({"permissions": {"nonsense": "read"}}, "permissions"),
        ({"permissions": {"issues": "sometimes"}}, "permissions"),
        ({"repositories": ["no-such-repo"]}, "repositories"),
        ({"repositories": "private-api"}, "repositories"),
        ({"repository_ids": [999999]}, "repository_ids"),
        ({"repository_ids": ["1"]}, "repository_ids"),
    ],
)
def test_access_token_only_narrows(
    server: Any, world: World, app: RegisteredApp, body: dict[str, Any], field: str
) -> None:
    before = _token_count(server)
    response = _post_token(server, app, json=body)
    assert response.status_code == 422, response.text
    answer = check(response, "POST", TOKENS)
    assert answer["message"] == "Validation Failed"
    assert answer["errors"][0]["field"] == field
    assert _token_count(server) == before


def test_access_token_for_a_repository_of_another_org_is_refused(
    server: Any, world: World, app: RegisteredApp
) -> None:
    with server.runtime.unit_of_work() as ctx:
        olivia = accounts.get_user(ctx, "olivia")
        other = orgs.create_org(ctx, "globex", owner=olivia, actor=CLI_ACTOR)
        foreign = repos.create_repo(ctx, other, "secret").id
    for body in ({"repository_ids": [foreign]}, {"repositories": ["globex/secret"]}):
        response = _post_token(server, app, json=body)
        assert response.status_code == 422
        check(response, "POST", TOKENS)


def test_access_token_for_an_installation_of_another_app_or_none(
    server: Any, world: World, app: RegisteredApp
) -> None:
    other = register_app(server.runtime, "another-app")
    for target in (other.installation_id, 999999, "abc", "-1"):
        response = _post_token(server, app, installation_id=target)
        assert response.status_code == 404
        assert check(response, "POST", TOKENS)["message"] == "Not Found"


@pytest.mark.parametrize("content", [b"{", b"[]", b'"text"', b"null", b"[" * 100 + b"]" * 100])
def test_access_token_with_a_body_that_is_not_an_object(
    server: Any, app: RegisteredApp, content: bytes
) -> None:
    response = _post_token(server, app, content=content)
    assert response.status_code == 400
    body = check(response, "POST", TOKENS)
    assert body["message"].startswith("Problems parsing JSON")
    assert body["status"] == "400"


def test_installation_tokens_expire_after_an_hour(make_runtime: Any, live_server: Any) -> None:
    clock = FixedClock(datetime.now(UTC))
    server = live_server(clock=clock)
    World(server.runtime).build()
    app = register_app(server.runtime, "clockwork")
    response = httpx.post(
        f"{server.api}/app/installations/{app.installation_id}/access_tokens",
        headers=bearer(app_jwt(app, now=clock.now().timestamp())),
    )
    token = check(response, "POST", TOKENS)["token"]
    url = f"{server.api}/orgs/acme/personal-access-token-requests"
    clock.advance(timedelta(minutes=59, seconds=59))
    assert httpx.get(url, headers=bearer(token)).status_code == 200
    clock.advance(timedelta(seconds=2))
    response = httpx.get(url, headers=bearer(token))
    assert response.status_code == 401
    validate_response("GET", "/orgs/{org}/personal-access-token-requests", 401, response.json())
