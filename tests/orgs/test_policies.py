"""Organization policies, the beta opt-in and enterprise-forced values (SPEC §3)."""

from __future__ import annotations

from typing import Any

import pytest

from patgate.accounts import services as accounts
from patgate.context import CLI_ACTOR
from patgate.errors import InvalidInput, PolicyRefused
from patgate.orgs import services as orgs
from patgate.tokens import services as tokens


def make_org(ctx: Any, login: str = "acme", enterprise: Any = None) -> Any:
    owner = accounts.find_user(ctx, "olivia") or accounts.create_user(
        ctx, "olivia", email="olivia@example.com"
    )
    return orgs.create_org(ctx, login, owner=owner, enterprise=enterprise, actor=CLI_ACTOR)


def fine_grained(ctx: Any, org: Any, name: str = "t") -> Any:
    return tokens.create_fine_grained(
        ctx, accounts.get_user(ctx, "olivia"), name=name, resource_owner=org,
        expires_at=tokens.expiry(ctx.now, None), actor=CLI_ACTOR,
    )  # fmt: skip


def test_defaults(ctx: Any) -> None:
    policies = orgs.effective_policies(ctx, make_org(ctx))
    assert (policies.fine_grained, policies.approval, policies.classic) == (
        "allow", "required", "allow",
    )  # fmt: skip
    assert policies.fine_grained_max_lifetime_days == 366
    assert policies.classic_max_lifetime_days is None
    assert not policies.opted_in


def test_org_that_has_not_opted_in_refuses_fine_grained_tokens(ctx: Any) -> None:
    org = make_org(ctx)
    with pytest.raises(PolicyRefused, match="has not opted in"):
        fine_grained(ctx, org)
    orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, opt_in=True)
    assert fine_grained(ctx, org).request.state == "approved"  # the owner's own token


def test_org_of_an_opted_in_enterprise_is_opted_in(ctx: Any) -> None:
    enterprise = orgs.create_enterprise(ctx, "bigco")
    orgs.set_enterprise_policy(ctx, enterprise, actor=CLI_ACTOR, opt_in=True)
    org = make_org(ctx, enterprise=enterprise)
    assert orgs.effective_policies(ctx, org).opted_in
    fine_grained(ctx, org)


def test_enterprise_forced_values_override_and_cannot_be_changed(ctx: Any) -> None:
    enterprise = orgs.create_enterprise(ctx, "bigco")
    org = make_org(ctx, enterprise=enterprise)
    orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, classic="allow")
    orgs.set_enterprise_policy(
        ctx, enterprise, actor=CLI_ACTOR, classic="restrict", approval="not_required",
        fine_grained_max_lifetime=(True, 30),
    )  # fmt: skip
    policies = orgs.effective_policies(ctx, org)
    assert policies.classic == "restrict" and not policies.approval_required
    assert policies.fine_grained_max_lifetime_days == 30
    assert {"classic", "approval", "fine_grained_max_lifetime"} <= policies.forced
    for change in (
        {"classic": "allow"},
        {"approval": "required"},
        {"fine_grained_max_lifetime_days": 90},
    ):
        with pytest.raises(PolicyRefused, match="set by its enterprise"):
            orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, **change)
    assert org.classic_policy == "allow"  # nothing changed underneath
    # Releasing the enterprise policy gives the org its own value back.
    orgs.set_enterprise_policy(ctx, enterprise, actor=CLI_ACTOR, classic=None)
    assert orgs.effective_policies(ctx, org).classic == "allow"


def test_policy_values_are_validated(ctx: Any) -> None:
    org = make_org(ctx)
    with pytest.raises(InvalidInput):
        orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, fine_grained="maybe")
    with pytest.raises(InvalidInput):
        orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, fine_grained_max_lifetime_days=400)
    with pytest.raises(InvalidInput):
        orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, classic_max_lifetime_days=0)


def test_refused_change_changes_nothing_even_with_valid_parts(ctx: Any) -> None:
    enterprise = orgs.create_enterprise(ctx, "bigco")
    org = make_org(ctx, enterprise=enterprise)
    orgs.set_enterprise_policy(ctx, enterprise, actor=CLI_ACTOR, classic="restrict")
    with pytest.raises(PolicyRefused):
        orgs.set_org_policy(ctx, org, actor=CLI_ACTOR, fine_grained="restrict", classic="allow")
    assert org.fine_grained_policy == "allow"
