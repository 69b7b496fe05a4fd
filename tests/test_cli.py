"""The ``patgate`` command line: each command's ``--json`` output, and refusals that exit 2
with one ``error:`` line and change nothing (SPEC §10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from typer.main import get_command
from typer.testing import CliRunner, Result

from patgate import schema
from patgate.accounts import services as accounts
from patgate.cli import app
from patgate.config import Settings, load_settings
from patgate.models import Base
from patgate.runtime import Runtime

runner = CliRunner()
SECRET_KEY = "test-secret-key-0123456789abcdef0123456789abcdef"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SQLite file for the commands; the working directory is ``tmp_path``."""
    for name in list(os.environ):
        if name.startswith("PATGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "patgate.db"
    monkeypatch.setenv("PATGATE_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("PATGATE_SECRET_KEY", SECRET_KEY)
    return path


def run(*args: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=input)


def ok(*args: str, input: str | None = None) -> dict[str, Any]:
    """Run a command with ``--json`` that must succeed; return its parsed output."""
    result = run(*args, "--json", input=input)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def snapshot(path: Path) -> dict[str, list[str]]:
    """Every row of every table, to prove that a refused command changed nothing."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return {
                table.name: sorted(repr(tuple(row)) for row in connection.execute(select(table)))
                for table in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def refused(path: Path, *args: str, input: str | None = None) -> str:
    """Run a command that must be refused: exit 2, one ``error:`` line, nothing changed."""
    before = snapshot(path)
    result = run(*args, input=input)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert snapshot(path) == before
    return lines[0]


@pytest.fixture
def widgets(db: Path) -> dict[str, Any]:
    """Organization widgets (opted in): owner olivia, member mike; zoe is an outsider."""
    ids = {
        login: ok("user", "create", login, "--email", f"{login}@example.com")["id"]
        for login in ("olivia", "mike", "zoe")
    }
    ids["widgets"] = ok("org", "create", "widgets", "--owner", "olivia")["id"]
    ok("org", "add-member", "widgets", "mike")
    ok("org", "set-policy", "widgets", "--opt-in")
    ids["app"] = ok("repo", "create", "widgets/app")["id"]
    ids["docs"] = ok("repo", "create", "widgets/docs", "--visibility", "public")["id"]
    return ids


def member_token(*extra: str, name: str = "ci") -> dict[str, Any]:
    return ok(
        "token", "create", "--user", "mike", "--name", name, "--resource-owner", "widgets",
        "--repositories", "app", "--permission", "issues=read", "--reason", "CI needs issues",
        *extra,
    )  # fmt: skip


# ---- help, schema, entry point ----------------------------------------------------------


def _command_paths() -> Iterator[list[str]]:
    def walk(command: Any, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(get_command(app), [])


def test_every_command_has_help_and_accepts_json() -> None:
    paths = list(_command_paths())
    assert ["token", "create"] in paths and ["grant", "revoke"] in paths
    for path in paths:
        result = run(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.stdout
        is_group = hasattr(_lookup(path), "commands")
        assert is_group or "--json" in result.stdout, path


def _lookup(path: list[str]) -> Any:
    command: Any = get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def test_db_upgrade_on_a_fresh_file(db: Path) -> None:
    assert not db.exists()
    first = ok("db", "upgrade")
    assert first["previous_revision"] is None
    assert first["revision"] == schema.head_revision()
    assert first["database"] == f"sqlite:///{db}"
    again = ok("db", "upgrade")
    assert again["previous_revision"] == again["revision"] == schema.head_revision()


def test_an_old_schema_is_refused_outside_sqlite(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # PostgreSQL's path on a SQLite file: no automatic migration, only `db upgrade`.
    monkeypatch.setattr(Settings, "is_sqlite", property(lambda self: False))
    result = run("user", "create", "ada", "--email", "ada@example.com")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: the database schema is at nothing")
    assert "patgate db upgrade" in result.stderr
    ok("db", "upgrade")
    assert ok("user", "create", "ada", "--email", "ada@example.com")["login"] == "ada"


def test_settings_errors_exit_2(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATGATE_DATABASE_URL", "mysql://localhost/patgate")
    result = run("user", "create", "ada", "--email", "ada@example.com")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid configuration: PATGATE_DATABASE_URL")
    assert len(result.stderr.splitlines()) == 1


def test_the_database_defaults_to_var_in_the_working_directory(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PATGATE_DATABASE_URL")
    ok("user", "create", "ada", "--email", "ada@example.com")
    assert (tmp_path / "var" / "patgate.db").exists()
    assert not db.exists()


def test_the_installed_entry_point(db: Path) -> None:
    script = Path(sys.executable).with_name("patgate")
    assert script.exists(), "the package is not installed in this environment"
    created = subprocess.run(
        [script, "user", "create", "ada", "--email", "ada@example.com", "--json"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["login"] == "ada"
    duplicate = subprocess.run(
        [script, "user", "create", "ADA", "--email", "ada@example.com"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert duplicate.returncode == 2
    assert duplicate.stdout == ""
    assert duplicate.stderr == "error: login 'ADA' is already taken\n"
    usage = subprocess.run(
        [script, "user", "create", "bob"], capture_output=True, text=True, check=False, timeout=60
    )
    assert usage.returncode == 2
    assert usage.stderr.startswith("error: Missing option '--email'")
    assert len(usage.stderr.splitlines()) == 1


# ---- users, enterprises, organizations, repositories ------------------------------------


def test_user_commands(db: Path) -> None:
    ada = ok(
        "user", "create", "ada", "--email", "ada@example.com", "--password-stdin",
        "--site-admin", "--name", "Ada Lovelace", input="correct horse battery\n",
    )  # fmt: skip
    assert isinstance(ada["id"], int)
    assert ada | {"id": 0, "created_at": ""} == {
        "id": 0,
        "login": "ada",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "site_admin": True,
        "suspended": False,
        "password_set": True,
        "created_at": "",
    }
    runtime = Runtime(load_settings())
    try:
        with runtime.unit_of_work() as ctx:
            user = accounts.get_user(ctx, "ada")
            assert accounts.verify_password(user, "correct horse battery")
    finally:
        runtime.close()
    assert ok("user", "suspend", "ada") | {"created_at": ""} == ada | {
        "suspended": True,
        "created_at": "",
    }
    assert ok("user", "unsuspend", "ada")["suspended"] is False
    bob = ok("user", "create", "bob", "--email", "bob@example.com")
    assert bob["password_set"] is False and bob["site_admin"] is False
    assert bob["id"] != ada["id"]


def test_human_output_is_one_short_line(db: Path) -> None:
    result = run("user", "create", "ada", "--email", "ada@example.com")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["Created user ada (id 1)"]


def test_enterprise_commands(db: Path) -> None:
    ok("user", "create", "ada", "--email", "ada@example.com")
    enterprise = ok("enterprise", "create", "acme-corp", "--name", "Acme", "--owner", "ada")
    assert isinstance(enterprise["id"], int)
    assert enterprise["slug"] == "acme-corp" and enterprise["owners"] == ["ada"]
    assert enterprise["opted_in"] is False
    org = ok("org", "create", "acme", "--owner", "ada", "--enterprise", "acme-corp")
    assert org["enterprise"] == "acme-corp"
    assert org["policies"]["opted_in"] is False

    forced = ok(
        "enterprise", "set-policy", "acme-corp", "--opt-in", "--approval", "not_required",
        "--classic", "restrict", "--fine-grained-max-lifetime", "90",
        "--classic-max-lifetime", "none",
    )  # fmt: skip
    assert forced["id"] == enterprise["id"]
    assert forced["opted_in"] is True and forced["organizations"] == ["acme"]
    assert forced["policies"] == {
        "fine_grained": None,
        "approval": "not_required",
        "classic": "restrict",
        "fine_grained_max_lifetime": {"forced": True, "days": 90},
        "classic_max_lifetime": {"forced": True, "days": None},
    }
    policies = ok("org", "set-policy", "acme")["policies"]
    assert policies["opted_in"] is True
    assert policies["approval"] == "not_required"
    assert policies["fine_grained_max_lifetime_days"] == 90
    assert policies["set_by_enterprise"] == [
        "approval",
        "classic",
        "classic_max_lifetime",
        "fine_grained_max_lifetime",
    ]
    message = refused(db, "org", "set-policy", "acme", "--approval", "required")
    assert "set by its enterprise" in message

    released = ok(
        "enterprise", "set-policy", "acme-corp", "--approval", "orgs",
        "--fine-grained-max-lifetime", "orgs",
    )  # fmt: skip
    assert released["policies"]["approval"] is None
    assert released["policies"]["fine_grained_max_lifetime"] == {"forced": False, "days": None}
    assert ok("org", "set-policy", "acme", "--approval", "required")["policies"]["approval"] == (
        "required"
    )


def test_org_commands(widgets: dict[str, Any]) -> None:
    org = ok("org", "create", "gadgets", "--owner", "olivia", "--name", "Gadgets Inc")
    assert isinstance(org["id"], int) and org["id"] != widgets["widgets"]
    assert org["name"] == "Gadgets Inc" and org["enterprise"] is None
    assert org["members"] == [{"id": widgets["olivia"], "login": "olivia", "role": "owner"}]
    assert org["policies"] == {
        "opted_in": False,
        "fine_grained": "allow",
        "approval": "required",
        "classic": "allow",
        "fine_grained_max_lifetime_days": 366,
        "classic_max_lifetime_days": None,
        "set_by_enterprise": [],
    }
    added = ok("org", "add-member", "gadgets", "zoe")
    assert added == {
        "org": "gadgets",
        "org_id": org["id"],
        "user": "zoe",
        "user_id": widgets["zoe"],
        "role": "member",
    }
    assert ok("org", "add-member", "gadgets", "zoe", "--role", "owner")["role"] == "owner"
    removed = ok("org", "remove-member", "gadgets", "zoe")
    assert removed["removed"] is True and removed["user_id"] == widgets["zoe"]
    policies = ok(
        "org", "set-policy", "gadgets", "--opt-in", "--fine-grained", "restrict",
        "--approval", "not_required", "--classic", "restrict",
        "--fine-grained-max-lifetime", "none", "--classic-max-lifetime", "30",
    )["policies"]  # fmt: skip
    assert policies == {
        "opted_in": True,
        "fine_grained": "restrict",
        "approval": "not_required",
        "classic": "restrict",
        "fine_grained_max_lifetime_days": None,
        "classic_max_lifetime_days": 30,
        "set_by_enterprise": [],
    }


def test_repo_create(widgets: dict[str, Any]) -> None:
    repo = ok("repo", "create", "widgets/infra", "--visibility", "internal")
    assert isinstance(repo["id"], int)
    assert repo | {"id": 0} == {
        "id": 0,
        "full_name": "widgets/infra",
        "owner": "widgets",
        "owner_id": widgets["widgets"],
        "name": "infra",
        "visibility": "internal",
        "private": True,
    }
    own = ok("repo", "create", "zoe/notes")
    assert own["visibility"] == "private" and own["owner_id"] == widgets["zoe"]


# ---- tokens, requests and grants --------------------------------------------------------


def test_fine_grained_token_lifecycle(widgets: dict[str, Any], db: Path) -> None:
    created = member_token("--expires-in", "60", "--description", "for CI")
    assert isinstance(created["id"], int)
    assert created["token"].startswith("github_pat_")
    assert created["kind"] == "fine_grained"
    assert created["state"] == "pending" and isinstance(created["request_id"], int)
    assert created["grant_id"] is None
    assert created["resource_owner"] == "widgets"
    assert created["repositories"] == ["app"]
    assert created["permissions"] == {"issues": "read", "metadata": "read"}
    assert created["expires_at"] is not None

    approved = ok("request", "approve", "widgets", str(created["request_id"]), "--as", "olivia")
    [decision] = approved["requests"]
    assert decision["id"] == created["request_id"] and decision["token_id"] == created["id"]
    assert decision["state"] == "approved" and isinstance(decision["grant_id"], int)

    # Asking for more opens a new request; the approved grant keeps working meanwhile.
    updated = ok(
        "token", "update", str(created["id"]), "--permission", "issues=write",
        "--repositories", "app,docs", "--reason", "CI also comments",
    )  # fmt: skip
    assert updated["id"] == created["id"] and "token" not in updated
    assert updated["state"] == "pending" and updated["request_id"] != created["request_id"]
    assert updated["grant_id"] == decision["grant_id"]
    assert updated["repositories"] == ["app", "docs"]
    denied = ok("request", "deny", "widgets", str(updated["request_id"]), "--reason", "too much")
    assert denied["reason"] == "too much"
    assert [r["state"] for r in denied["requests"]] == ["denied"]

    regenerated = ok("token", "regenerate", str(created["id"]), "--expires-in", "7")
    assert regenerated["id"] == created["id"]
    assert regenerated["token"].startswith("github_pat_")
    assert regenerated["token"] != created["token"]
    assert regenerated["grant_id"] == decision["grant_id"]

    revoked = ok("grant", "revoke", "widgets", str(decision["grant_id"]), "--as", "olivia")
    assert revoked["grants"][0] | {"revoked_at": None} == {
        "id": decision["grant_id"],
        "token_id": created["id"],
        "state": "revoked",
        "revoked_at": None,
    }
    assert revoked["grants"][0]["revoked_at"] is not None

    deleted = ok("token", "delete", str(created["id"]))
    assert deleted["id"] == created["id"] and deleted["deleted"] is True
    assert "not found" in refused(db, "token", "delete", str(created["id"]))


def test_owner_and_user_owned_tokens(widgets: dict[str, Any]) -> None:
    day = (datetime.now(UTC).date() + timedelta(days=100)).isoformat()
    owners = ok(
        "token", "create", "--user", "olivia", "--name", "deploy", "--resource-owner", "widgets",
        "--repositories", "all", "--permission", "contents=write", "--expires-at", day,
    )  # fmt: skip
    assert owners["state"] == "approved" and isinstance(owners["grant_id"], int)
    assert owners["repository_selection"] == "all"
    assert owners["expires_at"] == f"{day}T23:59:59Z"
    own = ok(
        "token", "create", "--user", "zoe", "--name", "mine", "--resource-owner", "zoe",
        "--permission", "profile=write", "--expires-in", "none",
    )  # fmt: skip
    assert own["state"] is None and own["request_id"] is None and own["grant_id"] is None
    assert own["expires_at"] is None and own["repository_selection"] == "none"


def test_classic_token_lifecycle(widgets: dict[str, Any]) -> None:
    created = ok(
        "token", "create", "--classic", "--user", "zoe", "--name", "laptop",
        "--scope", "repo", "--scope", "read:org", "--expires-in", "90",
    )  # fmt: skip
    assert isinstance(created["id"], int) and created["token"].startswith("ghp_")
    assert created["kind"] == "classic" and created["scopes"] == ["read:org", "repo"]
    assert created["state"] is None and created["request_id"] is None
    regenerated = ok("token", "regenerate", "--classic", str(created["id"]))
    assert regenerated["id"] == created["id"] and regenerated["token"] != created["token"]
    deleted = ok("token", "delete", "--classic", str(created["id"]))
    assert deleted["deleted"] is True and deleted["id"] == created["id"]


def test_token_create_prints_the_secret_last(widgets: dict[str, Any]) -> None:
    result = run(
        "token", "create", "--user", "mike", "--name", "ci", "--resource-owner", "widgets"
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    first, secret = result.stdout.splitlines()
    assert first.startswith("Created fine-grained token ci (id 1)")
    assert "request 1 to widgets is pending" in first
    assert secret.startswith("github_pat_")


# ---- refusals ---------------------------------------------------------------------------

Refusal = Callable[[dict[str, Any]], list[str]]

REFUSALS: dict[str, tuple[Refusal, str]] = {
    "missing option": (lambda w: ["user", "create", "bob"], "Missing option '--email'"),
    "bad choice": (
        lambda w: ["org", "set-policy", "widgets", "--approval", "maybe"],
        "Invalid value for '--approval'",
    ),
    "not a number": (lambda w: ["token", "delete", "first"], "Invalid value for 'ID'"),
    "unknown org": (lambda w: ["org", "add-member", "nope", "zoe"], "organization 'nope'"),
    "unknown org to review": (lambda w: ["request", "approve", "nope", "1"], "'nope' not found"),
    "unknown user": (lambda w: ["org", "create", "gadgets", "--owner", "nobody"], "'nobody'"),
    "unknown resource owner": (
        lambda w: ["token", "create", "--user", "mike", "--name", "x", "--resource-owner", "no"],
        "'no' not found",
    ),
    "duplicate login": (
        lambda w: ["user", "create", "Mike", "--email", "m@example.com"],
        "login 'Mike' is already taken",
    ),
    "organization takes a user's login": (
        lambda w: ["org", "create", "zoe", "--owner", "olivia"],
        "already taken",
    ),
    "duplicate repository": (lambda w: ["repo", "create", "widgets/APP"], "already exists"),
    "duplicate token name": (
        lambda w: ["token", "create", "--user", "mike", "--name", "CI", "--resource-owner", "mike"],
        "already have a token named 'CI'",
    ),
    "malformed permission": (
        lambda w: [*TOKEN, "--permission", "issues"],
        "permission 'issues' is not NAME=LEVEL",
    ),
    "unknown permission": (
        lambda w: [*TOKEN, "--permission", "frobnicate=read"],
        "unknown permission 'frobnicate'",
    ),
    "unknown level": (lambda w: [*TOKEN, "--permission", "issues=admin"], "takes read or write"),
    "unknown repository": (lambda w: [*TOKEN, "--repositories", "app,nope"], "widgets/nope"),
    "org not opted in": (
        lambda w: ["token", "create", "--user", "zoe", "--name", "x", "--resource-owner", "zed"],
        "zed has not opted in",
    ),
    "not a member": (
        lambda w: [
            "token",
            "create",
            "--user",
            "zoe",
            "--name",
            "x",
            "--resource-owner",
            "widgets",
        ],
        "must be you or one of your organizations",
    ),
    "lifetime policy": (lambda w: [*TOKEN, "--expires-in", "none"], "expire within 366 days"),
    "two expirations": (
        lambda w: [*TOKEN, "--expires-in", "7", "--expires-at", "2999-01-01"],
        "not both",
    ),
    "bad expiration": (
        lambda w: [*TOKEN, "--expires-in", "soon"],
        "Invalid value for --expires-in: must be a number of days or none",
    ),
    "bad date": (lambda w: [*TOKEN, "--expires-at", "tomorrow"], "must be a date, YYYY-MM-DD"),
    "classic with fine-grained options": (
        lambda w: [*CLASSIC, "--resource-owner", "widgets"],
        "--resource-owner does not apply to a classic token",
    ),
    "unknown scope": (lambda w: [*CLASSIC, "--scope", "no"], "unknown scope 'no'"),
    "approve as a member": (
        lambda w: ["request", "approve", "widgets", str(w["request_id"]), "--as", "mike"],
        "only owners of widgets",
    ),
    "approve as an owner of another org": (
        lambda w: ["request", "approve", "widgets", str(w["request_id"]), "--as", "zoe"],
        "only owners of widgets",
    ),
    "approve twice": (
        lambda w: ["request", "approve", "widgets", str(w["approved_id"])],
        "already decided",
    ),
    "one bad id spoils the batch": (
        lambda w: ["request", "deny", "widgets", str(w["request_id"]), "999"],
        "requests 999 are unknown",
    ),
    "revoke an unknown grant": (lambda w: ["grant", "revoke", "widgets", "999"], "999"),
    "remove the last owner": (
        lambda w: ["org", "remove-member", "widgets", "olivia"],
        "last owner",
    ),
    "lifetime out of range": (
        lambda w: ["org", "set-policy", "widgets", "--fine-grained-max-lifetime", "400"],
        "between 1 and 366",
    ),
    "lifetime not a number": (
        lambda w: ["org", "set-policy", "widgets", "--classic-max-lifetime", "soon"],
        "takes a number of days or none",
    ),
    "unknown enterprise": (lambda w: ["enterprise", "set-policy", "nope", "--opt-in"], "'nope'"),
    "short password": (
        lambda w: ["user", "create", "bob", "--email", "b@example.com", "--password-stdin"],
        "at least 8 characters",
    ),
}
TOKEN = ["token", "create", "--user", "mike", "--name", "new", "--resource-owner", "widgets"]
CLASSIC = ["token", "create", "--classic", "--user", "zoe", "--name", "x"]


@pytest.fixture
def world(widgets: dict[str, Any]) -> dict[str, Any]:
    """widgets with a pending and an approved request, and zed, an org not opted in."""
    ok("org", "create", "zed", "--owner", "zoe")
    pending = member_token()
    approved = member_token(name="other")
    ok("request", "approve", "widgets", str(approved["request_id"]))
    return widgets | {"request_id": pending["request_id"], "approved_id": approved["request_id"]}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_exit_2_with_one_line_and_change_nothing(
    case: str, world: dict[str, Any], db: Path
) -> None:
    argv, expected = REFUSALS[case]
    message = refused(db, *argv(world), input="short\n")
    assert expected in message


# ---- demo and serve ---------------------------------------------------------------------


def test_demo_is_idempotent(db: Path) -> None:
    first = ok("demo")
    assert first["created"]
    assert first["password"] == "patgate-demo"
    assert first["login_url"] == "http://127.0.0.1:8000/login"
    assert first["pending_requests_url"] == (
        "http://127.0.0.1:8000/organizations/acme/settings/personal-access-token-requests"
    )
    assert {u["login"] for u in first["users"]} == {
        "admin", "ada", "grace", "linus", "peter", "milton",
    }  # fmt: skip
    states = {(t["user"], t["name"]): (t["org"], t["state"]) for t in first["tokens"]}
    assert states == {
        ("grace", "website-triage"): ("acme", "pending"),
        ("grace", "api-release-notes"): ("acme", "approved"),
        ("linus", "infra-deploy"): ("acme", "pending"),
        ("milton", "tps-report-sync"): ("initech", "pending"),
        ("grace", "grace's laptop"): (None, None),
    }
    assert all(t["secret"] for t in first["tokens"])
    before = snapshot(db)

    second = ok("demo")
    assert second["created"] == []
    assert all(t["secret"] is None for t in second["tokens"])
    assert [t["id"] for t in second["tokens"]] == [t["id"] for t in first["tokens"]]
    assert snapshot(db) == before

    human = run("demo")
    assert human.exit_code == 0
    assert "nothing changed" in human.stdout and "patgate-demo" in human.stdout

    runtime = Runtime(load_settings())
    try:
        with runtime.unit_of_work() as ctx:
            grace = accounts.get_user(ctx, "grace")
            assert accounts.verify_password(grace, "patgate-demo")
            assert accounts.get_user(ctx, "admin").site_admin
    finally:
        runtime.close()


def test_serve_refuses_a_port_that_is_no_port(db: Path) -> None:
    for port in ("0", "-1", "99999"):
        result = run("serve", "--port", port)
        assert result.exit_code == 2, result.output
        assert "--port" in result.output


def test_serve_seeds_the_demo_and_runs_uvicorn(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, Any] = {}
    sentinel = object()

    def create_app(runtime: Runtime, *, worker: bool = True) -> object:
        calls["schema"] = schema.current_revision(runtime.engine)
        calls["worker"] = worker
        return sentinel

    def fake_run(application: object, **options: Any) -> None:
        calls["app"] = application
        calls["options"] = options

    # The web application is the lead's; serve's own job is the wiring around it.
    monkeypatch.setitem(
        sys.modules, "patgate.web.app", types.SimpleNamespace(create_app=create_app)
    )
    monkeypatch.setattr("uvicorn.run", fake_run)
    started = ok("serve", "--demo", "--no-worker", "--port", "8123")
    assert started["port"] == 8123 and started["worker"] is False
    assert started["demo"]["created"]
    assert calls == {
        "schema": schema.head_revision(),
        "worker": False,
        "app": sentinel,
        "options": {"host": "127.0.0.1", "port": 8123, "log_level": "info"},
    }
    human = run("serve")
    assert human.exit_code == 0, human.output
    assert calls["worker"] is True


# ---- worker and digest ------------------------------------------------------------------


def test_worker_once_delivers_decision_emails_to_the_mailbox(
    widgets: dict[str, Any], tmp_path: Path
) -> None:
    request_id = member_token()["request_id"]
    ok("request", "deny", "widgets", str(request_id), "--reason", "too broad", "--as", "olivia")
    assert ok("worker", "--once")["delivered"] == 1
    mails = list((tmp_path / "var" / "mail").glob("*.eml"))
    assert len(mails) == 1 and "too broad" in mails[0].read_text()
    assert ok("worker", "--once")["delivered"] == 0


def test_digest_run_now_queues_one_digest_per_owner_and_day(widgets: dict[str, Any]) -> None:
    member_token()
    assert ok("digest", "run", "--now")["queued"] == 1
    assert ok("digest", "run", "--now")["queued"] == 0
    assert ok("worker", "--once")["delivered"] == 1


# ---- apps ------------------------------------------------------------------------------


def test_app_create_registers_installs_and_hands_over_the_key_once(
    widgets: dict[str, Any], tmp_path: Path
) -> None:
    key = tmp_path / "app.pem"
    made = ok(
        "app", "create", "Reviewer", "--org", "widgets", "--private-key-out", str(key),
        "--permission", "organization_personal_access_token_requests=write",
        "--event", "personal_access_token_request", "--webhook-url", "http://127.0.0.1:9/hook",
        "--webhook-secret", "s3cret",
    )  # fmt: skip
    assert {"id", "client_id", "slug", "installation_id", "private_key_path"} <= set(made)
    assert key.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    refused(widgets_db(tmp_path), "app", "create", "Other", "--org", "widgets",
            "--private-key-out", str(key))  # fmt: skip
    refused(widgets_db(tmp_path), "app", "create", "Reviewer", "--org", "widgets",
            "--private-key-out", str(tmp_path / "second.pem"))  # fmt: skip
    assert not (tmp_path / "second.pem").exists()
    refused(widgets_db(tmp_path), "app", "create", "Bad", "--org", "widgets",
            "--private-key-out", str(tmp_path / "bad.pem"),
            "--permission", "nope=read")  # fmt: skip


def widgets_db(tmp_path: Path) -> Path:
    return tmp_path / "patgate.db"
