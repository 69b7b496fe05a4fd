"""GitHub Apps: registration, installation on organizations, JWT authentication, installation
access tokens, and webhooks about personal access token requests to installed apps."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

from patgate.accounts.models import User
from patgate.approvals.models import TokenRequest
from patgate.apps.models import App, Installation, InstallationToken
from patgate.audit import services as audit
from patgate.authz.decision import Actions, AppPrincipal, SessionPrincipal, decide
from patgate.context import Actor, Context
from patgate.db import MAX_ID, is_storable_id
from patgate.errors import AlreadyExists, Forbidden, InvalidInput, NotFound
from patgate.notifications import services as outbox
from patgate.orgs.models import Organization
from patgate.repos.models import Repository
from patgate.tokens import format as token_format
from patgate.tokens.permissions import CATALOGUE, LEVEL_RANK

REQUEST_EVENT = "personal_access_token_request"
REQUESTS_PERMISSION = "organization_personal_access_token_requests"

MAX_NAME = 34  # GitHub's limit for app names
MAX_WEBHOOK_SECRET = 255
MAX_EVENTS = 100
MAX_TOKEN_REPOSITORIES = 500  # GitHub's limit for a narrowed installation token
EVENT_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
KEY_BITS = 2048
TOKEN_LIFETIME = timedelta(hours=1)
# JWTs: GitHub allows an issue time a little ahead of its clock and a lifetime of 10 minutes.
JWT_CLOCK_SKEW = timedelta(seconds=60)
JWT_MAX_LIFETIME = timedelta(minutes=10)
JWT_MAX_BYTES = 8192


# ---- registration and installation ------------------------------------------------------


def slug_of(name: str) -> str:
    """GitHub's slug: lower case, every run of other characters a single hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def check_permissions(permissions: dict[str, str]) -> dict[str, str]:
    """Validate ``{name: level}`` against the catalogue; return a sorted copy.

    Raises :class:`InvalidInput` naming the first unknown permission or level.
    """
    if not isinstance(permissions, dict):
        raise InvalidInput("permissions must be an object", field="permissions")
    result: dict[str, str] = {}
    for name, level in permissions.items():
        entry = CATALOGUE.get(name)
        if entry is None:
            raise InvalidInput(
                f"unknown permission {name!r}", field="permissions", resource="Integration"
            )
        if level not in entry[1]:
            raise InvalidInput(
                f"permission {name!r} takes {' or '.join(entry[1])}, not {level!r}",
                field="permissions",
                resource="Integration",
            )
        result[name] = level
    return dict(sorted(result.items()))


def _check_webhook_url(url: str | None) -> str | None:
    if url is None or url == "":
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2048:
        raise InvalidInput(
            f"webhook URL {url!r} must be an absolute http(s) URL",
            field="webhook_url",
            resource="Integration",
        )
    return url


def _check_events(events: Sequence[str]) -> list[str]:
    if len(events) > MAX_EVENTS:
        raise InvalidInput("too many events", field="events", resource="Integration")
    for event in events:
        if not isinstance(event, str) or not EVENT_PATTERN.match(event):
            raise InvalidInput(
                f"event {event!r} is not an event name such as {REQUEST_EVENT}",
                field="events",
                resource="Integration",
            )
    return list(dict.fromkeys(events))


def _require_owner_or_admin(ctx: Context, org: Organization, actor: Actor) -> None:
    """People register apps for organizations they own (site admins for any); the CLI
    operator is trusted."""
    if actor.kind != "user":
        return
    from patgate.authz.services import user_facts
    from patgate.orgs.services import org_facts

    user = ctx.session.get(User, actor.id)
    if user is None:
        raise Forbidden(f"{actor.login} may not register apps for {org.login}")
    if user.site_admin:
        return
    principal = SessionPrincipal(user_facts(ctx, user))
    if not decide(principal, Actions.ADMINISTER_ORG, org_facts(ctx, org), now=ctx.now).allowed:
        raise Forbidden(f"only owners of {org.login} can register and install apps there")


