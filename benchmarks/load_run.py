"""``python -m benchmarks.load_run [--postgres] [--seconds 60]``: a bounded load run, not a test.

It builds a small world in a fresh database (SQLite by default, or a database of its own on
PostgreSQL), starts ``patgate serve --no-worker`` on a free port of 127.0.0.1, and holds
``--connections`` (64) concurrent ``wrk`` connections on the token-authenticated path for
``--seconds`` (60): ``GET /api/v3/repos/load/private-api`` with an approved fine-grained PAT,
one request in ``--user-every`` (10) to ``GET /api/v3/user``, and ``POST .../issues`` at
``--issue-rate`` (4) per second. It prints the machine, requests/s, p50/p90/p99 and the
errors (any answer outside 2xx, socket errors, tracebacks in the server's log, issues missing
from the database), and exits 1 if there was any error, 2 if the run itself could not happen.
See benchmarks/README.md ("Load run").
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

if __package__ in (None, ""):  # run as ``python benchmarks/load_run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import func, make_url, select

from benchmarks.generate import DEFAULT_POSTGRES_URL
from benchmarks.loadgen import (
    ROOT,
    HarnessError,
    WrkResult,
    free_port,
    parse_wrk,
    proc_status_kb,
    wait_for_http,
    wrk_binary,
)
from benchmarks.report import busy_note, load_average, machine_info

ORG = "load"
PRIVATE_REPO = "private-api"
MEMBERS = 20  # users with tokens of their own (some pending, some approved): a small world
RUNS_DIR = ROOT / "benchmarks" / "data" / "runs"
SECRET_KEY = "load-run-" + "0" * 40
SETTLE_SECONDS = 1.0  # lets the server finish what wrk left in flight before issues are counted
PATGATE = str(Path(sys.executable).with_name("patgate"))

# The request mix, per wrk thread. ``init`` receives the token, the paths and the rates after
# ``--``; ``response`` counts every status outside 2xx (wrk itself only counts >= 400); ``done``
# prints one line that load_run.py reads.
LUA = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  token, repo_path, user_path, issues_path = args[1], args[2], args[3], args[4]
  user_every = tonumber(args[5])
  posts_per_second = tonumber(args[6])  -- this thread's share
  common = {
    ["Authorization"] = "Bearer " .. token,
    ["Accept"] = "application/vnd.github+json",
    ["User-Agent"] = "patgate-load-run",
  }
  n, repo_gets, user_gets, posts, bad = 0, 0, 0, 0, 0
  statuses = {}
  started = nil
end

local function headers(extra)
  local h = {}
  for k, v in pairs(common) do h[k] = v end
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

function request()
  n = n + 1
  local now = os.time()
  started = started or now
  -- A steady low rate of writes, whatever the read throughput (os.time() has 1 s steps).
  if posts < math.floor((now - started + 1) * posts_per_second) then
    posts = posts + 1
    local body = '{"title":"load run issue ' .. posts .. '","body":"written under load"}'
    return wrk.format("POST", issues_path, headers({["Content-Type"] = "application/json"}), body)
  end
  if user_every > 0 and n % user_every == 0 then
    user_gets = user_gets + 1
    return wrk.format("GET", user_path, headers())
  end
  repo_gets = repo_gets + 1
  return wrk.format("GET", repo_path, headers())
end

function response(status, hdrs, body)
  if status < 200 or status > 299 then
    bad = bad + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local totals = {repo_gets = 0, user_gets = 0, posts = 0, bad = 0}
  local codes = {}
  for _, t in ipairs(threads) do
    for k, _ in pairs(totals) do totals[k] = totals[k] + t:get(k) end
    for code, count in pairs(t:get("statuses")) do codes[code] = (codes[code] or 0) + count end
  end
  local parts = {}
  for code, count in pairs(codes) do table.insert(parts, code .. "=" .. count) end
  io.write(string.format("load-run: repo_gets=%d user_gets=%d posts=%d non_2xx=%d statuses=%s\n",
    totals.repo_gets, totals.user_gets, totals.posts, totals.bad, table.concat(parts, ",")))
end
"""


@dataclass(frozen=True)
class World:
    token: str
    private_repo_id: int


