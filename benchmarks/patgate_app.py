"""patgate as an ASGI application for ``uvicorn benchmarks.patgate_app:app``.

Configured from ``PATGATE_*`` like ``patgate serve``, without the in-process outbox worker
(the benchmark measures the API alone; goal 4 runs the worker by itself).
"""

from __future__ import annotations

from patgate.config import load_settings
from patgate.runtime import Runtime
from patgate.web.app import create_app

app = create_app(Runtime(load_settings()), worker=False)
