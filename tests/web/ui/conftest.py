"""Fixtures for the web UI: a real Chromium (one per module), pages that fail the test on any
console or page error, screenshots, and signed-in HTTP clients for crafted requests."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from patgate.accounts import services as accounts
from support.env import require_chromium
from support.server import LiveServer
from support.world import World

PASSWORD = "correct-horse-battery"
REPO_ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
CSRF = re.compile(r'name="authenticity_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, shared by the tests of a module (launching costs ~1 s)."""
    executable = require_chromium()
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@dataclass
class Console:
    """What the browser reported: console errors and uncaught page errors."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Expect errors matching ``pattern`` (e.g. the console line of a deliberate 403)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def console() -> Console:
    return Console()


def _new_page(browser: Browser, console: Console, *, javascript: bool) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 860}, java_script_enabled=javascript
    )
    page = context.new_page()
    page.set_default_timeout(10_000)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console.errors.append(f"console: {message.text} ({message.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: console.errors.append(f"page error: {error}"))
    try:
        yield page
    finally:
        context.close()
    unexpected = console.unexpected()
    if unexpected:
        pytest.fail("the browser reported errors:\n" + "\n".join(unexpected), pytrace=False)


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    """A fresh browser context and page; the test fails if any console or page error occurred."""
    yield from _new_page(browser, console, javascript=True)


@pytest.fixture
def page_without_js(browser: Browser, console: Console) -> Iterator[Page]:
    """The same with JavaScript disabled: every form must still work."""
    yield from _new_page(browser, console, javascript=False)


@pytest.fixture
def screenshot() -> Callable[[Page, str], None]:
    """``screenshot(page, name)``: the whole page to ``test-artifacts/screenshots/name.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    return take


@dataclass
class Site:
    server: LiveServer
    world: World

    @property
    def url(self) -> str:
        return self.server.url

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.world.run(fn, *args, **kwargs)


@pytest.fixture(scope="session")
def password_hash() -> str:
    """One argon2 hash of :data:`PASSWORD` for everyone: hashing costs ~0.15 s a person."""
    return PasswordHasher().hash(PASSWORD)


@pytest.fixture
def site(live_server: Callable[..., LiveServer], password_hash: str) -> Site:
    """patgate served for real, with the small world (olivia owns acme, mona is a member);
    everyone signs in with :data:`PASSWORD`."""
    server = live_server()
    world = World(server.runtime).build()
    with server.runtime.unit_of_work() as ctx:
        for login in ("olivia", "mona", "stranger"):
            accounts.get_user(ctx, login).password_hash = password_hash
    return Site(server, world)


def csrf_token(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


Clients = Callable[..., httpx.Client]


@pytest.fixture
def clients(site: Site) -> Iterator[Clients]:
    """``clients(login=None)``: an HTTP client of the site, signed in as ``login`` through the
    sign-in form (a session cookie, as a browser would have). All are closed at teardown."""
    made: list[httpx.Client] = []

    def make(login: str | None = None, password: str = PASSWORD) -> httpx.Client:
        client = httpx.Client(base_url=site.url, follow_redirects=False)
        made.append(client)
        if login is not None:
            form = client.get("/login")
            answer = client.post(
                "/login",
                data={"login": login, "password": password,
                      "authenticity_token": csrf_token(form.text)},
            )  # fmt: skip
            assert answer.status_code == 303, answer.text
        return client

    yield make
    for client in made:
        client.close()


def sign_in(page: Page, url: str, login: str, password: str = PASSWORD) -> None:
    """Sign in through the form, by its visible labels."""
    page.goto(f"{url}/login")
    page.get_by_label("Username").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))
