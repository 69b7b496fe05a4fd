"""The user's Settings → Developer settings → Personal access tokens, in a real Chromium and over
HTTP (SPEC §2, §3, §9): generate, see the secret once, edit, regenerate, delete; fine-grained and
classic; policy refusals next to the field.

What the pages do is checked where it matters: the token over the REST API, and the stored
requests (service reads).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect
from sqlalchemy import select

from patgate.accounts import services as accounts
from patgate.approvals import services as approvals
from patgate.audit.models import AuditEntry
from patgate.context import CLI_ACTOR
from patgate.orgs import services as orgs
from patgate.tokens import services as tokens
from web.ui.conftest import Clients, Console, Site, csrf_token, sign_in

browser = pytest.mark.browser

Shot = Callable[[Page, str], None]
FINE_GRAINED = "/settings/personal-access-tokens"
WARNING = "Make sure to copy your personal access token now. You won't be able to see it again!"


def api(site: Site, secret: str, path: str) -> int:
    answer = httpx.get(
        f"{site.server.api}{path}",
        headers={"Authorization": f"Bearer {secret}", "Accept": "application/vnd.github+json"},
    )
    return answer.status_code


def pending_of(site: Site) -> list[tuple[str, Any]]:
    """The organization's pending requests, as ``(token name, request)``."""

    def read(ctx: Any, org: Any) -> list[tuple[str, Any]]:
        found, _ = approvals.list_pending(ctx, org, approvals.ListFilters(), page=1, per_page=100)
        return [(token.name, request) for request, token in found]

    return site.run(read)


def tokens_of(site: Site, login: str = "mona") -> list[str]:
    return site.run(
        lambda ctx, _: [t.name for t in tokens.fine_grained_of(ctx, accounts.get_user(ctx, login))]
    )


def token_row(page: Page, name: str) -> Locator:
    return (
        page.get_by_role("list", name="Fine-grained tokens")
        .get_by_role("listitem")
        .filter(has_text=name)
    )


def new_secret(page: Page) -> str:
    return page.get_by_label(re.compile("^Your new personal access token")).input_value()


def go_to_fine_grained_tokens(page: Page) -> None:
    """Profile photo → Settings → Developer settings → Fine-grained tokens."""
    page.get_by_label("View profile and more").click()
    page.get_by_role("menuitem", name="Settings").click()
    sidebar = page.get_by_role("navigation", name="Personal settings")
    sidebar.get_by_role("group", name="Developer settings").get_by_role(
        "link", name="Fine-grained tokens"
    ).click()
    expect(
        page.get_by_role("heading", name="Fine-grained personal access tokens", exact=True)
    ).to_be_visible()


