"""The ``patgate`` command line (SPEC §10).

Every command runs in one unit of work and accepts ``--json`` (the created or changed object,
ids included). Every refusal — a usage error, an unknown name, a duplicate, a policy that says
no, a malformed value — exits 2 with one ``error: ...`` line on stderr, and the transaction is
rolled back, so nothing changes.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from typer.core import TyperGroup

from patgate import schema
from patgate.accounts import services as accounts
from patgate.accounts.models import Account, User
from patgate.approvals import services as approvals
from patgate.approvals.models import Grant, TokenRequest
from patgate.config import SettingsError, load_settings
from patgate.context import CLI_ACTOR, Actor, Context
from patgate.demo import DemoSummary, seed
from patgate.errors import InvalidInput, PatgateError
from patgate.orgs import services as orgs
from patgate.orgs.models import Enterprise, Organization
from patgate.repos import services as repos
from patgate.repos.models import Repository
from patgate.representations import timestamp
from patgate.runtime import Runtime
from patgate.tokens import services as tokens
from patgate.tokens.models import ClassicToken, FineGrainedToken
from patgate.tokens.permissions import parse_assignment

# ---- one-line errors, exit code 2 ---------------------------------------------------------


def _echo_error(message: str) -> None:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` on one line of stderr and exit with ``code``."""
    _echo_error(message)
    raise typer.Exit(code)


class UsageProblem(typer.TyperException):
    """A misuse of the command line that the option parser cannot see by itself."""

    exit_code = 2


class PatgateGroup(TyperGroup):
    """Click's usage errors as one ``error:`` line (exit 2), like every other refusal."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        def run() -> Any:
            return super(PatgateGroup, self).main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )

        if not standalone_mode:
            return run()
        try:
            result = run()
        except typer.TyperException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                # The message is the help text (rich help has already printed itself).
                if exc.message:
                    typer.echo(exc.message, err=True)
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _echo_error(exc.format_message() + hint)
            sys.exit(exc.exit_code)
        except typer.Abort:
            _echo_error("aborted")
            sys.exit(1)
        # Without standalone mode click returns the code of a ``typer.Exit`` instead of exiting.
        sys.exit(result if isinstance(result, int) else 0)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn domain and configuration errors into one ``error:`` line and exit code 2."""
    try:
        yield
    except (PatgateError, SettingsError, schema.SchemaOutOfDate) as exc:
        fail(str(exc))
    except IntegrityError:
        # A unique constraint caught what the service's own check could not see: a
        # concurrent command created the same thing first.
        fail("the change conflicts with data written at the same time; nothing was changed")
    except OperationalError as exc:
        fail(f"the database is unavailable: {str(exc.orig).splitlines()[0]}", 1)


@contextmanager
def open_runtime() -> Iterator[Runtime]:
    """The runtime built from the environment, with its schema ready.

    SQLite is migrated on the spot (cheap and idempotent); PostgreSQL must already be at the
    newest revision (``patgate db upgrade``), else :class:`schema.SchemaOutOfDate` is raised.
    """
    runtime = Runtime(load_settings())
    try:
        if runtime.settings.is_sqlite:
            schema.upgrade(runtime.engine)
        else:
            schema.ensure_current(runtime.engine)
        yield runtime
    finally:
        runtime.close()


@contextmanager
def unit_of_work() -> Iterator[Context]:
    """A service context in one transaction; any refusal rolls it back and exits 2."""
    with reported_errors(), open_runtime() as runtime, runtime.unit_of_work() as ctx:
        yield ctx


def actor_for(ctx: Context, login: str | None) -> Actor:
    """The audited actor: the user named by ``--as``, else the CLI operator."""
    if login is None:
        return CLI_ACTOR
    user = accounts.get_user(ctx, login)
    return Actor(user.id, user.login, "user")


# ---- output -----------------------------------------------------------------------------


def emit(data: Mapping[str, Any], as_json: bool, message: str) -> None:
    """Print ``data`` as JSON, or the short human ``message`` (rich markup)."""
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        Console(soft_wrap=True, highlight=False).print(message)


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "login": user.login,
        "name": user.name,
        "email": user.email,
        "site_admin": user.site_admin,
        "suspended": user.suspended,
        "password_set": user.password_hash is not None,
        "created_at": timestamp(user.created_at),
    }


def enterprise_json(ctx: Context, enterprise: Enterprise) -> dict[str, Any]:
    def lifetime(name: str) -> dict[str, Any]:
        forced = bool(getattr(enterprise, f"{name}_max_lifetime_forced"))
        days = getattr(enterprise, f"{name}_max_lifetime_days") if forced else None
        return {"forced": forced, "days": days}

    return {
        "id": enterprise.id,
        "slug": enterprise.slug,
        "name": enterprise.name,
        "opted_in": bool(enterprise.opted_in),
        # null: the organizations choose.
        "policies": {
            "fine_grained": enterprise.fine_grained_policy,
            "approval": enterprise.approval_policy,
            "classic": enterprise.classic_policy,
            "fine_grained_max_lifetime": lifetime("fine_grained"),
            "classic_max_lifetime": lifetime("classic"),
        },
        "organizations": [org.login for org in orgs.enterprise_orgs(ctx, enterprise)],
    }


