"""A throwaway PostgreSQL cluster of a test's own, for fault tests that stop and start it.

The machine's own PostgreSQL is never touched: the cluster is ``initdb``'d into a fresh
temporary folder (owned by ``postgres``, as ``initdb`` refuses to run as root), listens on a
free port of 127.0.0.1 and on a socket in that folder, trusts local connections, and is
stopped (``-m immediate``) and deleted by :meth:`PgCluster.destroy`. Every command runs with
a timeout.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from support.processes import HOST, free_port

__all__ = ["PG_BIN", "PgCluster", "cluster_unavailable_reason"]

PG_BIN = Path(os.environ.get("PATGATE_TEST_PG_BIN") or "/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
COMMAND_TIMEOUT = 60.0
PG_CTL_WAIT_SECONDS = 30


def cluster_unavailable_reason() -> str | None:
    """``None`` when a cluster can be made here, else one line saying why not."""
    if os.geteuid() != 0:
        return "a throwaway PostgreSQL cluster needs root (to run initdb as the postgres user)"
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).is_file():
            return f"PostgreSQL server binaries not found: {PG_BIN / tool} is missing"
    if not Path(RUNUSER).is_file():
        return f"{RUNUSER} is missing (util-linux)"
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        return f"there is no {OS_USER!r} system user to run the cluster as"
    return None


class PgCluster:
    """One cluster: ``root/data`` (the data directory), ``root/log``, and the socket in ``root``."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.logfile = root / "log"
        self.port = port

    # ---- life cycle -----------------------------------------------------------------------

    @classmethod
    def create(cls) -> PgCluster:
        """``initdb`` a new cluster in a new temporary folder (not started yet)."""
        # Not under pytest's tmp_path: its parents are root's alone (0700), and the postgres
        # user must reach the folder. /tmp is world-traversable; the folder itself is 0700.
        root = Path(tempfile.mkdtemp(prefix="patgate-pg-"))
        user = pwd.getpwnam(OS_USER)
        os.chown(root, user.pw_uid, user.pw_gid)
        cluster = cls(root, free_port())
        try:
            cluster._as_postgres(
                str(PG_BIN / "initdb"), "-D", str(cluster.data), "-A", "trust", "-U", "postgres",
                "-E", "UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    def start(self, *, attempts: int = 3) -> None:
        """Start it and wait until it accepts connections (another free port if the chosen
        one was taken in between)."""
        for attempt in range(attempts):
            if attempt:
                self.port = free_port()
            try:
                self._pg_ctl("start", "-l", str(self.logfile), "-o", self._server_options())
                return
            except subprocess.CalledProcessError:
                if "could not bind" not in self.log() and "already in use" not in self.log():
                    raise
        raise RuntimeError(f"the throwaway cluster did not start:\n{self.log()}")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE`` and wait until it is down."""
        self._pg_ctl("stop", "-m", mode)

    def running(self) -> bool:
        done = self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status", check=False
        )
        return done.returncode == 0

    def destroy(self) -> None:
        """Stop it at once (if it runs) and delete its folder."""
        try:
            if self.data.exists() and self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- using it -------------------------------------------------------------------------

    def url(self, database: str = "postgres", *, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://postgres@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its SQLAlchemy URL."""
        with psycopg.connect(
            self.url(driver="postgresql"), autocommit=True, connect_timeout=10
        ) as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def log(self, tail: int = 4000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-tail:]
        except (FileNotFoundError, PermissionError):
            return ""

    # ---- internals ------------------------------------------------------------------------

    def _server_options(self) -> str:
        # fsync off: the cluster is thrown away; durability is not what these tests are about.
        return f"-p {self.port} -k {self.root} -c listen_addresses={HOST} -c fsync=off"

    def _pg_ctl(self, *args: str) -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", str(PG_CTL_WAIT_SECONDS),
            *args,
        )  # fmt: skip

    def _as_postgres(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [RUNUSER, "-u", OS_USER, "--", *command],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            cwd=self.root,
        )
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, command, done.stdout, done.stderr + "\n" + self.log()
            )
        return done
