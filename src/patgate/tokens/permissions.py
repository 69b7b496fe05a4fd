"""The catalogue of fine-grained permissions and their levels (GitHub's ``app-permissions``)."""

from __future__ import annotations

import enum
from collections.abc import Mapping

from patgate.errors import InvalidInput


class Group(enum.StrEnum):
    REPOSITORY = "repository"
    ORGANIZATION = "organization"
    # GitHub's API calls account permissions "other".
    ACCOUNT = "other"


LEVEL_RANK = {"read": 1, "write": 2, "admin": 3}

_RW = ("read", "write")
_RWA = ("read", "write", "admin")

REPOSITORY_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "actions": _RW, "administration": _RW, "attestations": _RW, "checks": _RW,
    "codespaces": _RW, "contents": _RW, "dependabot_secrets": _RW, "deployments": _RW,
    "discussions": _RW, "environments": _RW, "issues": _RW, "merge_queues": _RW,
    "metadata": _RW, "packages": _RW, "pages": _RW, "pull_requests": _RW,
    "repository_custom_properties": _RW, "repository_hooks": _RW, "repository_projects": _RWA,
    "secret_scanning_alerts": _RW, "secrets": _RW, "security_events": _RW, "single_file": _RW,
    "statuses": _RW, "vulnerability_alerts": _RW, "workflows": ("write",),
}  # fmt: skip

ORGANIZATION_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "members": _RW, "organization_administration": _RW, "organization_custom_roles": _RW,
    "organization_custom_org_roles": _RW, "organization_custom_properties": _RWA,
    "organization_announcement_banners": _RW, "organization_events": ("read",),
    "organization_hooks": _RW, "organization_personal_access_tokens": _RW,
    "organization_personal_access_token_requests": _RW, "organization_plan": ("read",),
    "organization_projects": _RWA, "organization_packages": _RW, "organization_secrets": _RW,
    "organization_self_hosted_runners": _RW, "organization_user_blocking": _RW,
}  # fmt: skip

ACCOUNT_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "email_addresses": _RW, "followers": _RW, "git_ssh_keys": _RW, "gpg_keys": _RW,
    "interaction_limits": _RW, "profile": ("write",), "starring": _RW,
}  # fmt: skip

CATALOGUE: dict[str, tuple[Group, tuple[str, ...]]] = {
    **{name: (Group.REPOSITORY, levels) for name, levels in REPOSITORY_PERMISSIONS.items()},
    **{name: (Group.ORGANIZATION, levels) for name, levels in ORGANIZATION_PERMISSIONS.items()},
    **{name: (Group.ACCOUNT, levels) for name, levels in ACCOUNT_PERMISSIONS.items()},
}

Permissions = dict[str, str]


def normalize(permissions: Mapping[str, str], *, owner_is_org: bool) -> Permissions:
    """Validate ``{name: level}`` for a token whose resource owner is an org or the user.

    Returns a sorted copy with ``metadata: read`` added (GitHub always includes it).
    Raises :class:`InvalidInput` naming the first unknown permission or level, or a
    permission of the wrong group (organization permissions need an organization owner,
    account permissions need the user as owner).
    """
    result: Permissions = {}
    for name, level in permissions.items():
        entry = CATALOGUE.get(name)
        if entry is None:
            raise InvalidInput(f"unknown permission {name!r}", field="permissions")
        group, levels = entry
        if level not in levels:
            raise InvalidInput(
                f"permission {name!r} takes {' or '.join(levels)}, not {level!r}",
                field="permissions",
            )
        if group is Group.ORGANIZATION and not owner_is_org:
            raise InvalidInput(
                f"{name!r} is an organization permission: the resource owner must be an "
                "organization",
                field="permissions",
            )
        if group is Group.ACCOUNT and owner_is_org:
            raise InvalidInput(
                f"{name!r} is an account permission: the resource owner must be yourself",
                field="permissions",
            )
        result[name] = level
    if LEVEL_RANK.get(result.get("metadata", ""), 0) < LEVEL_RANK["read"]:
        result["metadata"] = "read"
    return dict(sorted(result.items()))


def parse_assignment(text: str) -> tuple[str, str]:
    """``"issues=write"`` → ``("issues", "write")``; raises :class:`InvalidInput` otherwise."""
    name, sep, level = text.partition("=")
    if not sep or not name or not level:
        raise InvalidInput(f"permission {text!r} is not NAME=LEVEL", field="permissions")
    return name.strip(), level.strip()


def grouped(permissions: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """GitHub's API shape: ``{"organization": {...}, "repository": {...}, "other": {...}}``."""
    groups: dict[str, dict[str, str]] = {g.value: {} for g in Group}
    for name, level in permissions.items():
        group = CATALOGUE[name][0] if name in CATALOGUE else Group.ACCOUNT
        groups[group.value][name] = level
    return {"organization": groups["organization"], "repository": groups["repository"],
            "other": groups["other"]}  # fmt: skip


def satisfies(granted: str | None, needed: str) -> bool:
    return granted is not None and LEVEL_RANK[granted] >= LEVEL_RANK[needed]


def narrowed(asked: Mapping[str, str], allowed: Mapping[str, str]) -> Permissions:
    """The intersection: each permission at the lower of the two levels, if both have it."""
    result: Permissions = {}
    for name, level in asked.items():
        other = allowed.get(name)
        if other is not None:
            result[name] = level if LEVEL_RANK[level] <= LEVEL_RANK[other] else other
    return result


CLASSIC_SCOPES = (
    "repo", "repo:status", "repo_deployment", "public_repo", "repo:invite", "security_events",
    "workflow", "write:packages", "read:packages", "delete:packages", "admin:org", "write:org",
    "read:org", "manage_runners:org", "admin:public_key", "write:public_key", "read:public_key",
    "admin:repo_hook", "write:repo_hook", "read:repo_hook", "admin:org_hook", "gist",
    "notifications", "user", "read:user", "user:email", "user:follow", "delete_repo",
    "write:discussion", "read:discussion", "admin:enterprise", "manage_billing:enterprise",
    "read:enterprise", "audit_log", "read:audit_log", "admin:gpg_key", "write:gpg_key",
    "read:gpg_key", "admin:ssh_signing_key", "write:ssh_signing_key", "read:ssh_signing_key",
    "codespace", "project", "read:project", "site_admin",
)  # fmt: skip
