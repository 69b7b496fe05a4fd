"""Where domain errors and authorization answers become GitHub's HTTP answers (one place)."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from patgate.authz.decision import Decision, Reason
from patgate.errors import (
    AlreadyExists,
    Forbidden,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PatgateError,
    PolicyRefused,
)

log = logging.getLogger("patgate.authz")
web_log = logging.getLogger("patgate.web")

DOCS = "https://docs.github.com/rest"
PAT_FORBIDDEN = "Resource not accessible by personal access token"
APP_FORBIDDEN = "Resource not accessible by integration"


class Denied(Exception):
    """Raised by a route when ``decide()`` said no; carries the decision to answer with."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason.value)
        self.decision = decision


class HTTPProblem(Exception):
    """A request that is wrong at the HTTP level (bad JSON, unknown API version, too big)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def github_error(
    status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"message": message, "documentation_url": DOCS, "status": str(status), **extra}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_failed(
    errors: list[dict[str, Any]], message: str = "Validation Failed"
) -> JSONResponse:
    return github_error(422, message, errors=errors)


def decision_response(decision: Decision, *, base_url: str) -> JSONResponse:
    """GitHub's answer for a denial (SPEC §5); the reason is logged, never the secret."""
    reason = decision.reason
    log.info("denied: %s %s", reason.value, decision.detail.value or "")
    if reason is Reason.BAD_CREDENTIALS:
        return github_error(401, "Bad credentials")
    if reason is Reason.NOT_VISIBLE:
        return github_error(404, "Not Found")
    if reason in (Reason.PERMISSION_MISSING, Reason.NOT_AN_APP, Reason.NOT_AN_OWNER):
        headers = {}
        if decision.accepted_permissions:
            headers["X-Accepted-GitHub-Permissions"] = decision.accepted_permissions
        return github_error(403, PAT_FORBIDDEN, headers=headers)
    if reason is Reason.INTEGRATION_PERMISSION_MISSING:
        headers = {}
        if decision.accepted_permissions:
            headers["X-Accepted-GitHub-Permissions"] = decision.accepted_permissions
        return github_error(403, APP_FORBIDDEN, headers=headers)
    if reason is Reason.SCOPE_MISSING:
        return github_error(
            403, PAT_FORBIDDEN, headers={"X-Accepted-OAuth-Scopes": decision.accepted_scopes or ""}
        )
    if reason is Reason.CLASSIC_RESTRICTED:
        return github_error(
            403,
            f"`{decision.org_login}` forbids access via a personal access token (classic). "
            "Please use a GitHub App, OAuth App, or a personal access token with fine-grained "
            "permissions.",
        )
    if reason is Reason.FINE_GRAINED_RESTRICTED:
        return github_error(
            403, f"`{decision.org_login}` forbids access via a fine-grained personal access token."
        )
    if reason is Reason.LIFETIME_EXCEEDED:
        if decision.token_id is None:
            return github_error(
                403,
                f"The '{decision.org_login}' organization forbids access via a personal access "
                f"token (classic) if the token's lifetime is greater than "
                f"{decision.max_lifetime_days} days.",
            )
        return github_error(
            403,
            f"The '{decision.org_login}' organization forbids access via a fine-grained personal "
            f"access tokens if the token's lifetime is greater than {decision.max_lifetime_days} "
            f"days. Please adjust your token's lifetime at the following URL: "
            f"{base_url}/settings/personal-access-tokens/{decision.token_id}",
        )
    return github_error(403, "Forbidden")


def domain_error_response(exc: PatgateError) -> JSONResponse:
    if isinstance(exc, NotFound):
        return github_error(404, "Not Found")
    if isinstance(exc, InvalidTransition):
        field = "pat_ids" if exc.resource == "PatGrant" else "pat_request_ids"
        return validation_failed(
            [
                {
                    "resource": exc.resource,
                    "field": field,
                    "code": "invalid",
                    "message": exc.message,
                    "ids": exc.ids,
                }
            ]
        )
    if isinstance(exc, InvalidInput):
        code = "already_exists" if isinstance(exc, AlreadyExists) else exc.code
        return validation_failed(
            [
                {
                    "resource": exc.resource or "Resource",
                    "field": exc.field,
                    "code": code,
                    "message": exc.message,
                }
            ]
        )
    if isinstance(exc, Forbidden | PolicyRefused):
        return github_error(403, exc.message)
    return github_error(422, exc.message)


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PatgateError)
    return domain_error_response(exc)


async def handle_denied(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Denied)
    return decision_response(exc.decision, base_url=request.app.state.runtime.settings.base_url)


async def handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPProblem)
    return github_error(exc.status, exc.message)


# The database is down or restarting, a connection died under a request, the pool is
# exhausted, or SQLite stayed locked past its busy timeout: the request can succeed if
# retried, so it gets GitHub's 503 (JSON, ``Retry-After``) rather than an HTML 500.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)
RETRY_AFTER_SECONDS = 1


def log_database_unavailable(request: Request, exc: Exception) -> None:
    """One line, the driver's first: never the statement's parameters."""
    cause = getattr(exc, "orig", None) or exc
    first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    web_log.warning(
        "database unavailable (%s %s): %s", request.method, request.url.path, first_line
    )


async def handle_database_unavailable(request: Request, exc: Exception) -> Response:
    log_database_unavailable(request, exc)
    return github_error(
        503, "Service Unavailable", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own answers under ``/api/v3`` (no such route: 404, no such method: 405)
    in GitHub's body; the UI, an app of its own, renders its errors itself."""
    assert isinstance(exc, HTTPException)
    return github_error(exc.status_code, exc.detail, headers=exc.headers)
