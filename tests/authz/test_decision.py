"""``decide()``: SPEC §5's truth table, its precedence, and the properties every answer keeps.

Everything here is built by hand from the facts dataclasses: ``decide()`` is pure, so no
database, no clock (a fixed ``NOW``) and no web layer are needed.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import combinations
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patgate.authz.decision import (
    Action,
    Actions,
    AppPrincipal,
    ClassicPrincipal,
    Decision,
    Detail,
    EnterpriseFacts,
    FineGrainedPrincipal,
    GrantFacts,
    InstallationPrincipal,
    OrgFacts,
    Principal,
    Reason,
    RepoFacts,
    Resource,
    SessionPrincipal,
    UserFacts,
    decide,
)

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
PROPERTY = settings(max_examples=150 if CI else 300, deadline=None)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ISSUED = NOW - timedelta(days=10)
EXPIRES = ISSUED + timedelta(days=30)
TOKEN_ID = 7

# ---- the world of the table ---------------------------------------------------------------

ENTERPRISE = EnterpriseFacts(1, "megacorp")
ACME = OrgFacts(10, "acme", enterprise_id=ENTERPRISE.id)
GLOBEX = OrgFacts(20, "globex", enterprise_id=ENTERPRISE.id)  # same enterprise as acme
INITECH = OrgFacts(30, "initech")  # no enterprise

ALICE = UserFacts(1, "alice", roles={ACME.id: "member"}, enterprise_ids=frozenset({1}))
BOB = UserFacts(2, "bob", roles={GLOBEX.id: "member"}, enterprise_ids=frozenset({1}))
OWEN = UserFacts(3, "owen", roles={ACME.id: "owner"}, enterprise_ids=frozenset({1}))
PETER = UserFacts(4, "peter", roles={INITECH.id: "owner"})
ERIN = UserFacts(5, "erin", enterprise_owner_of=frozenset({ENTERPRISE.id}))

PRIVATE = RepoFacts(100, ACME.id, "private", ACME)
OTHER_PRIVATE = RepoFacts(101, ACME.id, "private", ACME)
PUBLIC = RepoFacts(102, ACME.id, "public", ACME)
INTERNAL = RepoFacts(103, ACME.id, "internal", ACME)
INITECH_INTERNAL = RepoFacts(300, INITECH.id, "internal", INITECH)
ALICE_PRIVATE = RepoFacts(400, ALICE.id, "private")
ALICE_PUBLIC = RepoFacts(401, ALICE.id, "public")
BOB_PRIVATE = RepoFacts(402, BOB.id, "private")
BOB_PUBLIC = RepoFacts(403, BOB.id, "public")

FULL = {
    "metadata": "read",
    "issues": "write",
    "members": "read",
    "organization_administration": "read",
}
ISSUES_READ = {"metadata": "read", "issues": "read"}
ISSUES_WRITE = {"metadata": "read", "issues": "write"}
EVERY_APP_PERMISSION = {
    **FULL,
    "organization_personal_access_token_requests": "write",
    "organization_personal_access_tokens": "write",
}

_SAME: Any = object()  # the grant approved exactly what the token asks for


def with_policy(resource: Any, **policy: Any) -> Any:
    """``resource`` whose organization has the given effective policies."""
    if isinstance(resource, OrgFacts):
        return replace(resource, **policy)
    return replace(resource, org=replace(resource.org, **policy))


def granted(selection: str = "all", repos: tuple[int, ...] = (), **permissions: str) -> GrantFacts:
    return GrantFacts(selection, frozenset(repos), permissions)


def fine_grained(
    *,
    user: UserFacts = ALICE,
    owner: int = ACME.id,
    selection: str = "all",
    repos: tuple[int, ...] = (),
    permissions: Mapping[str, str] = FULL,
    grant: Any = _SAME,
    request_state: str | None = None,
    revoked: bool = False,
    issued_at: datetime = ISSUED,
    expires_at: datetime | None = EXPIRES,
) -> FineGrainedPrincipal:
    if grant is _SAME:
        # A token of the user's own resources has no grant; an org's was approved as asked.
        grant = (
            None if owner == user.id else GrantFacts(selection, frozenset(repos), dict(permissions))
        )
    return FineGrainedPrincipal(
        user=user,
        token_id=TOKEN_ID,
        resource_owner_id=owner,
        repository_selection=selection,
        repository_ids=frozenset(repos),
        permissions=dict(permissions),
        issued_at=issued_at,
        expires_at=expires_at,
        grant=grant,
        request_state=request_state,
        grant_revoked=revoked,
    )


def classic(
    *scopes: str,
    user: UserFacts = ALICE,
    issued_at: datetime = ISSUED,
    expires_at: datetime | None = EXPIRES,
) -> ClassicPrincipal:
    return ClassicPrincipal(user, TOKEN_ID, frozenset(scopes), issued_at, expires_at)


def installation(
    *, org: OrgFacts = ACME, repos: tuple[int, ...] | None = None, **permissions: str
) -> InstallationPrincipal:
    return InstallationPrincipal(
        installation_id=50,
        app_id=60,
        org_id=org.id,
        permissions=permissions,
        repository_ids=None if repos is None else frozenset(repos),
    )


def session(user: UserFacts) -> SessionPrincipal:
    return SessionPrincipal(user)


def ok() -> dict[str, Any]:
    return {"allowed": True, "reason": Reason.ALLOWED}


def denied(reason: Reason, detail: Detail | None = None, **fields: Any) -> dict[str, Any]:
    """The fields a denial must have; ``detail`` and the other fields only when given."""
    expected: dict[str, Any] = {"allowed": False, "reason": reason}
    if detail is not None:
        expected["detail"] = detail
    expected.update(fields)
    return expected


def row(
    row_id: str, principal: Principal, action: Action, resource: Resource, expected: dict
) -> Any:
    return pytest.param(principal, action, resource, expected, id=row_id)


def check(principal: Principal, action: Action, resource: Resource, expected: dict) -> None:
    decision = decide(principal, action, resource, now=NOW)
    assert {name: getattr(decision, name) for name in expected} == expected, decision


R = Reason
D = Detail
A = Actions

# ---- the truth table ------------------------------------------------------------------------

AUTHENTICATION = [
    row("bad_credentials-expired-fine-grained-even-on-public",
        fine_grained(expires_at=NOW), A.READ_REPO, PUBLIC, denied(R.BAD_CREDENTIALS)),
    row("bad_credentials-expired-fine-grained-on-app-only",
        fine_grained(expires_at=NOW), A.LIST_REQUESTS, ACME, denied(R.BAD_CREDENTIALS)),
    row("bad_credentials-expired-classic",
        classic("repo", expires_at=NOW - timedelta(seconds=1)), A.READ_ISSUES, PRIVATE,
        denied(R.BAD_CREDENTIALS)),
    row("fine-grained-one-second-before-expiry",
        fine_grained(expires_at=NOW + timedelta(seconds=1)), A.READ_ISSUES, PRIVATE, ok()),
    row("bad_credentials-anonymous-write-public",
        None, A.WRITE_ISSUES, PUBLIC, denied(R.BAD_CREDENTIALS)),
    row("bad_credentials-anonymous-app-only",
        None, A.LIST_GRANTS, ACME, denied(R.BAD_CREDENTIALS)),
    row("anonymous-reads-public-repo", None, A.READ_REPO, PUBLIC, ok()),
    row("anonymous-reads-public-issues", None, A.READ_ISSUES, PUBLIC, ok()),
    row("anonymous-private-not_visible",
        None, A.READ_REPO, PRIVATE, denied(R.NOT_VISIBLE)),
    row("anonymous-internal-not_visible",
        None, A.READ_ISSUES, INTERNAL, denied(R.NOT_VISIBLE)),
]  # fmt: skip

FINE_GRAINED = [
    row("fine-grained-reads-private-issues", fine_grained(), A.READ_ISSUES, PRIVATE, ok()),
    row("fine-grained-writes-private-issues", fine_grained(), A.WRITE_ISSUES, PRIVATE, ok()),
    row("fine-grained-reads-org-members", fine_grained(), A.READ_MEMBERS, ACME, ok()),
    row("fine-grained-of-owner-reads-audit-log",
        fine_grained(user=OWEN), A.READ_AUDIT_LOG, ACME, ok()),
    row("fine-grained-subset-reads-selected",
        fine_grained(selection="subset", repos=(PRIVATE.id,)), A.READ_ISSUES, PRIVATE, ok()),
    row("fine-grained-reads-own-org-internal", fine_grained(), A.READ_REPO, INTERNAL, ok()),
    row("fine-grained-pending-reads-org-whatever-the-policy",
        fine_grained(grant=None, request_state="pending"), A.READ_ORG,
        with_policy(ACME, fine_grained_allowed=False), ok()),
    row("fine-grained-lifetime-exceeded-reads-user",
        fine_grained(expires_at=None), A.READ_USER, None, ok()),
    # not_visible, with each detail
    row("not_visible-approval_pending",
        fine_grained(grant=None, request_state="pending"), A.READ_ISSUES, PRIVATE,
        denied(R.NOT_VISIBLE, D.APPROVAL_PENDING)),
    row("not_visible-request_denied",
        fine_grained(grant=None, request_state="denied"), A.READ_ISSUES, PRIVATE,
        denied(R.NOT_VISIBLE, D.REQUEST_DENIED)),
    row("not_visible-grant_revoked",
        fine_grained(grant=None, request_state="approved", revoked=True), A.READ_REPO,
        PRIVATE, denied(R.NOT_VISIBLE, D.GRANT_REVOKED)),
    row("not_visible-repository_not_selected-subset",
        fine_grained(selection="subset", repos=(OTHER_PRIVATE.id,)), A.READ_ISSUES, PRIVATE,
        denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
    row("not_visible-repository_not_selected-public-only",
        fine_grained(selection="none"), A.READ_REPO, PRIVATE,
        denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
    row("not_visible-repository_not_selected-internal",
        fine_grained(selection="subset", repos=(PRIVATE.id,)), A.READ_REPO, INTERNAL,
        denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
    row("not_visible-not_a_member-fine-grained-after-leaving",
        fine_grained(user=BOB), A.READ_ISSUES, PRIVATE, denied(R.NOT_VISIBLE, D.NOT_A_MEMBER)),
    row("not_visible-not_a_member-classic",
        classic("repo", user=BOB), A.READ_ISSUES, PRIVATE,
        denied(R.NOT_VISIBLE, D.NOT_A_MEMBER)),
    row("not_visible-wrong_resource_owner-other-org",
        fine_grained(owner=GLOBEX.id), A.READ_ISSUES, PRIVATE,
        denied(R.NOT_VISIBLE, D.WRONG_RESOURCE_OWNER)),
    row("not_visible-wrong_resource_owner-user-owned-token",
        fine_grained(owner=ALICE.id), A.READ_REPO, PRIVATE,
        denied(R.NOT_VISIBLE, D.WRONG_RESOURCE_OWNER)),
    row("not_visible-wrong_resource_owner-enterprise",
        fine_grained(user=OWEN), A.READ_AUDIT_LOG, ENTERPRISE,
        denied(R.NOT_VISIBLE, D.WRONG_RESOURCE_OWNER)),
    # permission_missing: it sees the resource, may not do this
    row("permission_missing-write-issues-private",
        fine_grained(permissions=ISSUES_READ), A.WRITE_ISSUES, PRIVATE,
        denied(R.PERMISSION_MISSING, accepted_permissions="issues=write")),
    row("permission_missing-write-issues-public",
        fine_grained(permissions=ISSUES_READ), A.WRITE_ISSUES, PUBLIC,
        denied(R.PERMISSION_MISSING, accepted_permissions="issues=write")),
    row("permission_missing-read-issues-without-issues",
        fine_grained(permissions={"metadata": "read"}), A.READ_ISSUES, PRIVATE,
        denied(R.PERMISSION_MISSING, accepted_permissions="issues=read")),
    row("permission_missing-org-members",
        fine_grained(permissions=ISSUES_WRITE), A.READ_MEMBERS, ACME,
        denied(R.PERMISSION_MISSING, accepted_permissions="members=read")),
    row("permission_missing-audit-log-of-member-not-owner",
        fine_grained(user=ALICE), A.READ_AUDIT_LOG, ACME,
        denied(R.PERMISSION_MISSING, accepted_permissions="organization_administration=read")),
    row("permission_missing-audit-log-of-owner-without-permission",
        fine_grained(user=OWEN, permissions=ISSUES_WRITE), A.READ_AUDIT_LOG, ACME,
        denied(R.PERMISSION_MISSING, accepted_permissions="organization_administration=read")),
    row("permission_missing-public-only-token-writes-public",
        fine_grained(selection="none"), A.WRITE_ISSUES, PUBLIC,
        denied(R.PERMISSION_MISSING, D.REPOSITORY_NOT_SELECTED,
               accepted_permissions="issues=write")),
    row("permission_missing-pending-token-on-org-members",
        fine_grained(grant=None, request_state="pending"), A.READ_MEMBERS, ACME,
        denied(R.PERMISSION_MISSING, D.APPROVAL_PENDING, accepted_permissions="members=read")),
    # fine_grained_restricted
    row("fine_grained_restricted-private",
        fine_grained(), A.READ_ISSUES, with_policy(PRIVATE, fine_grained_allowed=False),
        denied(R.FINE_GRAINED_RESTRICTED, org_login="acme")),
    row("fine_grained_restricted-org-members",
        fine_grained(), A.READ_MEMBERS, with_policy(ACME, fine_grained_allowed=False),
        denied(R.FINE_GRAINED_RESTRICTED, org_login="acme")),
    row("fine_grained_restricted-write-public",
        fine_grained(), A.WRITE_ISSUES, with_policy(PUBLIC, fine_grained_allowed=False),
        denied(R.FINE_GRAINED_RESTRICTED, org_login="acme")),
    row("fine-grained-unaffected-by-classic-restriction",
        fine_grained(), A.READ_ISSUES, with_policy(PRIVATE, classic_allowed=False), ok()),
    # lifetime_exceeded
    row("lifetime_exceeded-no-expiry-default-366",
        fine_grained(expires_at=None), A.READ_ISSUES, PRIVATE,
        denied(R.LIFETIME_EXCEEDED, org_login="acme", max_lifetime_days=366, token_id=TOKEN_ID)),
    row("lifetime_exceeded-one-second-over-30",
        fine_grained(expires_at=ISSUED + timedelta(days=30, seconds=1)), A.READ_ISSUES,
        with_policy(PRIVATE, fine_grained_max_lifetime_days=30),
        denied(R.LIFETIME_EXCEEDED, org_login="acme", max_lifetime_days=30, token_id=TOKEN_ID)),
    row("lifetime-exactly-30-complies-with-30",
        fine_grained(expires_at=ISSUED + timedelta(days=30)), A.READ_ISSUES,
        with_policy(PRIVATE, fine_grained_max_lifetime_days=30), ok()),
    row("lifetime-exactly-366-complies-by-default",
        fine_grained(expires_at=ISSUED + timedelta(days=366)), A.READ_ISSUES, PRIVATE, ok()),
    row("lifetime-no-expiry-complies-without-limit",
        fine_grained(expires_at=None), A.READ_ISSUES,
        with_policy(PRIVATE, fine_grained_max_lifetime_days=None), ok()),
    row("lifetime_exceeded-org-members",
        fine_grained(expires_at=None), A.READ_MEMBERS, ACME,
        denied(R.LIFETIME_EXCEEDED, org_login="acme", max_lifetime_days=366, token_id=TOKEN_ID)),
]  # fmt: skip

CLASSIC = [
    row("classic-repo-reads-private", classic("repo"), A.READ_ISSUES, PRIVATE, ok()),
    row("classic-repo-writes-private", classic("repo"), A.WRITE_ISSUES, PRIVATE, ok()),
    row("classic-public_repo-writes-public",
        classic("public_repo"), A.WRITE_ISSUES, PUBLIC, ok()),
    row("classic-admin-org-implies-read-org",
        classic("admin:org"), A.READ_MEMBERS, ACME, ok()),
    row("classic-owner-audit-log-read-audit-log",
        classic("read:audit_log", user=OWEN), A.READ_AUDIT_LOG, ACME, ok()),
    row("classic-owner-audit-log-admin-org",
        classic("admin:org", user=OWEN), A.READ_AUDIT_LOG, ACME, ok()),
    row("classic-no-expiry-no-limit-by-default",
        classic("repo", expires_at=None), A.READ_ISSUES, PRIVATE, ok()),
    row("classic-unaffected-by-fine-grained-restriction",
        classic("repo"), A.READ_REPO, with_policy(PRIVATE, fine_grained_allowed=False), ok()),
    row("classic-public_repo-cannot-see-private",
        classic("public_repo"), A.READ_REPO, PRIVATE, denied(R.NOT_VISIBLE, D.NO_ACCESS)),
    # scope_missing
    row("scope_missing-classic-org-members",
        classic(), A.READ_MEMBERS, ACME,
        denied(R.SCOPE_MISSING, accepted_scopes="read:org, write:org, admin:org")),
    row("scope_missing-classic-write-public",
        classic(), A.WRITE_ISSUES, PUBLIC,
        denied(R.SCOPE_MISSING, accepted_scopes="repo, public_repo")),
    row("scope_missing-classic-owner-audit-log-read-org",
        classic("read:org", user=OWEN), A.READ_AUDIT_LOG, ACME,
        denied(R.SCOPE_MISSING, accepted_scopes="admin:org, read:audit_log, audit_log")),
    row("scope_missing-classic-member-audit-log",
        classic("admin:org", user=ALICE), A.READ_AUDIT_LOG, ACME, denied(R.SCOPE_MISSING)),
    # classic_restricted
    row("classic_restricted-private",
        classic("repo"), A.READ_REPO, with_policy(PRIVATE, classic_allowed=False),
        denied(R.CLASSIC_RESTRICTED, org_login="acme")),
    row("classic_restricted-org-members",
        classic("read:org"), A.READ_MEMBERS, with_policy(ACME, classic_allowed=False),
        denied(R.CLASSIC_RESTRICTED, org_login="acme")),
    row("classic_restricted-write-public",
        classic("repo"), A.WRITE_ISSUES, with_policy(PUBLIC, classic_allowed=False),
        denied(R.CLASSIC_RESTRICTED, org_login="acme")),
    # lifetime_exceeded for classic tokens: no token_id (that URL is fine-grained's)
    row("lifetime_exceeded-classic",
        classic("repo", expires_at=None), A.READ_ISSUES,
        with_policy(PRIVATE, classic_max_lifetime_days=30),
        denied(R.LIFETIME_EXCEEDED, org_login="acme", max_lifetime_days=30, token_id=None)),
    row("lifetime-classic-exactly-at-limit",
        classic("repo", expires_at=ISSUED + timedelta(days=30)), A.READ_ISSUES,
        with_policy(PRIVATE, classic_max_lifetime_days=30), ok()),
]  # fmt: skip

APP_ONLY_ACTIONS = [A.LIST_REQUESTS, A.REVIEW_REQUESTS, A.LIST_GRANTS, A.REVOKE_GRANTS]

APPS = [
    *[
        row(f"not_an_app-fine-grained-{action.name}",
            fine_grained(user=OWEN, permissions=EVERY_APP_PERMISSION), action, ACME,
            denied(R.NOT_AN_APP))
        for action in APP_ONLY_ACTIONS
    ],
    *[
        row(f"not_an_app-classic-{action.name}",
            classic("admin:org", "repo", user=OWEN), action, ACME, denied(R.NOT_AN_APP))
        for action in APP_ONLY_ACTIONS
    ],
    row("not_an_app-session-of-owner", session(OWEN), A.LIST_REQUESTS, ACME,
        denied(R.NOT_AN_APP)),
    # integration_permission_missing
    row("integration_permission_missing-the-authenticated-user",
        installation(metadata="read", members="read"), A.READ_USER, None,
        denied(R.INTEGRATION_PERMISSION_MISSING)),
    row("integration_permission_missing-write-issues",
        installation(metadata="read", issues="read"), A.WRITE_ISSUES, PRIVATE,
        denied(R.INTEGRATION_PERMISSION_MISSING, accepted_permissions="issues=write")),
    row("integration_permission_missing-org-members",
        installation(metadata="read"), A.READ_MEMBERS, ACME,
        denied(R.INTEGRATION_PERMISSION_MISSING, accepted_permissions="members=read")),
    row("integration_permission_missing-list-requests",
        installation(metadata="read"), A.LIST_REQUESTS, ACME,
        denied(R.INTEGRATION_PERMISSION_MISSING,
               accepted_permissions="organization_personal_access_token_requests=read")),
    row("integration_permission_missing-review-requests-with-read",
        installation(organization_personal_access_token_requests="read"), A.REVIEW_REQUESTS,
        ACME,
        denied(R.INTEGRATION_PERMISSION_MISSING,
               accepted_permissions="organization_personal_access_token_requests=write")),
    row("integration_permission_missing-revoke-grants-with-read",
        installation(organization_personal_access_tokens="read"), A.REVOKE_GRANTS, ACME,
        denied(R.INTEGRATION_PERMISSION_MISSING,
               accepted_permissions="organization_personal_access_tokens=write")),
    # installations
    row("installation-reads-own-org-private",
        installation(metadata="read", issues="read"), A.READ_ISSUES, PRIVATE, ok()),
    row("installation-writes-own-org-private",
        installation(metadata="read", issues="write"), A.WRITE_ISSUES, PRIVATE, ok()),
    row("installation-reads-own-org-audit-log",
        installation(organization_administration="read"), A.READ_AUDIT_LOG, ACME, ok()),
    row("installation-lists-requests",
        installation(organization_personal_access_token_requests="read"), A.LIST_REQUESTS,
        ACME, ok()),
    row("installation-reviews-requests",
        installation(organization_personal_access_token_requests="write"), A.REVIEW_REQUESTS,
        ACME, ok()),
    row("installation-lists-grants",
        installation(organization_personal_access_tokens="read"), A.LIST_GRANTS, ACME, ok()),
    row("installation-revokes-grants",
        installation(organization_personal_access_tokens="write"), A.REVOKE_GRANTS, ACME,
        ok()),
    row("installation-unaffected-by-pat-policies",
        installation(metadata="read", issues="read"), A.READ_ISSUES,
        with_policy(PRIVATE, fine_grained_allowed=False, classic_allowed=False), ok()),
    row("installation-other-org-private-not_visible",
        installation(org=GLOBEX, metadata="read", issues="write"), A.READ_ISSUES, PRIVATE,
        denied(R.NOT_VISIBLE, D.WRONG_RESOURCE_OWNER)),
    row("installation-other-org-governance-not_visible",
        installation(org=GLOBEX, organization_personal_access_tokens="write"), A.LIST_GRANTS,
        ACME, denied(R.NOT_VISIBLE, D.WRONG_RESOURCE_OWNER)),
    # A public repository is visible to everyone: not being allowed to change it is a 403.
    row("installation-other-org-public-write-integration_permission_missing",
        installation(org=GLOBEX, metadata="read", issues="write"), A.WRITE_ISSUES, PUBLIC,
        denied(R.INTEGRATION_PERMISSION_MISSING, D.WRONG_RESOURCE_OWNER,
               accepted_permissions="issues=write")),
    row("installation-unselected-public-write-integration_permission_missing",
        installation(repos=(PRIVATE.id,), metadata="read", issues="write"), A.WRITE_ISSUES,
        PUBLIC,
        denied(R.INTEGRATION_PERMISSION_MISSING, D.REPOSITORY_NOT_SELECTED,
               accepted_permissions="issues=write")),
    row("installation-unselected-public-read",
        installation(repos=(PRIVATE.id,), metadata="read"), A.READ_ISSUES, PUBLIC, ok()),
    row("installation-user-owned-private-not_visible",
        installation(metadata="read"), A.READ_REPO, ALICE_PRIVATE, denied(R.NOT_VISIBLE)),
    row("installation-narrowed-repositories-exclude",
        installation(repos=(OTHER_PRIVATE.id,), metadata="read", issues="read"), A.READ_ISSUES,
        PRIVATE, denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
    row("installation-narrowed-repositories-include",
        installation(repos=(OTHER_PRIVATE.id,), metadata="read", issues="read"), A.READ_ISSUES,
        OTHER_PRIVATE, ok()),
    row("installation-empty-repositories-exclude",
        installation(repos=(), metadata="read"), A.READ_REPO, OTHER_PRIVATE,
        denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
]  # fmt: skip

# Every valid token reads a public repository, whatever its grant and the org's policies.
PUBLIC_READERS = [
    ("fine-grained-pending", fine_grained(grant=None, request_state="pending"), PUBLIC),
    ("fine-grained-denied", fine_grained(grant=None, request_state="denied"), PUBLIC),
    ("fine-grained-revoked",
     fine_grained(grant=None, request_state="approved", revoked=True), PUBLIC),
    ("fine-grained-restricted-org",
     fine_grained(), with_policy(PUBLIC, fine_grained_allowed=False)),
    ("fine-grained-lifetime-exceeded",
     fine_grained(expires_at=None), with_policy(PUBLIC, fine_grained_max_lifetime_days=7)),
    ("fine-grained-wrong-owner", fine_grained(owner=GLOBEX.id), PUBLIC),
    ("fine-grained-public-only-no-permissions",
     fine_grained(selection="none", permissions={}), PUBLIC),
    ("fine-grained-not-selected",
     fine_grained(selection="subset", repos=(PRIVATE.id,), permissions={}), PUBLIC),
    ("fine-grained-non-member", fine_grained(user=PETER, owner=INITECH.id), PUBLIC),
    ("fine-grained-own-public-repo", fine_grained(owner=ALICE.id), ALICE_PUBLIC),
    ("fine-grained-other-users-public-repo", fine_grained(owner=ALICE.id), BOB_PUBLIC),
    ("classic-no-scopes", classic(), PUBLIC),
    ("classic-restricted-org", classic(), with_policy(PUBLIC, classic_allowed=False)),
    ("classic-lifetime-exceeded",
     classic(expires_at=None), with_policy(PUBLIC, classic_max_lifetime_days=7)),
    ("classic-non-member", classic(user=PETER), PUBLIC),
    ("classic-other-users-public-repo", classic(), BOB_PUBLIC),
    ("installation-other-org", installation(org=GLOBEX), PUBLIC),
    ("session-non-member", session(PETER), PUBLIC),
]  # fmt: skip
PUBLIC_READS = [
    row(f"public-{name}-{action.name}", principal, action, resource, ok())
    for name, principal, resource in PUBLIC_READERS
    for action in (A.READ_REPO, A.READ_ISSUES)
]

EFFECTIVE = [
    row("effective-token-lowered-after-approval-loses-write",
        fine_grained(permissions=ISSUES_READ, grant=granted(**ISSUES_WRITE)), A.WRITE_ISSUES,
        PRIVATE, denied(R.PERMISSION_MISSING, accepted_permissions="issues=write")),
    row("effective-token-lowered-after-approval-keeps-read",
        fine_grained(permissions=ISSUES_READ, grant=granted(**ISSUES_WRITE)), A.READ_ISSUES,
        PRIVATE, ok()),
    row("effective-token-dropped-permission-after-approval",
        fine_grained(permissions={"metadata": "read"}, grant=granted(**ISSUES_WRITE)),
        A.READ_ISSUES, PRIVATE,
        denied(R.PERMISSION_MISSING, accepted_permissions="issues=read")),
    row("effective-token-dropped-repository-after-approval",
        fine_grained(selection="subset", repos=(OTHER_PRIVATE.id,),
                     grant=granted("subset", (PRIVATE.id, OTHER_PRIVATE.id), **FULL)),
        A.READ_ISSUES, PRIVATE, denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
    row("effective-token-dropped-repository-keeps-the-others",
        fine_grained(selection="subset", repos=(OTHER_PRIVATE.id,),
                     grant=granted("subset", (PRIVATE.id, OTHER_PRIVATE.id), **FULL)),
        A.READ_ISSUES, OTHER_PRIVATE, ok()),
    row("effective-token-all-to-subset-after-approval",
        fine_grained(selection="subset", repos=(OTHER_PRIVATE.id,), grant=granted(**FULL)),
        A.READ_ISSUES, PRIVATE, denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
    row("effective-token-public-only-after-approval",
        fine_grained(selection="none", grant=granted(**FULL)), A.READ_ISSUES, PRIVATE,
        denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
    row("effective-token-upgraded-keeps-only-granted-read",
        fine_grained(permissions=ISSUES_WRITE, grant=granted(**ISSUES_READ)), A.WRITE_ISSUES,
        PRIVATE, denied(R.PERMISSION_MISSING, accepted_permissions="issues=write")),
    row("effective-token-upgraded-still-reads",
        fine_grained(permissions=ISSUES_WRITE, grant=granted(**ISSUES_READ)), A.READ_ISSUES,
        PRIVATE, ok()),
    row("effective-token-added-permission-not-granted",
        fine_grained(permissions=FULL, grant=granted(**ISSUES_WRITE)), A.READ_MEMBERS, ACME,
        denied(R.PERMISSION_MISSING, accepted_permissions="members=read")),
    row("effective-token-widened-to-all-keeps-granted-subset",
        fine_grained(selection="all", grant=granted("subset", (OTHER_PRIVATE.id,), **FULL)),
        A.READ_ISSUES, PRIVATE, denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
    row("effective-token-widened-to-all-reads-granted-repository",
        fine_grained(selection="all", grant=granted("subset", (OTHER_PRIVATE.id,), **FULL)),
        A.READ_ISSUES, OTHER_PRIVATE, ok()),
    row("effective-token-added-repository-not-granted",
        fine_grained(selection="subset", repos=(PRIVATE.id, OTHER_PRIVATE.id),
                     grant=granted("subset", (OTHER_PRIVATE.id, INTERNAL.id), **FULL)),
        A.READ_ISSUES, PRIVATE, denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
    row("effective-subset-intersection-reads-common-repository",
        fine_grained(selection="subset", repos=(PRIVATE.id, OTHER_PRIVATE.id),
                     grant=granted("subset", (OTHER_PRIVATE.id, INTERNAL.id), **FULL)),
        A.READ_ISSUES, OTHER_PRIVATE, ok()),
    row("effective-token-widened-from-public-only-grant",
        fine_grained(selection="all", grant=granted("none", **FULL)), A.READ_REPO, PRIVATE,
        denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
]  # fmt: skip

VISIBILITY = [
    # internal: visible to members of any organization of the same enterprise
    row("internal-session-of-other-enterprise-org-member",
        session(BOB), A.READ_REPO, INTERNAL, ok()),
    row("internal-session-of-other-enterprise-org-member-issues",
        session(BOB), A.READ_ISSUES, INTERNAL, ok()),
    row("internal-classic-of-other-enterprise-org-member",
        classic("repo", user=BOB), A.READ_ISSUES, INTERNAL, ok()),
    row("internal-classic-without-repo-scope",
        classic("public_repo", user=BOB), A.READ_REPO, INTERNAL,
        denied(R.NOT_VISIBLE, D.NO_ACCESS)),
    row("internal-session-of-own-org-member", session(ALICE), A.READ_REPO, INTERNAL, ok()),
    row("internal-does-not-open-private-repositories",
        session(BOB), A.READ_REPO, PRIVATE, denied(R.NOT_VISIBLE, D.NOT_A_MEMBER)),
    row("internal-not-outside-the-enterprise",
        session(PETER), A.READ_REPO, INTERNAL, denied(R.NOT_VISIBLE, D.NOT_A_MEMBER)),
    row("internal-of-org-without-enterprise",
        session(BOB), A.READ_REPO, INITECH_INTERNAL, denied(R.NOT_VISIBLE, D.NOT_A_MEMBER)),
    # user-owned private repositories
    row("user-private-session-of-owner", session(ALICE), A.READ_ISSUES, ALICE_PRIVATE, ok()),
    row("user-private-session-of-owner-writes",
        session(ALICE), A.WRITE_ISSUES, ALICE_PRIVATE, ok()),
    row("user-private-session-of-other-user",
        session(BOB), A.READ_REPO, ALICE_PRIVATE, denied(R.NOT_VISIBLE, D.NO_ACCESS)),
    row("user-private-fine-grained-of-owner",
        fine_grained(owner=ALICE.id, permissions=ISSUES_READ), A.READ_ISSUES, ALICE_PRIVATE,
        ok()),
    row("user-private-fine-grained-ignores-org-lifetime",
        fine_grained(owner=ALICE.id, expires_at=None), A.WRITE_ISSUES, ALICE_PRIVATE, ok()),
    row("user-private-fine-grained-subset",
        fine_grained(owner=ALICE.id, selection="subset", repos=(ALICE_PUBLIC.id,)),
        A.READ_REPO, ALICE_PRIVATE, denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
    row("user-private-fine-grained-public-only",
        fine_grained(owner=ALICE.id, selection="none"), A.READ_REPO, ALICE_PRIVATE,
        denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
    row("user-private-fine-grained-missing-write",
        fine_grained(owner=ALICE.id, permissions=ISSUES_READ), A.WRITE_ISSUES, ALICE_PRIVATE,
        denied(R.PERMISSION_MISSING, accepted_permissions="issues=write")),
    row("user-private-fine-grained-for-an-org",
        fine_grained(), A.READ_REPO, ALICE_PRIVATE,
        denied(R.NOT_VISIBLE, D.WRONG_RESOURCE_OWNER)),
    row("user-private-fine-grained-of-other-user",
        fine_grained(user=BOB, owner=BOB.id), A.READ_REPO, ALICE_PRIVATE,
        denied(R.NOT_VISIBLE, D.WRONG_RESOURCE_OWNER)),
    row("user-private-classic-of-owner", classic("repo"), A.READ_ISSUES, ALICE_PRIVATE, ok()),
    row("user-private-classic-without-repo",
        classic("public_repo"), A.READ_ISSUES, ALICE_PRIVATE,
        denied(R.NOT_VISIBLE, D.NO_ACCESS)),
    row("user-private-classic-of-other-user",
        classic("repo", user=BOB), A.READ_REPO, ALICE_PRIVATE,
        denied(R.NOT_VISIBLE, D.NO_ACCESS)),
    row("user-private-anonymous", None, A.READ_REPO, BOB_PRIVATE, denied(R.NOT_VISIBLE)),
]  # fmt: skip

SESSIONS = [
    row("session-owner-administers-org", session(OWEN), A.ADMINISTER_ORG, ACME, ok()),
    row("session-member-administers-org-not_an_owner",
        session(ALICE), A.ADMINISTER_ORG, ACME, denied(R.NOT_AN_OWNER)),
    row("session-owner-of-another-org-not_an_owner",
        session(PETER), A.ADMINISTER_ORG, ACME, denied(R.NOT_AN_OWNER)),
    row("session-enterprise-owner-administers-enterprise",
        session(ERIN), A.ADMINISTER_ENTERPRISE, ENTERPRISE, ok()),
    row("session-org-owner-not-enterprise-owner",
        session(OWEN), A.ADMINISTER_ENTERPRISE, ENTERPRISE, denied(R.NOT_AN_OWNER)),
    row("session-enterprise-owner-not-org-owner",
        session(ERIN), A.ADMINISTER_ORG, ACME, denied(R.NOT_AN_OWNER)),
    row("session-member-reads-members", session(ALICE), A.READ_MEMBERS, ACME, ok()),
    row("session-non-member-reads-members",
        session(PETER), A.READ_MEMBERS, ACME, denied(R.NOT_AN_OWNER)),
    row("session-owner-reads-audit-log", session(OWEN), A.READ_AUDIT_LOG, ACME, ok()),
    row("session-member-reads-audit-log-not_an_owner",
        session(ALICE), A.READ_AUDIT_LOG, ACME, denied(R.NOT_AN_OWNER)),
    row("session-member-reads-private", session(ALICE), A.READ_ISSUES, PRIVATE, ok()),
    row("session-member-writes-private", session(ALICE), A.WRITE_ISSUES, PRIVATE, ok()),
    row("session-non-member-private-not_visible",
        session(PETER), A.READ_ISSUES, PRIVATE, denied(R.NOT_VISIBLE, D.NOT_A_MEMBER)),
]  # fmt: skip

TABLE = [*AUTHENTICATION, *FINE_GRAINED, *CLASSIC, *APPS, *PUBLIC_READS, *EFFECTIVE, *VISIBILITY,
         *SESSIONS]  # fmt: skip


@pytest.mark.parametrize(("principal", "action", "resource", "expected"), TABLE)
def test_truth_table(
    principal: Principal, action: Action, resource: Resource, expected: dict
) -> None:
    check(principal, action, resource, expected)


# ---- precedence: SPEC §5's order for a fine-grained PAT on a non-public resource --------------

# Each check of the order, with how to make only that check fail (on top of a token that may
# write the issues of acme's private repository) and what it answers then.
ORDER: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("org_policy", {"policy": {"fine_grained_allowed": False}},
     denied(R.FINE_GRAINED_RESTRICTED, org_login="acme")),
    ("lifetime", {"expires_at": None},
     denied(R.LIFETIME_EXCEEDED, org_login="acme", max_lifetime_days=366, token_id=TOKEN_ID)),
    ("resource_owner", {"owner": GLOBEX.id}, denied(R.NOT_VISIBLE, D.WRONG_RESOURCE_OWNER)),
    ("active_grant", {"grant": None, "request_state": "pending"},
     denied(R.NOT_VISIBLE, D.APPROVAL_PENDING)),
    ("repository_selection", {"selection": "subset", "repos": (OTHER_PRIVATE.id,)},
     denied(R.NOT_VISIBLE, D.REPOSITORY_NOT_SELECTED)),
    ("permission_level", {"permissions": ISSUES_READ},
     denied(R.PERMISSION_MISSING, accepted_permissions="issues=write")),
    ("user_access", {"user": BOB}, denied(R.NOT_VISIBLE, D.NOT_A_MEMBER)),
]  # fmt: skip


def failing(*failures: dict[str, Any]) -> tuple[FineGrainedPrincipal, RepoFacts]:
    settings_: dict[str, Any] = {}
    for failure in failures:
        assert not settings_.keys() & failure.keys()
        settings_.update(failure)
    policy = settings_.pop("policy", {})
    return fine_grained(**settings_), with_policy(PRIVATE, **policy)


PRECEDENCE = [
    pytest.param((), ok(), id="nothing-fails"),
    *[pytest.param((failure,), expected, id=f"only-{name}") for name, failure, expected in ORDER],
    # Every pair (the adjacent ones are the order itself): the earlier check answers.
    *[
        pytest.param((first[1], second[1]), first[2], id=f"{first[0]}>{second[0]}")
        for first, second in combinations(ORDER, 2)
    ],
    pytest.param(tuple(failure for _, failure, _ in ORDER), ORDER[0][2], id="all-seven-fail"),
]


@pytest.mark.parametrize(("failures", "expected"), PRECEDENCE)
def test_precedence(failures: tuple[dict[str, Any], ...], expected: dict) -> None:
    principal, resource = failing(*failures)
    check(principal, Actions.WRITE_ISSUES, resource, expected)


def test_the_table_names_every_reason_and_detail() -> None:
    expectations = [param.values[3] for param in TABLE] + [param.values[1] for param in PRECEDENCE]
    reasons = {expected["reason"] for expected in expectations}
    details = {expected["detail"] for expected in expectations if "detail" in expected}
    assert reasons == set(Reason)
    assert details == set(Detail) - {Detail.NONE}


def test_row_ids_are_unique() -> None:
    ids = [param.id for param in TABLE]
    assert len(ids) == len(set(ids))


# ---- hypothesis: small worlds ---------------------------------------------------------------

ORGS = (ACME, GLOBEX, INITECH)
ORG_IDS = tuple(org.id for org in ORGS)
USER_IDS = (ALICE.id, BOB.id)
REPO_IDS = (100, 101, 102, 103)
PERMISSION_NAMES = (
    "metadata",
    "issues",
    "members",
    "organization_administration",
    "organization_personal_access_token_requests",
    "organization_personal_access_tokens",
)
LEVELS = ("read", "write", "admin")
SCOPES = ("repo", "public_repo", "read:org", "write:org", "admin:org", "read:audit_log",
          "audit_log", "user")  # fmt: skip
ALL_ACTIONS = tuple(value for value in vars(Actions).values() if isinstance(value, Action))
TOKEN_ACTIONS = (A.READ_REPO, A.READ_ISSUES, A.WRITE_ISSUES, A.READ_MEMBERS, A.READ_AUDIT_LOG)

permission_sets = st.dictionaries(st.sampled_from(PERMISSION_NAMES), st.sampled_from(LEVELS))
repo_id_sets = st.frozensets(st.sampled_from(REPO_IDS))
# Random facts rarely line up (owner, grant, selection, permission, lifetime and membership all
# at once) and nearly every random example would be denied early, so a token is built aimed at
# the resource asked about and then misses it on at most two of its facts: the properties then
# see answers that turn on one or two checks. Policies are permissive three times in four.
permissive = st.sampled_from((True, True, True, False))


def misses(*facts: str) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(facts), max_size=2)


# The facts each kind of token can miss its target on, and those that narrowing changes.
FACTS = {
    "fine-grained": ("user", "owner", "selection", "permission", "grant", "lifetime"),
    "classic": ("user", "scopes", "lifetime"),
    "installation": ("org", "repositories", "permission"),
}
NARROWED_FACTS = {
    "fine-grained": ("selection", "permission"),
    "classic": ("scopes",),
    "installation": ("repositories", "permission"),
}


@st.composite
def org_facts(draw: st.DrawFn) -> OrgFacts:
    return replace(
        draw(st.sampled_from(ORGS)),
        fine_grained_allowed=draw(permissive),
        classic_allowed=draw(permissive),
        fine_grained_max_lifetime_days=draw(st.sampled_from((None, 30, 366, 366))),
        classic_max_lifetime_days=draw(st.sampled_from((None, None, 30, 366))),
    )


@st.composite
def repo_facts(
    draw: st.DrawFn, visibilities: tuple[str, ...] = ("public", "private", "internal")
) -> RepoFacts:
    repo_id = draw(st.sampled_from(REPO_IDS))
    visibility = draw(st.sampled_from(visibilities))
    if draw(st.booleans()):
        org = draw(org_facts())
        return RepoFacts(repo_id, org.id, visibility, org)
    # Users have no internal repositories.
    owner_id = draw(st.sampled_from(USER_IDS))
    return RepoFacts(repo_id, owner_id, "private" if visibility == "internal" else visibility)


resources = st.one_of(
    repo_facts(), repo_facts(), repo_facts(), org_facts(), st.just(ENTERPRISE), st.none()
)


def make_user(
    user_id: int, roles: Mapping[int, str], enterprise_owner_of: frozenset[int]
) -> UserFacts:
    enterprises = frozenset(
        org.enterprise_id for org in ORGS if org.id in roles and org.enterprise_id is not None
    )
    return UserFacts(
        user_id,
        f"user{user_id}",
        roles=dict(roles),
        enterprise_ids=enterprises,
        enterprise_owner_of=enterprise_owner_of,
    )


@st.composite
def user_facts(draw: st.DrawFn) -> UserFacts:
    return make_user(
        draw(st.sampled_from(USER_IDS)),
        draw(st.dictionaries(st.sampled_from(ORG_IDS), st.sampled_from(("owner", "member")))),
        draw(st.sampled_from((frozenset(), frozenset({ENTERPRISE.id})))),
    )


def org_of(resource: Resource) -> OrgFacts | None:
    if isinstance(resource, OrgFacts):
        return resource
    return resource.org if isinstance(resource, RepoFacts) else None


def owner_of(resource: Resource) -> int | None:
    if isinstance(resource, OrgFacts):
        return resource.id
    return resource.owner_id if isinstance(resource, RepoFacts) else None


@st.composite
def user_aimed_at(draw: st.DrawFn, resource: Resource, hit: bool = True) -> UserFacts:
    """A user; with ``hit``, one with access to ``resource`` (a member, or its owner)."""
    user = draw(user_facts())
    if not hit:
        return user
    org = org_of(resource)
    if org is not None:
        role = draw(st.sampled_from(("owner", "member")))
        return make_user(user.id, {**user.roles, org.id: role}, user.enterprise_owner_of)
    if isinstance(resource, RepoFacts):
        return make_user(resource.owner_id, user.roles, user.enterprise_owner_of)
    return user


@st.composite
def selections(draw: st.DrawFn) -> tuple[str, frozenset[int]]:
    kind = draw(st.sampled_from(("none", "all", "subset")))
    return kind, draw(repo_id_sets) if kind == "subset" else frozenset()


@st.composite
def selections_aimed_at(
    draw: st.DrawFn, resource: Resource, hit: bool = True
) -> tuple[str, frozenset[int]]:
    if not hit:
        if not isinstance(resource, RepoFacts):
            return draw(selections())
        if draw(st.booleans()):
            return "none", frozenset()
        return "subset", draw(repo_id_sets) - {resource.id}
    if isinstance(resource, RepoFacts) and draw(st.booleans()):
        return "subset", draw(repo_id_sets) | {resource.id}
    return "all", frozenset()


@st.composite
def permissions_aimed_at(draw: st.DrawFn, action: Action, hit: bool = True) -> dict[str, str]:
    """Any permissions; the action's at or above its level with ``hit``, below it without."""
    permissions = draw(permission_sets)
    if action.permission is not None:
        needed = LEVELS.index(action.level)
        level = draw(st.sampled_from(LEVELS[needed:] if hit else (*LEVELS[:needed], None)))
        permissions.pop(action.permission, None)
        if level is not None:
            permissions[action.permission] = level
    return permissions


