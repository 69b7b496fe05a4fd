"""What a run prints: the machine it ran on and one table row per goal measurement."""

from __future__ import annotations

import contextlib
import os
import platform
import sqlite3
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from statistics import median
from typing import Any

PASS, FAIL, ERROR, INFO = "PASS", "FAIL", "ERROR", "info"


@dataclass
class Row:
    goal: str
    what: str
    result: str
    reference: str
    target: str
    verdict: str  # PASS, FAIL, ERROR, or "info (PASS)" / "info (FAIL)" for reported-only rows

    @property
    def gated(self) -> bool:
        return self.verdict in (PASS, FAIL, ERROR)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(ok: bool, *, gated: bool = True) -> str:
    word = PASS if ok else FAIL
    return word if gated else f"{INFO} ({word})"


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.95 is p95)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"


def distribution(samples: list[float]) -> str:
    """``p50 12.3 ms · p95 20.1 ms (n=40)`` from samples in seconds."""
    return f"p50 {ms(median(samples))} · p95 {ms(percentile(samples, 0.95))} (n={len(samples)})"


def markdown_table(rows: list[Row]) -> str:
    header = ["goal", "measurement", "patgate", "reference", "target", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.goal, row.what, row.result, row.reference, row.target, f"**{row.verdict}**"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _command(*args: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0]
        if (done.stdout or done.stderr)
        else "?"
    )


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _memory() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "?"


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (``/proc/loadavg``)."""
    return os.getloadavg()


def busy_note(load: tuple[float, float, float]) -> str | None:
    """A warning when other work shares the CPU: absolute numbers are then not comparable
    across runs (ratios to the bare route, measured interleaved, suffer less)."""
    cores = len(os.sched_getaffinity(0))
    if load[0] <= 0.5 * cores:
        return None
    return (
        f"the machine was busy (1-minute load {load[0]:.1f} on {cores} cores): other processes "
        "shared the CPU, so absolute numbers are not comparable with a quiet run"
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def machine_info(*, postgres_version: str | None = None) -> list[tuple[str, str]]:
    import patgate

    # The tree measured: this checkout's src/, or another one put first on PYTHONPATH.
    source = Path(patgate.__file__).resolve().parent
    commit = _command("git", "-C", str(source), "rev-parse", "--short", "HEAD")
    dirty = _command(
        "git", "-C", str(source), "status", "--porcelain", "--untracked-files=all", "--", "."
    )
    info = [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cpu", f"{_cpu_model()} x {len(os.sched_getaffinity(0))} (nproc)"),
        ("memory", _memory()),
        ("load", " ".join(f"{x:.2f}" for x in load_average()) + " (1, 5, 15 min, at start)"),
        ("kernel", platform.release()),
        ("python", sys.version.split()[0]),
        ("sqlite", sqlite3.sqlite_version),
        ("wrk", _command("wrk", "-v").split(" Copyright")[0]),
        (
            "packages",
            f"uvicorn {_version('uvicorn')}, starlette {_version('starlette')}, "
            f"sqlalchemy {_version('sqlalchemy')}, uvloop {_version('uvloop')}, "
            f"httptools {_version('httptools')}",
        ),
        (
            "patgate",
            f"{commit}{' + uncommitted changes' if dirty not in ('', '?') else ''} ({source})",
        ),
    ]
    if postgres_version:
        info.append(("postgresql", postgres_version))
    return info