def org_json(ctx: Context, org: Organization) -> dict[str, Any]:
    enterprise = ctx.session.get(Enterprise, org.enterprise_id) if org.enterprise_id else None
    policies = orgs.effective_policies(ctx, org)
    return {
        "id": org.id,
        "login": org.login,
        "name": org.name,
        "enterprise": enterprise.slug if enterprise else None,
        "policies": {
            "opted_in": policies.opted_in,
            "fine_grained": policies.fine_grained,
            "approval": policies.approval,
            "classic": policies.classic,
            "fine_grained_max_lifetime_days": policies.fine_grained_max_lifetime_days,
            "classic_max_lifetime_days": policies.classic_max_lifetime_days,
            "set_by_enterprise": sorted(policies.forced),
        },
        "members": [
            {"id": user.id, "login": user.login, "role": role}
            for user, role in orgs.members(ctx, org)
        ],
    }


def membership_json(org: Organization, user: User, role: str | None) -> dict[str, Any]:
    return {
        "org": org.login,
        "org_id": org.id,
        "user": user.login,
        "user_id": user.id,
        "role": role,
    }


def repo_json(owner: Account, repo: Repository) -> dict[str, Any]:
    return {
        "id": repo.id,
        "full_name": f"{owner.login}/{repo.name}",
        "owner": owner.login,
        "owner_id": owner.id,
        "name": repo.name,
        "visibility": repo.visibility,
        "private": repo.visibility != "public",
    }


def fine_grained_json(
    ctx: Context,
    token: FineGrainedToken,
    *,
    request: TokenRequest | None = None,
    secret: str | None = None,
) -> dict[str, Any]:
    """The token, its secret when just issued, the state of its organization request
    (``request`` or else its latest one) and its active grant there (null for a token
    owned by its user)."""
    user = accounts.get_user_by_id(ctx, token.user_id)
    owner = ctx.session.get(Account, token.resource_owner_id)
    assert owner is not None
    org = ctx.session.get(Organization, owner.id)
    if request is None and org is not None:
        request = approvals.latest_request_of(ctx, token)
    grant = approvals.active_grant_of(ctx, token, org) if org is not None else None
    selected = repos.repos_by_ids(ctx, tokens.selected_repository_ids(ctx, token))
    data: dict[str, Any] = {"id": token.id}
    if secret is not None:
        data["token"] = secret
    return data | {
        "kind": "fine_grained",
        "name": token.name,
        "description": token.description,
        "user": user.login,
        "user_id": user.id,
        "resource_owner": owner.login,
        "resource_owner_id": owner.id,
        "repository_selection": token.repository_selection,
        "repositories": [r.name for r in selected],
        "permissions": dict(token.permissions),
        "created_at": timestamp(token.created_at),
        "issued_at": timestamp(token.issued_at),
        "expires_at": timestamp(token.expires_at),
        "state": request.state if request else None,
        "request_id": request.id if request else None,
        "grant_id": grant.id if grant else None,
    }


def classic_json(ctx: Context, token: ClassicToken, *, secret: str | None = None) -> dict[str, Any]:
    user = accounts.get_user_by_id(ctx, token.user_id)
    data: dict[str, Any] = {"id": token.id}
    if secret is not None:
        data["token"] = secret
    return data | {
        "kind": "classic",
        "name": token.note,
        "user": user.login,
        "user_id": user.id,
        "resource_owner": None,
        "scopes": list(token.scopes.get("scopes", [])),
        "created_at": timestamp(token.created_at),
        "issued_at": timestamp(token.issued_at),
        "expires_at": timestamp(token.expires_at),
        "state": None,
        "request_id": None,
        "grant_id": None,
    }


def _expires(data: Mapping[str, Any]) -> str:
    return f"expires {data['expires_at']}" if data["expires_at"] else "never expires"


def _request_line(data: Mapping[str, Any]) -> str:
    if data["request_id"] is None:
        return ""
    return f"; request {data['request_id']} to {escape(data['resource_owner'])} is {data['state']}"


# ---- parsing ----------------------------------------------------------------------------


def expiry_text(expires_in: str | None, expires_at: str | None) -> str | None:
    """The one expiration given, checked for its form (``tokens.services.expiry`` reads it)."""
    if expires_in is not None and expires_at is not None:
        raise UsageProblem("give --expires-in or --expires-at, not both")
    if expires_in is not None and not (expires_in.isdigit() or expires_in.lower() == "none"):
        raise typer.BadParameter("must be a number of days or none", param_hint="--expires-in")
    if expires_at is not None:
        try:
            date.fromisoformat(expires_at)
        except ValueError:
            raise typer.BadParameter(
                "must be a date, YYYY-MM-DD", param_hint="--expires-at"
            ) from None
    return expires_in if expires_in is not None else expires_at


def parse_permissions(assignments: list[str] | None) -> dict[str, str]:
    """``["issues=write", ...]`` → ``{"issues": "write"}``; :class:`InvalidInput` if malformed."""
    return dict(parse_assignment(text) for text in assignments or [])


def repository_access(ctx: Context, owner: Account, text: str) -> tuple[str, list[Repository]]:
    """``none``, ``all`` or ``name1,name2`` (the owner's repositories) → selection, repos."""
    if text.strip().lower() in {"none", "all"}:
        return text.strip().lower(), []
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise InvalidInput("--repositories takes none, all or R1,R2", field="repositories")
    return "subset", repos.resolve_names(ctx, owner, names)