@browser
def test_a_member_generates_edits_regenerates_and_deletes_a_token_seeing_each_secret_once(
    site: Site, page: Page, console: Console, screenshot: Shot
) -> None:
    site.run(
        lambda ctx, org: orgs.set_org_policy(
            ctx, org, actor=CLI_ACTOR, fine_grained_max_lifetime_days=30
        )
    )
    console.allow(r"status of 422")  # Chromium logs the refused form's status
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, site.url, "mona")
    go_to_fine_grained_tokens(page)
    expect(page.get_by_text("You have no fine-grained personal access tokens")).to_be_visible()
    page.get_by_role("link", name="Generate new token").click()

    page.get_by_label("Token name").fill("deploy-bot")
    page.get_by_label("Description").fill("Files deployment issues")
    expect(page.get_by_label("Justification")).to_have_count(0)  # mona owns it: no approval
    page.get_by_label("Resource owner").select_option("acme")
    # The owner's part of the form follows the choice: its repositories, org permissions,
    # and the justification its approval policy asks for.
    justification = page.get_by_label("Justification")
    expect(justification).to_be_visible()
    expect(page.get_by_text("Organization permissions", exact=True)).to_be_visible()
    expect(page.get_by_text("Account permissions", exact=True)).to_have_count(0)
    page.get_by_label("Expiration").select_option(label="60 days")
    expect(page.get_by_label("private-api")).to_be_hidden()  # until "Only select" is chosen
    page.get_by_label("Only select repositories").check()
    page.get_by_label("private-api").check()
    page.get_by_text("Repository permissions", exact=True).click()
    page.get_by_label("Issues", exact=True).select_option(label="Read-only")
    justification.fill("Reads deployment issues from CI")
    screenshot(page, "fine-grained-new")
    page.get_by_role("button", name="Generate token").click()

    # acme caps lifetimes at 30 days: refused next to Expiration, nothing created, form kept.
    expiration = page.get_by_label("Expiration")
    expect(expiration).to_have_accessible_description(re.compile("expire within 30 days"))
    expect(page.get_by_label("Token name")).to_have_value("deploy-bot")
    expect(page.get_by_label("private-api")).to_be_checked()
    expect(page.get_by_label("Issues", exact=True)).to_have_value("read")
    expect(page.get_by_label("Justification")).to_have_value("Reads deployment issues from CI")
    screenshot(page, "fine-grained-new-refused")
    assert tokens_of(site) == []

    expiration.select_option(label="30 days")
    page.get_by_role("button", name="Generate token").click()

    expect(page.get_by_text(WARNING)).to_be_visible()
    secret = new_secret(page)
    assert secret.startswith("github_pat_")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied!")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    expect(token_row(page, "deploy-bot")).to_contain_text("Pending")
    expect(token_row(page, "deploy-bot")).to_contain_text("acme")
    screenshot(page, "fine-grained-created")

    page.reload()
    expect(token_row(page, "deploy-bot")).to_contain_text("Pending")
    expect(page.get_by_label(re.compile("^Your new personal access token"))).to_have_count(0)
    assert secret not in page.content()

    # Pending in the organization's Pending requests, as asked.
    [(name, request)] = pending_of(site)
    assert name == "deploy-bot"
    assert request.reason == "Reads deployment issues from CI"
    assert request.repository_selection == "subset"
    assert request.permissions == {"issues": "read", "metadata": "read"}
    # The secret works, for public resources only until an owner approves it.
    assert api(site, secret, "/repos/acme/public-site") == 200
    assert api(site, secret, "/repos/acme/private-api") == 404

    page.get_by_role("link", name="deploy-bot", exact=True).click()
    expect(page.get_by_text("Waiting for an owner of acme to approve it")).to_be_visible()
    expect(page.get_by_role("list", name="Selected repositories")).to_contain_text("private-api")
    screenshot(page, "fine-grained-show-pending")

    site.run(approvals.approve, [request.id], actor=site.world.actor())
    assert api(site, secret, "/repos/acme/private-api/issues") == 200
    page.reload()
    expect(page.get_by_text("Approved", exact=True)).to_be_visible()

    # Removing a permission takes effect at once, and asks nobody.
    page.get_by_role("link", name="Edit").click()
    issues = page.get_by_label("Issues", exact=True)
    expect(issues).to_have_value("read")  # the group with a selection is open
    issues.select_option(label="No access")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved deploy-bot.")
    assert api(site, secret, "/repos/acme/private-api/issues") == 403
    assert api(site, secret, "/repos/acme/private-api") == 200
    assert pending_of(site) == []

    # Adding one asks acme again; the approved access keeps working meanwhile.
    page.get_by_role("link", name="Edit").click()
    page.get_by_text("Repository permissions", exact=True).click()  # closed: none selected
    page.get_by_label("Pull requests", exact=True).select_option(label="Read-only")
    page.get_by_label("Justification").fill("Reads pull requests for release notes")
    screenshot(page, "fine-grained-edit")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("waits for an owner's approval")
    expect(page.get_by_text("Changes pending")).to_be_visible()
    [(name, request)] = pending_of(site)
    assert (name, request.reason) == ("deploy-bot", "Reads pull requests for release notes")
    assert request.permissions == {"metadata": "read", "pull_requests": "read"}
    assert api(site, secret, "/repos/acme/private-api") == 200
    assert api(site, secret, "/repos/acme/private-api/issues") == 403

    # Regenerate: a new secret, shown once; the old one stops working.
    page.get_by_role("link", name="Regenerate token").click()
    page.get_by_label("Expiration").select_option(label="7 days")
    page.get_by_role("button", name="Regenerate token").click()
    expect(page.get_by_role("status")).to_contain_text("Regenerated deploy-bot")
    regenerated = new_secret(page)
    assert regenerated.startswith("github_pat_") and regenerated != secret
    screenshot(page, "fine-grained-regenerated")
    assert api(site, secret, "/user") == 401
    assert api(site, regenerated, "/user") == 200
    assert api(site, regenerated, "/repos/acme/private-api") == 200  # the grant is kept
    page.reload()
    expect(page.get_by_label(re.compile("^Your new personal access token"))).to_have_count(0)
    expect(page.get_by_text(re.compile(r"Expires on"))).to_be_visible()

    # Delete, through the confirmation box: the pending request is cancelled.
    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name="Delete deploy-bot?")
    expect(dialog).to_be_visible()
    screenshot(page, "fine-grained-delete-dialog")
    dialog.get_by_role("button", name="I understand, delete this token").click()
    expect(page.get_by_role("status")).to_have_text("Deleted deploy-bot.")
    expect(page.get_by_text("You have no fine-grained personal access tokens")).to_be_visible()
    assert api(site, regenerated, "/user") == 401
    assert pending_of(site) == []
    # The request went with the token's row; the audit log keeps its cancellation.
    cancelled = site.run(
        lambda ctx, _: ctx.session.scalars(
            select(AuditEntry.request_id).where(
                AuditEntry.action == "personal_access_token.request_cancelled"
            )
        ).all()
    )
    assert cancelled == [request.id]


