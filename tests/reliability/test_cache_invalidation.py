"""The in-process cache of authorization facts never outlives a change (SPEC §10, §5).

Every change that takes access away — a revocation, a denial, a policy change, a lifetime
policy, a membership removal, a suspension, a token deletion, an expiry — and the approval
that gives it, made while a server answers from a warm cache (the hot path of
``GET /repos/{owner}/{repo}``, called twice first), is honoured:

- by the very next request of the same process (services committing in the server's own
  process, on both databases);
- on SQLite by the very next request after a ``patgate`` CLI process committed it;
- on PostgreSQL within one second of the commit by *another* ``patgate serve`` process
  (polled every 50 ms; the bound is SPEC §10's, not a benchmark).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.apps import services as apps
from patgate.config import load_settings
from patgate.context import CLI_ACTOR, Actor
from patgate.orgs import services as orgs
from patgate.repos import services as repos
from patgate.runtime import Runtime
from patgate.tokens import services as tokens
from patgate.tokens.models import FineGrainedToken
from support.db import listening
from support.env import TEST_SECRET_KEY
from support.processes import (
    ServerProcess,
    patgate_env,
    run_cli,
    start_servers,
    wait_until,
)

PROPAGATION_BOUND = 1.0  # SPEC §10: "within one second on PostgreSQL"
POLL_INTERVAL = 0.05
POLL_LIMIT = 5.0  # how long to keep polling before giving up (the assertion is on the bound)
EXPIRES_IN = timedelta(seconds=1.5)
REQUEST_TIMEOUT = 5.0
LIFETIME_DAYS = 7

# ---- a small world per change -----------------------------------------------------------


@dataclass
class Scene:
    """One organization ``org-<tag>`` (owner ``own-<tag>``, member ``mem-<tag>``, private
    repository ``priv``) and the member's fine-grained token on ``priv``."""

    tag: str
    token_id: int
    secret: str
    request_id: int  # the newest request of the token
    grant_id: int | None
    installation_secret: str | None = None

    @property
    def org(self) -> str:
        return f"org-{self.tag}"

    @property
    def owner(self) -> str:
        return f"own-{self.tag}"

    @property
    def member(self) -> str:
        return f"mem-{self.tag}"

    def path(self, route: str = "repo") -> str:
        return f"/repos/{self.org}/priv" + ("/issues" if route == "issues" else "")


def owner_actor(runtime: Runtime, scene: Scene) -> Actor:
    with runtime.unit_of_work() as ctx:
        user = accounts.get_user(ctx, scene.owner)
        return Actor(user.id, user.login, "user")


def build_scene(runtime: Runtime, tag: str, *, approve: bool = True, app: bool = False) -> Scene:
    with runtime.unit_of_work() as ctx:
        owner = accounts.create_user(ctx, f"own-{tag}", email=f"own-{tag}@example.com")
        member = accounts.create_user(ctx, f"mem-{tag}", email=f"mem-{tag}@example.com")
        org = orgs.create_org(ctx, f"org-{tag}", owner=owner, actor=CLI_ACTOR)
        orgs.add_member(ctx, org, member, actor=CLI_ACTOR)
        orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, opt_in=True)
        priv = repos.create_repo(ctx, org, "priv", visibility="private")
        issued = tokens.create_fine_grained(
            ctx, member, name="ci", resource_owner=org, repository_selection="subset",
            repositories=[priv], permissions={"issues": "read"},
            expires_at=ctx.now + timedelta(days=30), reason="ci", actor=CLI_ACTOR,
        )  # fmt: skip
        installation_secret = None
        if app:
            made, _key = apps.create_app(
                ctx, name=f"gov-{tag}", owner_org=org, actor=CLI_ACTOR,
                permissions={"organization_personal_access_token_requests": "write",
                             "organization_personal_access_tokens": "write"},
            )  # fmt: skip
            installation = apps.install(ctx, made, org, actor=CLI_ACTOR)
            _, installation_secret = apps.create_installation_token(ctx, installation)
        scene = Scene(tag, issued.token.id, issued.secret, issued.request.id, None)
        scene.installation_secret = installation_secret
    if approve:
        scene.grant_id = decide(runtime, scene, approvals.approve)
    return scene


