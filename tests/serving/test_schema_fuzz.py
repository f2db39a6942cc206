"""Schema-driven fuzzing of the served API from its own /recommend/openapi.json: schemathesis
generates valid and invalid requests for each operation (/recommend, TF-Serving's /v1 and the Open
Inference Protocol's /v2); none may produce a 5xx, and every response must conform to the spec
(documented status, content type and schema)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = pytest.mark.slow

RECOMMEND = [("/recommend", "POST"), ("/recommend/{user_id}/top", "GET"), ("/recommend/healthz", "GET"),
             ("/recommend/model", "GET")]
TF_SERVING = [("/v1/models/{model}:predict", "POST"), ("/v1/models/{model}/versions/{version}:predict", "POST"),
              ("/v1/models/{model}", "GET"), ("/v1/models/{model}/versions/{version}", "GET"),
              ("/v1/models/{model}/metadata", "GET"), ("/v1/models/{model}/versions/{version}/metadata", "GET")]
OIP = [("/v2", "GET"), ("/v2/health/live", "GET"), ("/v2/health/ready", "GET"), ("/v2/models/{model}", "GET"),
       ("/v2/models/{model}/versions/{version}", "GET"), ("/v2/models/{model}/ready", "GET"),
       ("/v2/models/{model}/versions/{version}/ready", "GET"), ("/v2/models/{model}/infer", "POST"),
       ("/v2/models/{model}/versions/{version}/infer", "POST")]
OPERATIONS = RECOMMEND + TF_SERVING + OIP
# The operations that take a body or a constrained parameter, which a negative case can break. OIP
# infer is left out here: its body is read raw (JSON or the binary extension), and hypothesis finds no
# negative case schemathesis keeps for it; test_protocols.py sends it 31 kinds of bad body instead.
WITH_INPUT = RECOMMEND[:2] + TF_SERVING[:2]
CASES = [(p, m, GenerationMode.POSITIVE) for p, m in OPERATIONS] + [
    (p, m, GenerationMode.NEGATIVE) for p, m in WITH_INPUT]
# Rules JSON Schema cannot state (columns of equal length; OIP tensors named user_id and movie_id once
# each, with as many elements as their shape says) make some schema-valid requests a documented 400:
# for these operations schemathesis' "schema-valid data is accepted" check is off; every other check
# (no 5xx, documented status, content type and schema) still runs.
CROSS_FIELD_RULES = {TF_SERVING[0], TF_SERVING[1], OIP[-2], OIP[-1]}
EXAMPLES = {**dict.fromkeys(RECOMMEND, 50), **dict.fromkeys(TF_SERVING + OIP, 25)}  # per operation and mode


@pytest.fixture(scope="module")
def api_schema(served_app):
    return schemathesis.openapi.from_url(f"{served_app.url}/openapi.json")  # /recommend/openapi.json


def test_the_spec_lists_exactly_the_fuzzed_operations(api_schema):
    listed = {(op.ok().path, op.ok().method.upper()) for op in api_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize("path, method, mode", CASES, ids=[f"{m} {p} {g.value}" for p, m, g in CASES])
def test_no_server_errors_and_responses_match_the_spec(api_schema, served_app, path, method, mode):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES[(path, method)], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case):
        response = case.call(base_url=served_app.base)
        assert response.status_code < 500, f"{case.method} {case.formatted_path} {case.body!r}: {response.text[:300]}"
        excluded = [positive_data_acceptance] if (path, method) in CROSS_FIELD_RULES else None
        case.validate_response(response, excluded_checks=excluded)

    fuzz()
