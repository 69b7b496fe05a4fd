"""GitHub's pagination: ``per_page`` (default 30, capped at 100) and ``page``, with ``Link``."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from starlette.requests import Request

from patgate.errors import InvalidInput

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
MAX_PAGE = 100_000


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    size: int


def page_of(request: Request) -> Page:
    """Read ``page`` and ``per_page``; above 100 is capped silently, garbage is a 422."""
    return Page(
        number=min(_positive(request, "page", 1), MAX_PAGE),
        size=min(_positive(request, "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE),
    )


def _positive(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a positive integer", field=name) from None
    if value < 1:
        raise InvalidInput(f"{name} must be a positive integer", field=name)
    return value


def link_header(request: Request, page: Page, total: int) -> str | None:
    """Absolute ``Link`` URLs on the scheme, host and port the client used."""
    last = max(1, ceil(total / page.size))
    links = []

    def url(number: int) -> str:
        return str(request.url.include_query_params(page=number, per_page=page.size))

    if page.number < last:
        links.append(f'<{url(page.number + 1)}>; rel="next"')
        links.append(f'<{url(last)}>; rel="last"')
    if page.number > 1:
        links.append(f'<{url(1)}>; rel="first"')
        links.append(f'<{url(min(page.number - 1, last))}>; rel="prev"')
    return ", ".join(links) or None