@st.composite
def lifetimes(
    draw: st.DrawFn, hit: bool = True, valid: bool = False
) -> tuple[datetime, datetime | None]:
    """``(issued_at, expires_at)``: within every limit with ``hit``; unexpired with ``valid``."""
    if hit:
        issued_at = NOW - timedelta(days=draw(st.integers(0, 5)))
        return issued_at, issued_at + timedelta(days=draw(st.integers(7, 30)))
    issued_at = NOW - timedelta(days=draw(st.integers(0, 400)))
    if draw(st.booleans()):
        return issued_at, None
    if valid:
        return issued_at, NOW + timedelta(hours=draw(st.integers(1, 24 * 400)))
    return issued_at, issued_at + timedelta(days=draw(st.integers(1, 500)))


@st.composite
def fine_grained_principals(
    draw: st.DrawFn,
    action: Action | None = None,
    resource: Resource = None,
    user: UserFacts | None = None,
    valid: bool = False,
    missed: frozenset[str] | None = None,
) -> FineGrainedPrincipal:
    """A fine-grained token aimed at ``action`` on ``resource``, missing on a fact or two."""
    if missed is None:
        missed = draw(misses(*FACTS["fine-grained"]))
    if user is None:
        user = draw(user_aimed_at(resource, "user" not in missed))
    owner_id = owner_of(resource)
    if owner_id is None or "owner" in missed:
        owner_id = draw(st.sampled_from((user.id, *ORG_IDS)))
    selection, repository_ids = draw(selections_aimed_at(resource, "selection" not in missed))
    if action is None:
        permissions = draw(permission_sets)
    else:
        permissions = draw(permissions_aimed_at(action, "permission" not in missed))
    grant_kind = draw(
        st.sampled_from(("none", "other") if "grant" in missed else ("as-asked", "wider"))
    )
    grant: GrantFacts | None = None
    if grant_kind == "as-asked":
        grant = GrantFacts(selection, repository_ids, dict(permissions))
    elif grant_kind == "wider":
        grant = GrantFacts("all", frozenset(), dict.fromkeys(PERMISSION_NAMES, "admin"))
    elif grant_kind == "other":
        grant_selection, grant_ids = draw(selections())
        grant = GrantFacts(grant_selection, grant_ids, draw(permission_sets))
    issued_at, expires_at = draw(lifetimes("lifetime" not in missed, valid))
    return FineGrainedPrincipal(
        user=user,
        token_id=draw(st.integers(1, 9)),
        resource_owner_id=owner_id,
        repository_selection=selection,
        repository_ids=repository_ids,
        permissions=permissions,
        issued_at=issued_at,
        expires_at=expires_at,
        grant=grant,
        request_state=draw(st.sampled_from((None, "pending", "denied", "approved"))),
        grant_revoked=draw(st.booleans()),
    )


