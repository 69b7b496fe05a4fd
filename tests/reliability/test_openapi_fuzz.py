"""Hostile input from schemathesis, generated from patgate's own OpenAPI document
(``/api/v3/openapi.json``) and sent over HTTP to a live server on both databases.

Every operation is called with valid and invalid data (schemathesis' positive and negative
modes) by four callers: an installation token of an app holding both PAT permissions (so that
the calls reach the code behind ``decide()``), the app's JWT (for the App endpoints), a
fine-grained PAT, and nobody. Path parameters name the organization, repositories, requests,
grants, issue and installation that exist most of the time, so that generated queries and
bodies are read by the services rather than stopped at a 404. For every answer: never a 5xx,
the body conforms to the schema the operation declares for its status, a success status is
one the operation declares, and every error carries GitHub's body (``message``,
``documentation_url``, ``status`` as a string). Examples are capped under ``CI``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hostile_world import Target, assert_github_error, build_target
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from support.env import IN_CI

# Examples per operation and generation mode, for each caller.
EXAMPLES = {
    "installation": 15 if IN_CI else 25,
    "app": 5 if IN_CI else 10,
    "fine_grained": 5 if IN_CI else 8,
    "anonymous": 5 if IN_CI else 8,
}
# How often a path parameter names something that exists (else it is generated).
EXISTING = 0.6
# Answers each caller must get at least once over the run, or the fuzzing stopped short of
# the code it is meant to reach: (operation, status).
MUST_REACH = {
    "installation": {
        ("GET /orgs/{org}/personal-access-token-requests", 200),
        ("GET /orgs/{org}/personal-access-tokens", 200),
        ("GET /orgs/{org}/personal-access-token-requests/{pat_request_id}/repositories", 200),
        ("GET /orgs/{org}/personal-access-tokens/{pat_id}/repositories", 200),
    },
    "app": {("GET /app", 200), ("GET /orgs/{org}/installation", 200)},
    "fine_grained": {("GET /user", 200), ("GET /repos/{owner}/{repo}", 200)},
    "anonymous": {("GET /orgs/{org}", 200)},
}


@pytest.fixture
def target(live_server: Any) -> Target:
    """A live server on the test's database (both backends) with :mod:`hostile_world`'s world."""
    return build_target(live_server())


def load_schema(target: Target, caller: str) -> Any:
    """patgate's document as the running server serves it, with dictionaries of the ids and
    names that exist bound to the path parameters."""
    values = {
        "org": ["acme"],
        "owner": ["acme"],
        "repo": ["public-site", "private-api", "private-ops"],
        "org_id": [target.org_id],
        "pat_request_id": target.request_ids,
        "pat_id": target.grant_ids,
        "installation_id": [target.installation_id],
        "number": [target.issue_number],
    }
    config = schemathesis.Config.from_dict(
        {
            "dictionaries": {name: {"values": entries} for name, entries in values.items()},
            "parameters": {
                f"path.{name}": {"dictionary": name, "probability": EXISTING} for name in values
            },
        }
    )
    return schemathesis.openapi.from_url(
        f"{target.api}/openapi.json", config=config, headers=target.headers[caller]
    )


def modes(operation: Any) -> list[GenerationMode]:
    """Positive, and negative where the schema leaves something to violate: a body, or a
    parameter that is more than a free-form string (an integer, an enum, a format, a list)."""
    constrained = bool(operation.body) or any(
        set(parameter.definition.get("schema", {})) - {"type", "description"}
        or parameter.definition.get("schema", {}).get("type") != "string"
        for parameter in operation.iter_parameters()
    )
    if constrained:
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def check_answer(case: Any, response: Any) -> None:
    """What the schemathesis checks used leave out: a success status must be declared, an
    error (declared or not: 400, 401, 413, ...) must have GitHub's body."""
    status = response.status_code
    if status < 400:
        declared = case.operation.definition.raw["responses"]
        assert str(status) in declared, f"{status} is not declared: {sorted(declared)}"
        return
    assert_github_error(response)


@pytest.mark.parametrize("caller", ["installation", "app", "fine_grained", "anonymous"])
def test_generated_requests_get_declared_answers(target: Target, caller: str) -> None:
    schema = load_schema(target, caller)
    session = requests.Session()
    headers = target.headers[caller]
    seen: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [operation.label for operation in operations]
    for operation in operations:
        for mode in modes(operation):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES[caller],
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def call(case: Any) -> None:
                response = case.call(base_url=target.api, headers=headers, session=session)
                seen[(case.operation.label, response.status_code)] += 1
                case.validate_response(
                    response,
                    checks=[not_a_server_error, response_schema_conformance],
                    headers=headers,
                )
                check_answer(case, response)

            try:
                call()
            except Unsatisfiable:
                # Every invalid value the schema allows was filtered out: nothing to send.
                if mode is not GenerationMode.NEGATIVE:
                    raise
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                failures.append(f"--- {operation.label} ({mode.value}):\n{exc}")
    assert not failures, "\n".join(failures)
    missed = MUST_REACH[caller] - set(seen)
    assert not missed, f"never answered: {sorted(missed)}; answers: {sorted(seen.items())}"
