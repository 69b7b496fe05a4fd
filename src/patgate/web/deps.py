"""What every API route needs: a unit of work, the caller's principal, and ``require()``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from patgate.authz.decision import (
    Action,
    ClassicPrincipal,
    Decision,
    FineGrainedPrincipal,
    InstallationPrincipal,
    Principal,
    Reason,
    Resource,
    decide,
)
from patgate.context import Actor, Context
from patgate.errors import InvalidInput
from patgate.runtime import Runtime
from patgate.web.auth import authenticate
from patgate.web.errors import Denied, HTTPProblem

MAX_BODY_BYTES = 1_000_000
MAX_JSON_DEPTH = 32

BodyModel = TypeVar("BodyModel", bound=BaseModel)


@dataclass
class Call:
    ctx: Context
    principal: Principal
    runtime: Runtime

    def require(self, action: Action, resource: Resource) -> None:
        """Raise :class:`Denied` unless ``decide()`` allows ``action`` on ``resource``."""
        decision = decide(self.principal, action, resource, now=self.ctx.now)
        if not decision.allowed:
            raise Denied(decision)

    def allows(self, action: Action, resource: Resource) -> bool:
        return decide(self.principal, action, resource, now=self.ctx.now).allowed

    @property
    def actor(self) -> Actor:
        p = self.principal
        if isinstance(p, FineGrainedPrincipal | ClassicPrincipal):
            return Actor(p.user.id, p.user.login, "user")
        if isinstance(p, InstallationPrincipal):
            return Actor(None, self.runtime_app_bot(p), "app")
        return Actor(None, "anonymous", "cli")

    def runtime_app_bot(self, p: InstallationPrincipal) -> str:
        from patgate.apps.models import App

        app = self.ctx.session.get(App, p.app_id)
        return f"{app.slug}[bot]" if app else "app[bot]"

    @property
    def user_id(self) -> int | None:
        p = self.principal
        return p.user.id if isinstance(p, FineGrainedPrincipal | ClassicPrincipal) else None


@contextmanager
def api_call(request: Request, *, anonymous: bool = True) -> Iterator[Call]:
    """Authenticate and open the unit of work; commit when the route returns normally."""
    runtime: Runtime = request.app.state.runtime
    with runtime.unit_of_work() as ctx:
        principal = authenticate(request, ctx)
        if principal is None and not anonymous:
            raise Denied(Decision(False, Reason.BAD_CREDENTIALS))
        yield Call(ctx, principal, runtime)


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object; a 400 for what is not JSON, too big or too deep."""
    return parse_json_body(await request.body(), required=required)


def parse_json_body(raw: bytes, *, required: bool = True) -> dict[str, Any]:
    """:func:`json_body` on bytes already read: a sync route parses after authenticating,
    so that a bad body from a caller who may not call the route is still a 401/403/404."""
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPProblem(413, "Payload too large")
    if not raw.strip():
        if required:
            raise HTTPProblem(400, "Problems parsing JSON")
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise HTTPProblem(400, "Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise HTTPProblem(400, "Problems parsing JSON")
    if _depth(data) > MAX_JSON_DEPTH:
        raise HTTPProblem(400, "Problems parsing JSON: nested too deeply")
    return data


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def parse_body(model: type[BodyModel], data: dict[str, Any], *, resource: str) -> BodyModel:
    """Validate a JSON object with a pydantic model; GitHub's 422 (``missing_field`` for an
    absent required field, ``invalid`` otherwise) naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = [str(part) for part in error["loc"]]
        field = loc[0] if loc else "body"
        code = "missing_field" if error["type"] == "missing" else "invalid"
        where = ".".join(loc) or "body"
        raise InvalidInput(
            f"{where}: {error['msg']}", field=field, resource=resource, code=code
        ) from None