@dataclass(frozen=True)
class MixCounts:
    repo_gets: int
    user_gets: int
    posts: int
    non_2xx: int
    statuses: str


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load_run",
        description="A bounded load run of patgate serve on the token-authenticated path.",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the run (60)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent clients (64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--user-every", type=int, default=10, help="one request in N is GET /user (10; 0: none)"
    )
    parser.add_argument(
        "--issue-rate", type=int, default=4, help="POST .../issues per second in all (4; 0: none)"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured warm-up seconds (3)")
    parser.add_argument(
        "--postgres", action="store_true", help="run on PostgreSQL instead of SQLite"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="server to create the run's database on (default $BENCH_POSTGRES_URL or "
        f"{DEFAULT_POSTGRES_URL})",
    )
    args = parser.parse_args(argv)
    if args.issue_rate and args.issue_rate % args.threads:
        parser.error("--issue-rate must be a multiple of --threads (each wrk thread gets a share)")
    if args.seconds < 1 or args.connections < args.threads:
        parser.error("--seconds must be at least 1 and --connections at least --threads")
    return args


# ---- the database and its world --------------------------------------------------------------


@contextlib.contextmanager
def database(args: argparse.Namespace, workdir: Path) -> Iterator[str]:
    """A fresh, migrated database for this run (dropped afterwards)."""
    from patgate.db import make_engine
    from patgate.schema import upgrade

    if not args.postgres:
        url = f"sqlite:///{workdir / 'load.sqlite'}"
        name = None
    else:
        import psycopg

        name = f"patgate_load_{os.getpid()}"
        admin = make_url(args.postgres_url).set(drivername="postgresql", database="postgres")
        admin_dsn = admin.render_as_string(hide_password=False)
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = (
            make_url(args.postgres_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    try:
        engine = make_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield url
    finally:
        if name is not None:
            import psycopg

            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def runtime_for(url: str, workdir: Path, base_url: str) -> Any:
    from patgate.config import load_settings
    from patgate.runtime import Runtime

    return Runtime(
        load_settings(
            _env_file=None,
            database_url=url,
            secret_key=SECRET_KEY,
            base_url=base_url,
            mailbox_dir=workdir / "mail",
        )
    )


def build_world(url: str, workdir: Path, base_url: str) -> World:
    """An opted-in org with an owner, ``MEMBERS`` members with a token each (every other one
    approved), two repositories, and the token under load: a member's fine-grained PAT on
    ``private-api`` with ``issues: write``, approved by the owner."""
    from patgate.accounts import services as accounts
    from patgate.approvals import services as approvals
    from patgate.context import CLI_ACTOR, Actor
    from patgate.orgs import services as orgs
    from patgate.repos import services as repos
    from patgate.tokens import services as tokens

    runtime = runtime_for(url, workdir, base_url)
    try:
        with runtime.unit_of_work() as ctx:
            owner = accounts.create_user(ctx, "load-owner", email="load-owner@example.com")
            org = orgs.create_org(ctx, ORG, owner=owner, actor=CLI_ACTOR)
            orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, opt_in=True)
            private = repos.create_repo(ctx, org, PRIVATE_REPO, visibility="private")
            repos.create_repo(ctx, org, "public-site", visibility="public")
            reviewer = Actor(owner.id, owner.login, "user")
            secret = ""
            for i in range(MEMBERS):
                user = accounts.create_user(ctx, f"load-user-{i}", email=f"u{i}@example.com")
                orgs.add_member(ctx, org, user, actor=CLI_ACTOR)
                issued = tokens.create_fine_grained(
                    ctx,
                    user,
                    name="load",
                    resource_owner=org,
                    repository_selection="subset",
                    repositories=[private],
                    permissions={"issues": "write"},
                    expires_at=tokens.expiry(ctx.now, "30"),
                    reason="load run",
                    actor=Actor(user.id, user.login, "user"),
                )
                if i % 2 == 0:
                    approvals.approve(ctx, org, [issued.request.id], actor=reviewer)
                if i == 0:
                    secret = issued.secret
            return World(token=secret, private_repo_id=private.id)
    finally:
        runtime.close()


def count_issues(url: str, workdir: Path, base_url: str, repo_id: int) -> int:
    from patgate.repos.models import Issue

    runtime = runtime_for(url, workdir, base_url)
    try:
        with runtime.unit_of_work() as ctx:
            return (
                ctx.session.scalar(
                    select(func.count()).select_from(Issue).where(Issue.repository_id == repo_id)
                )
                or 0
            )
    finally:
        runtime.close()


# ---- the server --------------------------------------------------------------------------------


@dataclass
class ServeProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    log: IO[bytes]

    def stop(self) -> int | None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL after 15 s; the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode

    def tracebacks(self) -> int:
        return self.log_path.read_text(errors="replace").count("Traceback (most recent call last)")


def start_serve(url: str, workdir: Path) -> ServeProcess:
    """``patgate serve --no-worker`` on a free port; retried once if the port was taken."""
    for attempt in range(2):
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PATGATE_")}
        env |= {
            "PATGATE_DATABASE_URL": url,
            "PATGATE_SECRET_KEY": SECRET_KEY,
            "PATGATE_BASE_URL": base_url,
            "PATGATE_MAILBOX_DIR": str(workdir / "mail"),
            "PYTHONUNBUFFERED": "1",
        }
        log_path = workdir / "serve.log"
        log = log_path.open("ab")
        process = subprocess.Popen(
            [PATGATE, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = ServeProcess(process, base_url, log_path, log)
        try:
            wait_for_http(f"{base_url}/api/v3/orgs/{ORG}", timeout=60, process=process)
            return server
        except HarnessError:
            server.stop()
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


def check_path(server: ServeProcess, world: World) -> None:
    """Each kind of request of the mix answers 2xx before the load starts."""
    headers = {"Authorization": f"Bearer {world.token}", "Accept": "application/vnd.github+json"}
    api = f"{server.base_url}/api/v3"
    with httpx.Client(headers=headers, timeout=10) as client:
        for method, path, body, want in (
            ("GET", f"/repos/{ORG}/{PRIVATE_REPO}", None, 200),
            ("GET", "/user", None, 200),
            ("POST", f"/repos/{ORG}/{PRIVATE_REPO}/issues", {"title": "before the load"}, 201),
        ):
            answer = client.request(method, api + path, json=body)
            if answer.status_code != want:
                raise HarnessError(
                    f"{method} {path} answered {answer.status_code}, not {want}: {answer.text}"
                )


# ---- wrk ---------------------------------------------------------------------------------------


def run_wrk(
    args: argparse.Namespace, server: ServeProcess, world: World, script: Path, seconds: float
) -> tuple[WrkResult, MixCounts]:
    url = f"{server.base_url}/api/v3/repos/{ORG}/{PRIVATE_REPO}"
    command = [
        wrk_binary(), f"-t{args.threads}", f"-c{args.connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "--latency", "-s", str(script), url, "--",
        world.token, f"/api/v3/repos/{ORG}/{PRIVATE_REPO}", "/api/v3/user",
        f"/api/v3/repos/{ORG}/{PRIVATE_REPO}/issues", str(args.user_every),
        str(args.issue_rate // args.threads),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HarnessError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    line = re.search(
        r"load-run: repo_gets=(\d+) user_gets=(\d+) posts=(\d+) non_2xx=(\d+) statuses=(\S*)",
        done.stdout,
    )
    if line is None:
        raise HarnessError(f"cannot read the script's summary in wrk's report:\n{done.stdout}")
    counts = MixCounts(*(int(g) for g in line.groups()[:4]), line.group(5) or "-")
    return parse_wrk(done.stdout), counts


# ---- the run -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    workdir = RUNS_DIR / f"load-{stamp}-{backend.lower()}"
    workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="patgate-load-"))
    print(f"# patgate load run: {backend}, {args.seconds:.0f} s, {args.connections} connections")
    try:
        wrk_binary()
        postgres_version = None
        if args.postgres:
            postgres_version = _postgres_version(args.postgres_url)
        for key, value in machine_info(postgres_version=postgres_version):
            print(f"- {key}: {value}")
        with database(args, scratch) as url:
            # The world is built before the server exists; its base URL only names links.
            world = build_world(url, scratch, "http://127.0.0.1")
            server = start_serve(url, scratch)
            try:
                check_path(server, world)
                script = scratch / "load_run.lua"
                script.write_text(LUA)
                if args.warmup > 0:
                    run_wrk(args, server, world, script, args.warmup)
                    time.sleep(SETTLE_SECONDS)
                before = count_issues(url, scratch, server.base_url, world.private_repo_id)
                result, mix = run_wrk(args, server, world, script, args.seconds)
                time.sleep(SETTLE_SECONDS)
                after = count_issues(url, scratch, server.base_url, world.private_repo_id)
                alive = server.process.poll() is None
                hwm_kb = proc_status_kb(server.process.pid, "VmHWM")
            finally:
                status = server.stop()
                tracebacks = server.tracebacks()
                shutil.copy(server.log_path, workdir / "serve.log")
        load_end = load_average()
    except HarnessError as exc:
        print(f"load run could not run: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    created = after - before
    socket_errors = result.socket_errors
    # wrk stops with a request in flight on some connections: the POSTs of the last second
    # may have been sent and never answered. Beyond that, every POST must have its issue.
    lost = mix.posts - created
    issues_ok = 0 <= lost <= args.issue_rate
    errors = (
        mix.non_2xx + socket_errors + tracebacks + (0 if issues_ok else 1) + (0 if alive else 1)
    )
    share = f"1 in {args.user_every}" if args.user_every else "none"
    print()
    print("| measurement | value |")
    print("|---|---|")
    for what, value in (
        ("backend", backend),
        (
            "load",
            f"wrk -t{args.threads} -c{args.connections}, {result.seconds:.1f} s "
            f"(after a {args.warmup:.0f} s warm-up)",
        ),
        (
            "mix",
            f"GET /repos/{ORG}/{PRIVATE_REPO} {mix.repo_gets:,} · GET /user {mix.user_gets:,} "
            f"({share}) · POST issues {mix.posts:,} ({args.issue_rate}/s)",
        ),
        ("requests", f"{result.requests:,}"),
        ("requests/s", f"{result.rps:,.0f}"),
        (
            "latency",
            f"p50 {result.p50_ms:.2f} ms · p90 {result.p90_ms:.2f} ms · p99 {result.p99_ms:.2f} ms",
        ),
        ("non-2xx answers", f"{mix.non_2xx} ({mix.statuses})"),
        ("socket errors", str(socket_errors)),
        (
            "issues created",
            f"{created:,} for {mix.posts:,} POSTs sent"
            + ("" if issues_ok else " (MISMATCH)")
            + (f"; {lost} sent as wrk stopped" if lost and issues_ok else ""),
        ),
        (
            "server",
            f"{'up' if alive else 'DIED'} at the end; {_exit(status)}; "
            f"{tracebacks} tracebacks in its log",
        ),
        ("server VmHWM", f"{hwm_kb / 1024:.0f} MiB"),
        ("load average at end", " ".join(f"{x:.2f}" for x in load_end) + " (1, 5, 15 min)"),
        ("errors", str(errors)),
    ):
        print(f"| {what} | {value} |")
    note = busy_note(load_end)
    if note:
        print(f"\nNote: {note}.")
    print(f"\nserver log: {workdir / 'serve.log'}")
    print("RESULT:", "OK (no errors)" if errors == 0 else f"FAILED ({errors} errors)")
    return 0 if errors == 0 else 1


def _exit(status: int | None) -> str:
    # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is over.
    if status == -signal.SIGTERM:
        return "stopped by SIGTERM"
    if status is not None and status < 0:
        return f"killed by signal {-status}"
    return f"exit status {status}"


def _postgres_version(url: str) -> str:
    import psycopg

    admin = make_url(url).set(drivername="postgresql", database="postgres")
    try:
        with psycopg.connect(admin.render_as_string(hide_password=False)) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        raise HarnessError(f"PostgreSQL is not reachable at {admin}: {exc}") from None
    return str(row[0]) if row else "?"


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"(took {time.monotonic() - started:.0f} s)")
    sys.exit(code)
