"""The fast path of ``GET /repos/{owner}/{repo}`` (``web/app.PatgateApp``): it answers what
the routed stack answers, byte for byte, only for requests it may answer, and never past a
change or an expiry."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from patgate.approvals import services as approvals
from patgate.approvals.models import Grant
from patgate.clock import FixedClock
from support.world import World

PRIVATE = "/repos/acme/private-api"


@dataclass
class Scene:
    server: Any
    world: World
    fine_grained: str
    classic: str
    token_id: int
    answers: list[bool] = field(default_factory=list)  # True: the fast path answered

    @property
    def app(self) -> Any:
        return self.server._server.config.app

    def get(
        self,
        path: str,
        token: str | None = None,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return httpx.request(
            method, self.server.api + path, headers=sent, params=params, follow_redirects=False
        )

    @contextlib.contextmanager
    def routed(self) -> Iterator[None]:
        """Requests go through the middleware stack and the router, as without the fast path."""
        fast_path, self.app.fast_path = self.app.fast_path, None
        try:
            yield
        finally:
            self.app.fast_path = fast_path


def build_scene(server: Any) -> Scene:
    world = World(server.runtime).build()
    issued = world.token(
        repositories=["private-api"], permissions={"metadata": "read", "issues": "write"}
    )
    world.run(approvals.approve, [issued.request.id], actor=world.actor())
    scene = Scene(server, world, issued.secret, world.classic(), issued.token.id)
    answer = scene.app.fast_path.answer

    def spy(scope: Any) -> Any:
        found = answer(scope)
        scene.answers.append(found is not None)
        return found

    scene.app.fast_path.answer = spy
    return scene


@pytest.fixture
def scene(live_server: Any) -> Scene:
    return build_scene(live_server())


def same_answer(fast: httpx.Response, routed: httpx.Response) -> None:
    assert fast.status_code == routed.status_code
    assert fast.content == routed.content
    # Everything but the server's Date, in the same order.
    assert [h for h in fast.headers.raw if h[0].lower() != b"date"] == [
        h for h in routed.headers.raw if h[0].lower() != b"date"
    ]


ANSWERED = [
    pytest.param(PRIVATE, "fine_grained", {}, id="fine-grained"),
    pytest.param(PRIVATE, "classic", {}, id="classic"),
    pytest.param("/repos/acme/private-ops", "classic", {}, id="classic-other-repo"),
    pytest.param("/repos/ACME/Private-API", "fine_grained", {}, id="any-case"),
    pytest.param("/repos/acme/public-site", None, {}, id="anonymous-public"),
    pytest.param("/repos/acme/public-site", "fine_grained", {}, id="fine-grained-public"),
    pytest.param(
        PRIVATE, "fine_grained", {"X-GitHub-Api-Version": "2026-03-10"}, id="newer-version"
    ),
    pytest.param(PRIVATE, "classic", {"X-GitHub-Api-Version": ""}, id="empty-version"),
]


@pytest.mark.parametrize(("path", "who", "headers"), ANSWERED)
def test_a_cached_allowed_read_is_answered_as_the_stack_answers_it(
    scene: Scene, path: str, who: str | None, headers: dict[str, str]
) -> None:
    token = getattr(scene, who) if who else None
    assert scene.get(path, token, headers=headers).status_code == 200  # fills the cache
    scene.answers.clear()
    fast = scene.get(path, token, headers=headers)
    assert scene.answers == [True]
    with scene.routed():
        routed = scene.get(path, token, headers=headers)
    same_answer(fast, routed)
    assert fast.headers["content-type"] == "application/json"
    assert fast.headers["x-github-api-version-selected"] == (
        headers.get("X-GitHub-Api-Version", "").strip() or "2022-11-28"
    )


LEFT = [
    pytest.param(PRIVATE, "fine_grained", {"method": "HEAD"}, id="head"),
    pytest.param(PRIVATE, "fine_grained", {"method": "POST"}, id="post"),
    pytest.param(PRIVATE, "fine_grained", {"params": {"per_page": "1"}}, id="query-string"),
    pytest.param(
        PRIVATE,
        "fine_grained",
        {"headers": {"X-GitHub-Api-Version": "1999-01-01"}},
        id="unsupported-version",
    ),
    pytest.param(PRIVATE + "/", "fine_grained", {}, id="trailing-slash"),
    pytest.param(PRIVATE + "/issues", "fine_grained", {}, id="deeper"),
    pytest.param("/repos/acme", "fine_grained", {}, id="one-segment"),
    pytest.param(PRIVATE, None, {}, id="anonymous-private"),
    pytest.param("/repos/acme/private-ops", "fine_grained", {}, id="not-selected"),
    pytest.param("/repos/acme/nothing", "fine_grained", {}, id="no-such-repo"),
    pytest.param(PRIVATE, "ghp_" + "a" * 36, {}, id="bad-token"),
    pytest.param(
        PRIVATE, None, {"headers": {"Authorization": "Basic b2N0bzpjYXQ="}}, id="bad-scheme"
    ),
]


@pytest.mark.parametrize(("path", "who", "options"), LEFT)
def test_everything_else_is_left_to_the_stack(
    scene: Scene, path: str, who: str | None, options: dict[str, Any]
) -> None:
    token = getattr(scene, who, who) if who else None
    scene.get(path, token, **options)
    scene.get(path, token, **options)  # whatever could be cached now is
    scene.answers.clear()
    fast = scene.get(path, token, **options)
    assert not any(scene.answers)
    with scene.routed():
        routed = scene.get(path, token, **options)
    same_answer(fast, routed)


def test_a_revocation_is_honoured_by_the_next_request(scene: Scene) -> None:
    assert scene.get(PRIVATE, scene.fine_grained).status_code == 200
    assert scene.get(PRIVATE, scene.fine_grained).status_code == 200
    assert scene.answers[-1] is True

    owner = scene.world.actor()

    def revoke(ctx: Any, org: Any) -> None:
        grant = ctx.session.scalar(
            select(Grant).where(Grant.token_id == scene.token_id, Grant.state == "active")
        )
        approvals.revoke(ctx, org, [grant.id], actor=owner)

    scene.world.run(revoke)
    answer = scene.get(PRIVATE, scene.fine_grained)
    assert answer.status_code == 404
    assert scene.answers[-1] is False
    assert scene.get(PRIVATE, scene.classic).status_code == 200


def test_expiry_follows_the_runtimes_clock(live_server: Any) -> None:
    clock = FixedClock(datetime.now(UTC))
    scene = build_scene(live_server(clock=clock))
    assert scene.get(PRIVATE, scene.fine_grained).status_code == 200
    assert scene.get(PRIVATE, scene.fine_grained).status_code == 200
    assert scene.answers[-1] is True
    clock.advance(timedelta(days=31))  # World's tokens expire after the default 30 days
    answer = scene.get(PRIVATE, scene.fine_grained)
    assert answer.status_code == 401
    assert scene.answers[-1] is False
