"""``python -m benchmarks [--quick] [--postgres]``: every goal of the performance issue, side
by side with its reference, as one table (see benchmarks/README.md)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as ``python benchmarks/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console

from benchmarks import generate
from benchmarks.goals import (
    FULL_PLAN,
    QUICK_PLAN,
    Bench,
    bulk_review,
    cold_start,
    digest,
    guarded,
    listing_in_process,
    served_goals,
)
from benchmarks.loadgen import ROOT, UVICORN_FLAGS, HarnessError, wrk_binary
from benchmarks.report import (
    ERROR,
    FAIL,
    Row,
    busy_note,
    load_average,
    machine_info,
    markdown_table,
)

GOALS = ("1", "2", "3", "4", "5", "6")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure patgate against the goals of the performance issue.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small data (20k tokens, 5k requests), 3 s rounds"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="run on PostgreSQL instead of SQLite"
    )
    parser.add_argument(
        "--postgres-url",
        default=None,
        help=f"server to create the benchmark databases on (default {generate.DEFAULT_POSTGRES_URL}"
        " or $BENCH_POSTGRES_URL)",
    )
    parser.add_argument(
        "--only",
        default=",".join(GOALS),
        help="comma-separated goals to run, e.g. 1,5 (default: all)",
    )
    parser.add_argument("--regenerate", action="store_true", help="rebuild the cached data")
    parser.add_argument(
        "--generate-only", action="store_true", help="build (or check) the data, measure nothing"
    )
    parser.add_argument(
        "--no-http",
        action="store_true",
        help="goal 2 in-process only: start no server (with --only 2,3,4: no wrk at all)",
    )
    parser.add_argument("--rounds", type=int, help="goal 1 rounds (default 3)")
    parser.add_argument("--seconds", type=float, help="goal 1 seconds per round and side")
    return parser.parse_args(argv)


@contextlib.contextmanager
def exclusive_run() -> Iterator[None]:
    """One benchmark at a time on this machine: two would measure each other."""
    generate.DATA_DIR.mkdir(parents=True, exist_ok=True)
    with (generate.DATA_DIR / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HarnessError("another benchmark run holds benchmarks/data/.lock") from None
        yield


def postgres_version(url: str) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(dsn.render_as_string(hide_password=False), connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(highlight=False)
    try:
        with exclusive_run():
            return _run(args, console)
    except HarnessError as exc:
        console.print(f"[red]benchmark failed:[/] {exc}")
        return 2


def _run(args: argparse.Namespace, console: Console) -> int:
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    if args.rounds or args.seconds:
        from dataclasses import replace

        plan = replace(
            plan,
            rounds=args.rounds or plan.rounds,
            round_seconds=args.seconds or plan.round_seconds,
        )
    only = {g.strip() for g in args.only.split(",") if g.strip()}
    if not only <= set(GOALS):
        raise HarnessError(f"--only takes goals among {', '.join(GOALS)}")
    pg_url = (
        args.postgres_url or os.environ.get("BENCH_POSTGRES_URL") or generate.DEFAULT_POSTGRES_URL
    )
    pg_version = None
    if args.postgres:
        try:
            pg_version = postgres_version(pg_url)
        except Exception as exc:
            raise HarnessError(f"PostgreSQL is not reachable at {pg_url}: {exc}") from None

    start_load = load_average()
    info = machine_info(postgres_version=pg_version)
    console.rule("patgate benchmarks")
    for name, value in info:
        console.print(f"{name:>10}: {value}")
    db = "PostgreSQL" if args.postgres else "SQLite"
    console.print(f"{'run':>10}: {plan.profile.name} data on {db}, goals {','.join(sorted(only))}")
    wrk_binary()

    def target(dataset: str) -> generate.Target:
        return generate.Target(dataset, plan.profile, args.postgres, postgres_url=pg_url)

    main_target, digest_target = target("main"), target("digest")
    generation_started = time.perf_counter()
    main_meta = generate.ensure(main_target, console, regenerate=args.regenerate)
    digest_meta = generate.ensure(digest_target, console, regenerate=args.regenerate)
    generated_now = time.perf_counter() - generation_started
    for t, meta in ((main_target, main_meta), (digest_target, digest_meta)):
        rows = ", ".join(f"{n:,} {table}" for table, n in meta["rows"].items())
        console.print(
            f"{'data':>10}: {t.label}: generated {meta['generated_at'][:16]} in "
            f"{meta['generation_seconds']:.0f} s — {rows}"
        )
    stale = generate.stale_caches()
    if stale:
        console.print(
            f"{'note':>10}: cached data of other schema versions in benchmarks/data: "
            f"{', '.join(stale)} (delete them to free the space)"
        )
    if args.generate_only:
        return 0
    for t, meta in ((main_target, main_meta), (digest_target, digest_meta)):
        removed = generate.reset(t.url, meta)
        if removed:  # a run stopped midway (goals 3 and 4 put the data back when they end)
            console.print(f"{'note':>10}: put {t.dataset} back as generated: {removed}")

    started = time.perf_counter()
    run_dir = generate.DATA_DIR / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(
        console=console,
        plan=plan,
        postgres=args.postgres,
        main=main_target,
        digest=digest_target,
        main_meta=main_meta,
        digest_meta=digest_meta,
        run_dir=run_dir,
    )
    rows: list[Row] = []
    if "6" in only:
        console.rule("goal 6: cold start")
        rows += guarded(bench, "6", "cold start", lambda: cold_start(bench))
    if only & {"1", "5"} or ("2" in only and not args.no_http):
        console.rule("goals 1 and 5 (and 2 over HTTP): wrk against uvicorn")
        served = guarded(
            bench, "1", "requests/s against the bare route", lambda: served_goals(bench)
        )
        rows += [r for r in served if r.goal in only or r.verdict == ERROR]
    if "2" in only:
        console.rule("goal 2: listing pending requests")
        rows += guarded(bench, "2", "listing", lambda: listing_in_process(bench))
    if "3" in only:
        console.rule("goal 3: bulk review")
        rows += guarded(bench, "3", "bulk review", lambda: bulk_review(bench))
    if "4" in only:
        console.rule("goal 4: daily digest")
        rows += guarded(bench, "4", "digest", lambda: digest(bench))
    rows.sort(key=lambda r: r.goal)
    elapsed = time.perf_counter() - started

    console.rule("results")
    lines = [f"- {name}: {value}" for name, value in info]
    generation_s = main_meta["generation_seconds"] + digest_meta["generation_seconds"]
    lines.append(
        f"- data: {plan.profile.name} — {main_meta['fine_grained_tokens']:,} fine-grained and "
        f"{main_meta['classic_tokens']:,} classic tokens, {main_meta['users']:,} users, "
        f"{main_meta['organizations']:,} orgs; {main_meta['bulk_pending']:,} pending requests in "
        f"`bulk` from {main_meta['bulk_requesters']:,} requesters; digest: "
        f"{digest_meta['digest_orgs']:,} orgs x "
        f"{digest_meta['digest_pending'] // digest_meta['digest_orgs']} pending; {db} "
        f"(generation took {generation_s:.0f} s"
        f"{', cached' if generated_now < 1 else ''})"
    )
    lines.append(
        f"- goal 1: uvicorn, 1 worker, `{' '.join(UVICORN_FLAGS)}`; "
        f"wrk -t2 -c64 --latency, {plan.rounds} rounds x {plan.round_seconds:.0f} s per side, "
        "interleaved; req/s over all rounds, p50/p99 the median of the rounds'"
    )
    end_load = load_average()
    lines.append(f"- load at the end: {' '.join(f'{x:.2f}' for x in end_load)}")
    note = busy_note(max(start_load, end_load))
    if note:
        lines.append(f"- **warning**: {note}")
    print("\n".join(lines))
    print()
    print(markdown_table(rows))
    print()
    failed = [r for r in rows if r.gated and r.verdict != "PASS"]
    console.print(
        f"{len(rows)} rows, {len(failed)} gated goals not met; measured in {elapsed / 60:.1f} min"
        f"{f' (+ {generated_now:.0f} s generating data)' if generated_now >= 1 else ''}; "
        f"logs and details in {run_dir.relative_to(ROOT)}"
    )
    (run_dir / "results.json").write_text(
        json.dumps(
            {
                "machine": dict(info),
                "plan": {k: v for k, v in plan.__dict__.items() if k != "profile"}
                | {"profile": plan.profile.name, "postgres": args.postgres},
                "rows": [r.to_dict() for r in rows],
                "details": bench.details,
                "elapsed_s": elapsed,
            },
            indent=2,
            default=str,
        )
    )
    return 1 if any(r.verdict in (FAIL, ERROR) for r in failed) else 0


if __name__ == "__main__":
    sys.exit(main())