@st.composite
def classic_principals(
    draw: st.DrawFn,
    resource: Resource = None,
    user: UserFacts | None = None,
    valid: bool = False,
    missed: frozenset[str] | None = None,
) -> ClassicPrincipal:
    if missed is None:
        missed = draw(misses(*FACTS["classic"]))
    if user is None:
        user = draw(user_aimed_at(resource, "user" not in missed))
    issued_at, expires_at = draw(lifetimes("lifetime" not in missed, valid))
    if "scopes" in missed:
        scopes = draw(st.frozensets(st.sampled_from(SCOPES)))
    else:
        scopes = frozenset(SCOPES)
    return ClassicPrincipal(user, draw(st.integers(1, 9)), scopes, issued_at, expires_at)


@st.composite
def installation_principals(
    draw: st.DrawFn,
    action: Action | None = None,
    resource: Resource = None,
    missed: frozenset[str] | None = None,
) -> InstallationPrincipal:
    if missed is None:
        missed = draw(misses(*FACTS["installation"]))
    org = org_of(resource)
    org_id = org.id if org is not None and "org" not in missed else draw(st.sampled_from(ORG_IDS))
    repository_ids = draw(st.none() | repo_id_sets)
    if isinstance(resource, RepoFacts) and repository_ids is not None:
        if "repositories" in missed:
            repository_ids -= {resource.id}
        else:
            repository_ids |= {resource.id}
    if action is None:
        permissions = draw(permission_sets)
    else:
        permissions = draw(permissions_aimed_at(action, "permission" not in missed))
    return InstallationPrincipal(
        installation_id=50,
        app_id=60,
        org_id=org_id,
        permissions=permissions,
        repository_ids=repository_ids,
    )


