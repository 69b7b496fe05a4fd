"""The ASGI application: the REST API under ``/api/v3`` and the web UI, over one runtime."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from patgate.authz.cache import AuthzCache, generation_source
from patgate.errors import PatgateError
from patgate.runtime import Runtime
from patgate.tokens.jobs import LastUsedBuffer
from patgate.web.api import apps as apps_api
from patgate.web.api import audit as audit_api
from patgate.web.api import governance, openapi, resources
from patgate.web.errors import (
    DATABASE_UNAVAILABLE,
    Denied,
    HTTPProblem,
    handle_database_unavailable,
    handle_denied,
    handle_domain_error,
    handle_http_exception,
    handle_problem,
)
from patgate.web.ui import create_ui
from patgate.web.versions import ApiVersionMiddleware

log = logging.getLogger(__name__)

LAST_USED_FLUSH_SECONDS = 5.0


def api_routes() -> list[Any]:
    return [
        *resources.routes,
        *audit_api.routes,
        *governance.routes,
        *apps_api.routes,
        *openapi.routes,
    ]


class PatgateApp(Starlette):
    """Starlette, with a plain ``GET /api/v3/repos/{owner}/{repo}`` answered in front of the
    middleware stack when the authorization cache can (:class:`resources.RepoFastPath`):
    the call GitHub clients make most, answered without the per-request cost of the stack.
    Every other request, and that one on a miss or a refusal, goes through the stack."""

    fast_path: resources.RepoFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.fast_path is not None:
            answer = self.fast_path.answer(scope)
            if answer is not None:
                await send(answer[0])
                await send(answer[1])
                return
        await super().__call__(scope, receive, send)


def create_app(runtime: Runtime, *, worker: bool = True) -> Starlette:
    """Build the application. With ``worker`` the outbox worker runs in-process."""
    last_used = LastUsedBuffer()
    authz_cache = AuthzCache(generation_source(runtime.engine))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        authz_cache.source.start()
        flusher = threading.Thread(
            target=_flush_last_used, args=(last_used, runtime, stop), daemon=True
        )
        flusher.start()
        background = None
        if worker:
            from patgate.worker import start_in_thread

            background = start_in_thread(runtime)
            app.state.worker = background[0]
        try:
            yield
        finally:
            stop.set()
            if background is not None:
                background[1].set()
                background[0].wake()
                background[2].join(timeout=10)
            flusher.join(timeout=10)
            last_used.flush(runtime.engine)
            authz_cache.source.stop()

    app = PatgateApp(
        # The UI is an app of its own (session, CSRF, security headers), after the API.
        routes=[Mount("/api/v3", routes=api_routes()), Mount("/", app=create_ui(runtime))],
        exception_handlers={
            PatgateError: handle_domain_error,
            Denied: handle_denied,
            HTTPProblem: handle_problem,
            HTTPException: handle_http_exception,
            **dict.fromkeys(DATABASE_UNAVAILABLE, handle_database_unavailable),
        },
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.last_used = last_used
    app.state.authz_cache = authz_cache
    app.add_middleware(ApiVersionMiddleware)
    app.fast_path = resources.RepoFastPath(authz_cache, last_used, runtime.clock)
    return app


def _flush_last_used(buffer: LastUsedBuffer, runtime: Runtime, stop: threading.Event) -> None:
    while not stop.wait(LAST_USED_FLUSH_SECONDS):
        buffer.flush(runtime.engine)
