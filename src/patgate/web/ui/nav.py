"""The sidebars of the settings pages. Adding a page to a sidebar is one ``NavItem`` here.

``href`` is formatted with the page's path parameters (``{org}``, ``{enterprise}``); ``key``
is what a route passes as ``nav_key`` to mark its item as the current page.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NavItem:
    key: str
    label: str
    href: str


@dataclass(frozen=True, slots=True)
class NavSection:
    """A group of items under a heading (``None``: no heading)."""

    label: str | None
    items: tuple[NavItem, ...]


USER_SETTINGS_NAV: tuple[NavSection, ...] = (
    NavSection(
        None,
        (
            NavItem("profile", "Public profile", "/settings/profile"),
            NavItem("organizations", "Organizations", "/settings/organizations"),
            NavItem("enterprises", "Enterprises", "/settings/enterprises"),
        ),
    ),
    NavSection(
        "Developer settings",
        (
            NavItem("fine-grained", "Fine-grained tokens", "/settings/personal-access-tokens"),
            NavItem("classic", "Tokens (classic)", "/settings/tokens"),
        ),
    ),
)

ORG_SETTINGS_NAV: tuple[NavSection, ...] = (
    NavSection(None, (NavItem("profile", "General", "/organizations/{org}/settings/profile"),)),
    NavSection(
        "Personal access tokens",
        (
            NavItem(
                "pat-settings", "Settings", "/organizations/{org}/settings/personal-access-tokens"
            ),
            NavItem(
                "pat-active",
                "Active tokens",
                "/organizations/{org}/settings/personal-access-tokens-active",
            ),
            NavItem(
                "pat-requests",
                "Pending requests",
                "/organizations/{org}/settings/personal-access-token-requests",
            ),
        ),
    ),
    NavSection(
        "Integrations",
        (NavItem("installations", "GitHub Apps", "/organizations/{org}/settings/installations"),),
    ),
    NavSection(
        "Archive", (NavItem("audit-log", "Audit log", "/organizations/{org}/settings/audit-log"),)
    ),
    NavSection(
        "Developer settings",
        (NavItem("apps", "GitHub Apps", "/organizations/{org}/settings/apps"),),
    ),
)

ENTERPRISE_SETTINGS_NAV: tuple[NavSection, ...] = (
    NavSection(
        "Policies",
        (
            NavItem(
                "pat-policies",
                "Personal access tokens",
                "/enterprises/{enterprise}/settings/personal-access-tokens",
            ),
        ),
    ),
)