Case = tuple[Principal, Action, Resource]
PRINCIPAL_KINDS = ("fine-grained", "classic", "installation", "session", "app", "anonymous")


@st.composite
def cases(draw: st.DrawFn, kind: str, missed: frozenset[str] | None = None) -> Case:
    """``(principal, action, resource)`` with a principal of ``kind`` aimed at the two others."""
    # Half the time an action a token is for, where most checks are made.
    action = draw(st.one_of(st.sampled_from(TOKEN_ACTIONS), st.sampled_from(ALL_ACTIONS)))
    resource = draw(resources)
    if kind == "fine-grained":
        principal: Principal = draw(fine_grained_principals(action, resource, missed=missed))
    elif kind == "classic":
        principal = draw(classic_principals(resource, missed=missed))
    elif kind == "installation":
        principal = draw(installation_principals(action, resource, missed=missed))
    elif kind == "session":
        principal = SessionPrincipal(draw(user_aimed_at(resource)))
    elif kind == "app":
        principal = AppPrincipal(draw(st.sampled_from((60, 61))))
    else:
        principal = None
    return principal, action, resource


def lowered(draw: st.DrawFn, permissions: Mapping[str, str]) -> dict[str, str]:
    """Each permission kept, lowered or removed."""
    result = {}
    for name, level in permissions.items():
        new = draw(st.sampled_from((*LEVELS[: LEVELS.index(level) + 1], None)))
        if new is not None:
            result[name] = new
    return result


