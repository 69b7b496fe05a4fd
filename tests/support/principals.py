"""Every kind of caller patgate knows, in one world, for tests that go through every route.

:func:`build_world` populates a live server with two organizations and one credential per
principal kind: nobody, a malformed token, an expired one, a suspended user's, fine-grained
tokens pending / approved / denied / revoked / restricted by the org's policy / blocked by the
org's maximum lifetime, classic tokens allowed and restricted, installation tokens with and
without the permissions, an app's JWT, and signed-in web sessions of a member, an owner, the
owner of another organization, an enterprise owner and a site admin.

Also here: the routes of a live app (through its Mounts), a snapshot of every table (to prove
that a refused request changed nothing) and the UI's sign-in with its CSRF token.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import jwt
from argon2 import PasswordHasher
from sqlalchemy import Engine, select
from starlette.routing import BaseRoute, Mount, Route

from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.apps import services as apps
from patgate.clock import FixedClock
from patgate.config import load_settings
from patgate.context import CLI_ACTOR, Actor, Context
from patgate.db import Base
from patgate.orgs import services as orgs
from patgate.repos import services as repos
from patgate.runtime import Runtime
from patgate.tokens import services as tokens
from support.env import TEST_SECRET_KEY
from support.server import LiveServer

__all__ = [
    "API_PRINCIPALS",
    "CSRF",
    "PASSWORD",
    "SESSION_PRINCIPALS",
    "Principal",
    "PrincipalWorld",
    "Snapshots",
    "app_jwt",
    "build_world",
    "diff",
    "routes_of",
    "sign_in",
]

PASSWORD = "correct-horse-battery"
CSRF = re.compile(r'name="authenticity_token" value="([^"]+)"')
SESSION_COOKIE = "patgate_session"

# Columns a refused (or any read-only) request may change, and why:
# ``last_used_at`` records that an *authenticated* credential was presented, refused or not
# (GitHub does the same); it is buffered and written by a background flush, off the request.
NOISE_COLUMNS = frozenset({"last_used_at"})

# Credentials (API) and sessions (UI). Everything a route is tried with.
API_PRINCIPALS = (
    "anonymous",
    "malformed",
    "expired",
    "suspended",
    "fg_pending",
    "fg_approved",
    "fg_denied",
    "fg_revoked",
    "fg_restricted",
    "fg_lifetime",
    "classic_allowed",
    "classic_restricted",
    "installation_with",
    "installation_without",
    "app_jwt",
)
SESSION_PRINCIPALS = ("member", "owner", "other_owner", "enterprise_owner", "site_admin")

# Permissions of the fine-grained tokens under test, and of the apps.
TOKEN_PERMISSIONS = {
    "issues": "write",
    "members": "read",
    "organization_administration": "read",
}
GOVERNOR_PERMISSIONS = {
    "organization_personal_access_token_requests": "write",
    "organization_personal_access_tokens": "write",
    "organization_administration": "read",
    "members": "read",
    "metadata": "read",
    "issues": "write",
}
BYSTANDER_PERMISSIONS = {"contents": "read"}
USER_PERMISSIONS = {"issues": "read"}


# ---- routes -----------------------------------------------------------------------------


def routes_of(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(method, path)`` of every endpoint under ``routes``, through Mounts, in order.

    ``HEAD`` is left out (Starlette answers it as the ``GET`` it comes with); a Mount that
    serves an app without routes (static files) is ``GET <mount>/{path}``.
    """
    for route in routes:
        if isinstance(route, Mount):
            inner = route.routes
            if inner:
                yield from routes_of(inner, prefix + route.path)
            else:
                yield "GET", prefix + route.path + "/{path}"
        elif isinstance(route, Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, prefix + route.path
        else:  # pragma: no cover - a WebSocketRoute or a custom route: name it, do not hide it
            yield type(route).__name__, prefix + getattr(route, "path", "?")


def app_routes() -> list[tuple[str, str]]:
    """The routes of the application as ``create_app`` builds it (no database is touched)."""
    from patgate.web.app import create_app

    runtime = Runtime(
        load_settings(_env_file=None, database_url="sqlite:///:memory:", secret_key=TEST_SECRET_KEY)
    )
    try:
        return list(routes_of(create_app(runtime, worker=False).routes))
    finally:
        runtime.close()


# ---- snapshots --------------------------------------------------------------------------

# Table name → its rows (SQLite: tuples; PostgreSQL: the text of a JSON array of objects).
Snapshot = dict[str, Any]


WATCH_TABLE = "test_snapshot_watch"


class Snapshots:
    """Every row of every table (minus the ``ignore``d columns).

    One DBAPI connection is kept for the snapshots. SQLite reads each table with a plain
    ``SELECT`` (in process: cheap); PostgreSQL reads them all in one round trip, each table
    as a JSON array. A matrix of thousands of calls takes one snapshot after each.

    With ``watch`` (PostgreSQL), a statement trigger on every table counts the statements
    that write to it (``last_used_at`` alone aside) in a table of the test's own, so that
    :meth:`may_have_changed` answers with one tiny query; the full snapshot is then only read
    when something may have changed. SQLite is always read in full.
    """

    def __init__(
        self, engine: Engine, *, ignore: frozenset[str] = NOISE_COLUMNS, watch: bool = False
    ) -> None:
        import patgate.models  # noqa: F401  (every model registered on the metadata)

        self._postgres = engine.dialect.name == "postgresql"
        self._names: list[str] = []
        self._queries: list[str] = []
        self._watching = watch and self._postgres
        self._writes: int | None = None
        tables = Base.metadata.sorted_tables
        for table in tables:
            columns = [c for c in table.columns if c.name not in ignore]
            query = select(*columns).order_by(*table.primary_key.columns)
            self._names.append(table.name)
            self._queries.append(str(query.compile(dialect=engine.dialect)))
        if self._postgres:
            self._queries = [
                "SELECT "
                + ", ".join(
                    f"(SELECT coalesce(json_agg(row_to_json(t)), '[]'::json)::text FROM ({q}) AS t)"
                    for q in self._queries
                )
            ]
        if self._watching:
            _install_watch(engine, tables, ignore)
        self._connection = engine.raw_connection()

    def may_have_changed(self) -> bool:
        """False only if no statement wrote to any table since the last call."""
        if not self._watching:
            return True
        cursor = self._connection.cursor()
        try:
            cursor.execute(f"SELECT writes FROM {WATCH_TABLE}", prepare=True)
            writes = cursor.fetchone()[0]
        finally:
            cursor.close()
            self._connection.rollback()
        moved, self._writes = writes != self._writes, writes
        return moved

    def take(self) -> Snapshot:
        cursor = self._connection.cursor()
        try:
            if self._postgres:
                # Prepared: planning twenty subqueries costs more than running them. Each
                # table comes back as the text of a JSON array, rows in primary-key order.
                cursor.execute(self._queries[0], prepare=True)
                return dict(zip(self._names, cursor.fetchone(), strict=True))
            found = {}
            for name, query in zip(self._names, self._queries, strict=True):
                cursor.execute(query)
                found[name] = [tuple(row) for row in cursor.fetchall()]
            return found
        finally:
            cursor.close()
            self._connection.rollback()  # the next snapshot sees every commit made meanwhile

    def close(self) -> None:
        self._connection.close()


def _install_watch(engine: Engine, tables: list[Any], ignore: frozenset[str]) -> None:
    preparer = engine.dialect.identifier_preparer
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE TABLE {WATCH_TABLE} (writes bigint NOT NULL);"
            f"INSERT INTO {WATCH_TABLE} VALUES (0);"
            f"CREATE FUNCTION {WATCH_TABLE}_count() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN UPDATE {WATCH_TABLE} SET writes = writes + 1; RETURN NULL; END $$"
        )
        for table in tables:
            columns = ", ".join(
                preparer.quote(c.name) for c in table.columns if c.name not in ignore
            )
            connection.exec_driver_sql(
                f"CREATE TRIGGER {WATCH_TABLE} AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF "
                f"{columns} ON {preparer.format_table(table)} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {WATCH_TABLE}_count()"
            )


