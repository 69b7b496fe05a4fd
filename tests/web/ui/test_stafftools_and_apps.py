"""Enterprise owners' policies, site admins' mailbox and failed deliveries, and an
organization's GitHub Apps, in a real Chromium and over HTTP (SPEC §3, §6, §7, §9)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from playwright.sync_api import Page, expect

from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.context import CLI_ACTOR
from patgate.notifications import services as outbox
from patgate.notifications.models import DeliveryAttempt, MessageState
from patgate.orgs import services as orgs
from patgate.worker import Worker
from web.ui.conftest import Clients, Site, csrf_token, sign_in

browser = pytest.mark.browser

Shot = Callable[[Page, str], None]
ENTERPRISE = "/enterprises/initech-corp/settings/personal-access-tokens"


def initech(site: Site) -> orgs.EffectivePolicies:
    return site.run(lambda ctx, _: orgs.effective_policies(ctx, orgs.get_org(ctx, "initech")))


def make_enterprise(site: Site) -> None:
    """Initech: an enterprise owned by olivia, with one organization she owns (not opted in)."""
    with site.server.runtime.unit_of_work() as ctx:
        olivia = accounts.get_user(ctx, "olivia")
        enterprise = orgs.create_enterprise(ctx, "initech-corp", name="Initech", owner=olivia)
        orgs.create_org(ctx, "initech", owner=olivia, enterprise=enterprise, actor=CLI_ACTOR)


@browser
def test_an_enterprise_owner_forces_policies_that_the_org_page_shows_read_only(
    site: Site, page: Page, screenshot: Shot
) -> None:
    make_enterprise(site)
    sign_in(page, site.url, "olivia")
    page.get_by_label("View profile and more").click()
    page.get_by_role("menuitem", name="Settings").click()
    page.get_by_role("link", name="Enterprises").click()
    page.get_by_role("link", name="Personal access token policies of Initech").click()
    expect(page.get_by_role("heading", name="Personal access tokens")).to_be_visible()

    page.get_by_label("Opt in every organization of the enterprise").check()
    page.get_by_label("Restrict access via personal access tokens (classic)").check()
    lifetime = page.get_by_role(
        "group", name="Maximum lifetime of fine-grained personal access tokens"
    )
    lifetime.get_by_label("Force a maximum lifetime").check()
    lifetime.get_by_label("in days").fill("30")
    screenshot(page, "enterprise-pat-policies")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text(
        "Personal access token policies of Initech saved."
    )
    expect(page.get_by_label("Opt in every organization of the enterprise")).to_be_disabled()
    expect(lifetime.get_by_label("in days")).to_have_value("30")

    policies = initech(site)
    assert policies.opted_in
    assert (policies.classic, policies.fine_grained_max_lifetime_days) == ("restrict", 30)
    assert policies.forced == {"classic", "fine_grained_max_lifetime"}

    # The organization's own page shows what the enterprise forces, read-only.
    page.goto(f"{site.url}/organizations/initech/settings/personal-access-tokens")
    classic = page.get_by_role("group", name=re.compile(r"^Personal access tokens \(classic\)"))
    expect(classic).to_contain_text("Set by the enterprise")
    restrict = page.get_by_label("Restrict access via personal access tokens (classic)")
    expect(restrict).to_be_checked()
    expect(restrict).to_be_disabled()
    org_lifetime = page.get_by_label("Maximum lifetime of fine-grained personal access tokens")
    expect(org_lifetime).to_be_disabled()
    expect(org_lifetime).to_have_value("30")
    expect(page.get_by_label("Require administrator approval", exact=True)).to_be_enabled()
    screenshot(page, "org-pat-settings-forced-by-enterprise")

    # Released again: organizations choose.
    page.goto(f"{site.url}{ENTERPRISE}")
    page.get_by_role("group", name=re.compile(r"^Personal access tokens \(classic\)")).get_by_label(
        "Allow organizations to configure access requirements"
    ).check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    assert initech(site).forced == {"fine_grained_max_lifetime"}


def test_only_enterprise_owners_see_or_change_its_policies(site: Site, clients: Clients) -> None:
    make_enterprise(site)
    mona = clients("mona")
    token = csrf_token(mona.get("/settings/enterprises").text)

    page = mona.get(ENTERPRISE)
    crafted = mona.post(ENTERPRISE, data={"authenticity_token": token, "classic": "restrict"})
    unknown = mona.get("/enterprises/nobody/settings/personal-access-tokens")

    assert page.status_code == crafted.status_code == 403
    assert "Only owners of the Initech enterprise" in crafted.text
    assert unknown.status_code == 404
    assert initech(site).forced == frozenset()
    assert "You do not own any enterprise" in mona.get("/settings/enterprises").text
    # An owner's out-of-range lifetime is refused next to its field, changing nothing.
    olivia = clients("olivia")
    token = csrf_token(olivia.get(ENTERPRISE).text)
    refused = olivia.post(
        ENTERPRISE,
        data={"authenticity_token": token, "classic": "restrict",
              "fine_grained_max_lifetime": "days", "fine_grained_max_lifetime_days": "400"},
    )  # fmt: skip
    assert refused.status_code == 422
    assert re.search(r'id="fine_grained_max_lifetime-error">Enter a number of days', refused.text)
    assert initech(site).forced == frozenset()


# ---- site admins: the mailbox --------------------------------------------------------------


def make_site_admin(site: Site, password_hash: str) -> None:
    with site.server.runtime.unit_of_work() as ctx:
        admin = accounts.create_user(ctx, "sam", email="sam@example.com", site_admin=True)
        admin.password_hash = password_hash


def add_failed_message(site: Site) -> int:
    """A webhook given up after five permanent failures (as the worker leaves one)."""
    with site.server.runtime.unit_of_work() as ctx:
        message = outbox.enqueue(
            ctx, outbox.WEBHOOK,
            {"app_id": 99, "event": "personal_access_token_request", "action": "created"},
        )  # fmt: skip
        assert message is not None
        message.state = MessageState.FAILED
        message.attempts = 5
        message.last_error = "HTTP 410 Gone"
        for n in range(5):
            ctx.session.add(
                DeliveryAttempt(
                    message_id=message.id, attempted_at=ctx.now + timedelta(seconds=n),
                    succeeded=False, permanent=True, status_code=410, error="HTTP 410 Gone",
                    duration_ms=12,
                )
            )  # fmt: skip
        return message.id


@browser
def test_a_site_admin_reads_a_decision_email_and_the_failed_deliveries(
    site: Site, page: Page, clients: Clients, password_hash: str, screenshot: Shot
) -> None:
    make_site_admin(site, password_hash)
    issued = site.world.token(name="ci-deploy")
    site.run(
        approvals.deny,
        [issued.request.id],
        actor=site.world.actor(),
        reason="Use the deploy app instead",
    )
    add_failed_message(site)
    worker = Worker(site.server.runtime)
    try:
        assert worker.run_once() == 1  # the email to mona (the failed webhook is not due)
    finally:
        worker.close()
    mailbox = Path(site.server.runtime.settings.mailbox_dir)
    (mailbox / ".incoming-half-written.tmp").write_text("not a message")  # ignored

    sign_in(page, site.url, "sam")
    page.goto(f"{site.url}/stafftools/mailbox")
    messages = page.get_by_role("table", name="Messages")
    expect(messages.get_by_role("row")).to_have_count(2)  # the header and one message
    row = messages.get_by_role("row").nth(1)
    expect(row).to_contain_text("mona@example.com")
    failed = page.get_by_role("list", name="Failed deliveries").get_by_role("listitem")
    expect(failed).to_contain_text("Webhook personal_access_token_request.created")
    expect(failed.get_by_role("row")).to_have_count(6)  # the header and five attempts
    expect(failed.get_by_role("row").nth(1)).to_contain_text("410")
    screenshot(page, "stafftools-mailbox")

    subject = "Your personal access token “ci-deploy” was denied by acme"
    row.get_by_role("link", name=subject).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(subject)
    expect(page.get_by_label("Headers")).to_contain_text("mona@example.com")
    expect(page.locator("pre.mail-text").first).to_contain_text("Use the deploy app instead")
    frame = page.frame_locator("iframe.mail-frame")
    expect(frame.get_by_text("Use the deploy app instead")).to_be_visible()
    expect(frame.get_by_role("link", name="edit the token")).to_have_attribute(
        "href", re.compile(rf"/settings/personal-access-tokens/{issued.token.id}$")
    )
    screenshot(page, "stafftools-mailbox-message")

    # Nobody else gets to know these pages exist.
    name = page.url.rsplit("/", 1)[-1]
    mona = clients("mona")
    for path in ("/stafftools/mailbox", f"/stafftools/mailbox/{name}",
                 f"/stafftools/mailbox/{name}/html"):  # fmt: skip
        assert mona.get(path).status_code == 404, path
    assert clients().get("/stafftools/mailbox").status_code == 303  # to sign in
    admin = clients("sam")
    part = admin.get(f"/stafftools/mailbox/{name}/html")
    assert part.status_code == 200
    assert "Use the deploy app instead" in part.text
    assert "script-src" not in part.headers["content-security-policy"]  # default-src 'none'
    assert part.headers["content-security-policy"].startswith("default-src 'none'")
    for bad in ("..%2Fsecret_key", ".incoming-half-written.tmp", "missing.eml"):
        assert admin.get(f"/stafftools/mailbox/{bad}").status_code == 404, bad


# ---- an organization's GitHub Apps ---------------------------------------------------------


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 202 and keeps what it was sent."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, str], bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((dict(self.headers.items()), body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def app_jwt(app_id: str, private_key: str) -> str:
    now = int(time.time())
    return jwt.encode({"iat": now - 30, "exp": now + 300, "iss": app_id}, private_key, "RS256")


@browser
def test_an_owner_registers_an_app_gets_its_key_once_and_sees_its_deliveries(
    site: Site, page: Page, receiver: Receiver, tmp_path: Path, screenshot: Shot
) -> None:
    sign_in(page, site.url, "olivia")
    page.goto(f"{site.url}/organizations/acme/settings/profile")
    sidebar = page.get_by_role("navigation", name="Organization settings")
    sidebar.get_by_role("group", name="Developer settings").get_by_role(
        "link", name="GitHub Apps"
    ).click()
    expect(page.get_by_role("heading", name="No GitHub Apps")).to_be_visible()
    page.get_by_role("link", name="New GitHub App").first.click()

    page.get_by_label("GitHub App name").fill("Review Bot")
    page.get_by_label("Description").fill("Reviews token requests")
    page.get_by_label("Webhook URL").fill(receiver.url)
    page.get_by_label("Webhook secret").fill("s3cret-hook")
    page.get_by_text("Organization permissions", exact=True).click()
    page.get_by_label("Organization personal access token requests", exact=True).select_option(
        label="Read and write"
    )
    page.get_by_label("Personal access token request", exact=True).check()
    expect(page.get_by_label("Install on acme")).to_be_checked()
    screenshot(page, "app-new")
    page.get_by_role("button", name="Create GitHub App").click()

    expect(page.get_by_role("status")).to_have_text(
        "Registered Review Bot and installed it on acme."
    )
    expect(
        page.get_by_text("Download your app's private key now. You won't be able to see it again!")
    ).to_be_visible()
    shown = page.get_by_label("Private key of Review Bot").input_value()
    assert shown.startswith("-----BEGIN RSA PRIVATE KEY-----")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download private key").click()
    download = download_info.value
    assert download.suggested_filename == "review-bot.private-key.pem"
    saved = tmp_path / "key.pem"
    download.save_as(saved)
    assert saved.read_text() == shown
    app_id = page.locator("dt:text-is('App ID') + dd").inner_text()
    screenshot(page, "app-registered")

    # The key is the app's: GitHub's JWT authenticates it, and it is installed on acme.
    bearer = {"Authorization": f"Bearer {app_jwt(app_id, shown)}"}
    assert httpx.get(f"{site.server.api}/app", headers=bearer).json()["slug"] == "review-bot"
    installation = httpx.get(f"{site.server.api}/orgs/acme/installation", headers=bearer)
    assert installation.status_code == 200
    page.reload()
    expect(page.get_by_label("Private key of Review Bot")).to_have_count(0)
    assert "PRIVATE KEY" not in page.content()

    sidebar.get_by_role("group", name="Integrations").get_by_role(
        "link", name="GitHub Apps"
    ).click()
    installed = page.get_by_role("list", name="Installed GitHub Apps").get_by_role("listitem")
    expect(installed).to_contain_text("Review Bot")
    expect(installed).to_contain_text(
        "Organization personal access token requests (Read and write)"
    )
    expect(installed).to_contain_text("personal_access_token_request")
    expect(installed).to_contain_text(receiver.url)
    screenshot(page, "app-installations")

    # A member's request makes a webhook; the worker delivers it; the app shows the attempt.
    site.world.token(name="release-bot")
    worker = Worker(site.server.runtime)
    try:
        worker.run_once()  # (and today's digest to the owners, once its hour has passed)
    finally:
        worker.close()
    [(headers, body)] = receiver.received
    assert headers["X-GitHub-Event"] == "personal_access_token_request"
    assert json.loads(body)["action"] == "created"
    assert headers["X-Hub-Signature-256"].startswith("sha256=")

    installed.get_by_role("link", name="Review Bot").click()
    page.get_by_role("link", name="Recent deliveries").click()
    delivery = page.get_by_role("list", name="Deliveries").get_by_role("listitem")
    expect(delivery).to_have_count(1)
    expect(delivery).to_contain_text("Delivered")
    expect(delivery).to_contain_text(headers["X-GitHub-Delivery"])
    delivery.get_by_text("personal_access_token_request.created").click()
    attempt = delivery.get_by_role("row").nth(1)
    expect(attempt).to_contain_text("202")
    expect(attempt).to_contain_text(re.compile(r"\d+ ms"))
    expect(delivery.locator("pre.payload")).to_contain_text('"release-bot"')
    screenshot(page, "app-deliveries")


def test_app_pages_are_for_owners_and_a_bad_registration_is_refused_next_to_the_field(
    site: Site, clients: Clients
) -> None:
    base = "/organizations/acme/settings"
    mona = clients("mona")
    token = csrf_token(mona.get("/settings/organizations").text)
    for path in (base + "/installations", base + "/apps", base + "/apps/new"):
        assert mona.get(path).status_code == 403, path
    crafted = mona.post(base + "/apps", data={"authenticity_token": token, "name": "Sneaky"})
    assert crafted.status_code == 403

    olivia = clients("olivia")
    token = csrf_token(olivia.get(base + "/apps/new").text)
    bad_url = olivia.post(
        base + "/apps",
        data={"authenticity_token": token, "name": "Hooked", "webhook_url": "ftp://nope",
              "install": "1"},
    )  # fmt: skip
    assert bad_url.status_code == 422
    assert re.search(r'id="webhook_url-error">webhook URL .* must be an absolute', bad_url.text)
    unknown_event = olivia.post(
        base + "/apps",
        data={"authenticity_token": token, "name": "Odd", "events": "bogus",
              "webhook_url": "https://hooks.example/odd"},
    )  # fmt: skip
    assert unknown_event.status_code == 422
    assert 'id="events-error">Choose the events from the list.' in unknown_event.text
    unnamed = olivia.post(base + "/apps", data={"authenticity_token": token, "name": " "})
    assert unnamed.status_code == 422
    assert 'id="name-error">Enter a name for the app.' in unnamed.text
    assert "No GitHub Apps" in olivia.get(base + "/apps").text
    assert olivia.get(base + "/apps/unknown-app").status_code == 404

    # Registered without installing it; then installed by its page's button.
    registered = olivia.post(base + "/apps", data={"authenticity_token": token, "name": "Later"})
    assert (registered.status_code, registered.headers["location"]) == (303, base + "/apps/later")
    assert "Install on acme" in olivia.get(base + "/apps/later").text
    assert "No GitHub Apps are installed on acme" in olivia.get(base + "/installations").text
    installed = olivia.post(base + "/apps/later/installations", data={"authenticity_token": token})
    assert installed.status_code == 303
    assert "Later" in olivia.get(base + "/installations").text
    again = olivia.post(base + "/apps/later/installations", data={"authenticity_token": token})
    assert again.status_code == 303  # refused, said on the page it returns to
    assert "already installed on acme" in olivia.get(again.headers["location"]).text
