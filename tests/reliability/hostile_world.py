"""The world the hostile-input tests attack: a live server with an organization in every
state the API can show (pending requests, an active and a revoked grant, an issue), a GitHub
App installed with both PAT permissions, and every kind of caller (installation token, the
app's JWT, a fine-grained PAT, nobody). A module of its own, not a conftest: other test
modules share this folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.approvals.models import Grant, TokenRequest
from patgate.apps import services as apps
from patgate.context import CLI_ACTOR
from patgate.orgs import services as orgs
from patgate.repos import services as repos
from patgate.repos.models import Issue
from support.server import LiveServer
from support.world import World

GOVERNANCE = {
    "organization_personal_access_token_requests": "write",
    "organization_personal_access_tokens": "write",
}


@dataclass
class Target:
    """A live patgate with a populated organization and credentials for every kind of caller."""

    server: LiveServer
    world: World
    org_id: int
    request_ids: list[int]
    grant_ids: list[int]
    app_id: int
    client_id: str
    installation_id: int
    private_key: str
    installation_token: str
    fine_grained_pat: str
    issue_number: int
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return self.server.api

    def jwt(self, **claims: Any) -> str:
        """The app's JWT as githubkit makes it (``iat`` now-60, ``exp`` now+540); ``claims``
        replace or add claims (a numeric ``iss`` included, which ``jwt.encode`` refuses)."""
        now = int(time.time())
        payload: dict[str, Any] = {"iss": str(self.app_id), "iat": now - 60, "exp": now + 540}
        payload.update(claims)
        return sign(payload, self.signing_key)

    @cached_property
    def signing_key(self) -> Any:
        """The private key, loaded once (loading a PEM checks the key: ~50 ms each time)."""
        return serialization.load_pem_private_key(self.private_key.encode(), password=None)

    def state(self) -> dict[str, Any]:
        """Everything a refused call must leave as it was: request and grant states, issues."""
        with self.server.runtime.unit_of_work() as ctx:
            return {
                "requests": ctx.session.execute(
                    select(
                        TokenRequest.id, TokenRequest.state, TokenRequest.decision_reason
                    ).order_by(TokenRequest.id)
                ).all(),
                "grants": ctx.session.execute(
                    select(Grant.id, Grant.state).order_by(Grant.id)
                ).all(),
                "issues": ctx.session.execute(
                    select(Issue.id, Issue.title, Issue.body).order_by(Issue.id)
                ).all(),
            }


def sign(payload: dict[str, Any], key: Any, algorithm: str = "RS256") -> str:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return jwt.api_jws.encode(body, key, algorithm=algorithm, headers={"typ": "JWT"})


def assert_github_error(response: Any, status: int | None = None) -> dict[str, Any]:
    """The answer (httpx's or schemathesis') is an error in GitHub's body: JSON with
    ``message``, ``documentation_url`` and ``status`` (the status code as a string); returns
    the body."""
    shown = (response.status_code, response.content[:500])
    if status is not None:
        assert response.status_code == status, shown
    assert response.status_code >= 400, shown
    content_type = response.headers.get("content-type") or ""
    if isinstance(content_type, list):  # schemathesis keeps every value of a header
        content_type = content_type[0]
    assert content_type.startswith("application/json"), shown
    body = json.loads(response.content)
    assert isinstance(body, dict), body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("documentation_url"), str), body
    assert body.get("status") == str(response.status_code), body
    return body


def build_target(server: LiveServer) -> Target:
    world = World(server.runtime).build()
    pending_subset = world.token("mona", name="pending-subset", repositories=["private-api"])
    pending_all = world.token("mona", name="pending-all", permissions={"contents": "read"})
    granted = world.token("mona", name="granted", permissions={"issues": "write"})
    revoked = world.token("mona", name="revoked", repositories=["private-ops"])
    owner = world.actor("olivia")
    world.run(approvals.approve, [granted.request.id, revoked.request.id], actor=owner)
    with server.runtime.unit_of_work() as ctx:
        org = orgs.get_org(ctx, "acme")
        grant_ids = [
            approvals.active_grant_of(ctx, issued.token, org).id for issued in (granted, revoked)
        ]
        approvals.revoke(ctx, org, [grant_ids[1]], actor=owner)
        done = apps.register_and_install(
            ctx, name="Fuzzer", org=org, permissions=GOVERNANCE, actor=CLI_ACTOR
        )
        _, installation_token = apps.create_installation_token(ctx, done.installation)
        issue = repos.create_issue(
            ctx,
            repos.get_repo(ctx, "acme", "private-api"),
            title="a first issue",
            body=None,
            author=accounts.get_user(ctx, "mona"),
        )
        target = Target(
            server=server,
            world=world,
            org_id=org.id,
            request_ids=[pending_subset.request.id, pending_all.request.id],
            grant_ids=grant_ids,
            app_id=done.app.id,
            client_id=done.app.client_id,
            installation_id=done.installation.id,
            private_key=done.private_key_pem,
            installation_token=installation_token,
            fine_grained_pat=granted.secret,
            issue_number=issue.number,
        )
    target.headers = {
        "installation": {"Authorization": f"token {target.installation_token}"},
        "app": {"Authorization": f"Bearer {target.jwt()}"},
        "fine_grained": {"Authorization": f"Bearer {target.fine_grained_pat}"},
        "anonymous": {},
    }
    return target