def decide(runtime: Runtime, scene: Scene, how: Callable[..., Any]) -> int | None:
    """Approve or deny the scene's newest request as its owner; the active grant's id."""
    actor = owner_actor(runtime, scene)
    with runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, scene.org)
        how(ctx, org, [scene.request_id], actor=actor)
        grant = approvals.active_grant_of(ctx, tokens.get_fine_grained(ctx, scene.token_id), org)
        return grant.id if grant is not None else None


def expire_soon(runtime: Runtime, scene: Scene) -> None:
    with runtime.unit_of_work() as ctx:
        ctx.session.execute(
            update(FineGrainedToken)
            .where(FineGrainedToken.id == scene.token_id)
            .values(expires_at=ctx.now + EXPIRES_IN)
        )


def wait_for_expiry(runtime: Runtime, scene: Scene) -> None:
    with runtime.unit_of_work() as ctx:
        expires_at = tokens.get_fine_grained(ctx, scene.token_id).expires_at
        assert expires_at is not None
        left = (expires_at - ctx.now).total_seconds()
    assert left < EXPIRES_IN.total_seconds() + 1
    time.sleep(max(0.0, left) + 0.05)


# ---- the changes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A change to one scene, and what ``GET /repos/org-<tag>/priv`` with the member's token
    answers before and after it (status, and the body's ``message`` or ``full_name``)."""

    name: str
    after: int
    message: Callable[[Scene, str], str]  # given the base URL of the server asked
    apply: Callable[[Runtime, Scene], None]  # through the services
    cli: Callable[[Scene], list[str]] | None = None  # the same through the CLI
    api: Callable[[Scene], tuple[str, dict[str, Any]]] | None = None  # through the REST API
    before: int = 200
    approve: bool = True
    prepare: Callable[[Runtime, Scene], None] | None = None
    # The reason patgate logs for its denial, before and after the change.
    logged: tuple[str, str] | None = None
    # What changes is a fact of the organization, which only the hot path caches (with the
    # repository); other routes read it afresh.
    org_fact: bool = False

    def __str__(self) -> str:
        return self.name


def _revoke(runtime: Runtime, scene: Scene) -> None:
    actor = owner_actor(runtime, scene)
    with runtime.unit_of_work() as ctx:
        approvals.revoke(ctx, orgs.get_org(ctx, scene.org), [scene.grant_id], actor=actor)


def _deny(runtime: Runtime, scene: Scene) -> None:
    decide(runtime, scene, approvals.deny)


def _approve(runtime: Runtime, scene: Scene) -> None:
    decide(runtime, scene, approvals.approve)


def _restrict(runtime: Runtime, scene: Scene) -> None:
    with runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, scene.org)
        orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, fine_grained="restrict")


def _lifetime(runtime: Runtime, scene: Scene) -> None:
    with runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, scene.org)
        orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, fine_grained_max_lifetime_days=LIFETIME_DAYS)


def _remove(runtime: Runtime, scene: Scene) -> None:
    with runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, scene.org)
        orgs.remove_member(ctx, org, accounts.get_user(ctx, scene.member), actor=CLI_ACTOR)


def _suspend(runtime: Runtime, scene: Scene) -> None:
    with runtime.unit_of_work() as ctx:
        accounts.set_suspended(ctx, scene.member, True)


def _delete(runtime: Runtime, scene: Scene) -> None:
    with runtime.unit_of_work() as ctx:
        token = tokens.get_fine_grained(ctx, scene.token_id)
        tokens.delete_fine_grained(ctx, token, actor=CLI_ACTOR)


def _not_found(_: Scene, __: str) -> str:
    return "Not Found"


def _bad_credentials(_: Scene, __: str) -> str:
    return "Bad credentials"