def diff(before: Snapshot, after: Snapshot) -> str:
    """What changed between two snapshots, table by table, for a failure message."""

    def rows(snapshot: Snapshot, table: str) -> set[str]:
        found = snapshot.get(table, [])
        if isinstance(found, str):
            return {json.dumps(row, sort_keys=True) for row in json.loads(found)}
        return {repr(row) for row in found}

    lines = []
    for table in sorted(set(before) | set(after)):
        old, new = rows(before, table), rows(after, table)
        lines.extend(f"  {table}: - {row}" for row in sorted(old - new))
        lines.extend(f"  {table}: + {row}" for row in sorted(new - old))
    return "\n".join(lines) or "  (no difference)"


# ---- callers ----------------------------------------------------------------------------


def app_jwt(app_id: int, private_key: str) -> str:
    """The app's JWT as githubkit makes it (``iat`` now-60, ``exp`` now+540)."""
    now = int(time.time())
    return jwt.encode(
        {"iss": str(app_id), "iat": now - 60, "exp": now + 540}, private_key, algorithm="RS256"
    )


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(url: str, login: str | None, password: str = PASSWORD) -> tuple[str, str]:
    """A session of the site (signed in as ``login``, or anonymous): its cookie and the CSRF
    token its forms carry."""
    with httpx.Client(base_url=url, follow_redirects=False) as client:
        form = client.get("/login")
        assert form.status_code == 200, form.text
        if login is None:
            return client.cookies[SESSION_COOKIE], csrf_of(form.text)
        answer = client.post(
            "/login",
            data={"login": login, "password": password, "authenticity_token": csrf_of(form.text)},
        )
        assert answer.status_code == 303, answer.text
        page = client.get("/settings/organizations")
        assert page.status_code == 200, page.text
        return client.cookies[SESSION_COOKIE], csrf_of(page.text)


