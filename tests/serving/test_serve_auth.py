"""The bearer token on every protocol, on the session's real Ray Serve: the application is redeployed
with ``auth: token`` for this module (and back without it at its end), and every case of the
bad-input tables of ``/recommend``, TF-Serving REST, OIP REST and OIP gRPC is sent without a token
and with a wrong one. Each is refused (401 with ``WWW-Authenticate: Bearer``, or UNAUTHENTICATED)
before its input is even read, with nothing of the token in the answer, unless its route is one of
the routes open to probes, which answer as they do without auth. With the token, every protocol
answers as before."""

from __future__ import annotations

import json
import secrets
from types import SimpleNamespace

import grpc
import httpx
import pytest

from tests.serving.test_protocols import (
    GRPC_CASE_IDS,
    INFER,
    MODEL,
    OIP_BAD,
    PREDICT,
    TF_BAD,
    _grpc_cases,
    _infer,
    _message,
    _rows,
)
from tests.serving.test_serve_app import BAD_REQUESTS

pytestmark = pytest.mark.slow

# Cases of the tables whose route stays open without a token: TF Serving's model status (its
# readiness check; "wrong method" is a GET of the status of model "recommender:predict").
OPEN_TF_CASES = {"status of unknown model", "status of unknown version", "wrong method"}
WRONG = {"missing": None, "wrong": "Bearer " + "x" * 43}
OTHER_WRONG = {"other scheme": "Basic dXNlcjpwYXNz", "no credentials": "Bearer", "no scheme": "x" * 43}


@pytest.fixture(scope="module")
def authed(served_app, tmp_path_factory):
    """The session's application redeployed with a token (a 0600 file), then back to its own args."""
    from ray import serve

    from sentinel_ml.serving.app import app_builder
    from sentinel_ml.serving.config import NAMES, ROUTE_PREFIX

    token = secrets.token_urlsafe(32)
    path = tmp_path_factory.mktemp("auth") / "serve-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    args = served_app.args.model_copy(update={"auth": "token", "token_file": str(path)})
    serve.run(app_builder(args), name=NAMES.application, route_prefix=ROUTE_PREFIX)
    try:
        yield SimpleNamespace(token=token, base=served_app.base, grpc=served_app.grpc, args=args)
    finally:
        serve.run(app_builder(served_app.args), name=NAMES.application, route_prefix=ROUTE_PREFIX)


