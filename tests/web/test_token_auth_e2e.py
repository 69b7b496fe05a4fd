"""Over a real socket: tokens made by the CLI authenticate; everything else gets GitHub's 401."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from patgate.tokens.models import FineGrainedToken
from support.openapi import validate_response
from support.world import World

PATGATE = str(Path(sys.executable).with_name("patgate"))


def cli(server: Any, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATGATE_")}
    env |= {
        "PATGATE_DATABASE_URL": server.runtime.settings.database_url,
        "PATGATE_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "PATGATE_BASE_URL": server.url,
    }
    done = subprocess.run(
        [PATGATE, *args, "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def call(server: Any, method: str, path: str, secret: str | None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.request(method, f"{server.api}{path}", headers=headers, **kwargs)


@pytest.fixture
def server(live_server: Any) -> Any:
    server = live_server()
    World(server.runtime).build()
    return server


def assert_bad_credentials(answer: httpx.Response) -> None:
    assert answer.status_code == 401
    assert answer.json() == {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }


def test_cli_token_reads_the_api_and_bad_tokens_get_401(server: Any) -> None:
    made = cli(
        server, "token", "create", "--user", "olivia", "--name", "cli-token",
        "--resource-owner", "acme", "--repositories", "private-api",
        "--permission", "issues=write",
    )  # fmt: skip
    secret = made["token"]
    assert secret.startswith("github_pat_") and made["state"] == "approved"

    me = call(server, "GET", "/user", secret)
    assert me.status_code == 200 and me.json()["login"] == "olivia"

    mutated = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert_bad_credentials(call(server, "GET", "/user", mutated))
    deleted = cli(server, "token", "create", "--user", "mona", "--name", "gone",
                  "--resource-owner", "mona")  # fmt: skip
    assert call(server, "GET", "/user", deleted["token"]).status_code == 200
    cli(server, "token", "delete", str(deleted["id"]))
    assert_bad_credentials(call(server, "GET", "/user", deleted["token"]))
    for foreign in ("gho_" + "a" * 36, "ghu_" + "b" * 36, "not-a-token"):
        assert_bad_credentials(call(server, "GET", "/user", foreign))
    answer = call(server, "GET", "/repos/acme/private-api", mutated)
    assert_bad_credentials(answer)
    validate_response("GET", "/repos/{owner}/{repo}", 401, answer.json())

    # Expired: the same token, once its expiry has passed.
    with server.runtime.unit_of_work() as ctx:
        ctx.session.execute(
            update(FineGrainedToken)
            .where(FineGrainedToken.id == made["id"])
            .values(expires_at=ctx.now - timedelta(seconds=1))
        )
    assert_bad_credentials(call(server, "GET", "/user", secret))


def test_private_repository_needs_access_and_public_is_open(server: Any) -> None:
    with_access = cli(server, "token", "create", "--user", "olivia", "--name", "a",
                      "--resource-owner", "acme", "--repositories", "all",
                      "--permission", "issues=write")["token"]  # fmt: skip
    without = cli(server, "token", "create", "--user", "olivia", "--name", "b",
                  "--resource-owner", "acme", "--repositories", "none")["token"]  # fmt: skip
    own = cli(server, "token", "create", "--user", "mona", "--name", "c",
              "--resource-owner", "mona")["token"]  # fmt: skip
    classic = cli(server, "token", "create", "--classic", "--user", "mona", "--name", "n")["token"]

    private = call(server, "GET", "/repos/acme/private-api", with_access)
    assert private.status_code == 200
    validate_response("GET", "/repos/{owner}/{repo}", 200, private.json())
    for secret in (without, own, classic):
        answer = call(server, "GET", "/repos/acme/private-api", secret)
        assert answer.status_code == 404
        validate_response("GET", "/repos/{owner}/{repo}", 404, answer.json())
    for secret in (with_access, without, own, classic, None):
        public = call(server, "GET", "/repos/acme/public-site", secret)
        assert public.status_code == 200
        validate_response("GET", "/repos/{owner}/{repo}", 200, public.json())


def test_created_issue_is_returned_by_a_later_get(server: Any) -> None:
    secret = cli(server, "token", "create", "--user", "olivia", "--name", "writer",
                 "--resource-owner", "acme", "--repositories", "all",
                 "--permission", "issues=write")["token"]  # fmt: skip
    created = call(server, "POST", "/repos/acme/private-api/issues", secret,
                   json={"title": "Rotate keys", "body": "soon"})  # fmt: skip
    assert created.status_code == 201
    number = created.json()["number"]
    again = call(server, "GET", f"/repos/acme/private-api/issues/{number}", secret)
    assert again.status_code == 200
    assert (again.json()["title"], again.json()["body"]) == ("Rotate keys", "soon")
    listed = call(server, "GET", "/repos/acme/private-api/issues", secret)
    assert [i["number"] for i in listed.json()] == [number]
    assert call(server, "POST", "/repos/acme/private-api/issues", secret,
                json={"body": "no title"}).status_code == 422  # fmt: skip


def test_pagination_links_use_the_callers_host(server: Any) -> None:
    secret = cli(server, "token", "create", "--user", "olivia", "--name", "pager",
                 "--resource-owner", "acme", "--repositories", "all",
                 "--permission", "issues=write")["token"]  # fmt: skip
    for n in range(5):
        call(server, "POST", "/repos/acme/private-api/issues", secret, json={"title": f"#{n}"})
    first = call(server, "GET", "/repos/acme/private-api/issues?per_page=2", secret)
    assert len(first.json()) == 2
    link = first.headers["Link"]
    assert f'<{server.api}/repos/acme/private-api/issues?page=2&per_page=2>; rel="next"' in link
    assert 'rel="last"' in link and "page=3" in link
    assert (
        call(server, "GET", "/repos/acme/private-api/issues?per_page=abc", secret).status_code
        == 422
    )
    assert (
        len(call(server, "GET", "/repos/acme/private-api/issues?per_page=500", secret).json()) == 5
    )
