"""Fixtures for every test: both databases, fresh migrated databases, runtimes and live servers.

``backend`` runs a test once on SQLite and once on PostgreSQL (marked ``postgres``, so
``-m "not postgres"`` leaves it out); PostgreSQL missing skips with the reason, or fails under CI.
Each test that asks for ``database_url`` gets a database of its own, copied from a template
migrated once per session, so tests may commit freely and threads and servers see their data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from patgate.clock import Clock
from patgate.config import load_settings
from patgate.context import Context
from patgate.runtime import Runtime
from support.db import DatabaseTemplates, PostgresServer
from support.env import IN_CI, TEST_BASE_URL, TEST_SECRET_KEY, unavailable
from support.server import LiveServer, bind_free_port

# Under CI the examples are capped so that the whole run stays well under 30 minutes. No
# deadline in either: tests that touch a database have timings that say nothing about the code.
hypothesis_settings.register_profile("ci", max_examples=25, deadline=None, print_blob=True)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "dev"))


def pytest_configure(config: pytest.Config) -> None:
    # Hermetic settings: a developer's PATGATE_SMTP_URL or PATGATE_DATABASE_URL must not reach
    # a test (nor a `patgate` subprocess it starts). PATGATE_TEST_* configure the tests themselves.
    for name in list(os.environ):
        if name.startswith("PATGATE_") and not name.startswith("PATGATE_TEST_"):
            del os.environ[name]


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"patgate: CI={'yes' if IN_CI else 'no'}, "
        f"hypothesis profile={hypothesis_settings.get_current_profile_name()}, "
        f"PostgreSQL admin URL={PostgresServer().display_url}"
    ]


# --- databases ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _postgres() -> Iterator[PostgresServer]:
    """The test PostgreSQL server, not yet contacted (SQLite-only runs never connect)."""
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_server(_postgres: PostgresServer) -> PostgresServer:
    """The test PostgreSQL server, reachable; checked once per session (skip, or fail under CI)."""
    reason = _postgres.unreachable_reason()
    if reason is not None:
        unavailable(reason)
    _postgres.drop_stale()
    return _postgres


@pytest.fixture(scope="session")
def _database_templates(
    tmp_path_factory: pytest.TempPathFactory, _postgres: PostgresServer
) -> Iterator[DatabaseTemplates]:
    templates = DatabaseTemplates(tmp_path_factory.mktemp("template"), _postgres)
    yield templates
    templates.close()


def _require_backend(request: pytest.FixtureRequest, backend: str) -> None:
    if backend == "postgres":
        request.getfixturevalue("postgres_server")


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgres"``: every test using it runs on both databases."""
    _require_backend(request, request.param)
    return request.param


@pytest.fixture
def database_url(
    request: pytest.FixtureRequest,
    backend: str,
    tmp_path: Path,
    _database_templates: DatabaseTemplates,
) -> Iterator[str]:
    """A fresh, fully migrated database of this test's own (dropped afterwards)."""
    # Again here: a test may parametrize ``backend`` directly, bypassing the fixture above.
    _require_backend(request, backend)
    url = _database_templates.fresh(backend, tmp_path)
    yield url
    _database_templates.release(url)


# --- runtimes and contexts ----------------------------------------------------------------------


@pytest.fixture
def make_runtime(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """``make_runtime(*, clock=None, **settings) -> Runtime`` on this test's database.

    Defaults: the test secret key, ``base_url`` ``http://testserver``, mail in ``tmp_path/mail``;
    keyword arguments override any setting. Every runtime made is closed at teardown.
    """
    runtimes: list[Runtime] = []

    def make(*, clock: Clock | None = None, **overrides: Any) -> Runtime:
        values: dict[str, Any] = {
            "database_url": database_url,
            "secret_key": TEST_SECRET_KEY,
            "mailbox_dir": tmp_path / "mail",
            "base_url": TEST_BASE_URL,
            **overrides,
        }
        # _env_file=None: a developer's ./.env must not change what tests see.
        settings = load_settings(_env_file=None, **values)
        runtime = Runtime(settings) if clock is None else Runtime(settings, clock=clock)
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in reversed(runtimes):
        runtime.close()


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    """A runtime with the default test settings and the system clock."""
    return make_runtime()


@pytest.fixture
def ctx(runtime: Runtime) -> Iterator[Context]:
    """A service context in one unit of work, committed after the test (the database is fresh)."""
    with runtime.unit_of_work() as context:
        yield context


# --- servers ------------------------------------------------------------------------------------


@pytest.fixture
def live_server(
    make_runtime: Callable[..., Runtime],
) -> Iterator[Callable[..., LiveServer]]:
    """``live_server(runtime=None, **settings) -> LiveServer``: patgate served on 127.0.0.1.

    Without ``runtime``, one is made on this test's database with ``base_url`` set to the server's
    own URL (plus any settings given, ``clock=`` included). A runtime passed in is served as it is,
    so the links in responses name its ``base_url``. Every server is stopped at teardown.
    """
    servers: list[LiveServer] = []

    def start(runtime: Runtime | None = None, **overrides: Any) -> LiveServer:
        if runtime is not None and overrides:
            raise TypeError("live_server() takes a runtime or settings overrides, not both")
        sock = bind_free_port()
        if runtime is None:
            host, port = sock.getsockname()[:2]
            try:
                runtime = make_runtime(base_url=f"http://{host}:{port}", **overrides)
            except BaseException:
                sock.close()
                raise
        server = LiveServer.start(runtime, sock)
        servers.append(server)
        return server

    yield start
    errors: list[BaseException] = []
    for server in reversed(servers):
        try:
            server.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
