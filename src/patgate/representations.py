"""GitHub's JSON representations, built from plain values.

Pure functions on the API hot path: they build dicts with f-strings, no models, no I/O. Base URLs
are passed in: ``api`` is the REST root (``http://127.0.0.1:8000/api/v3``), ``web`` the site root
(``http://127.0.0.1:8000``); a trailing slash on either is ignored.

Conventions, as GitHub (and githubkit, which validates them) expect:

* timestamps are ``YYYY-MM-DDTHH:MM:SSZ`` in UTC (see :func:`timestamp`);
* nullable fields are always present, as ``None``, never left out;
* ``node_id`` is GitHub's legacy global id, base64 of ``"0<len>:<Type><id>"``
  (``MDQ6VXNlcjE=`` is ``04:User1``), see :func:`node_id`;
* URL templates (``{/sha}``, ``{+path}``...) are written exactly as GitHub writes them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "full_repository",
    "issue",
    "minimal_repository",
    "node_id",
    "organization",
    "private_user",
    "simple_user",
    "timestamp",
]

AccountType = Literal["User", "Organization"]
Visibility = Literal["public", "private", "internal"]
AuthorAssociation = Literal[
    "COLLABORATOR",
    "CONTRIBUTOR",
    "FIRST_TIMER",
    "FIRST_TIME_CONTRIBUTOR",
    "MANNEQUIN",
    "MEMBER",
    "NONE",
    "OWNER",
]
StateReason = Literal["completed", "reopened", "not_planned", "duplicate"]

_REPOSITORY_PERMISSIONS = ("admin", "maintain", "push", "triage", "pull")


def timestamp(value: datetime | None) -> str | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, fractions dropped; naive datetimes are taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}Z"
    )


@lru_cache(maxsize=4096)
def node_id(kind: str, id: int) -> str:
    """GitHub's legacy global node id for object ``kind`` (``User``, ``Repository``...) ``id``."""
    return base64.b64encode(f"0{len(kind)}:{kind}{id}".encode()).decode("ascii")


@lru_cache(maxsize=64)
def _git_host(web: str) -> str:
    """The host name of ``web``, as GitHub puts it into ``git_url`` and ``ssh_url``."""
    host = urlsplit(web).hostname or web
    return f"[{host}]" if ":" in host else host


def simple_user(
    *,
    api: str,
    web: str,
    id: int,
    login: str,
    type: AccountType = "User",
    site_admin: bool = False,
    name: str | None = None,
    email: str | None = None,
) -> dict[str, Any]:
    """GitHub's ``simple-user`` (also used for organizations as repository owners).

    ``email`` is published as given: pass only an address GitHub would show (a public one).
    """
    api = api.rstrip("/")
    web = web.rstrip("/")
    user = f"{api}/users/{login}"
    return {
        "login": login,
        "id": id,
        "node_id": node_id(type, id),
        "avatar_url": f"{web}/avatars/{login}",
        "gravatar_id": "",
        "url": user,
        "html_url": f"{web}/{login}",
        "followers_url": f"{user}/followers",
        "following_url": f"{user}/following{{/other_user}}",
        "gists_url": f"{user}/gists{{/gist_id}}",
        "starred_url": f"{user}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{user}/subscriptions",
        "organizations_url": f"{user}/orgs",
        "repos_url": f"{user}/repos",
        "events_url": f"{user}/events{{/privacy}}",
        "received_events_url": f"{user}/received_events",
        "type": type,
        "user_view_type": "public",
        "site_admin": site_admin,
        "name": name,
        "email": email,
    }


def private_user(
    *,
    api: str,
    web: str,
    id: int,
    login: str,
    created_at: datetime,
    updated_at: datetime,
    site_admin: bool = False,
    name: str | None = None,
    email: str | None = None,
    company: str | None = None,
    blog: str = "",
    location: str | None = None,
    bio: str | None = None,
    hireable: bool | None = None,
    twitter_username: str | None = None,
    public_repos: int = 0,
    total_private_repos: int = 0,
    owned_private_repos: int = 0,
    two_factor_authentication: bool = False,
) -> dict[str, Any]:
    """``GET /user`` for the authenticated user: GitHub's ``private-user``."""
    base = simple_user(api=api, web=web, id=id, login=login, site_admin=site_admin)
    del base["name"], base["email"], base["user_view_type"]
    return {
        "login": base.pop("login"),
        "id": base.pop("id"),
        "user_view_type": "private",
        **base,
        "name": name,
        "company": company,
        "blog": blog,
        "location": location,
        "email": email,
        "hireable": hireable,
        "bio": bio,
        "twitter_username": twitter_username,
        "public_repos": public_repos,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": timestamp(created_at),
        "updated_at": timestamp(updated_at),
        "private_gists": 0,
        "total_private_repos": total_private_repos,
        "owned_private_repos": owned_private_repos,
        "disk_usage": 0,
        "collaborators": 0,
        "two_factor_authentication": two_factor_authentication,
    }


