"""A real patgate served by uvicorn on 127.0.0.1, in a thread of the test process.

The listening socket is bound (to a free port chosen by the kernel) before the server starts and
handed to uvicorn, so no other process can take the port in between, and the base URL the app
builds its links from can name the port before the app exists.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn

from patgate.runtime import Runtime

__all__ = ["HOST", "LiveServer", "bind_free_port"]

HOST = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def bind_free_port(host: str = HOST) -> socket.socket:
    """A TCP socket bound to a free port on ``host`` (not yet listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


@dataclass(eq=False)
class LiveServer:
    """A running server: ``url`` is ``http://127.0.0.1:<port>``, ``api`` is ``url + "/api/v3"``."""

    url: str
    api: str
    port: int
    runtime: Runtime
    _server: uvicorn.Server = field(repr=False)
    _socket: socket.socket = field(repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _error: BaseException | None = field(default=None, repr=False)

    @classmethod
    def start(cls, runtime: Runtime, sock: socket.socket) -> LiveServer:
        """Serve ``create_app(runtime, worker=False)`` on ``sock``; return once it accepts.

        The server owns ``sock`` from here on, and closes it even when it fails to start.
        """
        host, port = sock.getsockname()[:2]
        url = f"http://{host}:{port}"
        try:
            # Imported late: the web layer is not needed (nor maybe importable) by most tests.
            from patgate.web.app import create_app

            config = uvicorn.Config(
                create_app(runtime, worker=False),
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                ws="none",
                timeout_graceful_shutdown=2,
            )
        except BaseException:
            sock.close()
            raise
        live = cls(
            url=url,
            api=f"{url}/api/v3",
            port=port,
            runtime=runtime,
            _server=uvicorn.Server(config),
            _socket=sock,
        )
        live._thread = threading.Thread(target=live._serve, name=f"live-server-{port}", daemon=True)
        live._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not live._server.started:
            if not live._thread.is_alive() or time.monotonic() > deadline:
                live._shutdown()
                error, live._error = live._error, None
                raise RuntimeError(
                    f"the live server on {url} did not start"
                    + (f": {error!r}" if error else " (see uvicorn's log above)")
                ) from error
            time.sleep(0.01)
        return live

    def stop(self) -> None:
        """Ask uvicorn to shut down and wait for it; raise if it crashed while serving."""
        self._shutdown()
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"the live server on {self.url} crashed: {error!r}") from error

    def _shutdown(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._server.should_exit = True
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                self._server.force_exit = True
                thread.join(STOP_TIMEOUT)
        self._socket.close()
        if thread is not None and thread.is_alive():
            raise RuntimeError(f"the live server on {self.url} did not stop")

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # reported by start() or stop() in the test's thread
            self._error = exc
