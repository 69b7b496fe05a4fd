"""``X-GitHub-Api-Version`` negotiation, as pure ASGI middleware (no per-request objects)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SUPPORTED_VERSIONS = ("2022-11-28", "2026-03-10")
DEFAULT_VERSION = "2022-11-28"
API_PREFIX = "/api/v3"


class ApiVersionMiddleware:
    """Refuses unknown versions with 400 and names the one selected on every API answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        asked = None
        for name, value in scope["headers"]:
            if name == b"x-github-api-version":
                asked = value.decode("latin-1").strip()
                break
        version = asked or DEFAULT_VERSION
        if version not in SUPPORTED_VERSIONS:
            await _bad_version(send, version)
            return
        extra = [
            (b"x-github-api-version-selected", version.encode()),
            (b"x-github-media-type", b"github.v3; format=json"),
        ]

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