def organization(
    *,
    api: str,
    web: str,
    id: int,
    login: str,
    name: str | None,
    created_at: datetime,
    updated_at: datetime,
    description: str | None = None,
    company: str | None = None,
    blog: str = "",
    location: str | None = None,
    email: str | None = None,
    is_verified: bool = False,
    public_repos: int = 0,
    archived_at: datetime | None = None,
) -> dict[str, Any]:
    """``GET /orgs/{org}``: GitHub's ``organization-full`` (the fields anyone may see)."""
    api = api.rstrip("/")
    web = web.rstrip("/")
    org = f"{api}/orgs/{login}"
    return {
        "login": login,
        "id": id,
        "node_id": node_id("Organization", id),
        "url": org,
        "repos_url": f"{org}/repos",
        "events_url": f"{org}/events",
        "hooks_url": f"{org}/hooks",
        "issues_url": f"{org}/issues",
        "members_url": f"{org}/members{{/member}}",
        "public_members_url": f"{org}/public_members{{/member}}",
        "avatar_url": f"{web}/avatars/{login}",
        "description": description,
        "name": name,
        "company": company,
        "blog": blog,
        "location": location,
        "email": email,
        "twitter_username": None,
        "is_verified": is_verified,
        "has_organization_projects": True,
        "has_repository_projects": True,
        "public_repos": public_repos,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "html_url": f"{web}/{login}",
        "created_at": timestamp(created_at),
        "updated_at": timestamp(updated_at),
        "archived_at": timestamp(archived_at),
        "type": "Organization",
    }


def _permissions(permissions: Mapping[str, bool]) -> dict[str, bool]:
    return {key: bool(permissions.get(key, False)) for key in _REPOSITORY_PERMISSIONS}


def _repository(
    *,
    api: str,
    web: str,
    id: int,
    name: str,
    owner: Mapping[str, Any],
    visibility: Visibility,
    description: str | None,
    created_at: datetime,
    updated_at: datetime,
    pushed_at: datetime | None,
    default_branch: str,
    open_issues_count: int,
    permissions: Mapping[str, bool] | None,
) -> dict[str, Any]:
    """The fields ``minimal-repository`` and ``full-repository`` share, in GitHub's order."""
    api = api.rstrip("/")
    web = web.rstrip("/")
    full_name = f"{owner['login']}/{name}"
    repo = f"{api}/repos/{full_name}"
    html = f"{web}/{full_name}"
    host = _git_host(web)
    created = timestamp(created_at)
    body: dict[str, Any] = {
        "id": id,
        "node_id": node_id("Repository", id),
        "name": name,
        "full_name": full_name,
        "private": visibility != "public",
        "owner": owner,
        "html_url": html,
        "description": description,
        "fork": False,
        "url": repo,
        "forks_url": f"{repo}/forks",
        "keys_url": f"{repo}/keys{{/key_id}}",
        "collaborators_url": f"{repo}/collaborators{{/collaborator}}",
        "teams_url": f"{repo}/teams",
        "hooks_url": f"{repo}/hooks",
        "issue_events_url": f"{repo}/issues/events{{/number}}",
        "events_url": f"{repo}/events",
        "assignees_url": f"{repo}/assignees{{/user}}",
        "branches_url": f"{repo}/branches{{/branch}}",
        "tags_url": f"{repo}/tags",
        "blobs_url": f"{repo}/git/blobs{{/sha}}",
        "git_tags_url": f"{repo}/git/tags{{/sha}}",
        "git_refs_url": f"{repo}/git/refs{{/sha}}",
        "trees_url": f"{repo}/git/trees{{/sha}}",
        "statuses_url": f"{repo}/statuses/{{sha}}",
        "languages_url": f"{repo}/languages",
        "stargazers_url": f"{repo}/stargazers",
        "contributors_url": f"{repo}/contributors",
        "subscribers_url": f"{repo}/subscribers",
        "subscription_url": f"{repo}/subscription",
        "commits_url": f"{repo}/commits{{/sha}}",
        "git_commits_url": f"{repo}/git/commits{{/sha}}",
        "comments_url": f"{repo}/comments{{/number}}",
        "issue_comment_url": f"{repo}/issues/comments{{/number}}",
        "contents_url": f"{repo}/contents/{{+path}}",
        "compare_url": f"{repo}/compare/{{base}}...{{head}}",
        "merges_url": f"{repo}/merges",
        "archive_url": f"{repo}/{{archive_format}}{{/ref}}",
        "downloads_url": f"{repo}/downloads",
        "issues_url": f"{repo}/issues{{/number}}",
        "pulls_url": f"{repo}/pulls{{/number}}",
        "milestones_url": f"{repo}/milestones{{/number}}",
        "notifications_url": f"{repo}/notifications{{?since,all,participating}}",
        "labels_url": f"{repo}/labels{{/name}}",
        "releases_url": f"{repo}/releases{{/id}}",
        "deployments_url": f"{repo}/deployments",
        "created_at": created,
        "updated_at": timestamp(updated_at),
        # GitHub sets pushed_at when a repository is created; full-repository requires a string.
        "pushed_at": created if pushed_at is None else timestamp(pushed_at),
        "git_url": f"git://{host}/{full_name}.git",
        "ssh_url": f"git@{host}:{full_name}.git",
        "clone_url": f"{html}.git",
        "svn_url": html,
        "homepage": None,
        "size": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": None,
        "has_issues": True,
        "has_projects": True,
        "has_downloads": True,
        "has_wiki": True,
        "has_pages": False,
        "has_discussions": False,
        "forks_count": 0,
        "mirror_url": None,
        "archived": False,
        "disabled": False,
        "open_issues_count": open_issues_count,
        "license": None,
        "allow_forking": visibility == "public",
        "is_template": False,
        "web_commit_signoff_required": False,
        "topics": [],
        "visibility": visibility,
        "forks": 0,
        "open_issues": open_issues_count,
        "watchers": 0,
        "default_branch": default_branch,
    }
    if permissions is not None:
        body["permissions"] = _permissions(permissions)
    return body


