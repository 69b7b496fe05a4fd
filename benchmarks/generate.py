"""The benchmark databases: real patgate data, bulk-inserted once and reused.

Two datasets per size profile:

- ``main``: ~1,000,000 fine-grained tokens of 20,000 users in 200 organizations (10
  repositories each), memberships, classic tokens, approved requests with active grants,
  the org ``bench`` (a member's approved fine-grained token and a classic ``repo`` token on
  ``bench/private-api``) and the org ``bulk`` with 100,000 pending requests of 2,000
  requesters (50 each: patgate's per-user maximum) and an installed GitHub App that
  subscribes to ``personal_access_token_request`` webhooks.
- ``digest``: 1,000 organizations with one owner and 100 pending requests each.

The schema comes from patgate's own migrations (``patgate.schema.upgrade``); rows are
inserted with SQLAlchemy Core ``insert()`` + executemany in 50,000-row batches inside one
transaction on SQLite (``synchronous=OFF``, ``journal_mode=OFF`` while generating only), and
with ``COPY`` on PostgreSQL. Each database is keyed on the Alembic head revision and
:data:`GENERATOR_VERSION`; a finished build writes a JSON sidecar (ids, logins, the secrets of
the tokens the benchmark uses), which is what marks the cache valid.

Every token row is a real token: its secret is derived from its id
(:func:`fine_grained_secret`, :func:`classic_secret`), so any of them can authenticate (the
memory sweep of goal 5 uses thousands). The two tokens of goal 1 are made with
``patgate.tokens.format.generate_fine_grained()``/``generate_classic()`` and kept in the
sidecar.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import make_url

from patgate import schema
from patgate.db import make_engine
from patgate.tokens import format as token_format

# Bump when the generated data changes shape: cached databases are then rebuilt.
GENERATOR_VERSION = 3
SEED = 20261125
BATCH = 50_000

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/"
BENCH_TOKEN_LIFETIME = timedelta(days=365)


@dataclass(frozen=True)
class Profile:
    """How big the generated data is."""

    name: str
    users: int  # including the bulk requesters
    tokens_per_user: int
    orgs: int  # general organizations, ``bench`` among them; ``bulk`` comes on top
    repos_per_org: int
    bulk_pending: int
    digest_orgs: int
    digest_pending_per_org: int
    enterprises: int = 5
    org_token_share: float = 0.15  # of general users' tokens, those targeting an org

    @property
    def bulk_requesters(self) -> int:
        return self.bulk_pending // self.tokens_per_user


FULL = Profile(
    "full", users=20_000, tokens_per_user=50, orgs=200, repos_per_org=10,
    bulk_pending=100_000, digest_orgs=1_000, digest_pending_per_org=100,
)  # fmt: skip
QUICK = Profile(
    "quick", users=400, tokens_per_user=50, orgs=20, repos_per_org=10,
    bulk_pending=5_000, digest_orgs=100, digest_pending_per_org=20, enterprises=2,
)  # fmt: skip
PROFILES = {p.name: p for p in (FULL, QUICK)}


# ---- where a dataset lives --------------------------------------------------------------


def cache_key(dataset: str, profile: Profile) -> str:
    """``main_full_<alembic head>_g<generator version>``: a new migration or generator
    version means a new database."""
    head = schema.head_revision() or "nohead"
    return f"{dataset}_{profile.name}_{head}_g{GENERATOR_VERSION}".lower()


@dataclass(frozen=True)
class Target:
    dataset: str  # "main" or "digest"
    profile: Profile
    postgres: bool
    postgres_url: str = DEFAULT_POSTGRES_URL

    @property
    def key(self) -> str:
        return cache_key(self.dataset, self.profile)

    @property
    def database_name(self) -> str:
        return f"patgate_bench_{self.key}"

    @property
    def sqlite_path(self) -> Path:
        return DATA_DIR / f"{self.key}.sqlite"

    @property
    def url(self) -> str:
        if self.postgres:
            return (
                make_url(self.postgres_url)
                .set(database=self.database_name)
                .render_as_string(hide_password=False)
            )
        return f"sqlite:///{self.sqlite_path}"

    @property
    def sidecar_path(self) -> Path:
        return DATA_DIR / f"{self.key}{'.pg' if self.postgres else ''}.json"

    @property
    def label(self) -> str:
        where = self.database_name if self.postgres else self.sqlite_path.name
        db = "PostgreSQL" if self.postgres else "SQLite"
        return f"{self.dataset} ({self.profile.name}, {db}: {where})"


def hash_probe() -> str:
    # If patgate changes how it hashes tokens, cached rows no longer authenticate: rebuild.
    return token_format.hash_token("github_pat_benchmark_probe")[:16]


def load_sidecar(target: Target) -> dict[str, Any] | None:
    """The sidecar of a finished, still usable build of ``target``; ``None`` otherwise."""
    try:
        meta = json.loads(target.sidecar_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("key") != target.key or meta.get("hash_probe") != hash_probe():
        return None
    if not _database_exists(target):
        return None
    expires = meta.get("bench_expires_at")
    if expires and datetime.fromisoformat(expires) - datetime.now(UTC) < timedelta(days=2):
        return None  # the goal-1 tokens would expire: make fresh ones
    return meta


def ensure(target: Target, console: Console, *, regenerate: bool = False) -> dict[str, Any]:
    """Return the sidecar of ``target``, generating the database first if needed."""
    meta = None if regenerate else load_sidecar(target)
    if meta is not None:
        return meta
    console.print(f"[bold]generating[/] {target.label}")
    started = time.perf_counter()
    meta = _build(target, console)
    meta["generation_seconds"] = round(time.perf_counter() - started, 1)
    tmp = target.sidecar_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    tmp.replace(target.sidecar_path)
    console.print(f"generated {target.label} in {meta['generation_seconds']:.0f} s")
    return meta


def stale_caches() -> list[str]:
    """Cached SQLite files and sidecars of another schema or generator version."""
    current = f"_{schema.head_revision() or 'nohead'}_g{GENERATOR_VERSION}".lower()
    if not DATA_DIR.exists():
        return []
    return sorted(
        p.name
        for p in DATA_DIR.iterdir()
        if p.suffix in (".sqlite", ".json")
        and p.name.startswith(("main_", "digest_"))
        and current + "." not in p.name
    )


def _database_exists(target: Target) -> bool:
    if not target.postgres:
        return target.sqlite_path.exists()
    with _admin_connection(target) as conn:
        return (
            conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (target.database_name,)
            ).fetchone()
            is not None
        )


@contextlib.contextmanager
def _admin_connection(target: Target) -> Iterator[Any]:
    import psycopg

    url = make_url(target.postgres_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        yield conn


# ---- secrets ------------------------------------------------------------------------------

_BASE62 = token_format.BASE62_ALPHABET
_TO_BASE62 = bytes(ord(_BASE62[i % 62]) for i in range(256))


def _random_chars(kind: str, token_id: int, count: int) -> str:
    raw = hashlib.shake_128(f"patgate-bench:{SEED}:{kind}:{token_id}".encode()).digest(count)
    return raw.translate(_TO_BASE62).decode("ascii")


def fine_grained_secret(token_id: int) -> str:
    """The secret of generated fine-grained token ``token_id`` (same format as GitHub's)."""
    chars = _random_chars("fg", token_id, 75)
    body = chars[:22] + "_" + chars[22:]
    return token_format.FINE_GRAINED_PREFIX + body + token_format.base62_crc32(body)


def classic_secret(token_id: int) -> str:
    """The secret of generated classic token ``token_id``."""
    body = _random_chars("classic", token_id, 30)
    return "ghp_" + body + token_format.base62_crc32(body)


# ---- the tables, in foreign-key order -----------------------------------------------------

COLUMNS: dict[str, tuple[str, ...]] = {
    "enterprises": (
        "id", "slug", "slug_key", "name", "opted_in", "fine_grained_policy", "approval_policy",
        "classic_policy", "fine_grained_max_lifetime_forced", "fine_grained_max_lifetime_days",
        "classic_max_lifetime_forced", "classic_max_lifetime_days", "created_at",
    ),
    "accounts": ("id", "type", "login", "login_key", "name", "created_at", "updated_at"),
    "users": ("id", "email", "password_hash", "site_admin", "suspended_at"),
    "organizations": (
        "id", "enterprise_id", "description", "opted_in", "fine_grained_policy",
        "approval_policy", "classic_policy", "fine_grained_max_lifetime_days",
        "classic_max_lifetime_days",
    ),
    "enterprise_owners": ("enterprise_id", "user_id"),
    "memberships": ("org_id", "user_id", "role", "created_at"),
    "repositories": (
        "id", "owner_id", "name", "name_key", "visibility", "description", "created_at",
        "updated_at", "pushed_at",
    ),
    "issues": (
        "id", "repository_id", "number", "title", "body", "state", "author_id", "created_at",
        "updated_at", "closed_at",
    ),
    "fine_grained_tokens": (
        "id", "user_id", "resource_owner_id", "name", "name_key", "description", "token_hash",
        "repository_selection", "permissions", "created_at", "issued_at", "updated_at",
        "expires_at", "last_used_at",
    ),
    "fine_grained_token_repositories": ("token_id", "repository_id"),
    "classic_tokens": (
        "id", "user_id", "note", "token_hash", "scopes", "created_at", "issued_at", "expires_at",
        "last_used_at",
    ),
    "token_requests": (
        "id", "token_id", "org_id", "requester_id", "state", "reason", "repository_selection",
        "permissions", "created_at", "decided_at", "reviewer_id", "decision_reason",
    ),
    "token_request_permissions": (
        "request_id", "name", "level", "org_id", "state", "created_at",
    ),
    "token_request_repositories": ("request_id", "repository_id"),
    "token_grants": (
        "id", "token_id", "org_id", "request_id", "state", "repository_selection", "permissions",
        "granted_at", "revoked_at", "revoked_by_id",
    ),
    "token_grant_permissions": ("grant_id", "name", "level", "org_id", "state", "granted_at"),
    "token_grant_repositories": ("grant_id", "repository_id"),
    "audit_entries": (
        "id", "document_id", "action", "actor_id", "actor", "org_id", "org", "user_id", "user",
        "token_id", "request_id", "data", "created_at",
    ),
}  # fmt: skip

# Tables with an integer ``id`` whose PostgreSQL sequence must follow the explicit ids.
SEQUENCED = [
    t for t, cols in COLUMNS.items() if cols[0] == "id" and t not in ("users", "organizations")
]


class SchemaDrift(Exception):
    """patgate's models changed in a way the generator does not know about."""


def check_columns() -> None:
    """Every column the generator writes exists, and every required column is written."""
    from patgate.models import Base

    problems = []
    for table_name, columns in COLUMNS.items():
        table = Base.metadata.tables.get(table_name)
        if table is None:
            problems.append(f"table {table_name} is gone")
            continue
        names = set(table.columns.keys())
        problems += [f"{table_name}.{c} is gone" for c in columns if c not in names]
        problems += [
            f"{table_name}.{c.name} is required and not generated"
            for c in table.columns
            if not c.nullable and c.server_default is None and c.name not in columns
        ]
    if problems:
        raise SchemaDrift(
            "benchmarks/generate.py is out of date with patgate's models: "
            + "; ".join(problems)
            + " (update COLUMNS and the row builders, then bump GENERATOR_VERSION)"
        )


# ---- writers -------------------------------------------------------------------------------


class Loader:
    """Buffers rows per table; :meth:`flush` writes every buffer in foreign-key order."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in COLUMNS}
        self.counts: dict[str, int] = dict.fromkeys(COLUMNS, 0)

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.rows[table].append(row)

    def pending(self) -> int:
        return sum(len(r) for r in self.rows.values())

    def flush(self) -> None:
        for table, rows in self.rows.items():
            if rows:
                self.write(table, rows)
                self.counts[table] += len(rows)
                self.rows[table] = []

    def write(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        self.flush()

    def close(self) -> None:
        """Release the connection (after :meth:`finish`, or on failure)."""


class SqliteLoader(Loader):
    """SQLAlchemy Core ``insert()`` + executemany on patgate's own tables (their types bind
    the values), all in one transaction."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        from patgate.models import Base

        self.tables = Base.metadata.tables
        self.connection = engine.connect()
        driver = self.connection.connection.dbapi_connection
        assert driver is not None
        # For the build only (the file is renamed into place when it is complete):
        # no journal, no fsync, a big page cache.
        cursor = driver.cursor()
        cursor.execute("PRAGMA journal_mode=OFF")
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute("PRAGMA cache_size=-1000000")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()
        self.transaction = self.connection.begin()

    def write(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        columns = COLUMNS[table]
        statement = insert(self.tables[table])
        for start in range(0, len(rows), BATCH):
            batch = [dict(zip(columns, row, strict=True)) for row in rows[start : start + BATCH]]
            self.connection.execute(statement, batch)

    def finish(self) -> None:
        super().finish()
        self.transaction.commit()
        driver = self.connection.connection.dbapi_connection
        assert driver is not None
        cursor = driver.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # what patgate runs with
        cursor.close()

    def close(self) -> None:
        self.connection.close()


class PostgresLoader(Loader):
    """``COPY ... FROM STDIN`` through psycopg, in one transaction."""

    def __init__(self, url: str) -> None:
        super().__init__()
        import psycopg

        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.connection = psycopg.connect(dsn)
        self.connection.execute("SET synchronous_commit = off")

    def write(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        columns = ", ".join(f'"{c}"' for c in COLUMNS[table])
        dumps = json.dumps
        with (
            self.connection.cursor() as cursor,
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row([dumps(v) if isinstance(v, dict) else v for v in row])

    def finish(self) -> None:
        super().finish()
        with self.connection.cursor() as cursor:
            for table in SEQUENCED:
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
                )
        self.connection.commit()

    def close(self) -> None:
        self.connection.close()


# ---- building -------------------------------------------------------------------------------


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _build(target: Target, console: Console) -> dict[str, Any]:
    check_columns()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        target.sidecar_path.unlink()
    if target.postgres:
        with _admin_connection(target) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target.database_name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{target.database_name}"')
        url = target.url
    else:
        building = target.sqlite_path.with_suffix(".building")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{building}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{building}"
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        loader: Loader = PostgresLoader(url) if target.postgres else SqliteLoader(engine)
        with _progress(console) as progress:
            try:
                builder = MainBuilder if target.dataset == "main" else DigestBuilder
                meta = builder(target.profile, loader, progress).build()
                task = progress.add_task("committing", total=1)
                loader.finish()
                progress.advance(task)
            finally:
                loader.close()
            if target.dataset == "main":
                meta.update(_install_app(url))
            meta.update(_baseline(engine))
            if target.postgres:
                # Now rather than by autovacuum during the first run (competing for the CPU).
                task = progress.add_task("VACUUM ANALYZE", total=1)
                with engine.connect() as conn:
                    conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                        "VACUUM (ANALYZE)"
                    )
                progress.advance(task)
    finally:
        engine.dispose()
    if not target.postgres:
        for suffix in ("-wal", "-shm"):
            Path(f"{building}{suffix}").unlink(missing_ok=True)
        building.replace(target.sqlite_path)
    meta.update(
        key=target.key,
        dataset=target.dataset,
        profile=target.profile.name,
        database=target.database_name if target.postgres else target.sqlite_path.name,
        alembic_head=schema.head_revision(),
        generator_version=GENERATOR_VERSION,
        hash_probe=hash_probe(),
        generated_at=datetime.now(UTC).isoformat(),
        rows={t: n for t, n in loader.counts.items() if n},
    )
    return meta


def _install_app(url: str) -> dict[str, Any]:
    """A GitHub App on ``bulk`` that gets the request webhooks (goal 3 enqueues them) and
    whose installation tokens list the requests (goal 2 over HTTP); through the services."""
    from patgate.apps import services as apps
    from patgate.context import CLI_ACTOR, Context
    from patgate.db import make_session_factory
    from patgate.orgs import services as orgs

    # A bare session rather than a Runtime: nothing else of a running patgate is needed.
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            ctx = Context(session=session, now=datetime.now(UTC))
            org = orgs.get_org(ctx, "bulk")
            app, _key = apps.create_app(
                ctx,
                name="bench-governor",
                owner_org=org,
                permissions={
                    apps.REQUESTS_PERMISSION: "write",
                    "organization_personal_access_tokens": "write",
                },
                events=[apps.REQUEST_EVENT],
                webhook_url="http://127.0.0.1:9/webhook",  # never delivered by the benchmark
                webhook_secret="bench-webhook-secret",
                actor=CLI_ACTOR,
            )
            installation = apps.install(ctx, app, org, actor=CLI_ACTOR)
            return {"app_id": app.id, "installation_id": installation.id}
    finally:
        engine.dispose()


RESET_TABLES = (
    "audit_entries",
    "token_grants",
    "outbox_messages",
    "delivery_attempts",
    "installation_tokens",
)


def _baseline(engine: Engine) -> dict[str, Any]:
    """The highest id of each table the benchmark appends to, to put the database back."""
    with engine.connect() as conn:
        return {
            "baseline": {
                t: conn.execute(text(f"SELECT COALESCE(max(id), 0) FROM {t}")).scalar_one()
                for t in RESET_TABLES
            }
        }


def reset(url: str, meta: dict[str, Any]) -> dict[str, int]:
    """Undo what a benchmark run wrote (approvals, grants, audit, outbox, installation
    tokens): the database is as generated again. Returns the rows removed per table."""
    base = meta["baseline"]
    removed: dict[str, int] = {}
    engine = make_engine(url)
    try:
        with engine.begin() as conn:

            def run(name: str, sql: str, **params: Any) -> None:
                removed[name] = removed.get(name, 0) + conn.execute(text(sql), params).rowcount

            run(
                "token_grant_repositories",
                "DELETE FROM token_grant_repositories WHERE grant_id > :g",
                g=base["token_grants"],
            )
            run("token_grants", "DELETE FROM token_grants WHERE id > :g", g=base["token_grants"])
            run(
                "delivery_attempts",
                "DELETE FROM delivery_attempts WHERE id > :d",
                d=base["delivery_attempts"],
            )
            run(
                "outbox_messages",
                "DELETE FROM outbox_messages WHERE id > :o",
                o=base["outbox_messages"],
            )
            run("audit_entries", "DELETE FROM audit_entries WHERE id > :a", a=base["audit_entries"])
            run(
                "installation_tokens",
                "DELETE FROM installation_tokens WHERE id > :i",
                i=base["installation_tokens"],
            )
            if meta.get("bulk_org_id"):
                # Every request of ``bulk`` was generated pending.
                run(
                    "token_requests",
                    "UPDATE token_requests SET state = 'pending', decided_at = NULL, "
                    "reviewer_id = NULL, decision_reason = NULL "
                    "WHERE org_id = :org AND state <> 'pending'",
                    org=meta["bulk_org_id"],
                )
    finally:
        engine.dispose()
    return {t: n for t, n in removed.items() if n}


# ---- what the rows look like ------------------------------------------------------------------

REPO_WORDS = [
    "api", "web", "infra", "docs", "mobile", "billing", "auth", "search", "data", "ops",
    "design", "tools", "cli", "sdk", "ml", "gateway", "site", "worker", "etl", "console",
]  # fmt: skip

# (weight, permissions): repository permissions, for tokens of any owner.
REPO_PERMISSIONS: list[tuple[int, dict[str, str]]] = [
    (20, {"contents": "read"}),
    (12, {"contents": "write", "pull_requests": "write"}),
    (10, {"issues": "read", "pull_requests": "read"}),
    (8, {"issues": "write"}),
    (8, {"actions": "read", "checks": "read", "statuses": "read"}),
    (6, {"contents": "read", "issues": "write", "pull_requests": "write"}),
    (5, {"administration": "read"}),
    (5, {"deployments": "write", "environments": "read"}),
    (4, {"packages": "read", "contents": "read"}),
    (4, {"secrets": "read", "actions": "write"}),
    (3, {"workflows": "write", "contents": "write"}),
    (3, {"security_events": "read", "vulnerability_alerts": "read"}),
]
# Organization permissions, only for tokens owned by an organization.
ORG_PERMISSIONS: list[tuple[int, dict[str, str]]] = [
    (5, {"members": "read"}),
    (2, {"organization_administration": "read"}),
    (2, {"organization_projects": "write"}),
]
# Account permissions, only for tokens owned by their user.
ACCOUNT_PERMISSIONS: list[tuple[int, dict[str, str]]] = [
    (4, {"profile": "write"}),
    (3, {"email_addresses": "read", "followers": "read"}),
    (2, {"gpg_keys": "write", "git_ssh_keys": "write"}),
]
CLASSIC_SCOPES = [
    ["repo"], ["repo", "read:org"], ["public_repo"], ["repo", "workflow"], ["gist"],
    ["read:user", "user:email"], ["admin:org", "repo"], ["read:packages", "write:packages"],
]  # fmt: skip
REASONS = [
    None, "CI deploys", "release automation", "needed for the migration to the new pipeline",
    "dashboard", "on-call tooling", "renovate-style dependency updates", "audit script",
]  # fmt: skip
BENCH_PERMISSIONS = {"issues": "write", "metadata": "read"}


def _permission_picker(
    rng: random.Random, *pools: list[tuple[int, dict[str, str]]]
) -> Callable[[], dict[str, str]]:
    choices = [perms for pool in pools for _, perms in pool]
    weights = [w for pool in pools for w, _ in pool]

    def pick() -> dict[str, str]:
        perms = dict(rng.choices(choices, weights)[0])
        perms["metadata"] = "read"  # patgate's normalize() always adds it
        return dict(sorted(perms.items()))

    return pick


class Builder:
    """Ids are given here (explicit primary keys) so that rows can refer to each other."""

    def __init__(self, profile: Profile, loader: Loader, progress: Progress) -> None:
        self.profile = profile
        self.loader = loader
        self.progress = progress
        self.rng = random.Random(SEED)
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.next_id: dict[str, int] = {}
        self.owners_of: dict[int, list[int]] = {}
        self.repos_of: dict[int, list[int]] = {}
        self.opted_in: dict[int, bool] = {}

    def new_id(self, table: str) -> int:
        value = self.next_id.get(table, 0) + 1
        self.next_id[table] = value
        return value

    def ago(self, max_days: float, min_days: float = 0.0) -> datetime:
        seconds = self.rng.uniform(min_days * 86_400, max_days * 86_400)
        return self.now - timedelta(seconds=int(seconds))

    def user(self, login: str, *, suspended: bool = False) -> int:
        uid = self.new_id("accounts")
        at = self.ago(1_500, 730)
        self.loader.add("accounts", (uid, "User", login, login.lower(), None, at, at))
        self.loader.add(
            "users",
            (uid, f"{login}@example.com", None, False, self.ago(300) if suspended else None),
        )
        return uid

    def org(self, login: str, *, opted_in: bool, enterprise_id: int | None = None) -> int:
        oid = self.new_id("accounts")
        at = self.ago(1_500, 730)
        self.loader.add(
            "accounts", (oid, "Organization", login, login.lower(), login.title(), at, at)
        )
        self.loader.add(
            "organizations",
            (
                oid,
                enterprise_id,
                f"The {login} organization",
                opted_in,
                "allow",
                "required",
                "allow",
                366,
                None,
            ),
        )
        self.owners_of[oid] = []
        self.repos_of[oid] = []
        self.opted_in[oid] = opted_in
        return oid

    def member(self, org_id: int, user_id: int, role: str = "member") -> None:
        self.loader.add("memberships", (org_id, user_id, role, self.ago(700)))
        if role == "owner":
            self.owners_of[org_id].append(user_id)

    def repo(self, owner_id: int, name: str, visibility: str) -> int:
        rid = self.new_id("repositories")
        created = self.ago(1_400, 30)
        pushed = self.ago(30) if self.rng.random() < 0.8 else None
        self.loader.add(
            "repositories",
            (
                rid,
                owner_id,
                name,
                name.lower(),
                visibility,
                f"{name} service",
                created,
                created,
                pushed,
            ),
        )
        self.repos_of[owner_id].append(rid)
        return rid

    def issues(self, repo_id: int, count: int, authors: Sequence[int]) -> None:
        for number in range(1, count + 1):
            created = self.ago(700)
            closed = self.rng.random() < 0.4
            closed_at = created + timedelta(days=self.rng.randint(1, 30)) if closed else None
            self.loader.add(
                "issues",
                (
                    self.new_id("issues"), repo_id, number, f"Issue {number}", "Steps to reproduce",
                    "closed" if closed else "open", self.rng.choice(authors) if authors else None,
                    created, closed_at or created, closed_at,
                ),
            )  # fmt: skip

    def fine_grained(
        self,
        user_id: int,
        owner_id: int,
        name: str,
        *,
        selection: str,
        repos: Sequence[int],
        permissions: dict[str, str],
        created: datetime,
        expires: datetime | None,
        token_hash: str | None = None,
        last_used: datetime | None = None,
    ) -> int:
        tid = self.new_id("fine_grained_tokens")
        self.loader.add(
            "fine_grained_tokens",
            (
                tid, user_id, owner_id, name, name.lower(), None,
                token_hash or token_format.hash_token(fine_grained_secret(tid)),
                selection, permissions, created, created, created, expires, last_used,
            ),
        )  # fmt: skip
        for rid in repos:
            self.loader.add("fine_grained_token_repositories", (tid, rid))
        return tid

    def request(
        self,
        token_id: int,
        org_id: int,
        requester_id: int,
        *,
        selection: str,
        repos: Sequence[int],
        permissions: dict[str, str],
        created: datetime,
        approved_by: int | None,
        requester_login: str,
        org_login: str,
    ) -> int:
        qid = self.new_id("token_requests")
        decided = created + timedelta(hours=self.rng.uniform(0.1, 48)) if approved_by else None
        decided = min(decided, self.now) if decided else None
        self.loader.add(
            "token_requests",
            (
                qid, token_id, org_id, requester_id, "approved" if approved_by else "pending",
                self.rng.choice(REASONS), selection, permissions, created, decided, approved_by,
                None,
            ),
        )  # fmt: skip
        state = "approved" if approved_by else "pending"
        for name, level in permissions.items():
            self.loader.add("token_request_permissions", (qid, name, level, org_id, state, created))
        for rid in repos:
            self.loader.add("token_request_repositories", (qid, rid))
        self.audit(
            "personal_access_token.request_created", requester_id, requester_login, org_id,
            org_login, token_id, qid, created,
        )  # fmt: skip
        if approved_by and decided:
            gid = self.new_id("token_grants")
            self.loader.add(
                "token_grants",
                (gid, token_id, org_id, qid, "active", selection, permissions, decided, None, None),
            )
            for name, level in permissions.items():
                self.loader.add(
                    "token_grant_permissions", (gid, name, level, org_id, "active", decided)
                )
            for rid in repos:
                self.loader.add("token_grant_repositories", (gid, rid))
            self.audit(
                "personal_access_token.access_granted", approved_by, None, org_id, org_login,
                token_id, qid, decided, pat_id=gid,
            )  # fmt: skip
        return qid

    def audit(
        self,
        action: str,
        user_id: int,
        user_login: str | None,
        org_id: int,
        org_login: str,
        token_id: int,
        request_id: int,
        at: datetime,
        **data: Any,
    ) -> None:
        self.loader.add(
            "audit_entries",
            (
                self.new_id("audit_entries"), f"{self.rng.getrandbits(120):030x}"[:22], action,
                user_id, user_login, org_id, org_login, user_id, user_login, token_id, request_id,
                data, at,
            ),
        )  # fmt: skip

    def selection_for(self, org_id: int | None) -> tuple[str, list[int]]:
        roll = self.rng.random()
        if org_id is None:  # a user's own token: users own no repositories here
            return ("all" if roll < 0.5 else "none"), []
        if roll < 0.5:
            repos = self.repos_of[org_id]
            return "subset", sorted(self.rng.sample(repos, self.rng.randint(1, min(3, len(repos)))))
        return ("all" if roll < 0.9 else "none"), []

    def flush_if_big(self) -> None:
        if self.loader.pending() >= 4 * BATCH:
            self.loader.flush()


class MainBuilder(Builder):
    def build(self) -> dict[str, Any]:
        p, rng, add = self.profile, self.rng, self.loader.add
        setup = self.progress.add_task("accounts, orgs, repos, issues", total=4)

        enterprises = []
        for n in range(1, p.enterprises + 1):
            eid = self.new_id("enterprises")
            add(
                "enterprises",
                (
                    eid, f"ent-{n}", f"ent-{n}", f"Enterprise {n}", True, None, None, None,
                    False, None, False, None, self.ago(1_500, 800),
                ),
            )  # fmt: skip
            enterprises.append(eid)

        logins = {}
        for n in range(1, p.users + 1):
            login = f"dev{n:05d}"
            logins[self.user(login, suspended=n > p.bulk_requesters and rng.random() < 0.005)] = (
                login
            )
        user_ids = list(logins)
        bulk_requesters, general_users = (
            user_ids[: p.bulk_requesters],
            user_ids[p.bulk_requesters :],
        )
        bench_user = self.user("bench-user")
        bench_owner = self.user("bench-owner")
        bulk_owner = self.user("bulk-owner")
        logins.update(
            {bench_user: "bench-user", bench_owner: "bench-owner", bulk_owner: "bulk-owner"}
        )
        for eid in enterprises:
            add("enterprise_owners", (eid, rng.choice(general_users)))
        self.progress.advance(setup)

        org_logins: dict[int, str] = {}
        bench = self.org("bench", opted_in=True, enterprise_id=enterprises[0])
        org_logins[bench] = "bench"
        for n in range(2, p.orgs + 1):
            in_enterprise = rng.random() < 0.2
            oid = self.org(
                f"org-{n:03d}",
                opted_in=rng.random() < 0.9,
                enterprise_id=rng.choice(enterprises) if in_enterprise else None,
            )
            org_logins[oid] = f"org-{n:03d}"
        general_orgs = list(org_logins)
        bulk = self.org("bulk", opted_in=True)
        org_logins[bulk] = "bulk"
        opted_in_orgs = {o for o in general_orgs if self.opted_in[o]}
        self.progress.advance(setup)

        orgs_of: dict[int, list[int]] = {}
        roles: dict[tuple[int, int], str] = {}
        for uid in general_users:
            for oid in rng.sample(general_orgs, 3):
                roles[(oid, uid)] = "member"
        for oid in general_orgs:
            for uid in rng.sample(general_users, 2):
                roles[(oid, uid)] = "owner"
        for uid in bulk_requesters:
            roles[(bulk, uid)] = "member"
            roles[(rng.choice(general_orgs), uid)] = "member"
        roles[(bench, bench_user)] = "member"
        roles[(bench, bench_owner)] = "owner"
        roles[(bulk, bulk_owner)] = "owner"
        for (oid, uid), role in roles.items():
            self.member(oid, uid, role)
            orgs_of.setdefault(uid, []).append(oid)
        self.progress.advance(setup)

        visibilities = ["private"] * 12 + ["public"] * 5 + ["internal"] * 3
        private_api = None
        for oid in [*general_orgs, bulk]:
            names = rng.sample(REPO_WORDS, p.repos_per_org)
            if oid == bench:
                names[0] = "private-api"
            for name in names:
                visibility = "private" if name == "private-api" else rng.choice(visibilities)
                rid = self.repo(oid, name, visibility)
                if oid == bench and name == "private-api":
                    private_api = rid
                    self.issues(rid, 12, [bench_user, bench_owner])
                else:
                    self.issues(rid, rng.randint(0, 6), general_users[:50])
        assert private_api is not None
        self.progress.advance(setup)
        self.loader.flush()

        pick_org = _permission_picker(rng, REPO_PERMISSIONS, ORG_PERMISSIONS)
        pick_user = _permission_picker(rng, REPO_PERMISSIONS, ACCOUNT_PERMISSIONS)
        lifetimes = [7, 30, 60, 90, 180, 365]
        task = self.progress.add_task("tokens, requests, grants", total=p.users)

        # The 100,000 pending requests of ``bulk``: 50 tokens for each of its requesters.
        issues_write = 0
        for uid in bulk_requesters:
            for n in range(1, p.tokens_per_user + 1):
                created = self.ago(25)
                selection, repos = self.selection_for(bulk)
                perms = pick_org()
                issues_write += perms.get("issues") == "write"
                expires = created + timedelta(days=rng.choice(lifetimes[1:]))
                tid = self.fine_grained(
                    uid, bulk, f"token-{n:02d}", selection=selection, repos=repos,
                    permissions=perms, created=created, expires=expires,
                    last_used=self.ago(5) if rng.random() < 0.3 else None,
                )  # fmt: skip
                self.request(
                    tid, bulk, uid, selection=selection, repos=repos, permissions=perms,
                    created=created, approved_by=None, requester_login=logins[uid],
                    org_login="bulk",
                )  # fmt: skip
            self.progress.advance(task)
            self.flush_if_big()

        # Everyone else: mostly their own tokens, some for an org (approved, or pending).
        for uid in general_users:
            member_of = [o for o in orgs_of.get(uid, []) if o in opted_in_orgs]
            for n in range(1, p.tokens_per_user + 1):
                target = (
                    rng.choice(member_of)
                    if member_of and rng.random() < p.org_token_share
                    else None
                )
                if target is None:
                    created = self.ago(730)
                    selection, repos = self.selection_for(None)
                    roll = rng.random()
                    expires = (
                        None if roll < 0.2 else created + timedelta(days=rng.choice(lifetimes))
                    )
                    alive = expires is None or expires > self.now
                    self.fine_grained(
                        uid, uid, f"token-{n:02d}", selection=selection, repos=repos,
                        permissions=pick_user(), created=created, expires=expires,
                        last_used=self.ago(30) if alive and rng.random() < 0.4 else None,
                    )  # fmt: skip
                    continue
                created = self.ago(360)
                selection, repos = self.selection_for(target)
                perms = pick_org()
                expires = created + timedelta(days=rng.choice(lifetimes))
                alive = expires > self.now
                tid = self.fine_grained(
                    uid, target, f"token-{n:02d}", selection=selection, repos=repos,
                    permissions=perms, created=created, expires=expires,
                    last_used=self.ago(30) if alive and rng.random() < 0.5 else None,
                )  # fmt: skip
                approved = rng.random() < 0.9
                self.request(
                    tid, target, uid, selection=selection, repos=repos, permissions=perms,
                    created=created,
                    approved_by=rng.choice(self.owners_of[target]) if approved else None,
                    requester_login=logins[uid], org_login=org_logins[target],
                )  # fmt: skip
            self.progress.advance(task)
            self.flush_if_big()
        self.loader.flush()

        classic_task = self.progress.add_task("classic tokens", total=len(general_users))
        for uid in general_users:
            for n in range(rng.choice([0, 0, 1, 2, 3, 5, 8])):
                cid = self.new_id("classic_tokens")
                created = self.ago(900)
                expires = (
                    None
                    if rng.random() < 0.4
                    else created + timedelta(days=rng.choice([30, 90, 365]))
                )
                add(
                    "classic_tokens",
                    (
                        cid, uid, f"classic-{n + 1}", token_format.hash_token(classic_secret(cid)),
                        {"scopes": rng.choice(CLASSIC_SCOPES)}, created, created, expires,
                        self.ago(60) if rng.random() < 0.3 else None,
                    ),
                )  # fmt: skip
            self.progress.advance(classic_task)
            self.flush_if_big()

        # The tokens of goal 1: a member of ``bench`` with an approved subset token, and a
        # classic ``repo`` token; a few more tokens of theirs around them.
        fg_secret = token_format.generate_fine_grained()
        classic = token_format.generate_classic()
        issued = self.now
        bench_repos = sorted({private_api, *self.repos_of[bench][1:3]})
        for n in range(1, 4):
            self.fine_grained(
                bench_user, bench_user, f"personal-{n}", selection="all", repos=[],
                permissions=pick_user(), created=self.ago(200), expires=None,
            )  # fmt: skip
        fg_id = self.fine_grained(
            bench_user, bench, "bench-api", selection="subset", repos=bench_repos,
            permissions=BENCH_PERMISSIONS, created=issued, expires=issued + BENCH_TOKEN_LIFETIME,
            token_hash=token_format.hash_token(fg_secret),
        )  # fmt: skip
        self.request(
            fg_id, bench, bench_user, selection="subset", repos=bench_repos,
            permissions=BENCH_PERMISSIONS, created=issued - timedelta(hours=1),
            approved_by=bench_owner, requester_login="bench-user", org_login="bench",
        )  # fmt: skip
        classic_id = self.new_id("classic_tokens")
        add(
            "classic_tokens",
            (
                classic_id, bench_user, "bench-classic", token_format.hash_token(classic),
                {"scopes": ["repo"]}, issued, issued, None, None,
            ),
        )  # fmt: skip
        self.loader.flush()

        sample_requester = logins[bulk_requesters[len(bulk_requesters) // 2]]
        return {
            "now": self.now.isoformat(),
            "bench_org": "bench",
            "bench_repo": "private-api",
            "bench_user": "bench-user",
            "bench_fine_grained_token": fg_secret,
            "bench_fine_grained_token_id": fg_id,
            "bench_classic_token": classic,
            "bench_classic_token_id": classic_id,
            "bench_expires_at": (issued + BENCH_TOKEN_LIFETIME).isoformat(),
            "bulk_org": "bulk",
            "bulk_org_id": bulk,
            "bulk_owner": "bulk-owner",
            "bulk_owner_id": bulk_owner,
            "bulk_pending": p.bulk_requesters * p.tokens_per_user,
            "bulk_requesters": len(bulk_requesters),
            "bulk_issues_write": issues_write,
            "owner_filter_login": sample_requester,
            "fine_grained_tokens": self.next_id["fine_grained_tokens"],
            "classic_tokens": self.next_id["classic_tokens"],
            "users": len(logins),
            "organizations": len(org_logins),
        }


class DigestBuilder(Builder):
    """1,000 organizations, one owner each, 100 pending requests each from 10 members."""

    def build(self) -> dict[str, Any]:
        p, rng = self.profile, self.rng
        per_requester = 10
        requesters_per_org = max(1, p.digest_pending_per_org // per_requester)
        pool_size = max(requesters_per_org, p.digest_orgs * requesters_per_org // 2)
        task = self.progress.add_task("digest: orgs and requests", total=p.digest_orgs)
        pool = [self.user(f"req{n:05d}") for n in range(1, pool_size + 1)]
        logins = {uid: f"req{n:05d}" for n, uid in enumerate(pool, start=1)}
        token_counts: dict[int, int] = {}
        pick = _permission_picker(rng, REPO_PERMISSIONS, ORG_PERMISSIONS)
        for k in range(p.digest_orgs):
            login = f"team-{k + 1:04d}"
            oid = self.org(login, opted_in=True)
            owner = self.user(f"owner-{k + 1:04d}")
            self.member(oid, owner, "owner")
            for name in rng.sample(REPO_WORDS, 5):
                self.repo(oid, name, rng.choice(["private", "private", "public", "internal"]))
            members = [
                pool[(k * requesters_per_org + j) % pool_size] for j in range(requesters_per_org)
            ]
            for uid in members:
                self.member(oid, uid)
                for _ in range(per_requester):
                    n = token_counts[uid] = token_counts.get(uid, 0) + 1
                    created = self.ago(20)
                    selection, repos = self.selection_for(oid)
                    perms = pick()
                    tid = self.fine_grained(
                        uid, oid, f"token-{n:02d}", selection=selection, repos=repos,
                        permissions=perms, created=created, expires=created + timedelta(days=90),
                    )  # fmt: skip
                    self.request(
                        tid, oid, uid, selection=selection, repos=repos, permissions=perms,
                        created=created, approved_by=None, requester_login=logins[uid],
                        org_login=login,
                    )  # fmt: skip
            self.progress.advance(task)
            self.flush_if_big()
        self.loader.flush()
        return {
            "now": self.now.isoformat(),
            "digest_orgs": p.digest_orgs,
            "digest_pending": p.digest_orgs * requesters_per_org * per_requester,
        }
