"""The ``live_server`` fixture: a real server over HTTP, on this test's database, stopped after."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from patgate.accounts.services import create_user
from patgate.context import CLI_ACTOR
from patgate.orgs.services import create_org
from patgate.runtime import Runtime
from support.server import LiveServer, bind_free_port


def test_the_server_answers_over_http(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()

    response = httpx.get(f"{server.api}/user", headers={"Accept": "application/vnd.github+json"})

    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.api == f"{server.url}/api/v3"
    assert server.runtime.settings.base_url == server.url
    assert response.status_code == 401, response.text


def test_the_server_sees_what_the_test_committed(live_server: Callable[..., LiveServer]) -> None:
    server = live_server()
    with server.runtime.unit_of_work() as ctx:
        owner = create_user(ctx, "octocat", email="octocat@example.com")
        create_org(ctx, "octo-org", owner=owner, actor=CLI_ACTOR)

    response = httpx.get(f"{server.api}/orgs/octo-org")

    assert response.status_code == 200, response.text
    assert response.json()["login"] == "octo-org"
    # Links are built from the server's own URL, port included.
    assert response.json()["url"] == f"{server.api}/orgs/octo-org"


def test_stop_releases_the_port(runtime: Runtime) -> None:
    server = LiveServer.start(runtime, bind_free_port())
    assert httpx.get(f"{server.api}/user").status_code == 401

    server.stop()

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.api}/user")
