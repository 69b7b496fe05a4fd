"""GitHub's JSON representations, checked against GitHub's own OpenAPI description."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest

from patgate import representations as rep
from support.openapi import assert_github_timestamp, response_examples, schema, validate_response

API = "http://127.0.0.1:8000/api/v3"
WEB = "http://127.0.0.1:8000"
CREATED = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
UPDATED = datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
PUSHED = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
VISIBILITIES = ["public", "private", "internal"]
TEMPLATE = re.compile(r"\{[^}]*\}")

# (field, suffix after the repository's API URL) as GitHub writes them.
REPOSITORY_URLS = {
    "archive_url": "/{archive_format}{/ref}",
    "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors",
    "deployments_url": "/deployments",
    "downloads_url": "/downloads",
    "events_url": "/events",
    "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}",
    "languages_url": "/languages",
    "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "tags_url": "/tags",
    "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}


def octocat(**overrides: Any) -> dict[str, Any]:
    return rep.simple_user(**{"api": API, "web": WEB, "id": 1, "login": "octocat", **overrides})


def octo_org() -> dict[str, Any]:
    return rep.simple_user(api=API, web=WEB, id=9, login="octo-org", type="Organization")


def repository(builder: Any, visibility: str, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "api": API,
        "web": WEB,
        "id": 1296269,
        "name": "Hello-World",
        "owner": octo_org(),
        "visibility": visibility,
        "description": None,
        "created_at": CREATED,
        "updated_at": UPDATED,
        "pushed_at": PUSHED,
    }
    return builder(**{**arguments, **overrides})


def assert_matches(name: str, body: Any) -> None:
    jsonschema.validate(body, schema(name), cls=jsonschema.Draft202012Validator)


def decoded(node_id: str) -> str:
    return base64.b64decode(node_id).decode()


# -- timestamp ------------------------------------------------------------------------------------


def test_timestamp_of_an_aware_utc_datetime_drops_fractions() -> None:
    assert rep.timestamp(CREATED) == "2024-01-02T03:04:05Z"


def test_timestamp_takes_naive_datetimes_as_utc() -> None:
    assert rep.timestamp(datetime(2024, 1, 2, 3, 4, 5, 999999)) == "2024-01-02T03:04:05Z"


def test_timestamp_converts_other_offsets_to_utc() -> None:
    pacific = timezone(timedelta(hours=-7))
    assert rep.timestamp(datetime(2023, 5, 16, 8, 47, 9, tzinfo=pacific)) == "2023-05-16T15:47:09Z"
    tokyo = timezone(timedelta(hours=9))
    # crosses midnight and the year backwards
    assert rep.timestamp(datetime(2024, 1, 1, 5, 0, 0, tzinfo=tokyo)) == "2023-12-31T20:00:00Z"


def test_timestamp_of_none_is_none() -> None:
    assert rep.timestamp(None) is None


def test_timestamp_pads_small_years() -> None:
    assert rep.timestamp(datetime(999, 1, 2, 3, 4, 5)) == "0999-01-02T03:04:05Z"


# -- node ids -------------------------------------------------------------------------------------


def test_node_ids_use_githubs_legacy_encoding() -> None:
    # The values GitHub's own examples carry.
    assert rep.node_id("User", 1) == "MDQ6VXNlcjE="
    assert rep.node_id("Repository", 1296269) == "MDEwOlJlcG9zaXRvcnkxMjk2MjY5"
    assert decoded(rep.node_id("Organization", 1)) == "012:Organization1"


# -- simple-user ----------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{}, {"name": "The Octocat", "email": "o@example.com"}])
def test_simple_user_matches_the_schema(overrides: dict[str, Any]) -> None:
    user = octocat(**overrides)
    assert_matches("simple-user", user)
    assert_matches("nullable-simple-user", user)


def test_simple_user_has_githubs_shape() -> None:
    user = octocat()
    example_owner = response_examples("GET", "/orgs/{org}/personal-access-tokens", 200)["default"]
    expected_keys = set(example_owner[0]["owner"])
    assert expected_keys <= set(user)
    assert user["node_id"] == "MDQ6VXNlcjE="
    assert user["avatar_url"] == f"{WEB}/avatars/octocat"
    assert user["gravatar_id"] == ""
    assert user["url"] == f"{API}/users/octocat"
    assert user["html_url"] == f"{WEB}/octocat"
    assert user["following_url"] == f"{API}/users/octocat/following{{/other_user}}"
    assert user["gists_url"] == f"{API}/users/octocat/gists{{/gist_id}}"
    assert user["starred_url"] == f"{API}/users/octocat/starred{{/owner}}{{/repo}}"
    assert user["events_url"] == f"{API}/users/octocat/events{{/privacy}}"
    assert user["received_events_url"] == f"{API}/users/octocat/received_events"
    assert user["type"] == "User"
    assert user["user_view_type"] == "public"
    assert user["site_admin"] is False
    assert user["name"] is None and user["email"] is None


def test_simple_user_for_an_organization() -> None:
    org = octo_org()
    assert_matches("simple-user", org)
    assert org["type"] == "Organization"
    assert decoded(org["node_id"]) == "012:Organization9"
    assert org["url"] == f"{API}/users/octo-org"


def test_trailing_slashes_on_base_urls_are_ignored() -> None:
    assert rep.simple_user(api=API + "/", web=WEB + "/", id=1, login="octocat") == octocat()


# -- repositories ---------------------------------------------------------------------------------


@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("permissions", [None, {"admin": True, "push": True, "pull": True}])
def test_full_repository_matches_the_schema(
    visibility: str, permissions: dict[str, bool] | None
) -> None:
    body = repository(rep.full_repository, visibility, permissions=permissions)
    assert_matches("full-repository", body)
    validate_response("GET", "/repos/{owner}/{repo}", 200, body)


@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("permissions", [None, {"pull": True}])
def test_minimal_repository_matches_the_schema(
    visibility: str, permissions: dict[str, bool] | None
) -> None:
    body = repository(rep.minimal_repository, visibility, permissions=permissions)
    assert_matches("minimal-repository", body)
    validate_response(
        "GET", "/orgs/{org}/personal-access-tokens/{pat_id}/repositories", 200, [body]
    )


@pytest.mark.parametrize("builder", [rep.full_repository, rep.minimal_repository])
def test_repository_with_a_user_owner_a_description_and_no_push(builder: Any) -> None:
    body = repository(
        builder, "private", owner=octocat(), description="This your first repo!", pushed_at=None
    )
    assert_matches(
        "full-repository" if builder is rep.full_repository else "minimal-repository", body
    )
    assert body["full_name"] == "octocat/Hello-World"
    assert body["description"] == "This your first repo!"
    assert body["pushed_at"] == body["created_at"] == "2024-01-02T03:04:05Z"


@pytest.mark.parametrize("visibility", VISIBILITIES)
def test_private_follows_visibility(visibility: str) -> None:
    for builder in (rep.full_repository, rep.minimal_repository):
        body = repository(builder, visibility)
        assert body["visibility"] == visibility
        assert body["private"] is (visibility != "public")


def test_repository_urls_are_githubs_templates() -> None:
    body = repository(rep.full_repository, "public")
    base = f"{API}/repos/octo-org/Hello-World"
    assert body["url"] == base
    for field, suffix in REPOSITORY_URLS.items():
        assert body[field] == base + suffix, field
    # Every *_url the schema declares is present.
    declared = {key for key in schema("full-repository")["properties"] if key.endswith("_url")}
    assert declared - {"mirror_url"} <= set(body)
    assert body["html_url"] == f"{WEB}/octo-org/Hello-World"
    assert body["clone_url"] == f"{WEB}/octo-org/Hello-World.git"
    assert body["svn_url"] == f"{WEB}/octo-org/Hello-World"
    assert body["git_url"] == "git://127.0.0.1/octo-org/Hello-World.git"
    assert body["ssh_url"] == "git@127.0.0.1:octo-org/Hello-World.git"
    # No stray template braces outside the URL templates.
    for key in ("url", "html_url", "clone_url", "svn_url", "git_url", "ssh_url"):
        assert not TEMPLATE.search(body[key]), key


def test_full_repository_fields() -> None:
    body = repository(rep.full_repository, "internal", open_issues_count=3, default_branch="trunk")
    assert decoded(body["node_id"]) == "010:Repository1296269"
    assert body["owner"] == octo_org()
    assert body["organization"] == octo_org()
    assert body["default_branch"] == "trunk"
    assert body["open_issues_count"] == body["open_issues"] == 3
    for key in ("description", "homepage", "language", "mirror_url", "license"):
        assert key in body and body[key] is None, key
    for key in ("created_at", "updated_at", "pushed_at"):
        assert_github_timestamp(body[key])
    assert body["pushed_at"] == "2024-03-04T05:06:07Z"
    assert body["subscribers_count"] == body["network_count"] == 0
    assert "permissions" not in body


def test_a_user_repository_has_a_null_organization() -> None:
    body = repository(rep.full_repository, "public", owner=octocat())
    assert body["organization"] is None


def test_permissions_are_completed_in_githubs_order() -> None:
    body = repository(rep.full_repository, "private", permissions={"pull": True, "triage": True})
    assert body["permissions"] == {
        "admin": False,
        "maintain": False,
        "push": False,
        "triage": True,
        "pull": True,
    }
    assert list(body["permissions"]) == ["admin", "maintain", "push", "triage", "pull"]


def test_minimal_repository_is_the_shared_part_of_the_full_one() -> None:
    full = repository(rep.full_repository, "private")
    minimal = repository(rep.minimal_repository, "private")
    assert set(minimal) < set(full)
    assert all(full[key] == value for key, value in minimal.items())


def test_representations_pass_githubkit_parsing() -> None:
    models = pytest.importorskip("githubkit_schemas.v2022_11_28.models")
    compat = pytest.importorskip("githubkit.compat")
    for visibility in VISIBILITIES:
        full = repository(rep.full_repository, visibility, permissions={"pull": True})
        parsed = compat.type_validate_python(models.FullRepository, full)
        assert parsed.private is (visibility != "public")
        compat.type_validate_python(
            models.MinimalRepository, repository(rep.minimal_repository, visibility)
        )
    compat.type_validate_python(models.SimpleUser, octocat())
    compat.type_validate_python(models.PrivateUser, private_user())
    compat.type_validate_python(models.OrganizationFull, organization())
    compat.type_validate_python(models.Issue, issue(state="closed"))
    compat.type_validate_python(models.Issue, issue(user=None, body="text"))


# -- GET /user ------------------------------------------------------------------------------------


def private_user(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "api": API,
        "web": WEB,
        "id": 1,
        "login": "octocat",
        "created_at": CREATED,
        "updated_at": UPDATED,
    }
    return rep.private_user(**{**arguments, **overrides})


# Required by GitHub's private-user schema (api.github.com description).
PRIVATE_USER_REQUIRED = {
    "avatar_url", "bio", "blog", "collaborators", "company", "created_at", "disk_usage", "email",
    "events_url", "followers", "followers_url", "following", "following_url", "gists_url",
    "gravatar_id", "hireable", "html_url", "id", "location", "login", "name", "node_id",
    "organizations_url", "owned_private_repos", "private_gists", "public_gists", "public_repos",
    "received_events_url", "repos_url", "site_admin", "starred_url", "subscriptions_url",
    "total_private_repos", "two_factor_authentication", "type", "updated_at", "url",
}  # fmt: skip


def test_private_user_shape() -> None:
    user = private_user(name="The Octocat", public_repos=2)
    assert set(user) >= PRIVATE_USER_REQUIRED
    simple = octocat()
    for key in simple.keys() - {"name", "email", "user_view_type"}:
        assert user[key] == simple[key], key
    assert user["user_view_type"] == "private"
    assert user["name"] == "The Octocat"
    assert user["email"] is None and user["bio"] is None and user["company"] is None
    assert user["blog"] == ""
    assert user["public_repos"] == 2
    assert user["created_at"] == "2024-01-02T03:04:05Z"
    assert user["updated_at"] == "2024-02-03T04:05:06Z"
    assert list(user)[:3] == ["login", "id", "user_view_type"]


# -- GET /orgs/{org} ------------------------------------------------------------------------------


def organization(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "api": API,
        "web": WEB,
        "id": 9,
        "login": "octo-org",
        "name": "Octo Org",
        "created_at": CREATED,
        "updated_at": UPDATED,
    }
    return rep.organization(**{**arguments, **overrides})


ORGANIZATION_REQUIRED = {
    "login", "url", "id", "node_id", "repos_url", "events_url", "hooks_url", "issues_url",
    "members_url", "public_members_url", "avatar_url", "description", "html_url",
    "has_organization_projects", "has_repository_projects", "public_repos", "public_gists",
    "followers", "following", "type", "created_at", "updated_at", "archived_at",
}  # fmt: skip


def test_organization_shape() -> None:
    org = organization(description="Octo things")
    assert set(org) >= ORGANIZATION_REQUIRED
    assert org["url"] == f"{API}/orgs/octo-org"
    assert org["members_url"] == f"{API}/orgs/octo-org/members{{/member}}"
    assert org["public_members_url"] == f"{API}/orgs/octo-org/public_members{{/member}}"
    assert org["html_url"] == f"{WEB}/octo-org"
    assert org["node_id"] == octo_org()["node_id"]
    assert org["type"] == "Organization"
    assert org["description"] == "Octo things"
    assert org["archived_at"] is None
    assert_github_timestamp(org["created_at"])
    assert_github_timestamp(org["updated_at"])


# -- issues ---------------------------------------------------------------------------------------


def issue(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "api": API,
        "web": WEB,
        "id": 42,
        "number": 7,
        "title": "Found a bug",
        "body": None,
        "state": "open",
        "user": octocat(),
        "repository_full_name": "octo-org/Hello-World",
        "created_at": CREATED,
        "updated_at": UPDATED,
    }
    return rep.issue(**{**arguments, **overrides})


def test_issue_shape() -> None:
    body = issue()
    base = f"{API}/repos/octo-org/Hello-World"
    assert body["url"] == f"{base}/issues/7"
    assert body["repository_url"] == base
    assert body["labels_url"] == f"{base}/issues/7/labels{{/name}}"
    assert body["comments_url"] == f"{base}/issues/7/comments"
    assert body["events_url"] == f"{base}/issues/7/events"
    assert body["html_url"] == f"{WEB}/octo-org/Hello-World/issues/7"
    assert decoded(body["node_id"]) == "05:Issue42"
    assert body["user"] == octocat()
    assert body["labels"] == [] and body["assignees"] == []
    for key in ("body", "assignee", "milestone", "closed_at", "active_lock_reason", "state_reason"):
        assert key in body and body[key] is None, key
    assert body["locked"] is False
    assert body["comments"] == 0
    assert "pull_request" not in body
    assert body["created_at"] == "2024-01-02T03:04:05Z"


def test_closed_issue() -> None:
    closed = datetime(2024, 4, 5, 6, 7, 8)
    body = issue(state="closed", closed_at=closed, state_reason="completed", comments=2)
    assert body["state"] == "closed"
    assert body["closed_at"] == "2024-04-05T06:07:08Z"
    assert body["state_reason"] == "completed"
    assert body["comments"] == 2


def test_issue_of_a_deleted_author() -> None:
    body = issue(user=None)
    assert "user" in body and body["user"] is None