def enterprise_choice(value: str | None) -> Any:
    """``orgs`` lets the organizations choose (None); not given leaves it as it is (UNSET)."""
    if value is None:
        return orgs.UNSET
    return None if value == "orgs" else value


def enterprise_lifetime(text: str | None, option: str) -> tuple[bool, int | None] | None:
    """``orgs`` → (False, None); ``none`` → (True, None); ``DAYS`` → (True, DAYS)."""
    if text is None:
        return None
    if text.lower() == "orgs":
        return False, None
    return True, org_lifetime(text, option)


def org_lifetime(text: str | None, option: str) -> Any:
    """``DAYS`` → DAYS, ``none`` → None (no maximum), not given → UNSET."""
    if text is None:
        return orgs.UNSET
    if text.lower() == "none":
        return None
    if not text.isdigit():
        raise InvalidInput(f"{option} takes a number of days or none, not {text!r}", field=option)
    return int(text)


def read_password() -> str:
    """One line of stdin, without its line ending."""
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        fail("--password-stdin: no password on standard input")
    return line


# ---- options shared by several commands -------------------------------------------------

JsonOutput = Annotated[
    bool, typer.Option("--json", help="Print the created or changed object as JSON.")
]
AsLogin = Annotated[
    str | None,
    typer.Option(
        "--as",
        metavar="LOGIN",
        help="Act as this user (an owner of the organization) in the audit log; default: cli.",
    ),
]
ExpiresIn = Annotated[
    str | None,
    typer.Option(
        "--expires-in", metavar="DAYS|none", help="Days until expiry, or none (default 30)."
    ),
]
ExpiresAt = Annotated[
    str | None,
    typer.Option("--expires-at", metavar="DATE", help="Expire at the end of DATE, YYYY-MM-DD."),
]
RepositoriesOption = Annotated[
    str | None,
    typer.Option(
        "--repositories",
        metavar="none|all|R1,R2",
        help="Repository access: none (public read-only), all, or the owner's repositories.",
    ),
]
PermissionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--permission",
        metavar="NAME=LEVEL",
        help="A permission such as issues=write (repeat the option for several).",
    ),
]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="The justification, for the organization.")
]


AccessChoice = Literal["allow", "restrict"]
ApprovalChoice = Literal["required", "not_required"]
# "orgs": let the enterprise's organizations choose.
EnterpriseAccess = Literal["orgs", "allow", "restrict"]
EnterpriseApproval = Literal["orgs", "required", "not_required"]
RoleChoice = Literal["member", "owner"]
VisibilityChoice = Literal["public", "private", "internal"]


# ---- the commands -----------------------------------------------------------------------

app = typer.Typer(
    cls=PatgateGroup,
    name="patgate",
    help="Fine-grained personal access tokens, governed by organizations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Users.", no_args_is_help=True)
enterprise_app = typer.Typer(help="Enterprises and their policies.", no_args_is_help=True)
org_app = typer.Typer(help="Organizations, their members and policies.", no_args_is_help=True)
repo_app = typer.Typer(help="Repositories.", no_args_is_help=True)
token_app = typer.Typer(help="Personal access tokens.", no_args_is_help=True)
request_app = typer.Typer(help="Decide pending token requests.", no_args_is_help=True)
grant_app = typer.Typer(help="Revoke approved token access.", no_args_is_help=True)
app_app = typer.Typer(help="GitHub Apps that review tokens through the API.", no_args_is_help=True)
digest_app = typer.Typer(
    help="The daily email to owners about pending requests.", no_args_is_help=True
)
for _name, _group in (
    ("db", db_app),
    ("user", user_app),
    ("enterprise", enterprise_app),
    ("org", org_app),
    ("repo", repo_app),
    ("token", token_app),
    ("request", request_app),
    ("grant", grant_app),
    ("app", app_app),
    ("digest", digest_app),
):
    app.add_typer(_group, name=_name)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run the outbox worker in-process.")
    ] = False,
    demo: Annotated[
        bool, typer.Option("--demo", help="Seed the demo data first and print its logins.")
    ] = False,
    as_json: JsonOutput = False,
) -> None:
    """Serve the web UI and the REST API (migrating SQLite first)."""
    import uvicorn

    with reported_errors(), open_runtime() as runtime:
        summary = None
        if demo:
            with runtime.unit_of_work() as ctx:
                summary = seed(ctx)
        if as_json:
            emit(
                {
                    "host": host,
                    "port": port,
                    "worker": not no_worker,
                    "base_url": runtime.settings.base_url,
                    "demo": summary.to_dict() if summary else None,
                },
                True,
                "",
            )
        elif summary is not None:
            print_demo(summary)
        # Imported here: the web application is only needed by this command.
        from patgate.web.app import create_app

        with patgate_logs_to_stderr():
            uvicorn.run(
                create_app(runtime, worker=not no_worker), host=host, port=port, log_level="info"
            )