def full_repository(
    *,
    api: str,
    web: str,
    id: int,
    name: str,
    owner: Mapping[str, Any],
    visibility: Visibility,
    description: str | None,
    created_at: datetime,
    updated_at: datetime,
    pushed_at: datetime | None,
    default_branch: str = "main",
    open_issues_count: int = 0,
    permissions: Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    """``GET /repos/{owner}/{repo}``: GitHub's ``full-repository``.

    ``owner`` is a :func:`simple_user` dict; an ``Organization`` owner is repeated as
    ``organization`` (None for a user's repository). ``permissions`` (the caller's, any of
    admin/maintain/push/triage/pull; missing keys are False) is included only when given, as
    GitHub does for authenticated callers. A ``pushed_at`` of None is reported as ``created_at``.
    """
    body = _repository(
        api=api,
        web=web,
        id=id,
        name=name,
        owner=owner,
        visibility=visibility,
        description=description,
        created_at=created_at,
        updated_at=updated_at,
        pushed_at=pushed_at,
        default_branch=default_branch,
        open_issues_count=open_issues_count,
        permissions=permissions,
    )
    body["custom_properties"] = {}
    body["organization"] = owner if owner.get("type") == "Organization" else None
    body["network_count"] = 0
    body["subscribers_count"] = 0
    return body


def minimal_repository(
    *,
    api: str,
    web: str,
    id: int,
    name: str,
    owner: Mapping[str, Any],
    visibility: Visibility,
    description: str | None,
    created_at: datetime,
    updated_at: datetime,
    pushed_at: datetime | None,
    default_branch: str = "main",
    open_issues_count: int = 0,
    permissions: Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    """GitHub's ``minimal-repository`` (repository lists, e.g. a PAT grant's repositories).

    Same inputs and conventions as :func:`full_repository`.
    """
    return _repository(
        api=api,
        web=web,
        id=id,
        name=name,
        owner=owner,
        visibility=visibility,
        description=description,
        created_at=created_at,
        updated_at=updated_at,
        pushed_at=pushed_at,
        default_branch=default_branch,
        open_issues_count=open_issues_count,
        permissions=permissions,
    )


def issue(
    *,
    api: str,
    web: str,
    id: int,
    number: int,
    title: str,
    body: str | None,
    state: str,
    user: Mapping[str, Any] | None,
    repository_full_name: str,
    created_at: datetime,
    updated_at: datetime,
    closed_at: datetime | None = None,
    comments: int = 0,
    author_association: AuthorAssociation = "NONE",
    state_reason: StateReason | None = None,
    closed_by: Mapping[str, Any] | None = None,
    locked: bool = False,
) -> dict[str, Any]:
    """GitHub's ``issue`` (never a pull request: ``pull_request`` is absent).

    ``state`` is ``open`` or ``closed``. ``user`` (None once the author is deleted) and
    ``closed_by`` are :func:`simple_user` dicts; ``repository_full_name`` is ``owner/name``.
    """
    api = api.rstrip("/")
    web = web.rstrip("/")
    repo = f"{api}/repos/{repository_full_name}"
    url = f"{repo}/issues/{number}"
    return {
        "url": url,
        "repository_url": repo,
        "labels_url": f"{url}/labels{{/name}}",
        "comments_url": f"{url}/comments",
        "events_url": f"{url}/events",
        "html_url": f"{web}/{repository_full_name}/issues/{number}",
        "id": id,
        "node_id": node_id("Issue", id),
        "number": number,
        "title": title,
        "user": user,
        "labels": [],
        "state": state,
        "locked": locked,
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "comments": comments,
        "created_at": timestamp(created_at),
        "updated_at": timestamp(updated_at),
        "closed_at": timestamp(closed_at),
        "author_association": author_association,
        "active_lock_reason": None,
        "body": body,
        "closed_by": closed_by,
        "reactions": {
            "url": f"{url}/reactions",
            "total_count": 0,
            "+1": 0,
            "-1": 0,
            "laugh": 0,
            "hooray": 0,
            "confused": 0,
            "heart": 0,
            "rocket": 0,
            "eyes": 0,
        },
        "timeline_url": f"{url}/timeline",
        "performed_via_github_app": None,
        "state_reason": state_reason,
    }
