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
from patgate.errors import InvalidInput, NotFound
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
        refuse_nul(request)
        yield Call(ctx, principal, runtime)


def refuse_nul(request: Request) -> None:
    """PostgreSQL refuses a NUL character in any text a query is given (SQLite takes it), so
    it stops here on both: a path that holds one names nothing (404), a query is invalid (422)."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise NotFound(name, value)
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise InvalidInput(f"{name!r} must not contain NUL characters", field=name)


def parse_json_body(raw: bytes, *, required: bool = True) -> dict[str, Any]:
    """The request body's JSON object; a 400 for what is not JSON, 413 when too big.

    Routes read the bytes in the event loop and parse them after authenticating, so that a
    bad body from a caller who may not call the route is still a 401/403/404."""
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
    if b"\\u" in raw and not _encodable(data):
        # A lone surrogate ("\ud800") parses, but is no text: no database can store it.
        raise HTTPProblem(400, "Problems parsing JSON")
    for key, value in data.items():
        if _holds_nul(key) or _holds_nul(value):  # see refuse_nul()
            raise InvalidInput(f"{key} must not contain NUL characters", field=key)
    return data


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def _encodable(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
