"""The reference of goal 1: a bare Starlette route that serializes, on every request, the
JSON body patgate answers for ``GET /api/v3/repos/bench/private-api``.

``BENCH_BODY_FILE`` names the JSON file holding that body (fetched from patgate at the
start of each run). Served by the same uvicorn command line as patgate.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BODY = json.loads(Path(os.environ["BENCH_BODY_FILE"]).read_text())


async def get_repo(request: Request) -> JSONResponse:
    return JSONResponse(BODY)


app = Starlette(routes=[Route("/api/v3/repos/{owner}/{repo}", get_repo)])