def fewer(draw: st.DrawFn, ids: frozenset[int]) -> frozenset[int]:
    """Some of ``ids``, often none at all (an empty list is the edge most easily got wrong)."""
    if not ids or draw(st.booleans()):
        return frozenset()
    return frozenset(draw(st.sets(st.sampled_from(sorted(ids)))))


def fewer_scopes(draw: st.DrawFn, scopes: frozenset[str]) -> frozenset[str]:
    """One scope fewer (the sharpest narrowing), or any fewer."""
    if scopes and draw(st.booleans()):
        return scopes - {draw(st.sampled_from(sorted(scopes)))}
    return fewer(draw, scopes)


def fewer_repositories(
    draw: st.DrawFn, selection: str, repository_ids: frozenset[int]
) -> tuple[str, frozenset[int]]:
    """all -> all | subset | none; subset -> a smaller subset | none; none -> none."""
    choices = {"all": ("all", "subset", "none"), "subset": ("subset", "none")}
    choice = draw(st.sampled_from(choices.get(selection, ("none",))))
    if choice != "subset":
        return choice, frozenset()
    return choice, fewer(draw, frozenset(REPO_IDS) if selection == "all" else repository_ids)


@st.composite
def narrowed_cases(draw: st.DrawFn, kind: str) -> tuple[Principal, Principal, Action, Resource]:
    """``(token, narrowed token, action, resource)``.

    Half the time the token misses only on what narrowing changes, so that the answer turns on
    exactly the facts being narrowed.
    """
    missed = draw(st.one_of(misses(*NARROWED_FACTS[kind]), misses(*FACTS[kind])))
    wide, action, resource = draw(cases(kind, missed))
    if isinstance(wide, FineGrainedPrincipal):
        selection, repository_ids = fewer_repositories(
            draw, wide.repository_selection, wide.repository_ids
        )
        narrow: Principal = replace(
            wide,
            repository_selection=selection,
            repository_ids=repository_ids,
            permissions=lowered(draw, wide.permissions),
        )
    elif isinstance(wide, ClassicPrincipal):
        narrow = replace(wide, scopes=fewer_scopes(draw, wide.scopes))
    else:
        assert isinstance(wide, InstallationPrincipal)
        every = wide.repository_ids is None
        narrow = replace(
            wide,
            permissions=lowered(draw, wide.permissions),
            repository_ids=None
            if every and draw(st.booleans())
            else fewer(draw, frozenset(REPO_IDS) if every else wide.repository_ids),
        )
    return wide, narrow, action, resource