@contextmanager
def patgate_logs_to_stderr() -> Iterator[None]:
    """patgate's own records at INFO on stderr while serving — denials with their reason
    (SPEC §5), listener and worker trouble — which uvicorn, configuring only its own
    loggers, would drop. Undone afterwards (``serve`` may run inside another program)."""
    logger = logging.getLogger("patgate")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)-9s %(name)s: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@app.command()
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, then exit.")
    ] = False,
    as_json: JsonOutput = False,
) -> None:
    """Deliver the outbox (emails and webhooks) and send the daily digest.

    Runs until interrupted; any number of workers may share one PostgreSQL database.
    """
    from patgate.worker import run_worker

    with reported_errors(), open_runtime() as runtime:
        delivered = run_worker(runtime, once=once)
    emit({"delivered": delivered}, as_json, f"Delivered {delivered} message(s)")


@digest_app.command("run")
def digest_run(
    now: Annotated[
        bool, typer.Option("--now", help="Ignore PATGATE_DIGEST_HOUR: queue today's digest now.")
    ] = False,
    as_json: JsonOutput = False,
) -> None:
    """Queue today's digest for every owner of an organization with pending requests.

    Each owner gets at most one per organization and UTC date; the worker sends them.
    """
    from patgate.worker import run_digest

    with reported_errors(), open_runtime() as runtime:
        queued = run_digest(runtime, now=now)
    emit({"queued": queued}, as_json, f"Queued {queued} digest(s)")


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOutput = False) -> None:
    """Migrate the database to the newest schema (idempotent).

    On PostgreSQL run it once per release: the other commands refuse an older schema.
    On SQLite every command migrates by itself.
    """
    with reported_errors():
        runtime = Runtime(load_settings())
        try:
            before = schema.current_revision(runtime.engine)
            schema.upgrade(runtime.engine)
            after = schema.current_revision(runtime.engine)
        finally:
            runtime.close()
        url = make_url(runtime.settings.database_url).render_as_string(hide_password=True)
    data = {"database": url, "previous_revision": before, "revision": after}
    message = (
        f"Database at {after} (was {before or 'empty'})"
        if before != after
        else f"Database already at {after}"
    )
    emit(data, as_json, message)


@app.command("demo")
def demo_command(as_json: JsonOutput = False) -> None:
    """Create the demo data (idempotent) and print its logins and URLs.

    Enterprise acme-corp; organizations acme and initech with repositories and members.
    Every demo user's password is patgate-demo; some of their tokens await approval.
    """
    with unit_of_work() as ctx:
        summary = seed(ctx)
    if as_json:
        emit(summary.to_dict(), True, "")
    else:
        print_demo(summary)


def print_demo(summary: DemoSummary) -> None:
    console = Console(soft_wrap=True, highlight=False)
    if summary.created:
        console.print(f"Demo data created ({len(summary.created)} objects).")
    else:
        console.print("Demo data already in place; nothing changed.")
    console.print(
        f"Sign in at {summary.login_url} as any of these users, "
        f"password [bold]{escape(summary.password)}[/]:"
    )
    for user in summary.users:
        console.print(f"  [bold]{user.login:<8}[/] {escape(user.role)}")
    console.print(f"Pending requests of acme: {summary.pending_requests_url}")
    fresh = [t for t in summary.tokens if t.secret]
    if fresh:
        console.print("New token secrets (shown only now):")
        for token in fresh:
            console.print(f"  {escape(token.user)}/{escape(token.name)}: {token.secret}")


# ---- users ------------------------------------------------------------------------------


@user_app.command("create")
def user_create(
    login: Annotated[str, typer.Argument(metavar="LOGIN", help="The new login.")],
    email: Annotated[str, typer.Option("--email", help="Primary email address.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from one line of stdin.")
    ] = False,
    site_admin: Annotated[
        bool, typer.Option("--site-admin", help="Make the user a site administrator.")
    ] = False,
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    as_json: JsonOutput = False,
) -> None:
    """Create a user; without --password-stdin the user cannot sign in."""
    password = read_password() if password_stdin else None
    with unit_of_work() as ctx:
        user = accounts.create_user(
            ctx, login, email=email, password=password, site_admin=site_admin, name=name
        )
        data = user_json(user)
    emit(data, as_json, f"Created user [bold]{escape(user.login)}[/] (id {user.id})")


def _set_suspended(login: str, suspended: bool, as_json: bool) -> None:
    with unit_of_work() as ctx:
        user = accounts.set_suspended(ctx, login, suspended)
        data = user_json(user)
    verb = "Suspended" if suspended else "Unsuspended"
    emit(data, as_json, f"{verb} user [bold]{escape(user.login)}[/] (id {user.id})")


@user_app.command("suspend")
def user_suspend(
    login: Annotated[str, typer.Argument(metavar="LOGIN", help="The user's login.")],
    as_json: JsonOutput = False,
) -> None:
    """Suspend a user: their tokens authenticate nowhere and they cannot sign in."""
    _set_suspended(login, True, as_json)


@user_app.command("unsuspend")
def user_unsuspend(
    login: Annotated[str, typer.Argument(metavar="LOGIN", help="The user's login.")],
    as_json: JsonOutput = False,
) -> None:
    """Lift a user's suspension."""
    _set_suspended(login, False, as_json)


# ---- enterprises ------------------------------------------------------------------------