def create_app(
    ctx: Context,
    *,
    name: str,
    owner_org: Organization,
    permissions: dict[str, str],
    events: Sequence[str] = (),
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    actor: Actor,
    description: str | None = None,
) -> tuple[App, str]:
    """Register a GitHub App owned by ``owner_org``; return it and its private key.

    The private key (RSA 2048, PKCS#1 PEM, ``BEGIN RSA PRIVATE KEY``) is returned once and
    never stored: only the public key is kept. Raises :class:`InvalidInput` (name, permissions,
    events, webhook), :class:`AlreadyExists` (name or slug taken) and :class:`Forbidden` (the
    actor is not an owner of the organization nor a site admin).
    """
    _require_owner_or_admin(ctx, owner_org, actor)
    name = (name or "").strip()
    slug = slug_of(name)
    if not name or len(name) > MAX_NAME or not slug:
        raise InvalidInput(
            f"app name must have 1 to {MAX_NAME} characters, some of them letters or digits",
            field="name",
            resource="Integration",
        )
    taken = ctx.session.scalar(
        select(App.id).where((App.slug == slug) | (func.lower(App.name) == name.lower()))
    )
    if taken is not None:
        raise AlreadyExists(
            f"an app named {name!r} already exists", field="name", resource="Integration"
        )
    checked = check_permissions(permissions)
    event_list = _check_events(events)
    webhook_url = _check_webhook_url(webhook_url)
    if webhook_secret is not None and len(webhook_secret) > MAX_WEBHOOK_SECRET:
        raise InvalidInput(
            f"webhook secret is longer than {MAX_WEBHOOK_SECRET} characters",
            field="webhook_secret",
            resource="Integration",
        )
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, as GitHub hands them out
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    app = App(
        slug=slug,
        name=name,
        client_id=f"Iv1.{secrets.token_hex(8)}",
        owner_id=owner_org.id,
        description=description,
        public_key_pem=public_pem,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret or None,
        events={"events": event_list},
        permissions=checked,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(app)
    ctx.session.flush()
    audit.record(
        ctx, "integration.create", actor=actor, org=owner_org, app_id=app.id, app=app.slug,
        permissions=checked, events=event_list,
    )  # fmt: skip
    return app, private_pem


def install(ctx: Context, app: App, org: Organization, *, actor: Actor) -> Installation:
    """Install ``app`` on ``org`` with the app's permissions and events.

    Raises :class:`AlreadyExists` when it is installed there already and :class:`Forbidden`
    when the actor is not an owner of the organization (nor a site admin).
    """
    _require_owner_or_admin(ctx, org, actor)
    if find_installation(ctx, app, org) is not None:
        raise AlreadyExists(
            f"{app.slug} is already installed on {org.login}",
            field="installation",
            resource="Installation",
        )
    installation = Installation(
        app_id=app.id,
        org_id=org.id,
        permissions=dict(app.permissions),
        events={"events": list(app.events.get("events", []))},
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(installation)
    ctx.session.flush()
    audit.record(
        ctx, "integration_installation.create", actor=actor, org=org, app_id=app.id,
        app=app.slug, installation_id=installation.id,
    )  # fmt: skip
    return installation


@dataclass(frozen=True, slots=True)
class RegisteredApp:
    """An app registered and installed in one step; the private key is shown once."""

    app: App
    installation: Installation
    private_key_pem: str


def register_and_install(
    ctx: Context,
    *,
    name: str,
    org: Organization,
    permissions: dict[str, str],
    events: Sequence[str] = (),
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    actor: Actor,
) -> RegisteredApp:
    """``patgate app create``: :func:`create_app` owned by ``org``, then :func:`install` on it.

    Raises what those raise; nothing is left behind when the caller rolls back.
    """
    app, private_key = create_app(
        ctx,
        name=name,
        owner_org=org,
        permissions=permissions,
        events=events,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        actor=actor,
    )
    return RegisteredApp(app, install(ctx, app, org, actor=actor), private_key)


# ---- reading ----------------------------------------------------------------------------


def get_app(ctx: Context, app_id: int) -> App:
    app = ctx.session.get(App, app_id) if is_storable_id(app_id) else None
    if app is None:
        raise NotFound("app", app_id)
    return app


def find_installation(ctx: Context, app: App, org: Organization) -> Installation | None:
    return ctx.session.scalar(
        select(Installation).where(Installation.app_id == app.id, Installation.org_id == org.id)
    )


def get_installation(ctx: Context, app: App, installation_id: int) -> Installation:
    """The installation ``installation_id`` of ``app``; :class:`NotFound` for another app's."""
    installation = ctx.session.get(Installation, installation_id)
    if installation is None or installation.app_id != app.id:
        raise NotFound("installation", installation_id)
    return installation


def installations_of(
    ctx: Context, app: App, *, page: int = 1, per_page: int = 30
) -> tuple[list[Installation], int]:
    """A page of the app's installations (oldest first) and their total count."""
    total = ctx.session.scalar(
        select(func.count()).select_from(Installation).where(Installation.app_id == app.id)
    )
    rows = ctx.session.scalars(
        select(Installation)
        .where(Installation.app_id == app.id)
        .order_by(Installation.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    return list(rows), total or 0


def installation_count(ctx: Context, app: App) -> int:
    return installations_of(ctx, app, per_page=1)[1]


# ---- authentication ---------------------------------------------------------------------


@lru_cache(maxsize=256)
def _public_key(pem: str) -> Any:
    return serialization.load_pem_public_key(pem.encode("ascii"))


def _number(value: Any) -> float | None:
    # JSON gives NaN (which compares false with everything, so it would pass every time
    # check), Infinity, and integers too large for a float.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _app_for_issuer(ctx: Context, issuer: Any) -> App | None:
    if isinstance(issuer, bool):
        return None
    if isinstance(issuer, int):
        return ctx.session.get(App, issuer) if 0 < issuer <= MAX_ID else None
    # NUL: PostgreSQL refuses it in any text it is asked to compare.
    if not isinstance(issuer, str) or not issuer or len(issuer) > 100 or "\x00" in issuer:
        return None
    if issuer.isascii() and issuer.isdigit():
        number = int(issuer)
        return ctx.session.get(App, number) if 0 < number <= MAX_ID else None
    return ctx.session.scalar(select(App).where(App.client_id == issuer))


def authenticate_jwt(ctx: Context, raw: str) -> AppPrincipal | None:
    """The app a JWT stands for, or ``None`` for anything malformed, forged or expired.

    RS256 only, signed with the app's key; ``iss`` is the app id (number or string) or its
    client id; ``iat`` at most 60 s ahead of the clock (skew); ``exp`` required, in the future
    and at most 10 minutes after ``iat``. Never raises for a bad token.
    """
    if len(raw) > JWT_MAX_BYTES:
        return None
    try:
        header = jwt.get_unverified_header(raw)
        unverified = jwt.decode(raw, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    if header.get("alg") != "RS256" or not isinstance(unverified, dict):
        return None
    app = _app_for_issuer(ctx, unverified.get("iss"))
    if app is None:
        return None
    try:
        claims = jwt.decode(
            raw,
            _public_key(app.public_key_pem),
            algorithms=["RS256"],
            # Time is checked below against the service clock (testable, one definition).
            options={
                "require": ["iat", "exp", "iss"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": False,
                # ``iss`` was matched above; PyJWT would refuse octokit's numeric one.
                "verify_iss": False,
            },
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    iat, exp = _number(claims.get("iat")), _number(claims.get("exp"))
    if iat is None or exp is None:
        return None
    now = ctx.now.timestamp()
    if iat > now + JWT_CLOCK_SKEW.total_seconds():
        return None
    if exp <= now or exp <= iat or exp > iat + JWT_MAX_LIFETIME.total_seconds():
        return None
    nbf = claims.get("nbf")
    if nbf is not None:
        nbf_value = _number(nbf)
        if nbf_value is None or nbf_value > now + JWT_CLOCK_SKEW.total_seconds():
            return None
    return AppPrincipal(app_id=app.id)


# ---- installation access tokens ---------------------------------------------------------


def _narrowed_permissions(
    installation: Installation, permissions: dict[str, str] | None
) -> dict[str, str]:
    granted: dict[str, str] = dict(installation.permissions)
    if not permissions:
        return granted
    if not isinstance(permissions, dict):
        raise InvalidInput(
            "permissions must be an object", field="permissions", resource="InstallationToken"
        )
    result: dict[str, str] = {}
    for name, level in permissions.items():
        entry = CATALOGUE.get(name)
        if entry is None or level not in entry[1]:
            raise InvalidInput(
                f"{name}={level} is not a permission and level",
                field="permissions",
                resource="InstallationToken",
            )
        have = granted.get(name)
        if have is None or LEVEL_RANK[level] > LEVEL_RANK[have]:
            raise InvalidInput(
                "The permissions requested are not granted to this installation.",
                field="permissions",
                resource="InstallationToken",
                code="unprocessable",
            )
        result[name] = level
    return dict(sorted(result.items()))


def _narrowed_repositories(
    ctx: Context,
    installation: Installation,
    names: Sequence[str] | None,
    ids: Sequence[int] | None,
) -> list[Repository] | None:
    names, ids = list(names or []), list(ids or [])
    if not names and not ids:
        return None
    if len(names) + len(ids) > MAX_TOKEN_REPOSITORIES:
        raise InvalidInput(
            f"at most {MAX_TOKEN_REPOSITORIES} repositories",
            field="repositories",
            resource="InstallationToken",
        )
    chosen: dict[int, Repository] = {}
    for name in names:
        if not isinstance(name, str):
            raise InvalidInput(
                "repositories must be names", field="repositories", resource="InstallationToken"
            )
        repo = ctx.session.scalar(
            select(Repository).where(
                Repository.owner_id == installation.org_id,
                Repository.name_key == name.split("/")[-1].lower(),
            )
        )
        if repo is None:
            raise InvalidInput(
                f"There is at least one repository that does not exist or is not accessible "
                f"to the parent installation: {name}",
                field="repositories",
                resource="InstallationToken",
            )
        chosen[repo.id] = repo
    for repo_id in ids:
        in_range = isinstance(repo_id, int) and 0 < repo_id <= MAX_ID
        repo = ctx.session.get(Repository, repo_id) if in_range else None
        if repo is None or repo.owner_id != installation.org_id:
            raise InvalidInput(
                f"There is at least one repository that does not exist or is not accessible "
                f"to the parent installation: {repo_id}",
                field="repository_ids",
                resource="InstallationToken",
            )
        chosen[repo.id] = repo
    return sorted(chosen.values(), key=lambda r: r.name_key)


def create_installation_token(
    ctx: Context,
    installation: Installation,
    *,
    permissions: dict[str, str] | None = None,
    repositories: Sequence[str] | None = None,
    repository_ids: Sequence[int] | None = None,
) -> tuple[InstallationToken, str]:
    """Issue a ``ghs_`` token for ``installation``, valid one hour.

    Without ``permissions`` (or with ``{}``) it has the installation's permissions; given ones
    may only narrow them. Without repositories it reaches every repository of the org; given
    names or ids (of the installation's organization) narrow it to those
    (:func:`token_repositories`). Returns the token and its secret (shown once).
    Raises :class:`InvalidInput` for a permission beyond the installation's or an unknown
    repository.
    """
    granted = _narrowed_permissions(installation, permissions)
    repos = _narrowed_repositories(ctx, installation, repositories, repository_ids)
    secret = token_format.generate_installation()
    # Whole seconds: ``expires_at`` is shown without fractions and must be the real expiry.
    now = ctx.now.replace(microsecond=0)
    token = InstallationToken(
        installation_id=installation.id,
        token_hash=token_format.hash_token(secret),
        permissions=granted,
        repository_ids={"ids": [r.id for r in repos]} if repos is not None else None,
        created_at=ctx.now,
        expires_at=now + TOKEN_LIFETIME,
    )
    ctx.session.add(token)
    ctx.session.flush()
    return token, secret


def token_repositories(ctx: Context, token: InstallationToken) -> list[Repository] | None:
    """The repositories a token is narrowed to, by name; ``None`` when it reaches them all."""
    if token.repository_ids is None:
        return None
    ids = token.repository_ids.get("ids", [])
    if not ids:
        return []
    return list(
        ctx.session.scalars(
            select(Repository).where(Repository.id.in_(ids)).order_by(Repository.name_key)
        )
    )


# ---- webhooks ---------------------------------------------------------------------------


def request_event_targets(ctx: Context, org: Organization) -> list[tuple[Installation, App]]:
    """The installed apps on ``org`` to tell about ``personal_access_token_request`` events:
    those with the requests permission that subscribe to the event and have a webhook URL.
    One query; a bulk decision asks once for all its requests."""
    rows = ctx.session.execute(
        select(Installation, App)
        .join(App, App.id == Installation.app_id)
        .where(Installation.org_id == org.id, App.webhook_url.is_not(None))
        .order_by(Installation.id)
    ).all()
    return [
        (installation, app)
        for installation, app in rows
        if REQUESTS_PERMISSION in installation.permissions
        and REQUEST_EVENT in installation.events.get("events", [])
    ]


def request_event_message(
    app: App,
    installation: Installation,
    org: Organization,
    action: str,
    request: TokenRequest,
    sender: User | None,
    body: dict[str, Any],
) -> dict[str, Any]:
    """The outbox payload of one webhook delivery (``body`` from ``payloads.request_event``)."""
    return {
        "app_id": app.id,
        "installation_id": installation.id,
        "event": REQUEST_EVENT,
        "action": action,
        "request_id": request.id,
        "org_id": org.id,
        "sender_id": sender.id if sender else None,
        "body": body,
    }


def enqueue_request_event(
    ctx: Context, org: Organization, action: str, request: TokenRequest, *, sender: User | None
) -> None:
    """Queue a ``personal_access_token_request`` webhook for every app of
    :func:`request_event_targets`."""
    for installation, app in request_event_targets(ctx, org):
        body = _request_event_body(ctx, org, action, request, installation, sender)
        outbox.enqueue(
            ctx,
            outbox.WEBHOOK,
            request_event_message(app, installation, org, action, request, sender, body),
        )


def _request_event_body(
    ctx: Context,
    org: Organization,
    action: str,
    request: TokenRequest,
    installation: Installation,
    sender: User | None,
) -> dict[str, Any]:
    # The body is built when the event happens: it shows the request as it was then.
    from patgate.approvals import payloads

    return payloads.request_event(ctx, org, action, request, installation, sender)
