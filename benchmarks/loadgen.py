"""Servers under test and the load on them: uvicorn subprocesses, ``wrk`` and its output,
and the memory of a process from ``/proc``."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
# The one server configuration both sides of goal 1 are served with.
UVICORN_FLAGS = (
    "--no-access-log",
    "--log-level",
    "warning",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
)
WRK_CONNECTIONS = 64
WRK_THREADS = 2


class HarnessError(Exception):
    """The benchmark itself could not run (not a failed goal)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(
    url: str, *, timeout: float, process: subprocess.Popen[Any] | None = None
) -> float:
    """Poll ``url`` until it answers anything; return the seconds waited."""
    started = time.perf_counter()
    deadline = started + timeout
    while True:
        try:
            httpx.get(url, timeout=2.0)
            return time.perf_counter() - started
        except httpx.TransportError:
            pass
        if process is not None and process.poll() is not None:
            raise HarnessError(
                f"the server exited with status {process.returncode} before {url} answered"
            )
        if time.perf_counter() > deadline:
            raise HarnessError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.01)


@dataclass
class Server:
    """An ASGI app served by ``python -m uvicorn`` with :data:`UVICORN_FLAGS`."""

    name: str
    app: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1",
            "--port", str(self.port), *UVICORN_FLAGS,
        ]  # fmt: skip

    def start(self, ready_path: str, timeout: float = 60.0) -> float:
        """Start it and wait until ``ready_path`` answers; return the seconds it took."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        return wait_for_http(self.base_url + ready_path, timeout=timeout, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # graceful: the lifespan shutdown runs
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


# ---- wrk ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    output: str


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Requests/s and the latency distribution from ``wrk --latency``'s report."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h),", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    percentiles = {
        int(p): _ms(v, u)
        for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    }
    if total is None or rps is None or set(percentiles) != {50, 75, 90, 99}:
        raise HarnessError(f"cannot read wrk's report:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests=int(total.group(1)),
        seconds=_ms(total.group(2), total.group(3)) / 1000.0,
        rps=float(rps.group(1)),
        p50_ms=percentiles[50],
        p75_ms=percentiles[75],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
        output=output,
    )


def wrk_binary() -> str:
    """``wrk``, installed from Debian when missing."""
    found = shutil.which("wrk") or ("/usr/bin/wrk" if os.path.exists("/usr/bin/wrk") else None)
    if found:
        return found
    print("wrk is missing: apt-get install -y wrk", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        raise HarnessError("wrk could not be installed")
    return found


def run_wrk(
    url: str,
    *,
    seconds: float,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
    env: dict[str, str] | None = None,
) -> WrkResult:
    command = [
        wrk_binary(), f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "--latency",
    ]  # fmt: skip
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    if done.returncode != 0:
        raise HarnessError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# ---- memory ---------------------------------------------------------------------------------


def proc_status_kb(pid: int, field_name: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``); 0 if it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    """Samples a process's ``VmRSS`` every ``interval`` seconds; keeps the highest."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.pid = pid
        self.interval = interval
        self.max_rss_kb = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            rss = proc_status_kb(self.pid, "VmRSS")
            self.max_rss_kb = max(self.max_rss_kb, rss)
            self.samples += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)

    @property
    def hwm_kb(self) -> int:
        return proc_status_kb(self.pid, "VmHWM")

    @property
    def rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmRSS")