@pytest.fixture(scope="module")
def http(authed):
    with httpx.Client(base_url=authed.base, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def stub(authed):
    from tritonclient.grpc import service_pb2_grpc

    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(authed.grpc, options=options) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _with(kwargs: dict, authorization: str | None) -> dict:
    headers = dict(kwargs.get("headers") or {})
    if authorization is not None:
        headers["Authorization"] = authorization
    return {**kwargs, "headers": headers}


def _assert_refused(response: httpx.Response, token: str, error_key: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    message = response.json()[error_key]
    assert isinstance(message, str) and message and token not in response.text


GOOD = {"/recommend": {"json": {"user_id": 1, "movie_ids": [1, 2]}}, PREDICT: {"json": _rows(2)},
        INFER: {"json": _infer([1, 2], [3, 4])}}


def _good(http: httpx.Client, token: str, path: str) -> None:
    """The protocol still answers a good request with the token."""
    assert http.post(path, headers={"Authorization": f"Bearer {token}"}, **GOOD[path]).status_code == 200


CASES = [(r[0], r[1], "/recommend" + r[2], r[3], r[4]) for r in BAD_REQUESTS]


@pytest.mark.parametrize("how", list(WRONG))
@pytest.mark.parametrize("method, path, kwargs, status", [r[1:] for r in CASES], ids=[r[0] for r in CASES])
def test_recommend_bad_input_without_the_token_is_401(http, authed, how, method, path, kwargs, status):
    _assert_refused(http.request(method, path, **_with(kwargs, WRONG[how])), authed.token, "detail")
    _good(http, authed.token, "/recommend")


@pytest.mark.parametrize("authorization", list(OTHER_WRONG.values()), ids=list(OTHER_WRONG))
@pytest.mark.parametrize("path", list(GOOD))
def test_other_authorizations_are_401_on_every_rest_protocol(http, authed, path, authorization):
    response = http.post(path, headers={"Authorization": authorization}, **GOOD[path])
    _assert_refused(response, authed.token, "detail" if path == "/recommend" else "error")


@pytest.mark.parametrize("how", ["missing", "wrong"])
@pytest.mark.parametrize("case", [r[0] for r in TF_BAD])
def test_tfserving_bad_input_without_the_token_is_401(http, authed, how, case):
    _, method, path, kwargs, status = next(r for r in TF_BAD if r[0] == case)
    response = http.request(method, path, **_with(kwargs, WRONG[how]))
    if case in OPEN_TF_CASES:
        assert response.status_code == status and response.json()["error"]
    else:
        _assert_refused(response, authed.token, "error")
    _good(http, authed.token, PREDICT)


@pytest.mark.parametrize("how", ["missing", "wrong"])
@pytest.mark.parametrize("path, kwargs, status", [r[1:] for r in OIP_BAD], ids=[r[0] for r in OIP_BAD])
def test_oip_rest_bad_input_without_the_token_is_401(http, authed, how, path, kwargs, status):
    _assert_refused(http.post(path, **_with(kwargs, WRONG[how])), authed.token, "error")
    _good(http, authed.token, INFER)


@pytest.mark.parametrize("how", ["missing", "wrong"])
@pytest.mark.parametrize("case", GRPC_CASE_IDS)
def test_oip_grpc_bad_input_without_the_token_is_unauthenticated(stub, authed, how, case):
    from tritonclient.grpc import service_pb2 as pb

    _, build, _code = next(c for c in _grpc_cases(pb) if c[0] == case)
    metadata = [("authorization", WRONG[how])] if WRONG[how] else None
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(build(), timeout=60, metadata=metadata)

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED, raised.value.details()
    assert authed.token not in (raised.value.details() or "")
    good = stub.ModelInfer(_message(pb, [1, 2], [3, 4]), timeout=60,
                           metadata=[("authorization", f"Bearer {authed.token}")])
    assert len(good.raw_output_contents[0]) == 8


def test_with_the_token_bad_input_gets_its_own_answer(http, authed):
    """The token only opens the door: behind it the same 4xx as without auth."""
    bearer = {"Authorization": f"bearer {authed.token}"}  # the scheme is case-insensitive
    assert http.post("/recommend", json={"user_id": 944, "movie_ids": [1]}, headers=bearer).status_code == 404
    assert http.post(PREDICT, json={"instances": []}, headers=bearer).status_code == 400
    assert http.post(INFER, json={"inputs": []}, headers=bearer).status_code == 400


def test_probes_and_the_description_stay_open_everything_else_is_closed(http, authed, stub):
    from tritonclient.grpc import service_pb2 as pb

    for path in ("/recommend/healthz", "/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}/ready",
                 f"/v1/models/{MODEL}", "/recommend/openapi.json", "/recommend/docs"):
        assert http.get(path).status_code == 200, path
    version = http.get(f"/v1/models/{MODEL}").json()["model_version_status"][0]["version"]
    assert http.get(f"/v2/models/{MODEL}/versions/{version}/ready").status_code == 200
    for path in ("/recommend/model", "/recommend/1/top", "/v2", f"/v2/models/{MODEL}",
                 f"/v1/models/{MODEL}/metadata", "/nothing"):
        _assert_refused(http.get(path), authed.token, "error" if path.startswith("/v") else "detail")
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL), timeout=30).ready
    for rpc, message in (("ServerMetadata", pb.ServerMetadataRequest()),
                         ("ModelMetadata", pb.ModelMetadataRequest(name=MODEL))):
        with pytest.raises(grpc.RpcError) as raised:
            getattr(stub, rpc)(message, timeout=30)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED, rpc
    bearer = [("authorization", f"Bearer {authed.token}")]
    assert stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=30, metadata=bearer).name == "sentinel"


def test_the_token_is_nowhere_in_the_apps_args_or_its_answers(http, authed):
    from ray import serve

    from sentinel_ml.serving.config import NAMES

    assert authed.token not in json.dumps(authed.args.model_dump())
    assert authed.args.token_file and authed.token not in authed.args.token_file
    app = serve.status().applications[NAMES.application]
    assert authed.token not in str(app)
    info = http.get("/recommend/model", headers={"Authorization": f"Bearer {authed.token}"})
    assert info.status_code == 200 and authed.token not in info.text
