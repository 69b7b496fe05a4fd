"""``X-GitHub-Api-Version`` negotiation, as pure ASGI middleware (no per-request objects).

:func:`requested_version` and :func:`version_headers` are shared with the fast path of
``GET /repos/{owner}/{repo}`` (``web/app.py``), which answers before this middleware runs and
must name the version exactly as it does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SUPPORTED_VERSIONS = ("2022-11-28", "2026-03-10")
DEFAULT_VERSION = "2022-11-28"
API_PREFIX = "/api/v3"
VERSION_HEADER = b"x-github-api-version"

# Built once: every API answer carries the same two headers for a given version.
_VERSION_HEADERS: dict[str, tuple[tuple[bytes, bytes], ...]] = {
    version: (
        (b"x-github-api-version-selected", version.encode()),
        (b"x-github-media-type", b"github.v3; format=json"),
    )
    for version in SUPPORTED_VERSIONS
}


def header_value(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The raw value of the first ``X-GitHub-Api-Version`` header, if any."""
    for name, value in headers:
        if name == VERSION_HEADER:
            return value
    return None


def requested_version(asked: bytes | None) -> str:
    """The version a raw header value asks for; the default when absent or empty.
    :func:`is_supported` says whether it may be served (otherwise: 400)."""
    if asked is None:
        return DEFAULT_VERSION
    return asked.decode("latin-1").strip() or DEFAULT_VERSION


def is_supported(version: str) -> bool:
    return version in _VERSION_HEADERS


def version_headers(version: str) -> tuple[tuple[bytes, bytes], ...]:
    """The headers naming ``version`` (a supported one) on an API answer."""
    return _VERSION_HEADERS[version]


class ApiVersionMiddleware:
    """Refuses unknown versions with 400 and names the one selected on every API answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        version = requested_version(header_value(scope["headers"]))
        if not is_supported(version):
            await _bad_version(send, version)
            return
        extra = _VERSION_HEADERS[version]

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_version)


async def _bad_version(send: Send, version: str) -> None:
    body = json.dumps(
        {
            "message": f"Unsupported 'X-GitHub-Api-Version' header value '{version}'. "
            f"Supported versions are: {', '.join(SUPPORTED_VERSIONS)}.",
            "documentation_url": "https://docs.github.com/rest/about-the-rest-api/api-versions",
            "status": "400",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