CHANGES = [
    Change(
        "revocation", 404, _not_found, _revoke,
        cli=lambda s: ["grant", "revoke", s.org, str(s.grant_id), "--as", s.owner],
        api=lambda s: (f"/orgs/{s.org}/personal-access-tokens/{s.grant_id}",
                       {"action": "revoke"}),
    ),
    # A denial changes no status (pending and denied are both 404, SPEC §5): the reason
    # patgate logs for its decision is what shows the denial was seen.
    Change(
        "denial", 404, _not_found, _deny,
        cli=lambda s: ["request", "deny", s.org, str(s.request_id), "--as", s.owner],
        api=lambda s: (f"/orgs/{s.org}/personal-access-token-requests/{s.request_id}",
                       {"action": "deny", "reason": "not now"}),
        before=404, approve=False,
        logged=("not_visible approval_pending", "not_visible request_denied"),
    ),
    Change(
        "approval", 200, lambda s, _: f"{s.org}/priv", _approve,
        cli=lambda s: ["request", "approve", s.org, str(s.request_id), "--as", s.owner],
        api=lambda s: (f"/orgs/{s.org}/personal-access-token-requests/{s.request_id}",
                       {"action": "approve"}),
        before=404, approve=False,
    ),
    Change(
        "policy", 403,
        lambda s, _: f"`{s.org}` forbids access via a fine-grained personal access token.",
        _restrict, cli=lambda s: ["org", "set-policy", s.org, "--fine-grained", "restrict"],
        org_fact=True,
    ),
    Change(
        "lifetime-policy", 403,
        lambda s, base: (
            f"The '{s.org}' organization forbids access via a fine-grained personal access "
            f"tokens if the token's lifetime is greater than {LIFETIME_DAYS} days. Please "
            f"adjust your token's lifetime at the following URL: "
            f"{base}/settings/personal-access-tokens/{s.token_id}"
        ),
        _lifetime,
        cli=lambda s: ["org", "set-policy", s.org, "--fine-grained-max-lifetime",
                       str(LIFETIME_DAYS)],
        org_fact=True,
    ),
    Change(
        "membership-removal", 404, _not_found, _remove,
        cli=lambda s: ["org", "remove-member", s.org, s.member],
    ),
    Change(
        "suspension", 401, _bad_credentials, _suspend,
        cli=lambda s: ["user", "suspend", s.member],
    ),
    Change(
        "token-deletion", 401, _bad_credentials, _delete,
        cli=lambda s: ["token", "delete", str(s.token_id)],
    ),
    # Nothing is committed: the cached token simply reaches its expiry.
    Change("expiry", 401, _bad_credentials, wait_for_expiry, prepare=expire_soon),
]  # fmt: skip
BY_NAME = {change.name: change for change in CHANGES}


def setup_scene(runtime: Runtime, change: Change, tag: str, *, app: bool = False) -> Scene:
    scene = build_scene(runtime, tag, approve=change.approve, app=app)
    if change.prepare is not None:
        change.prepare(runtime, scene)
    return scene


# ---- talking to a server ----------------------------------------------------------------


# "repo": GET /repos/{owner}/{repo}, the hot path (token and repository from the cache);
# "issues": GET .../issues, through ``api_call`` (the token from the cache, the rest read).
ROUTES = ["repo", "issues"]


def get(api: str, scene: Scene, route: str = "repo") -> httpx.Response:
    return httpx.get(
        f"{api}{scene.path(route)}",
        headers={"Authorization": f"Bearer {scene.secret}"},
        timeout=REQUEST_TIMEOUT,
    )


def assert_answer(
    answer: httpx.Response, change: Change, scene: Scene, base: str, route: str = "repo"
) -> None:
    assert answer.status_code == change.after, (change.name, answer.status_code, answer.text)
    body = answer.json()
    if change.after == 200 and route == "issues":
        assert body == []
    elif change.after == 200:
        assert body["full_name"] == change.message(scene, base)
    else:
        assert body["message"] == change.message(scene, base), body


def warm(api: str, change: Change, scene: Scene, route: str = "repo") -> None:
    """Two calls: the second is answered from the cache."""
    for _ in range(2):
        answer = get(api, scene, route)
        assert answer.status_code == change.before, (change.name, answer.text)


def authz_cache(server: Any) -> Any:
    # The Starlette app uvicorn serves (LiveServer keeps no other handle on it).
    return server._server.config.app.state.authz_cache


def denials(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m.removeprefix("denied: ") for m in caplog.messages if m.startswith("denied: ")]


# ---- the same process -------------------------------------------------------------------