@browser
def test_the_token_forms_work_without_javascript_classic_tokens_included(
    site: Site, page_without_js: Page, screenshot: Shot
) -> None:
    page = page_without_js
    sign_in(page, site.url, "mona")
    page.goto(f"{site.url}{FINE_GRAINED}/new")
    page.get_by_label("Token name").fill("no-js")
    page.get_by_label("Resource owner").select_option("acme")
    page.get_by_role("button", name="Choose").click()  # re-renders the form for acme

    expect(page.get_by_label("Token name")).to_have_value("no-js")
    expect(page.get_by_role("list", name="Repositories of acme")).to_contain_text("private-ops")
    page.get_by_label("All repositories").check()
    page.get_by_text("Organization permissions", exact=True).click()
    page.get_by_label("Members", exact=True).select_option(label="Read-only")
    page.get_by_label("Justification").fill("Reads the member list")
    screenshot(page, "fine-grained-new-no-js")
    page.get_by_role("button", name="Generate token").click()

    new_secret(page)
    expect(page.get_by_role("button", name="Copy")).to_be_hidden()  # needs JavaScript
    expect(token_row(page, "no-js")).to_contain_text("Pending")
    [(name, request)] = pending_of(site)
    assert (name, request.repository_selection) == ("no-js", "all")
    assert request.permissions == {"members": "read", "metadata": "read"}

    # A classic token: generate, regenerate, delete (its confirmation is a page of its own).
    page.get_by_role("navigation", name="Personal settings").get_by_role(
        "link", name="Tokens (classic)"
    ).click()
    page.get_by_role("link", name="Generate new token").click()
    page.get_by_label("Note").fill("laptop")
    page.get_by_label("Expiration").select_option(label="No expiration")
    page.get_by_label("repo", exact=True).check()
    page.get_by_label("read:org", exact=True).check()
    screenshot(page, "classic-new")
    page.get_by_role("button", name="Generate token").click()

    secret = new_secret(page)
    assert re.fullmatch(r"ghp_[A-Za-z0-9]{36}", secret)
    row = page.get_by_role("list", name="Tokens (classic)").get_by_role("listitem")
    expect(row).to_contain_text("laptop")
    expect(row).to_contain_text("read:org, repo")
    expect(row).to_contain_text("This token has no expiration date")
    screenshot(page, "classic-created")
    assert api(site, secret, "/repos/acme/private-api") == 200
    assert api(site, secret, "/orgs/acme/members") == 200
    page.reload()
    expect(page.get_by_label(re.compile("^Your new personal access token"))).to_have_count(0)

    page.get_by_role("link", name="laptop", exact=True).click()
    page.get_by_role("link", name="Regenerate token").click()
    page.get_by_role("button", name="Regenerate token").click()
    regenerated = new_secret(page)
    assert regenerated != secret
    assert api(site, secret, "/user") == 401
    assert api(site, regenerated, "/repos/acme/private-api") == 200
    expect(row).to_contain_text(re.compile(r"Expires on"))  # 30 days, the default

    row.get_by_role("link", name="Delete laptop").click()
    page.get_by_role("button", name="I understand, delete this token").click()
    expect(page.get_by_role("status")).to_have_text("Deleted laptop.")
    assert api(site, regenerated, "/user") == 401


