"""patgate as real processes: ``patgate serve``, ``patgate worker`` and one-shot CLI commands.

Every process gets an explicit environment (never the developer's ``PATGATE_*``), a log file
of its own, and a timeout on every wait, so a test that drives them cannot hang. Processes
are stopped by their own pid (SIGTERM, then SIGKILL after a grace period), never by name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from support.env import TEST_SECRET_KEY

__all__ = [
    "HOST",
    "PATGATE",
    "CliError",
    "PatgateProcess",
    "ServerProcess",
    "first_time",
    "free_port",
    "patgate_env",
    "run_cli",
    "start_server",
    "start_servers",
    "start_worker",
    "wait_until",
]

HOST = "127.0.0.1"
PATGATE = str(Path(sys.executable).with_name("patgate"))
CLI_TIMEOUT = 60.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (a process told to listen on it may still lose it:
    :func:`start_server` retries on another port when that happens)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def patgate_env(
    database_url: str,
    *,
    base_url: str | None = None,
    mailbox_dir: Path | None = None,
    smtp_url: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of a patgate process: this one's minus every ``PATGATE_*``, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATGATE_")}
    env |= {
        "PATGATE_DATABASE_URL": database_url,
        "PATGATE_SECRET_KEY": TEST_SECRET_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    if base_url is not None:
        env["PATGATE_BASE_URL"] = base_url
    if mailbox_dir is not None:
        env["PATGATE_MAILBOX_DIR"] = str(mailbox_dir)
    if smtp_url is not None:
        env["PATGATE_SMTP_URL"] = smtp_url
    env |= {f"PATGATE_{name.upper()}": value for name, value in extra.items()}
    return env


class CliError(AssertionError):
    """A CLI command that was expected to succeed did not."""


def run_cli(env: dict[str, str], *args: str, timeout: float = CLI_TIMEOUT) -> dict[str, Any]:
    """Run ``patgate ARGS --json``; return its parsed output, or raise :class:`CliError`."""
    done = subprocess.run(
        [PATGATE, *args, "--json"], env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise CliError(f"patgate {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return json.loads(done.stdout)


class PatgateProcess:
    """One long-running patgate process (its output goes to ``log_path``)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [PATGATE, *self.args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C in the terminal running pytest is pytest's alone.
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; return the exit code (``None``: never
        started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode

    def kill(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGKILL (``kill -9``): the process gets no chance to clean anything up."""
        assert self.process is not None, f"{self.name} was never started"
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait(timeout)

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.process.pid if self.process else None}>"


class ServerProcess(PatgateProcess):
    """``patgate serve --no-worker`` on 127.0.0.1."""

    def __init__(self, name: str, port: int, env: dict[str, str], log_path: Path) -> None:
        url = f"http://{HOST}:{port}"
        env = {**env, "PATGATE_BASE_URL": env.get("PATGATE_BASE_URL", url)}
        args = ["serve", "--no-worker", "--host", HOST, "--port", str(port)]
        super().__init__(name, args, env, log_path)
        self.port = port
        self.url = url
        self.api = f"{url}/api/v3"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> bool:
        """Wait until it answers HTTP; ``False`` if it exited first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            try:
                httpx.get(f"{self.api}/openapi.json", timeout=1.0)
                return True
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not answer within {timeout} s:\n{self.log()}")


def start_servers(
    env: dict[str, str], log_dir: Path, names: list[str], *, attempts: int = 3
) -> list[ServerProcess]:
    """Start one ``patgate serve --no-worker`` per name, each on a free port, all at once;
    return once every one answers HTTP (one that lost its port is retried on another)."""
    pending = {name: 0 for name in names}
    started: dict[str, ServerProcess] = {}
    launched: list[ServerProcess] = []
    try:
        while pending:
            launched = []
            for name in list(pending):
                pending[name] += 1
                server = ServerProcess(
                    name, free_port(), env, log_dir / f"{name}.{pending[name]}.log"
                )
                server.start()
                launched.append(server)
            for server in launched:
                if server.wait_ready():
                    started[server.name] = server
                    del pending[server.name]
                    continue
                server.stop()
                lost_port = "address already in use" in server.log().lower()
                if not lost_port or pending[server.name] >= attempts:
                    raise RuntimeError(f"{server.name} did not start:\n{server.log()}")
    except BaseException:
        for server in {*started.values(), *launched}:
            server.stop()
        raise
    return [started[name] for name in names]


def start_server(env: dict[str, str], log_dir: Path, name: str = "serve") -> ServerProcess:
    """Start ``patgate serve --no-worker`` on a free port; return once it answers HTTP."""
    return start_servers(env, log_dir, [name])[0]


def start_worker(env: dict[str, str], log_dir: Path, name: str = "worker") -> PatgateProcess:
    """Start ``patgate worker`` (it runs until stopped)."""
    worker = PatgateProcess(name, ["worker"], env, log_dir / f"{name}.log")
    worker.start()
    return worker


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def first_time(check: Callable[[], Any], *, interval: float, timeout: float) -> float | None:
    """Call ``check()`` every ``interval`` seconds (a steady cadence) until it is true; return
    the ``time.monotonic()`` at which it first was, or ``None`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    next_call = time.monotonic()
    while True:
        if check():
            return time.monotonic()
        if time.monotonic() >= deadline:
            return None
        next_call += interval
        time.sleep(max(0.0, next_call - time.monotonic()))