def honoured_in_the_same_process(
    server: Any, change: Change, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    scene = setup_scene(server.runtime, change, "same")
    caplog.set_level("INFO", logger="patgate.authz")
    warm(server.api, change, scene, route)
    assert authz_cache(server).size() > 0, "the warm-up should have filled the cache"
    if change.logged is not None:
        assert denials(caplog) == [change.logged[0]] * 2
    caplog.clear()

    change.apply(server.runtime, scene)
    assert_answer(get(server.api, scene, route), change, scene, server.url, route)
    if change.logged is not None:
        assert denials(caplog) == [change.logged[1]]


@pytest.mark.parametrize("change", CHANGES, ids=str)
def test_honoured_by_the_next_request_of_the_same_process(
    live_server: Any, change: Change, caplog: pytest.LogCaptureFixture
) -> None:
    honoured_in_the_same_process(live_server(), change, "repo", caplog)


# The token cache is shared by every API route; checked once more through another route (on
# one database: what differs between the two, the generation's source, is checked above).
@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("change", [c for c in CHANGES if not c.org_fact], ids=str)
def test_honoured_by_the_next_request_of_another_route(
    live_server: Any, change: Change, caplog: pytest.LogCaptureFixture
) -> None:
    honoured_in_the_same_process(live_server(), change, "issues", caplog)


# ---- SQLite: a CLI process commits ------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("change", [c for c in CHANGES if c.cli], ids=str)
def test_a_cli_change_is_honoured_by_the_next_request_on_sqlite(
    live_server: Any, database_url: str, change: Change, caplog: pytest.LogCaptureFixture
) -> None:
    server = live_server()
    scene = setup_scene(server.runtime, change, "cli")
    caplog.set_level("INFO", logger="patgate.authz")
    warm(server.api, change, scene)
    assert authz_cache(server).size() > 0
    caplog.clear()
    assert change.cli is not None

    run_cli(patgate_env(database_url, base_url=server.url), *change.cli(scene))
    assert_answer(get(server.api, scene), change, scene, server.url)
    if change.logged is not None:
        assert denials(caplog) == [change.logged[1]]


# ---- PostgreSQL: another process ------------------------------------------------------


@dataclass
class Pair:
    """Two ``patgate serve --no-worker`` processes (A and B) on one PostgreSQL database, and
    a runtime of the test's own on it (a third process, for the services)."""

    a: ServerProcess
    b: ServerProcess
    runtime: Runtime
    env: dict[str, str]
    latencies: dict[str, tuple[float, float]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def pair(
    postgres_server: Any, _database_templates: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    folder = tmp_path_factory.mktemp("pair")
    url = _database_templates.fresh("postgres", folder)
    runtime = Runtime(
        load_settings(
            _env_file=None, database_url=url, secret_key=TEST_SECRET_KEY,
            mailbox_dir=folder / "mail",
        )
    )  # fmt: skip
    env = patgate_env(url, mailbox_dir=folder / "mail")
    servers: list[ServerProcess] = []
    try:
        servers = start_servers(env, folder, ["serve-a", "serve-b"])
        # Both caches are live: each instance has its LISTEN connection (without one, an
        # instance caches nothing, and these tests would prove nothing).
        assert wait_until(lambda: listening(runtime.engine, "patgate_authz") >= 2, timeout=10)
        found = Pair(servers[0], servers[1], runtime, env)
        yield found
        for name, (after, before) in sorted(found.latencies.items()):
            print(
                f"B honoured the {name} {after * 1000:.0f} ms after the commit "
                f"({before * 1000:.0f} ms after the change was begun)"
            )
        for server in servers:
            assert server.alive(), f"{server.name} died:\n{server.log()}"
    finally:
        for server in servers:
            server.stop()
        runtime.close()
        _database_templates.release(url)


class Poller:
    """Polls B every 50 ms until ``done(answer)``; notes when it first was."""

    def __init__(self, api: str, scene: Scene, done: Callable[[httpx.Response], bool]) -> None:
        self.api, self.scene, self.done = api, scene, done
        self.seen_at: float | None = None
        self.statuses: list[int] = []

    def run(self, give_up: Callable[[], bool]) -> None:
        headers = {"Authorization": f"Bearer {self.scene.secret}"}
        with httpx.Client(timeout=REQUEST_TIMEOUT, headers=headers) as client:
            next_poll = time.monotonic()
            while not give_up():
                answer = client.get(f"{self.api}{self.scene.path()}")
                self.statuses.append(answer.status_code)
                if self.done(answer):
                    self.seen_at = time.monotonic()
                    return
                next_poll += POLL_INTERVAL
                time.sleep(max(0.0, next_poll - time.monotonic()))


def make_change(pair: Pair, change: Change, scene: Scene, how: str) -> tuple[float, float]:
    """Make ``change`` the way ``how`` says; return a moment before its commit and one after
    (``api``: A was asked / answered; ``services``: the unit of work began / returned;
    ``cli``: the process started / exited; ``clock``: the wait for the expiry began / the
    expiry passed)."""
    before = time.monotonic()
    if how == "api":
        assert change.api is not None and scene.installation_secret is not None
        path, body = change.api(scene)
        answer = httpx.post(
            f"{pair.a.api}{path}", json=body, timeout=REQUEST_TIMEOUT,
            headers={"Authorization": f"token {scene.installation_secret}"},
        )  # fmt: skip
        assert answer.status_code == 204, answer.text
    elif how == "cli":
        assert change.cli is not None
        run_cli(pair.env, *change.cli(scene))
    else:
        change.apply(pair.runtime, scene)
    return before, time.monotonic()


# How each change is made: through instance A's REST API, by a CLI process, or by the
# services in the test's own process (a third process); B never makes it.
CROSS_PROCESS = [
    ("revocation", "api"),
    ("denial", "api"),
    ("approval", "api"),
    ("policy", "cli"),
    ("lifetime-policy", "services"),
    ("membership-removal", "services"),
    ("suspension", "cli"),
    ("token-deletion", "services"),
    ("expiry", "clock"),
]


@pytest.mark.postgres
@pytest.mark.parametrize(("name", "how"), CROSS_PROCESS, ids=[n for n, _ in CROSS_PROCESS])
def test_honoured_within_a_second_by_another_process_on_postgres(
    pair: Pair, name: str, how: str
) -> None:
    change = BY_NAME[name]
    scene = setup_scene(pair.runtime, change, name, app=how == "api")
    for server in (pair.a, pair.b):
        warm(server.api, change, scene)

    b_log = pair.b.log_path.stat().st_size
    if change.logged is not None:
        # A denial changes no status: B's log of its decision is what shows it was honoured.
        def done(_: httpx.Response) -> bool:
            with open(pair.b.log_path, "rb") as log:
                log.seek(b_log)
                return f"denied: {change.logged[1]}".encode() in log.read()
    else:

        def done(answer: httpx.Response) -> bool:
            return answer.status_code == change.after

    # B is polled from before the change is made until it honours it — at most POLL_LIMIT
    # after the change was made (and never beyond a minute in all).
    poller = Poller(pair.b.api, scene, done)
    made: list[tuple[float, float]] = []
    maker = threading.Thread(target=lambda: made.append(make_change(pair, change, scene, how)))
    hard_stop = time.monotonic() + 60
    maker.start()
    poller.run(
        lambda: (
            time.monotonic() > hard_stop
            or (
                not maker.is_alive()
                and time.monotonic() > (made or [(0.0, 0.0)])[0][1] + POLL_LIMIT
            )
        )
    )
    maker.join(60)
    assert made, "the change was not made"
    assert poller.seen_at is not None, f"B never honoured the {name}: {poller.statuses[-5:]}"
    assert set(poller.statuses) <= {change.before, change.after}, poller.statuses

    # The commit lies between the two moments; the one after it is at most a few ms late for
    # a change through A or the services (A answers as soon as it has committed), more for a
    # CLI process (its exit). B's delay is counted from there; the delay counted from the
    # moment before (which adds the time A, the services or the CLI took) is reported too.
    before, after = made[0]
    elapsed = max(0.0, poller.seen_at - after)
    pair.latencies[f"{name} (through {how})"] = (elapsed, max(0.0, poller.seen_at - before))
    assert elapsed < PROPAGATION_BOUND, f"B honoured the {name} {elapsed:.3f} s after its commit"

    for server in (pair.b, pair.a):
        assert_answer(get(server.api, scene), change, scene, server.url)