@st.composite
def users_with_tokens(draw: st.DrawFn) -> tuple[UserFacts, Principal, Action, Resource]:
    """A user with any access, and a token of theirs aimed past it."""
    action = draw(st.sampled_from(TOKEN_ACTIONS))
    resource = draw(resources)
    user = draw(user_facts())
    token = draw(
        st.one_of(
            fine_grained_principals(action, resource, user=user),
            classic_principals(resource, user=user),
        )
    )
    return user, token, action, resource


def one_step_narrowings(token: Principal) -> list[Principal]:
    """Every narrowing of ``token`` by one step: a permission dropped or lowered a level, a
    scope or repository removed, the repository selection shrunk (to none, to an empty subset).
    """
    if isinstance(token, ClassicPrincipal):
        return [replace(token, scopes=token.scopes - {scope}) for scope in token.scopes]
    assert isinstance(token, FineGrainedPrincipal | InstallationPrincipal)
    every = frozenset(REPO_IDS)
    narrowings: list[Principal] = []
    for name, level in token.permissions.items():
        rest = {other: value for other, value in token.permissions.items() if other != name}
        narrowings.append(replace(token, permissions=rest))
        if level != "read":
            lower = LEVELS[LEVELS.index(level) - 1]
            narrowings.append(replace(token, permissions={**rest, name: lower}))
    if isinstance(token, InstallationPrincipal):
        ids = every if token.repository_ids is None else token.repository_ids
        subsets = [ids, frozenset(), *(ids - {repo_id} for repo_id in ids)]
        narrowings += [replace(token, repository_ids=subset) for subset in subsets]
        return narrowings
    shrunk: list[tuple[str, frozenset[int]]] = []
    if token.repository_selection != "none":
        ids = every if token.repository_selection == "all" else token.repository_ids
        shrunk += [("none", frozenset()), ("subset", ids), ("subset", frozenset())]
        shrunk += [("subset", ids - {repo_id}) for repo_id in ids]
    return narrowings + [
        replace(token, repository_selection=selection, repository_ids=ids)
        for selection, ids in shrunk
    ]