@dataclass
class Principal:
    """One caller: an ``Authorization`` credential, a web session, both or neither.

    ``context`` names the organization its API calls aim at: the restricted principals are
    tokens used on the organization that restricts them (``globex``); everyone else acts on
    ``acme``. Web sessions always act on ``acme``.
    """

    name: str
    token: str | None = None
    jwt: Callable[[], str] | None = None
    cookie: str | None = None
    csrf: str | None = None
    context: str = "acme"

    @property
    def is_session(self) -> bool:
        return self.name in SESSION_PRINCIPALS

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.token is not None:
            headers["Authorization"] = f"token {self.token}"
        elif self.jwt is not None:
            headers["Authorization"] = f"Bearer {self.jwt()}"
        if self.cookie is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={self.cookie}"
        return headers


@dataclass
class PrincipalWorld:
    server: LiveServer
    principals: dict[str, Principal]
    # Values for path parameters and bodies, per context (``acme`` / ``globex``).
    values: dict[str, dict[str, Any]]

    @property
    def runtime(self) -> Runtime:
        return self.server.runtime


# ---- building the world -----------------------------------------------------------------


def _user(ctx: Context, login: str, password_hash: str, **kwargs: Any) -> Any:
    user = accounts.create_user(ctx, login, email=f"{login}@example.com", **kwargs)
    user.password_hash = password_hash
    return user


def _token(
    ctx: Context,
    login: str,
    name: str,
    owner: str,
    *,
    repositories: str = "all",
    expires_in: str | None = "30",
    permissions: dict[str, str] | None = None,
) -> Any:
    """A fine-grained token of ``login`` for ``owner``; ``expires_in`` days (None: never)."""
    account = repos.get_account(ctx, owner)
    return tokens.create_fine_grained(
        ctx,
        accounts.get_user(ctx, login),
        name=name,
        resource_owner=account,
        repository_selection=repositories,
        permissions=TOKEN_PERMISSIONS if permissions is None else permissions,
        expires_at=tokens.expiry(ctx.now, expires_in) if expires_in is not None else None,
        reason="for the authorization matrix",
        actor=CLI_ACTOR,
    )


def _classic(ctx: Context, login: str, note: str, scopes: list[str]) -> Any:
    return tokens.create_classic(
        ctx,
        accounts.get_user(ctx, login),
        note=note,
        scopes=scopes,
        expires_at=tokens.expiry(ctx.now, None),
    )


def _actor(ctx: Context, login: str) -> Actor:
    user = accounts.get_user(ctx, login)
    return Actor(user.id, user.login, "user")


def _grant_id(ctx: Context, org: Any, issued: Any) -> int:
    grant = approvals.active_grant_of(ctx, issued.token, org)
    assert grant is not None
    return grant.id


def _write_mail(directory: Path) -> str:
    message = EmailMessage()
    message["From"] = "patgate@example.com"
    message["To"] = "olivia@example.com"
    message["Subject"] = "A message for the matrix"
    message["Date"] = "Mon, 02 Mar 2026 09:00:00 +0000"
    message["Message-ID"] = "<matrix@example.com>"
    message.set_content("Hello in plain text.")
    message.add_alternative("<p>Hello in <b>HTML</b>.</p>", subtype="html")
    directory.mkdir(parents=True, exist_ok=True)
    name = "20260302T090000-matrix.eml"
    (directory / name).write_bytes(message.as_bytes())
    return name