def generate(client: httpx.Client, **fields: Any) -> httpx.Response:
    token = csrf_token(client.get(FINE_GRAINED + "/new").text)
    data = {"authenticity_token": token, "name": "t", "expiration": "30", **fields}
    return client.post(FINE_GRAINED, data=data)


def field_error(html: str, name: str) -> str:
    found = re.search(rf'id="{name}-error">([^<]*)<', html)
    assert found is not None, f"no error next to {name}"
    return found.group(1)


def test_policy_refusals_are_shown_next_to_their_field_and_create_nothing(
    site: Site, clients: Clients
) -> None:
    with site.server.runtime.unit_of_work() as ctx:
        olivia, mona = accounts.get_user(ctx, "olivia"), accounts.get_user(ctx, "mona")
        for login, policy in (("beta", None), ("locked", "restrict")):
            org = orgs.create_org(ctx, login, owner=olivia, actor=CLI_ACTOR)
            orgs.add_member(ctx, org, mona, actor=CLI_ACTOR)
            if policy:
                orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, opt_in=True, fine_grained=policy)
        orgs.set_org_policy(
            ctx, orgs.get_org(ctx, "acme"), actor=CLI_ACTOR, fine_grained_max_lifetime_days=60
        )
    mona_client = clients("mona")

    not_opted_in = generate(mona_client, resource_owner="beta")
    restricted = generate(mona_client, resource_owner="locked")
    too_long = generate(mona_client, resource_owner="acme", expiration="90")
    forever = generate(mona_client, resource_owner="acme", expiration="none")
    stranger_org = generate(mona_client, resource_owner="nobody-org")
    no_repository = generate(mona_client, resource_owner="acme", repository_selection="subset")

    assert {r.status_code for r in (not_opted_in, restricted, too_long, forever)} == {422}
    assert "beta has not opted in" in field_error(not_opted_in.text, "resource_owner")
    assert "locked forbids access via fine-grained" in field_error(
        restricted.text, "resource_owner"
    )
    assert "expire within 60 days" in field_error(too_long.text, "expiration")
    assert "expire within 60 days" in field_error(forever.text, "expiration")
    assert stranger_org.status_code == 422
    assert "Choose yourself or one of your organizations" in field_error(
        stranger_org.text, "resource_owner"
    )
    assert field_error(no_repository.text, "repositories") == "Select at least one repository."
    assert tokens_of(site) == []
    # Before submitting, the form already says why the organization cannot be chosen.
    assert "beta has not opted in" in mona_client.get(FINE_GRAINED + "/new?owner=beta").text
    no_date = generate(mona_client, resource_owner="acme", expiration="custom")
    past = generate(mona_client, expiration="custom", expires_on="2001-01-01")
    assert field_error(no_date.text, "expiration") == "Choose the custom expiration date."
    assert "must be in the future" in field_error(past.text, "expiration")
    assert tokens_of(site) == []
    # The same form works where the policies allow it, and for tokens of one's own account.
    assert generate(mona_client, resource_owner="acme", expiration="60").status_code == 303
    own_form = mona_client.get(FINE_GRAINED + "/new").text
    assert "Account permissions" in own_form and "Organization permissions" not in own_form
    own = generate(
        mona_client, name="mine", resource_owner="mona", expiration="custom",
        expires_on="2099-12-31", **{"permission.followers": "read"},
    )  # fmt: skip
    assert own.status_code == 303
    assert sorted(tokens_of(site)) == ["mine", "t"]
    mine = site.run(lambda ctx, _: tokens.fine_grained_of(ctx, accounts.get_user(ctx, "mona"))[0])
    assert (mine.name, mine.permissions) == ("mine", {"followers": "read", "metadata": "read"})
    assert mine.expires_at.isoformat() == "2099-12-31T23:59:59+00:00"
    # A policy that now blocks a token is said in the list and on the token's page.
    site.run(
        lambda ctx, org: orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, fine_grained="restrict")
    )
    assert mona_client.get(FINE_GRAINED).text.count("Blocked by policy") == 1
    t_id = site.run(
        lambda ctx, _: tokens.fine_grained_of(ctx, accounts.get_user(ctx, "mona"))[1].id
    )
    page = mona_client.get(f"{FINE_GRAINED}/{t_id}").text
    assert "acme forbids access via fine-grained personal access tokens" in page


