"""The web UI's guards: owners only, CSRF on every form, the sign-in rate limit, suspended
users, the session cookie's flags and the security headers (SPEC §9). Over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.audit.models import AuditEntry
from patgate.context import CLI_ACTOR
from patgate.orgs import services as orgs
from patgate.runtime import Runtime
from patgate.tokens import services as tokens
from support.server import LiveServer
from web.ui.conftest import PASSWORD, Clients, Console, Site, csrf_token, sign_in

ORG = "/organizations/acme/settings"
PAGES = [
    ORG,
    ORG + "/profile",
    ORG + "/personal-access-tokens",
    ORG + "/personal-access-tokens-active",
    ORG + "/personal-access-token-requests",
    ORG + "/personal-access-token-requests?owner=mona",
    ORG + "/personal-access-token-requests/{request_id}",
    ORG + "/personal-access-token-requests/{request_id}/deny",
    ORG + "/audit-log",
]


def posts(request_id: int, grant_id: int) -> list[tuple[str, dict[str, Any]]]:
    """Every form of the org settings pages, each with what would change something."""
    requests = ORG + "/personal-access-token-requests"
    return [
        (ORG + "/personal-access-tokens", {"classic": "restrict", "approval": "not_required"}),
        (ORG + "/personal-access-tokens/opt-in", {"fine_grained": "restrict",
                                                   "approval": "not_required",
                                                   "classic": "restrict"}),
        (requests + "/confirm", {"decision": "approve", "request_ids": [request_id]}),
        (requests + "/approve", {"request_ids": [request_id]}),
        (requests + "/deny", {"request_ids": [request_id], "reason": "no"}),
        (requests + f"/{request_id}/approve", {}),
        (requests + f"/{request_id}/deny", {"reason": "no"}),
        (ORG + "/personal-access-tokens-active/confirm", {"grant_ids": [grant_id]}),
        (ORG + "/personal-access-tokens-active/revoke", {"grant_ids": [grant_id]}),
    ]  # fmt: skip


def snapshot(site: Site) -> tuple[Any, ...]:
    """What a refused POST must leave as it was."""

    def read(ctx: Any, org: Any) -> tuple[Any, ...]:
        pending, _ = approvals.list_pending(ctx, org, approvals.ListFilters(), page=1, per_page=100)
        grants, _ = approvals.list_active_grants(
            ctx, org, approvals.ListFilters(), page=1, per_page=100
        )
        audit_rows = ctx.session.scalar(select(func.count()).select_from(AuditEntry))
        return (
            orgs.effective_policies(ctx, org),
            sorted(r.id for r, _ in pending),
            sorted(g.id for g, _ in grants),
            audit_rows,
        )

    return site.run(read)


def pending_and_grant(site: Site) -> tuple[int, int]:
    pending = site.world.token(name="waiting", repositories=["private-api"])
    granted = site.world.token(name="granted", repositories=["private-api"])
    site.run(approvals.approve, [granted.request.id], actor=site.world.actor())
    grant_id = site.run(
        lambda ctx, org: (
            approvals.active_grant_of(ctx, tokens.get_fine_grained(ctx, granted.token.id), org).id
        )
    )
    return pending.request.id, grant_id


def test_a_member_is_refused_on_every_org_settings_page_and_form(
    site: Site, clients: Clients
) -> None:
    request_id, grant_id = pending_and_grant(site)
    before = snapshot(site)
    mona = clients("mona")
    token = csrf_token(mona.get("/settings/organizations").text)

    for path in PAGES:
        answer = mona.get(path.format(request_id=request_id))
        assert answer.status_code == 403, path
        assert "Only owners of the acme organization" in answer.text, path
    for path, data in posts(request_id, grant_id):
        answer = mona.post(path, data={"authenticity_token": token, **data})
        assert answer.status_code == 403, path
        assert "Only owners of the acme organization" in answer.text, path

    assert snapshot(site) == before
    # Organizations the member belongs to show no Settings button.
    organizations = mona.get("/settings/organizations").text
    assert "Settings for acme" not in organizations


def test_an_owner_of_another_organization_is_refused_too(site: Site, clients: Clients) -> None:
    request_id, _ = pending_and_grant(site)
    with site.server.runtime.unit_of_work() as ctx:
        stranger = accounts.get_user(ctx, "stranger")
        orgs.create_org(ctx, "other", owner=stranger, actor=CLI_ACTOR)
    client = clients("stranger")
    for path in PAGES:
        assert client.get(path.format(request_id=request_id)).status_code == 403, path
    assert client.get("/organizations/other/settings/profile").status_code == 200
    assert client.get("/organizations/nobody/settings/profile").status_code == 404


def test_a_post_without_this_sessions_csrf_token_is_refused_and_changes_nothing(
    site: Site,
    clients: Clients,
) -> None:
    request_id, grant_id = pending_and_grant(site)
    before = snapshot(site)
    olivia = clients("olivia")
    other_session = clients("olivia")
    foreign = csrf_token(other_session.get("/settings/organizations").text)

    for path, data in posts(request_id, grant_id):
        for token in (None, "", "forged-token", foreign):
            form = dict(data) if token is None else {"authenticity_token": token, **data}
            answer = olivia.post(path, data=form)
            assert answer.status_code == 403, (path, token)
            assert "This form has expired" in answer.text
    assert snapshot(site) == before

    # The same forms with the session's own token do work (the refusals above are the CSRF's).
    token = csrf_token(olivia.get(ORG + "/personal-access-token-requests").text)
    answer = olivia.post(
        ORG + f"/personal-access-token-requests/{request_id}/approve",
        data={"authenticity_token": token},
    )
    assert answer.status_code == 303
    assert site.run(approvals.get_request, request_id).state == "approved"


def test_a_cross_site_form_is_refused_even_with_a_token(site: Site, clients: Clients) -> None:
    request_id, _ = pending_and_grant(site)
    olivia = clients("olivia")
    token = csrf_token(olivia.get(ORG + "/personal-access-token-requests").text)
    answer = olivia.post(
        ORG + f"/personal-access-token-requests/{request_id}/approve",
        data={"authenticity_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert site.run(approvals.get_request, request_id).state == "pending"


def test_sign_out_needs_the_csrf_token(site: Site, clients: Clients) -> None:
    olivia = clients("olivia")
    assert olivia.post("/logout").status_code == 403
    assert olivia.get("/settings/organizations").status_code == 200  # still signed in
    token = csrf_token(olivia.get("/settings/organizations").text)
    assert olivia.post("/logout", data={"authenticity_token": token}).status_code == 303
    answer = olivia.get("/settings/organizations")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?return_to=%2Fsettings%2Forganizations"


def attempt(client: httpx.Client, login: str, password: str) -> httpx.Response:
    token = csrf_token(client.get("/login").text)
    return client.post(
        "/login", data={"login": login, "password": password, "authenticity_token": token}
    )


def test_sign_in_is_rate_limited_per_login_and_address(site: Site, clients: Clients) -> None:
    client = clients()
    for _ in range(10):
        answer = attempt(client, "olivia", "wrong-password")
        assert answer.status_code == 401
        assert "Incorrect username or password." in answer.text

    refused = attempt(client, "olivia", PASSWORD)  # the right password, one attempt too many

    assert refused.status_code == 429
    assert re.search(
        r'id="login-error">Too many sign-in attempts for this username\. Try again in \d+ minutes?',
        refused.text,
    )
    assert client.get("/settings/organizations").status_code == 303  # not signed in
    # Another login from the same address is counted apart.
    assert attempt(client, "mona", PASSWORD).status_code == 303


def test_a_suspended_user_cannot_sign_in_and_is_signed_out(site: Site, clients: Clients) -> None:
    mona = clients("mona")
    assert mona.get("/settings/organizations").status_code == 200
    with site.server.runtime.unit_of_work() as ctx:
        accounts.set_suspended(ctx, "mona", True)

    assert mona.get("/settings/organizations").status_code == 303  # the session ended
    answer = attempt(clients(), "mona", PASSWORD)
    assert answer.status_code == 403
    assert 'id="login-error">This account is suspended' in answer.text


def test_sign_in_returns_only_to_local_pages(site: Site, clients: Clients) -> None:
    client = clients()
    assert client.get(ORG + "/audit-log").headers["location"] == (
        "/login?return_to=%2Forganizations%2Facme%2Fsettings%2Faudit-log"
    )
    for target, expected in (
        (ORG + "/audit-log", ORG + "/audit-log"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ):
        fresh = clients()
        token = csrf_token(fresh.get("/login").text)
        answer = fresh.post(
            "/login",
            data={"login": "olivia", "password": PASSWORD, "authenticity_token": token,
                  "return_to": target},
        )  # fmt: skip
        assert answer.headers["location"] == expected, target


def test_pages_carry_the_security_headers_and_the_session_cookie_its_flags(site: Site) -> None:
    answer = httpx.get(f"{site.url}/login")

    csp = answer.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"
    assert answer.headers["cache-control"] == "no-store"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # served over http
    # The API is untouched: no session cookie, no page headers.
    api = httpx.get(f"{site.server.api}/orgs/acme")
    assert api.status_code == 200
    assert "set-cookie" not in api.headers and "content-security-policy" not in api.headers


def test_the_session_cookie_is_secure_when_the_site_is_served_over_https(
    make_runtime: Callable[..., Runtime], live_server: Callable[..., LiveServer]
) -> None:
    server = live_server(runtime=make_runtime(base_url="https://patgate.example"))

    cookie = httpx.get(f"{server.url}/login").headers["set-cookie"].lower()

    assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


def test_avatars_are_generated_svg(site: Site) -> None:
    answer = httpx.get(f"{site.url}/avatars/olivia")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("image/svg+xml")
    assert ">O</text>" in answer.text
    assert httpx.get(f"{site.url}/avatars/acme-corp").text.count(">AC</text>") == 1
    assert httpx.get(f"{site.url}/avatars/olivia").text == answer.text  # stable colour
    assert httpx.get(f"{site.url}/avatars/bad%3Cname").status_code == 404


@pytest.mark.browser
def test_a_member_sees_a_clear_refusal_page(
    site: Site, page: Page, console: Console, screenshot: Callable[[Page, str], None]
) -> None:
    console.allow(r"status of 403")  # Chromium logs the refused page's status
    sign_in(page, site.url, "mona")
    page.get_by_label("View profile and more").click()
    page.get_by_role("menuitem", name="Your organizations").click()
    organizations = page.get_by_role("list", name="Organizations")
    expect(organizations.get_by_role("listitem").filter(has_text="acme")).to_contain_text("Member")
    expect(organizations.get_by_role("link", name="Settings")).to_have_count(0)

    page.goto(f"{site.url}{ORG}/personal-access-token-requests")
    expect(page.get_by_role("heading", name="Access denied")).to_be_visible()
    expect(page.get_by_text("Only owners of the acme organization")).to_be_visible()
    screenshot(page, "refused-member")
