"""The OpenAPI validator itself: it must catch what githubkit would choke on."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from support.openapi import (
    SPEC_PATH,
    assert_github_timestamp,
    document,
    response_examples,
    schema,
    validate_against,
    validate_response,
)

REQUESTS = "/orgs/{org}/personal-access-token-requests"
GRANT = "/orgs/{org}/personal-access-tokens/{pat_id}"


def request_item() -> dict[str, Any]:
    """A valid list item, taken from the example GitHub ships in the description."""
    return copy.deepcopy(response_examples("GET", REQUESTS, 200)["default"][0])


def test_the_description_is_found_next_to_the_repository() -> None:
    assert SPEC_PATH.is_file()
    assert document()["openapi"].startswith("3.0")


def test_the_embedded_examples_for_listing_requests_validate() -> None:
    examples = response_examples("GET", REQUESTS, 200)
    assert examples, "the description embeds an example for this response"
    for value in examples.values():
        assert isinstance(value, list) and value
        validate_response("GET", REQUESTS, 200, value)


def test_the_embedded_examples_for_listing_grants_and_their_repositories_validate() -> None:
    for path in (
        "/orgs/{org}/personal-access-tokens",
        "/orgs/{org}/personal-access-tokens/{pat_id}/repositories",
        "/orgs/{org}/personal-access-token-requests/{pat_request_id}/repositories",
    ):
        for value in response_examples("GET", path, 200).values():
            validate_response("GET", path, 200, value)


def test_a_missing_required_field_is_caught() -> None:
    item = request_item()
    del item["token_name"]
    with pytest.raises(AssertionError, match=r"\$\[0\].*token_name"):
        validate_response("GET", REQUESTS, 200, [item])


def test_a_nullable_required_field_left_out_is_caught() -> None:
    item = request_item()
    del item["token_last_used_at"]
    with pytest.raises(AssertionError, match="token_last_used_at"):
        validate_response("GET", REQUESTS, 200, [item])


def test_a_wrong_type_is_caught_with_its_path() -> None:
    item = request_item()
    item["token_id"] = "98716"
    with pytest.raises(AssertionError, match=r"\$\[0\]\.token_id: '98716' is not of type"):
        validate_response("GET", REQUESTS, 200, [item])


def test_a_wrong_type_inside_a_referenced_schema_is_caught() -> None:
    item = request_item()
    item["owner"]["site_admin"] = "no"
    with pytest.raises(AssertionError, match=r"\$\[0\]\.owner\.site_admin"):
        validate_response("GET", REQUESTS, 200, [item])


def test_an_enum_is_enforced() -> None:
    item = request_item()
    item["repository_selection"] = "some"
    with pytest.raises(AssertionError, match="repository_selection"):
        validate_response("GET", REQUESTS, 200, [item])


def test_nullable_fields_accept_null() -> None:
    item = request_item()
    item["reason"] = None
    item["token_expires_at"] = None
    item["token_last_used_at"] = None
    item["owner"]["gravatar_id"] = None
    validate_response("GET", REQUESTS, 200, [item])


def test_non_nullable_fields_reject_null() -> None:
    item = request_item()
    item["token_name"] = None
    with pytest.raises(AssertionError, match=r"token_name: None is not of type 'string'"):
        validate_response("GET", REQUESTS, 200, [item])


def test_a_nullable_schema_without_a_type_accepts_null() -> None:
    # installation.account is {"nullable": true, "anyOf": [...]} in the description.
    account = schema("installation")["properties"]["account"]
    jsonschema.validate(None, account)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("octocat", account)


def test_an_undeclared_status_is_validated_against_basic_error() -> None:
    # 401 is not declared for the grant list; GitHub's "Bad credentials" body is a basic-error.
    bad_credentials = {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }
    validate_response("GET", "/orgs/{org}/personal-access-tokens", 401, bad_credentials)
    with pytest.raises(AssertionError, match=r"undeclared status.*basic-error"):
        validate_response("GET", "/orgs/{org}/personal-access-tokens", 401, {"status": 401})


def test_declared_errors_use_their_own_schema() -> None:
    validate_response("GET", REQUESTS, 404, {"message": "Not Found", "documentation_url": ""})
    validation_failed = {
        "message": "Validation Failed",
        "documentation_url": "https://docs.github.com/rest",
        "errors": [{"resource": "Token", "field": "action", "code": "missing_field"}],
    }
    validate_response("POST", GRANT, 422, validation_failed)
    with pytest.raises(AssertionError, match="message"):
        validate_response("POST", GRANT, 422, {"errors": []})


def test_no_content_requires_an_empty_body() -> None:
    for empty in (None, "", b""):
        validate_response("POST", GRANT, 204, empty)
    with pytest.raises(AssertionError, match="expected no content"):
        validate_response("POST", GRANT, 204, {})


def test_accepted_is_an_object() -> None:
    validate_response("POST", "/orgs/{org}/personal-access-tokens", 202, {})
    with pytest.raises(AssertionError):
        validate_response("POST", "/orgs/{org}/personal-access-tokens", 202, [])


def test_the_api_prefix_and_method_case_are_tolerated() -> None:
    validate_response("post", "/api/v3" + GRANT, 204, None)


def test_unknown_operations_are_reported() -> None:
    with pytest.raises(AssertionError, match="not in the OpenAPI subset"):
        validate_response("GET", "/orgs/{org}/nothing", 200, {})
    with pytest.raises(AssertionError, match="DELETE"):
        validate_response("DELETE", GRANT, 204, None)


def test_validate_against_a_named_component() -> None:
    validate_against("simple-user", request_item()["owner"])
    with pytest.raises(AssertionError, match=r"missing required properties \['login'\]"):
        owner = request_item()["owner"]
        del owner["login"]
        validate_against("simple-user", owner)


def test_schema_is_standalone_and_a_fresh_copy() -> None:
    full = schema("full-repository")
    jsonschema.Draft202012Validator.check_schema(full)
    assert "$ref" not in repr(full)
    assert full["properties"]["owner"]["required"] == schema("simple-user")["required"]
    assert full["properties"]["description"]["type"] == ["string", "null"]
    full["required"].clear()
    assert schema("full-repository")["required"]
    with pytest.raises(KeyError):
        schema("no-such-schema")


@pytest.mark.parametrize("value", ["2024-01-02T03:04:05Z", "1999-12-31T23:59:59Z"])
def test_github_timestamps_are_accepted(value: str) -> None:
    assert_github_timestamp(value)


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-02T03:04:05+00:00",
        "2024-01-02T03:04:05.123Z",
        "2023-05-16T08:47:09.000-07:00",
        "2024-01-02 03:04:05Z",
        "2024-01-02T03:04:05Z\n",
        None,
        1704164645,
    ],
)
def test_other_timestamps_are_rejected(value: object) -> None:
    with pytest.raises(AssertionError, match="not a GitHub timestamp"):
        assert_github_timestamp(value)
