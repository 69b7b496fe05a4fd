"""Facts about the machine the tests run on, and what to do when a dependency is missing.

Outside CI a missing PostgreSQL or Chromium skips the tests that need it, with a visible reason;
under CI (``CI`` set to anything non-empty) the same absence is a failure, so that a broken CI
machine can never pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = [
    "CHROMIUM",
    "IN_CI",
    "TEST_BASE_URL",
    "TEST_SECRET_KEY",
    "require_chromium",
    "unavailable",
]

IN_CI = bool(os.environ.get("CI"))

CHROMIUM = Path("/usr/bin/chromium")

# What ``make_runtime`` puts in the settings unless a test overrides it. The base URL is the one
# Starlette's TestClient and httpx's ASGITransport examples use, so links built by the app match.
TEST_SECRET_KEY = "test-secret-key-0123456789abcdef"
TEST_BASE_URL = "http://testserver"


def unavailable(reason: str) -> NoReturn:
    """Fail under CI, skip elsewhere; either way with ``reason`` shown in the summary."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: required here)", pytrace=False)
    pytest.skip(reason)


def require_chromium() -> str:
    """The path of Debian's Chromium, or fail (CI) / skip (elsewhere) saying how to install it."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return str(CHROMIUM)
    unavailable(f"Chromium is not installed at {CHROMIUM} (`apt-get install chromium`)")