def build_world(server: LiveServer) -> PrincipalWorld:
    """Populate ``server``'s (fresh) database; sign the web sessions in."""
    runtime = server.runtime
    # One cheap argon2 hash for everyone: the matrix signs in dozens of times.
    password_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    acme: dict[str, Any] = {}
    globex: dict[str, Any] = {}
    principals: dict[str, Principal] = {}

    # The expired token is made a month ago, through a runtime whose clock says so.
    past = Runtime(runtime.settings, clock=FixedClock(runtime.clock.now() - timedelta(days=30)))
    try:
        with runtime.unit_of_work() as ctx:
            for login in ("olivia", "mona", "otto", "erin", "sully", "paul", "visitor"):
                _user(ctx, login, password_hash)
            _user(ctx, "sam", password_hash, site_admin=True)
            megacorp = orgs.create_enterprise(
                ctx, "megacorp", name="Megacorp", owner=accounts.get_user(ctx, "erin")
            )
            org = orgs.create_org(
                ctx, "acme", owner=accounts.get_user(ctx, "olivia"), enterprise=megacorp,
                actor=CLI_ACTOR,
            )  # fmt: skip
            other = orgs.create_org(
                ctx, "globex", owner=accounts.get_user(ctx, "otto"), actor=CLI_ACTOR
            )
            for login in ("mona", "sully", "paul"):
                orgs.add_member(ctx, org, accounts.get_user(ctx, login), actor=CLI_ACTOR)
            orgs.add_member(ctx, other, accounts.get_user(ctx, "mona"), actor=CLI_ACTOR)
            # Tokens that outlive any maximum are made while acme has none (below).
            orgs.set_org_policy(
                ctx, org, actor=CLI_ACTOR, opt_in=True, fine_grained_max_lifetime_days=None
            )
            orgs.set_org_policy(ctx, other, actor=CLI_ACTOR, opt_in=True)
            for owner, context in ((org, acme), (other, globex)):
                repos.create_repo(ctx, owner, "public-site", visibility="public")
                private = repos.create_repo(ctx, owner, "private-api", visibility="private")
                issue = repos.create_issue(
                    ctx, private, title="a first issue", body=None,
                    author=accounts.get_user(ctx, "mona"),
                )  # fmt: skip
                context.update(
                    org=owner.login, org_id=owner.id, owner=owner.login, repo="private-api",
                    public_repo="public-site", number=issue.number,
                )  # fmt: skip
            repos.create_repo(ctx, org, "private-ops", visibility="private")

            # Apps: one with every permission the routes need, one with none of them, two
            # registered but not installed (the UI's Install button).
            governor = apps.register_and_install(
                ctx, name="Governor", org=org, permissions=GOVERNOR_PERMISSIONS,
                events=[apps.REQUEST_EVENT], webhook_url="http://127.0.0.1:9/hook",
                webhook_secret="matrix-webhook-secret", actor=CLI_ACTOR,
            )  # fmt: skip
            bystander = apps.register_and_install(
                ctx, name="Bystander", org=org, permissions=BYSTANDER_PERMISSIONS, actor=CLI_ACTOR
            )
            for name in ("Dormant", "Dormant Two"):
                apps.create_app(
                    ctx, name=name, owner_org=org, permissions={"issues": "read"}, actor=CLI_ACTOR
                )
            _, with_permission = apps.create_installation_token(ctx, governor.installation)
            _, without = apps.create_installation_token(ctx, bystander.installation)
            acme.update(
                installation_id=governor.installation.id, slug=governor.app.slug,
                dormant="dormant", dormant_two="dormant-two", enterprise="megacorp",
                login="mona",
            )  # fmt: skip

            olivia, otto = _actor(ctx, "olivia"), _actor(ctx, "otto")
            pending = _token(ctx, "mona", "pending", "acme")
            approved = _token(ctx, "mona", "approved", "acme")
            denied = _token(ctx, "mona", "denied", "acme")
            revoked = _token(ctx, "mona", "revoked", "acme")
            lifetime = _token(ctx, "mona", "lifetime", "acme", expires_in=None)
            restricted = _token(ctx, "mona", "restricted", "globex")
            globex_pending = _token(ctx, "mona", "globex-pending", "globex")
            suspended = _token(ctx, "sully", "sully", "acme")
            # paul's requests and grants are spent by the calls that are allowed to change
            # things, so that the objects every refusal aims at stay as they are.
            spare_requests = [_token(ctx, "paul", f"spare-request-{n}", "acme") for n in range(6)]
            spare_grants = [_token(ctx, "paul", f"spare-grant-{n}", "acme") for n in range(3)]
            approvals.approve(
                ctx, org,
                [approved.request.id, revoked.request.id, lifetime.request.id,
                 suspended.request.id, *(t.request.id for t in spare_grants)],
                actor=olivia,
            )  # fmt: skip
            approvals.approve(ctx, other, [restricted.request.id], actor=otto)
            approvals.deny(ctx, org, [denied.request.id], actor=olivia, reason="not now")
            approvals.revoke(ctx, org, [_grant_id(ctx, org, revoked)], actor=olivia)
            orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, fine_grained_max_lifetime_days=366)
            orgs.set_org_policy(ctx, other, actor=CLI_ACTOR, fine_grained="restrict",
                                classic="restrict")  # fmt: skip
            accounts.set_suspended(ctx, "sully", True)

            # The web UI's own pages aim at mona's tokens (user-owned: no request to open).
            page_token = _token(
                ctx, "mona", "page-token", "mona", repositories="none",
                permissions=USER_PERMISSIONS,
            )  # fmt: skip
            spare_pages = {
                f"fg_{n}": _token(
                    ctx,
                    "mona",
                    f"spare-{n}",
                    "mona",
                    repositories="none",
                    permissions=USER_PERMISSIONS,
                ).token.id
                for n in ("edit", "regenerate", "delete")
            }
            classic_acme = _classic(ctx, "mona", "classic-acme", ["repo", "read:org"])
            classic_globex = _classic(ctx, "mona", "classic-globex", ["repo", "read:org"])
            classic_page = _classic(ctx, "mona", "page-classic", ["repo"])
            spare_pages |= {
                f"classic_{n}": _classic(ctx, "mona", f"spare-{n}", ["repo"]).token.id
                for n in ("regenerate", "delete")
            }
            acme.update(
                pat_request_id=pending.request.id,
                request_id=pending.request.id,
                pat_id=_grant_id(ctx, org, approved),
                lifetime_token_id=lifetime.token.id,
                token_id=page_token.token.id,
                classic_token_id=classic_page.token.id,
                **{f"spare_request_{n}": t.request.id for n, t in enumerate(spare_requests)},
                **{f"spare_grant_{n}": _grant_id(ctx, org, t) for n, t in enumerate(spare_grants)},
                **{f"spare_{k}": v for k, v in spare_pages.items()},
            )
            globex.update(
                pat_request_id=globex_pending.request.id,
                pat_id=_grant_id(ctx, other, restricted),
            )
        with past.unit_of_work() as ctx:
            expired = _token(ctx, "mona", "expired", "acme", expires_in="7")
            approvals.approve(
                ctx, orgs.get_org(ctx, "acme"), [expired.request.id], actor=_actor(ctx, "olivia")
            )
    finally:
        past.close()
    acme["name"] = _write_mail(Path(runtime.settings.mailbox_dir))
    acme["static_file"] = "patgate.css"
    # What globex does not have of its own (the App routes' ids: PATs are refused first).
    for key, value in acme.items():
        globex.setdefault(key, value)

    malformed = approved.secret[:-1] + ("A" if approved.secret[-1] != "A" else "B")
    credentials = {
        "anonymous": None,
        "malformed": malformed,
        "expired": expired.secret,
        "suspended": suspended.secret,
        "fg_pending": pending.secret,
        "fg_approved": approved.secret,
        "fg_denied": denied.secret,
        "fg_revoked": revoked.secret,
        "fg_restricted": restricted.secret,
        "fg_lifetime": lifetime.secret,
        "classic_allowed": classic_acme.secret,
        "classic_restricted": classic_globex.secret,
        "installation_with": with_permission,
        "installation_without": without,
    }
    anonymous_cookie, anonymous_csrf = sign_in(server.url, None)
    for name, token in credentials.items():
        principals[name] = Principal(
            name,
            token=token,
            cookie=anonymous_cookie,
            csrf=anonymous_csrf,
            context="globex" if name.endswith("_restricted") else "acme",
        )
    app_id, key = governor.app.id, governor.private_key_pem
    principals["app_jwt"] = Principal(
        "app_jwt", jwt=lambda: app_jwt(app_id, key), cookie=anonymous_cookie, csrf=anonymous_csrf
    )
    for name, login in zip(
        SESSION_PRINCIPALS, ("mona", "olivia", "otto", "erin", "sam"), strict=True
    ):
        cookie, csrf = sign_in(server.url, login)
        principals[name] = Principal(name, cookie=cookie, csrf=csrf)
    return PrincipalWorld(server, principals, {"acme": acme, "globex": globex})