def assert_no_step_widens(token: Principal, action: Action, resource: Resource, depth: int) -> None:
    allowed = decide(token, action, resource, now=NOW).allowed
    for narrower in one_step_narrowings(token):
        if not allowed:
            assert not decide(narrower, action, resource, now=NOW).allowed, (token, narrower)
        if depth > 1:
            assert_no_step_widens(narrower, action, resource, depth - 1)


# ---- hypothesis: the properties -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fine-grained", "classic", "installation"])
@PROPERTY
@given(data=st.data())
def test_narrowing_a_token_never_widens_access(kind: str, data: st.DataObject) -> None:
    """Fewer permissions, lower levels, fewer repositories or scopes: never a new yes."""
    wide, narrow, action, resource = data.draw(narrowed_cases(kind))
    if not decide(wide, action, resource, now=NOW).allowed:
        assert not decide(narrow, action, resource, now=NOW).allowed
    # And every narrowing by one step, then by one more: the aimed tokens that are allowed
    # reach, after a step, the denials that turn on exactly one narrowed fact.
    assert_no_step_widens(wide, action, resource, depth=2)


@PROPERTY
@given(
    repo=repo_facts(visibilities=("public",)),
    action=st.sampled_from((A.READ_REPO, A.READ_ISSUES)),
    data=st.data(),
)
def test_every_valid_token_reads_public_repositories(
    repo: RepoFacts, action: Action, data: st.DataObject
) -> None:
    # Aimed at another resource, so that grants, owners and selections miss this one.
    elsewhere = data.draw(resources)
    principal = data.draw(
        st.one_of(
            fine_grained_principals(action, elsewhere, valid=True),
            classic_principals(elsewhere, valid=True),
        )
    )
    assert decide(principal, action, repo, now=NOW) == Decision(True, Reason.ALLOWED)