def test_someone_elses_tokens_are_not_found_and_forms_need_the_csrf_token(
    site: Site, clients: Clients
) -> None:
    fine = site.world.token(name="ci")
    classic_secret = site.world.classic()
    classic_id = site.run(
        lambda ctx, _: tokens.classic_of(ctx, accounts.get_user(ctx, "mona"))[0].id
    )
    stranger = clients("stranger")
    token = csrf_token(stranger.get(FINE_GRAINED).text)
    fine_url = f"{FINE_GRAINED}/{fine.token.id}"
    classic_url = f"/settings/tokens/{classic_id}"

    for path in (fine_url, fine_url + "/edit", fine_url + "/regenerate", fine_url + "/delete",
                 classic_url, classic_url + "/regenerate", classic_url + "/delete"):  # fmt: skip
        assert stranger.get(path).status_code == 404, path
    for path in (fine_url + "/edit", fine_url + "/regenerate", fine_url + "/delete",
                 classic_url + "/regenerate", classic_url + "/delete"):  # fmt: skip
        assert stranger.post(path, data={"authenticity_token": token}).status_code == 404, path

    mona = clients("mona")
    for path in (FINE_GRAINED, fine_url + "/regenerate", fine_url + "/delete",
                 "/settings/tokens", classic_url + "/delete"):  # fmt: skip
        answer = mona.post(path, data={"name": "x", "note": "x"})
        assert answer.status_code == 403, path
        assert "This form has expired" in answer.text
    assert api(site, fine.secret, "/user") == 200
    assert api(site, classic_secret, "/user") == 200
    assert tokens_of(site) == ["ci"]
    assert clients().get(FINE_GRAINED).headers["location"].startswith("/login?return_to=")


def test_a_name_taken_at_the_same_moment_is_a_conflict_page_not_a_server_error(
    site: Site, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    mona = clients("mona")
    assert generate(mona, name="deploy", resource_owner="mona").status_code == 303
    # Two submissions racing: each checks the name before the other has committed it; the
    # unique index is what catches the second.
    monkeypatch.setattr(tokens, "_find_by_name", lambda *args, **kwargs: None)

    second = generate(mona, name="Deploy", resource_owner="mona")

    assert second.status_code == 409
    assert "conflicts with another one made at the same time" in second.text
    assert tokens_of(site) == ["deploy"]