@enterprise_app.command("create")
def enterprise_create(
    slug: Annotated[str, typer.Argument(metavar="SLUG", help="Lowercase slug, e.g. acme-corp.")],
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    owner: Annotated[
        str | None, typer.Option("--owner", metavar="LOGIN", help="The first owner.")
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Create an enterprise."""
    with unit_of_work() as ctx:
        owner_user = accounts.get_user(ctx, owner) if owner else None
        enterprise = orgs.create_enterprise(ctx, slug, name=name, owner=owner_user)
        data = enterprise_json(ctx, enterprise) | {
            "owners": [owner_user.login] if owner_user else []
        }
    emit(
        data, as_json, f"Created enterprise [bold]{escape(enterprise.slug)}[/] (id {enterprise.id})"
    )


@enterprise_app.command("set-policy")
def enterprise_set_policy(
    slug: Annotated[str, typer.Argument(metavar="SLUG", help="The enterprise.")],
    opt_in: Annotated[
        bool, typer.Option("--opt-in", help="Opt every organization in to fine-grained tokens.")
    ] = False,
    fine_grained: Annotated[
        EnterpriseAccess | None,
        typer.Option(
            "--fine-grained",
            help="Fine-grained token access; orgs lets organizations choose.",
        ),
    ] = None,
    approval: Annotated[
        EnterpriseApproval | None,
        typer.Option(
            "--approval",
            help="Approval of fine-grained tokens; orgs lets organizations choose.",
        ),
    ] = None,
    classic: Annotated[
        EnterpriseAccess | None,
        typer.Option(
            "--classic",
            help="Classic token access; orgs lets organizations choose.",
        ),
    ] = None,
    fine_grained_max_lifetime: Annotated[
        str | None,
        typer.Option(
            "--fine-grained-max-lifetime",
            metavar="orgs|DAYS|none",
            help="Maximum lifetime of fine-grained tokens (1-366 days, none, or orgs).",
        ),
    ] = None,
    classic_max_lifetime: Annotated[
        str | None,
        typer.Option(
            "--classic-max-lifetime",
            metavar="orgs|DAYS|none",
            help="Maximum lifetime of classic tokens (1-366 days, none, or orgs).",
        ),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Force token policies on every organization of an enterprise, or let them choose."""
    with unit_of_work() as ctx:
        enterprise = orgs.get_enterprise(ctx, slug)
        orgs.set_enterprise_policy(
            ctx,
            enterprise,
            actor=CLI_ACTOR,
            opt_in=opt_in,
            fine_grained=enterprise_choice(fine_grained),
            approval=enterprise_choice(approval),
            classic=enterprise_choice(classic),
            fine_grained_max_lifetime=enterprise_lifetime(
                fine_grained_max_lifetime, "--fine-grained-max-lifetime"
            ),
            classic_max_lifetime=enterprise_lifetime(
                classic_max_lifetime, "--classic-max-lifetime"
            ),
        )
        data = enterprise_json(ctx, enterprise)
    emit(data, as_json, f"Updated the policies of enterprise [bold]{escape(enterprise.slug)}[/]")


# ---- organizations ----------------------------------------------------------------------


@org_app.command("create")
def org_create(
    login: Annotated[str, typer.Argument(metavar="LOGIN", help="The new organization's login.")],
    owner: Annotated[str, typer.Option("--owner", metavar="LOGIN", help="The first owner.")],
    enterprise: Annotated[
        str | None,
        typer.Option("--enterprise", metavar="SLUG", help="The enterprise it belongs to."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    as_json: JsonOutput = False,
) -> None:
    """Create an organization with its first owner."""
    with unit_of_work() as ctx:
        owner_user = accounts.get_user(ctx, owner)
        parent = orgs.get_enterprise(ctx, enterprise) if enterprise else None
        org = orgs.create_org(
            ctx, login, owner=owner_user, enterprise=parent, name=name, actor=CLI_ACTOR
        )
        data = org_json(ctx, org)
    emit(data, as_json, f"Created organization [bold]{escape(org.login)}[/] (id {org.id})")


@org_app.command("add-member")
def org_add_member(
    org: Annotated[str, typer.Argument(metavar="ORG", help="The organization.")],
    login: Annotated[str, typer.Argument(metavar="LOGIN", help="The user to add.")],
    role: Annotated[
        RoleChoice,
        typer.Option("--role", help="Their role (sets it if a member)."),
    ] = "member",
    as_json: JsonOutput = False,
) -> None:
    """Add a member to an organization, or change their role."""
    with unit_of_work() as ctx:
        organization = orgs.get_org(ctx, org)
        user = accounts.get_user(ctx, login)
        membership = orgs.add_member(ctx, organization, user, role=role, actor=CLI_ACTOR)
        data = membership_json(organization, user, membership.role)
    emit(
        data,
        as_json,
        f"[bold]{escape(user.login)}[/] is {membership.role} of "
        f"[bold]{escape(organization.login)}[/]",
    )


@org_app.command("remove-member")
def org_remove_member(
    org: Annotated[str, typer.Argument(metavar="ORG", help="The organization.")],
    login: Annotated[str, typer.Argument(metavar="LOGIN", help="The member to remove.")],
    as_json: JsonOutput = False,
) -> None:
    """Remove a member: their tokens lose access there, their pending requests end."""
    with unit_of_work() as ctx:
        organization = orgs.get_org(ctx, org)
        user = accounts.get_user(ctx, login)
        orgs.remove_member(ctx, organization, user, actor=CLI_ACTOR)
        data = membership_json(organization, user, None) | {"removed": True}
    emit(
        data,
        as_json,
        f"Removed [bold]{escape(user.login)}[/] from [bold]{escape(organization.login)}[/]",
    )


@org_app.command("set-policy")
def org_set_policy(
    org: Annotated[str, typer.Argument(metavar="ORG", help="The organization.")],
    opt_in: Annotated[
        bool, typer.Option("--opt-in", help="Opt in to fine-grained personal access tokens.")
    ] = False,
    fine_grained: Annotated[
        AccessChoice | None,
        typer.Option(
            "--fine-grained",
            help="Fine-grained token access.",
        ),
    ] = None,
    approval: Annotated[
        ApprovalChoice | None,
        typer.Option(
            "--approval",
            help="Whether fine-grained tokens need an owner's approval.",
        ),
    ] = None,
    classic: Annotated[
        AccessChoice | None,
        typer.Option("--classic", help="Classic token access."),
    ] = None,
    fine_grained_max_lifetime: Annotated[
        str | None,
        typer.Option(
            "--fine-grained-max-lifetime",
            metavar="DAYS|none",
            help="Maximum lifetime of fine-grained tokens (1-366 days, or none).",
        ),
    ] = None,
    classic_max_lifetime: Annotated[
        str | None,
        typer.Option(
            "--classic-max-lifetime",
            metavar="DAYS|none",
            help="Maximum lifetime of classic tokens (1-366 days, or none).",
        ),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Set an organization's token policies (those its enterprise forces cannot change)."""
    with unit_of_work() as ctx:
        organization = orgs.get_org(ctx, org)
        orgs.set_org_policy(
            ctx,
            organization,
            actor=CLI_ACTOR,
            opt_in=opt_in,
            fine_grained=fine_grained,
            approval=approval,
            classic=classic,
            fine_grained_max_lifetime_days=org_lifetime(
                fine_grained_max_lifetime, "--fine-grained-max-lifetime"
            ),
            classic_max_lifetime_days=org_lifetime(classic_max_lifetime, "--classic-max-lifetime"),
        )
        data = org_json(ctx, organization)
    emit(data, as_json, f"Updated the policies of [bold]{escape(organization.login)}[/]")


# ---- repositories -----------------------------------------------------------------------


@repo_app.command("create")
def repo_create(
    full_name: Annotated[str, typer.Argument(metavar="OWNER/NAME", help="Owner and name.")],
    visibility: Annotated[
        VisibilityChoice,
        typer.Option(
            "--visibility",
            help="Who can see it (internal: members of the enterprise's organizations).",
        ),
    ] = "private",
    as_json: JsonOutput = False,
) -> None:
    """Create a repository owned by a user or an organization."""
    with unit_of_work() as ctx:
        owner_login, name = repos.split_full_name(full_name)
        owner = repos.get_account(ctx, owner_login)
        repo = repos.create_repo(ctx, owner, name, visibility=visibility)
        data = repo_json(owner, repo)
    emit(
        data, as_json, f"Created {repo.visibility} repository [bold]{escape(data['full_name'])}[/]"
    )


# ---- tokens -----------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", metavar="LOGIN", help="The token's user.")],
    name: Annotated[
        str, typer.Option("--name", help="The token's name (the note of a classic token).")
    ],
    classic: Annotated[
        bool, typer.Option("--classic", help="Create a classic token (ghp_) instead.")
    ] = False,
    resource_owner: Annotated[
        str | None,
        typer.Option(
            "--resource-owner",
            metavar="OWNER",
            help="The user or one of their organizations (fine-grained, required).",
        ),
    ] = None,
    repositories: RepositoriesOption = None,
    permission: PermissionOption = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", metavar="SCOPE", help="A classic token's scope (repeatable)."),
    ] = None,
    expires_in: ExpiresIn = None,
    expires_at: ExpiresAt = None,
    reason: ReasonOption = None,
    description: Annotated[
        str | None, typer.Option("--description", help="What the token is for.")
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Create a fine-grained token, or a classic one with --classic; prints the secret once.

    A token for an organization asks it for approval; its state is then pending.
    It is approved at once when its user is an owner or the organization requires no approval.
    """
    when = expiry_text(expires_in, expires_at)
    if classic:
        given = {
            "--resource-owner": resource_owner,
            "--repositories": repositories,
            "--permission": permission,
            "--reason": reason,
            "--description": description,
        }
        wrong = [option for option, value in given.items() if value]
        if wrong:
            raise UsageProblem(f"{wrong[0]} does not apply to a classic token")
        _create_classic(user, name, scope or [], when, as_json)
        return
    if scope:
        raise UsageProblem("--scope applies to classic tokens only (add --classic)")
    if resource_owner is None:
        raise UsageProblem("Missing option '--resource-owner'")
    with unit_of_work() as ctx:
        owner = repos.get_account(ctx, resource_owner)
        selection, selected = repository_access(ctx, owner, repositories or "none")
        issued = tokens.create_fine_grained(
            ctx,
            accounts.get_user(ctx, user),
            name=name,
            resource_owner=owner,
            repository_selection=selection,
            repositories=selected,
            permissions=parse_permissions(permission),
            expires_at=tokens.expiry(ctx.now, when),
            description=description,
            reason=reason,
            actor=CLI_ACTOR,
        )
        assert isinstance(issued.token, FineGrainedToken)
        data = fine_grained_json(ctx, issued.token, request=issued.request, secret=issued.secret)
    emit(
        data,
        as_json,
        f"Created fine-grained token [bold]{escape(data['name'])}[/] (id {data['id']}), "
        f"{_expires(data)}{_request_line(data)}\n{issued.secret}",
    )


def _create_classic(
    user: str, note: str, scopes: list[str], when: str | None, as_json: bool
) -> None:
    with unit_of_work() as ctx:
        issued = tokens.create_classic(
            ctx,
            accounts.get_user(ctx, user),
            note=note,
            scopes=scopes,
            expires_at=tokens.expiry(ctx.now, when),
        )
        assert isinstance(issued.token, ClassicToken)
        data = classic_json(ctx, issued.token, secret=issued.secret)
    emit(
        data,
        as_json,
        f"Created classic token [bold]{escape(data['name'])}[/] (id {data['id']}), "
        f"{_expires(data)}\n{issued.secret}",
    )


TokenId = Annotated[int, typer.Argument(metavar="ID", help="The token's id.")]
ClassicFlag = Annotated[bool, typer.Option("--classic", help="ID is a classic token's id.")]


@token_app.command("update")
def token_update(
    token_id: TokenId,
    repositories: RepositoriesOption = None,
    permission: PermissionOption = None,
    expires_in: ExpiresIn = None,
    expires_at: ExpiresAt = None,
    reason: ReasonOption = None,
    description: Annotated[
        str | None, typer.Option("--description", help="What the token is for.")
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Edit a fine-grained token: narrowing applies at once, asking for more opens a request.

    --permission replaces all the permissions, --repositories the whole selection.
    """
    when = expiry_text(expires_in, expires_at)
    change_expiry = expires_in is not None or expires_at is not None
    with unit_of_work() as ctx:
        token = tokens.get_fine_grained(ctx, token_id)
        selection, selected = None, None
        if repositories is not None:
            owner = ctx.session.get(Account, token.resource_owner_id)
            assert owner is not None
            selection, selected = repository_access(ctx, owner, repositories)
        request = tokens.update_fine_grained(
            ctx,
            token,
            repository_selection=selection,
            repositories=selected,
            permissions=parse_permissions(permission) if permission else None,
            expires_at=tokens.expiry(ctx.now, when) if change_expiry else None,
            change_expiry=change_expiry,
            description=description,
            reason=reason,
            actor=CLI_ACTOR,
        )
        data = fine_grained_json(ctx, token, request=request)
    emit(
        data,
        as_json,
        f"Updated token [bold]{escape(data['name'])}[/] (id {data['id']}){_request_line(data)}",
    )


@token_app.command("regenerate")
def token_regenerate(
    token_id: TokenId,
    expires_in: ExpiresIn = None,
    expires_at: ExpiresAt = None,
    classic: ClassicFlag = False,
    as_json: JsonOutput = False,
) -> None:
    """Issue a new secret for a token (same id, approval kept; lifetime checked again)."""
    when = expiry_text(expires_in, expires_at)
    with unit_of_work() as ctx:
        expires = tokens.expiry(ctx.now, when)
        if classic:
            issued = tokens.regenerate_classic(
                ctx, tokens.get_classic(ctx, token_id), expires_at=expires
            )
            assert isinstance(issued.token, ClassicToken)
            data = classic_json(ctx, issued.token, secret=issued.secret)
        else:
            issued = tokens.regenerate(
                ctx, tokens.get_fine_grained(ctx, token_id), expires_at=expires, actor=CLI_ACTOR
            )
            assert isinstance(issued.token, FineGrainedToken)
            data = fine_grained_json(ctx, issued.token, secret=issued.secret)
    emit(
        data,
        as_json,
        f"Regenerated token [bold]{escape(data['name'])}[/] (id {data['id']}), "
        f"{_expires(data)}\n{issued.secret}",
    )


@token_app.command("delete")
def token_delete(
    token_id: TokenId, classic: ClassicFlag = False, as_json: JsonOutput = False
) -> None:
    """Delete a token: its pending request is cancelled and its approval removed."""
    with unit_of_work() as ctx:
        if classic:
            classic_token = tokens.get_classic(ctx, token_id)
            data = classic_json(ctx, classic_token)
            tokens.delete_classic(ctx, classic_token)
        else:
            token = tokens.get_fine_grained(ctx, token_id)
            data = fine_grained_json(ctx, token)
            tokens.delete_fine_grained(ctx, token, actor=CLI_ACTOR)
    data |= {"deleted": True}
    emit(data, as_json, f"Deleted token [bold]{escape(data['name'])}[/] (id {data['id']})")


# ---- requests and grants ----------------------------------------------------------------

OrgArgument = Annotated[str, typer.Argument(metavar="ORG", help="The organization.")]
ReviewReason = Annotated[
    str | None, typer.Option("--reason", help="Why (stored and sent to each creator).")
]


def _decide(
    org: str, request_ids: list[int], *, approve: bool, reason: str | None, as_login: str | None
) -> dict[str, Any]:
    with unit_of_work() as ctx:
        organization = orgs.get_org(ctx, org)
        decide = approvals.approve if approve else approvals.deny
        decided = decide(
            ctx, organization, request_ids, actor=actor_for(ctx, as_login), reason=reason
        )
        return {
            "org": organization.login,
            "org_id": organization.id,
            "reason": reason,
            "requests": [
                {
                    "id": request.id,
                    "token_id": request.token_id,
                    "user": accounts.get_user_by_id(ctx, request.requester_id).login,
                    "state": request.state,
                    "grant_id": _grant_id(ctx, organization, request),
                }
                for request in decided
            ],
        }


def _grant_id(ctx: Context, org: Organization, request: TokenRequest) -> int | None:
    token = tokens.get_fine_grained(ctx, request.token_id)
    grant = approvals.active_grant_of(ctx, token, org)
    return grant.id if grant is not None and grant.request_id == request.id else None


def _decided_line(verb: str, data: Mapping[str, Any], key: str) -> str:
    ids = ", ".join(str(item["id"]) for item in data[key])
    return f"{verb} {escape(data['org'])}: {ids}"


@request_app.command("approve")
def request_approve(
    org: OrgArgument,
    request_ids: Annotated[list[int], typer.Argument(metavar="REQUEST_ID...", help="Request ids.")],
    reason: ReviewReason = None,
    as_login: AsLogin = None,
    as_json: JsonOutput = False,
) -> None:
    """Approve pending requests, all or none."""
    data = _decide(org, request_ids, approve=True, reason=reason, as_login=as_login)
    emit(data, as_json, _decided_line("Approved requests of", data, "requests"))


@request_app.command("deny")
def request_deny(
    org: OrgArgument,
    request_ids: Annotated[list[int], typer.Argument(metavar="REQUEST_ID...", help="Request ids.")],
    reason: ReviewReason = None,
    as_login: AsLogin = None,
    as_json: JsonOutput = False,
) -> None:
    """Deny pending requests, all or none; the reason is sent to each creator."""
    data = _decide(org, request_ids, approve=False, reason=reason, as_login=as_login)
    emit(data, as_json, _decided_line("Denied requests of", data, "requests"))


@grant_app.command("revoke")
def grant_revoke(
    org: OrgArgument,
    pat_ids: Annotated[list[int], typer.Argument(metavar="PAT_ID...", help="Grant ids.")],
    as_login: AsLogin = None,
    as_json: JsonOutput = False,
) -> None:
    """Revoke approved access, all or none; the tokens keep reading public resources."""
    with unit_of_work() as ctx:
        organization = orgs.get_org(ctx, org)
        revoked: list[Grant] = approvals.revoke(
            ctx, organization, pat_ids, actor=actor_for(ctx, as_login)
        )
        data = {
            "org": organization.login,
            "org_id": organization.id,
            "grants": [
                {
                    "id": grant.id,
                    "token_id": grant.token_id,
                    "state": grant.state,
                    "revoked_at": timestamp(grant.revoked_at),
                }
                for grant in revoked
            ],
        }
    emit(data, as_json, _decided_line("Revoked access to", data, "grants"))


@app_app.command("create")
def app_create(
    name: Annotated[str, typer.Argument(help="The app's name (its slug is derived from it).")],
    org: Annotated[str, typer.Option("--org", help="The organization that owns and installs it.")],
    private_key_out: Annotated[
        Path,
        typer.Option(
            "--private-key-out", help="Where to write the private key (PEM); must not exist."
        ),
    ],
    permission: Annotated[
        list[str] | None,
        typer.Option(
            "--permission",
            help="NAME=LEVEL, e.g. organization_personal_access_token_requests=write.",
        ),
    ] = None,
    webhook_url: Annotated[str | None, typer.Option(help="Where webhooks are POSTed.")] = None,
    webhook_secret: Annotated[
        str | None, typer.Option(help="Signs webhooks (X-Hub-Signature-256).")
    ] = None,
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event", help="An event to subscribe to, e.g. personal_access_token_request."
        ),
    ] = None,
    as_login: AsLogin = None,
    as_json: JsonOutput = False,
) -> None:
    """Register a GitHub App owned by ORG and install it there.

    The private key is handed over once, in --private-key-out; patgate keeps only the public key.
    """
    from patgate.apps import services as apps

    if private_key_out.exists():
        fail(f"{private_key_out} already exists; choose a new file for the private key")
    with unit_of_work() as ctx:
        registered = apps.register_and_install(
            ctx,
            name=name,
            org=orgs.get_org(ctx, org),
            permissions=parse_permissions(permission),
            events=event or (),
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            actor=actor_for(ctx, as_login),
        )
        # Written before the commit: if the key cannot be written, nothing is registered.
        try:
            with open(private_key_out, "x", opener=_private_opener) as handle:
                handle.write(registered.private_key_pem)
        except OSError as exc:
            fail(f"cannot write {private_key_out}: {exc.strerror}")
        data = {
            "id": registered.app.id,
            "client_id": registered.app.client_id,
            "slug": registered.app.slug,
            "installation_id": registered.installation.id,
            "private_key_path": str(private_key_out.resolve()),
        }
    emit(data, as_json, f"Registered app {data['slug']} (id {data['id']}) on {org}")


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def main() -> None:
    """The ``patgate`` console script."""
    app(prog_name="patgate")