@PROPERTY
@given(case=st.one_of(cases("fine-grained"), cases("classic")))
def test_an_expired_token_is_bad_credentials_everywhere(case: Case) -> None:
    principal, action, resource = case
    assert isinstance(principal, FineGrainedPrincipal | ClassicPrincipal)
    expired = principal.expires_at is not None and principal.expires_at <= NOW
    decision = decide(principal, action, resource, now=NOW)
    assert (decision.reason is Reason.BAD_CREDENTIALS) == expired


@PROPERTY
@given(user_token_action_resource=users_with_tokens())
def test_a_token_never_exceeds_its_users_own_access(
    user_token_action_resource: tuple[UserFacts, Principal, Action, Resource],
) -> None:
    user, token, action, resource = user_token_action_resource
    if not decide(SessionPrincipal(user), action, resource, now=NOW).allowed:
        assert not decide(token, action, resource, now=NOW).allowed


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("decide() must do no I/O")


@contextmanager
def no_io() -> Iterator[None]:
    """Files, sockets, name lookups and subprocesses all raise while inside."""
    with ExitStack() as stack:
        for target in ("builtins.open", "io.open", "os.open", "socket.create_connection",
                       "socket.getaddrinfo", "subprocess.Popen"):  # fmt: skip
            stack.enter_context(mock.patch(target, _refuse))
        for method in ("connect", "connect_ex", "sendto", "sendall"):
            stack.enter_context(mock.patch.object(socket.socket, method, _refuse))
        yield


def test_the_io_guard_refuses_files_and_sockets(tmp_path: Any) -> None:
    path = tmp_path / "facts.txt"
    path.write_text("facts")
    with socket.socket() as sock, no_io():
        with pytest.raises(AssertionError, match="no I/O"):
            open(path)  # noqa: SIM115
        with pytest.raises(AssertionError, match="no I/O"):
            path.read_text()
        with pytest.raises(AssertionError, match="no I/O"):
            sock.connect(("127.0.0.1", 9))
        with pytest.raises(AssertionError, match="no I/O"):
            socket.create_connection(("127.0.0.1", 9))
    assert path.read_text() == "facts"


@PROPERTY
@given(case=st.one_of(*(cases(kind) for kind in PRINCIPAL_KINDS)))
def test_decide_is_deterministic_and_does_no_io(case: Case) -> None:
    principal, action, resource = case
    principal_before, resource_before = copy.deepcopy(principal), copy.deepcopy(resource)
    with no_io():
        first = decide(principal, action, resource, now=NOW)
        again = decide(principal, action, resource, now=NOW)
        on_copies = decide(principal_before, action, resource_before, now=NOW)
    assert first == again == on_copies
    assert isinstance(first, Decision)
    assert first.allowed == (first.reason is Reason.ALLOWED)
    # Nothing it was given was changed (the permissions are plain dicts).
    assert principal == principal_before
    assert resource == resource_before
