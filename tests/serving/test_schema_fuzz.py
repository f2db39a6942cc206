"""Schema-driven fuzzing of the served API from its own /openapi.json: schemathesis generates valid
and invalid requests for each operation; none may produce a 5xx, and every response must conform to
the spec (documented status, content type and schema)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

pytestmark = pytest.mark.slow

OPERATIONS = [("/", "POST"), ("/{user_id}/top", "GET"), ("/healthz", "GET"), ("/model", "GET")]
WITH_INPUT = OPERATIONS[:2]  # the others take nothing that could be made invalid
CASES = [(p, m, GenerationMode.POSITIVE) for p, m in OPERATIONS] + [
    (p, m, GenerationMode.NEGATIVE) for p, m in WITH_INPUT]
EXAMPLES = 50  # per operation and mode


@pytest.fixture(scope="module")
def api_schema(served_app):
    return schemathesis.openapi.from_url(f"{served_app.url}/openapi.json")


def test_the_spec_lists_exactly_the_fuzzed_operations(api_schema):
    listed = {(op.ok().path, op.ok().method.upper()) for op in api_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize("path, method, mode", CASES, ids=[f"{m} {p} {g.value}" for p, m, g in CASES])
def test_no_server_errors_and_responses_match_the_spec(api_schema, served_app, path, method, mode):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case):
        response = case.call(base_url=served_app.url)
        assert response.status_code < 500, f"{case.method} {case.formatted_path} {case.body!r}: {response.text[:300]}"
        case.validate_response(response)

    fuzz()
