"""A dataset with string ids, end to end through every protocol: the session's model served from a
checkpoint whose serving artifact names user 42 ``"u-42"`` and movie 1 ``"m-1"``, beside the package's
integer-id application (its own route prefix; gRPC picks it by the ``application`` metadata). Every
answer must be the integer-id model's for the same pairs; unknown ids are 404 / NOT_FOUND naming them.

As in test_protocols.py, this process never imports Sentinel's own gRPC stubs (tritonclient's define
the same protobuf names)."""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

MODEL = "recommender"
APPLICATION = "string-ids"
PREFIX = "/strings"
GRPC_APP = (("application", APPLICATION),)


@pytest.fixture(scope="module")
def string_app(served_app, tmp_path_factory):
    from ray import serve

    from sentinel_ml.serving.app import app_builder
    from sentinel_ml.serving.config import serve_args
    from sentinel_ml.store.checkpoint import load_checkpoint, save_checkpoint
    from tests.support.artifact import with_string_ids

    saved = load_checkpoint(served_app.checkpoint)
    uri = str(tmp_path_factory.mktemp("strings") / "best.pt")
    save_checkpoint(uri, saved["state_dict"], saved["model_config"], saved["metrics"],
                    data=with_string_ids(saved["data"]))
    args = serve_args(uri, served_app.run_id, {"min_replicas": 1, "max_replicas": 1})
    serve.run(app_builder(args), name=APPLICATION, route_prefix=PREFIX)
    yield f"{served_app.base}{PREFIX}"
    serve.delete(APPLICATION)


@pytest.fixture(scope="module")
def http(string_app):
    with httpx.Client(base_url=string_app, timeout=60) as client:
        yield client


USERS = [42, 42, 300, 943, 1]
MOVIES = [1, 50, 1682, 7, 1]


def _strings(prefix: str, ids: list[int]) -> list[str]:
    return [f"{prefix}{i}" for i in ids]


@pytest.fixture(scope="module")
def expected(model) -> list[float]:
    """The integer-id model's ratings of the same pairs."""
    return [model.predict(u, [m])[0] for u, m in zip(USERS, MOVIES)]


def test_recommend_takes_and_answers_string_ids(http, model):
    response = http.post("/recommend", json={"user_id": "u-42", "movie_ids": ["m-1", "m-50"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": "u-42", "predictions": pytest.approx(model.predict(42, [1, 50]), abs=1e-5),
                               "model_version": http.get("/recommend/model").json()["model_version"]}

    top = http.get("/recommend/u-42/top", params={"k": 5, "min_ratings": 0}).json()
    reference = model.top_k(42, 5, 0)
    assert top["user_id"] == "u-42"
    assert [m["movie_id"] for m in top["movies"]] == [f"m-{i}" for i, _, _ in reference]
    assert [m["title"] for m in top["movies"]] == [t for _, t, _ in reference]
    info = http.get("/recommend/model").json()
    assert (info["id_type"], info["num_users"], info["num_items"]) == ("string", 943, 1682)


def test_tfserving_rows_and_columns_of_string_ids(http, expected):
    users, movies = _strings("u-", USERS), _strings("m-", MOVIES)
    rows = http.post(f"/v1/models/{MODEL}:predict",
                     json={"instances": [{"user_id": u, "movie_id": m} for u, m in zip(users, movies)]})
    columns = http.post(f"/v1/models/{MODEL}:predict", json={"inputs": {"user_id": users, "movie_id": movies}})
    assert rows.status_code == 200, rows.text
    assert rows.json()["predictions"] == pytest.approx(expected, abs=1e-6)
    assert columns.json()["outputs"] == rows.json()["predictions"]
    signature = http.get(f"/v1/models/{MODEL}/metadata").json()["metadata"]["signature_def"]["signature_def"]
    assert {v["dtype"] for v in signature["serving_default"]["inputs"].values()} == {"DT_STRING"}


def _triton_inputs(module, binary: bool | None = None):
    inputs = []
    for name, values in (("user_id", _strings("u-", USERS)), ("movie_id", _strings("m-", MOVIES))):
        tensor = module.InferInput(name, [len(values)], "BYTES")
        kwargs = {} if binary is None else {"binary_data": binary}
        tensor.set_data_from_numpy(np.array([v.encode() for v in values], dtype=np.object_), **kwargs)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_oip_rest_bytes_tensors_as_tritonclient_sends_them(http, expected, binary):
    """tritonclient's own request bodies (its client takes no route prefix, so httpx carries them)."""
    import tritonclient.http as triton

    outputs = [triton.InferRequestedOutput("predictions", binary_data=binary)]
    body, header_length = triton.InferenceServerClient.generate_request_body(_triton_inputs(triton, binary),
                                                                              outputs, request_id="s-1")
    headers = {"content-type": "application/octet-stream" if header_length else "application/json"}
    if header_length:
        headers["Inference-Header-Content-Length"] = str(header_length)
    response = http.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    length = response.headers.get("Inference-Header-Content-Length")
    result = triton.InferenceServerClient.parse_response_body(response.content,
                                                              header_length=int(length) if length else None)
    assert result.as_numpy("predictions").tolist() == pytest.approx(expected, abs=1e-6)
    metadata = http.get(f"/v2/models/{MODEL}").json()
    assert [t["datatype"] for t in metadata["inputs"]] == ["BYTES", "BYTES"]


def test_oip_grpc_bytes_tensors_with_tritonclient(served_app, expected):
    import tritonclient.grpc as triton

    with triton.InferenceServerClient(served_app.grpc) as client:
        result = client.infer(MODEL, _triton_inputs(triton), headers=dict(GRPC_APP))
        assert result.as_numpy("predictions").tolist() == pytest.approx(expected, abs=1e-6)
        metadata = client.get_model_metadata(MODEL, headers=dict(GRPC_APP), as_json=True)
        assert [t["datatype"] for t in metadata["inputs"]] == ["BYTES", "BYTES"]


def test_oip_grpc_typed_bytes_contents(served_app, expected):
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    request = pb.ModelInferRequest(model_name=MODEL)
    for name, values in (("user_id", _strings("u-", USERS)), ("movie_id", _strings("m-", MOVIES))):
        tensor = request.inputs.add(name=name, datatype="BYTES", shape=[len(values)])
        tensor.contents.bytes_contents.extend(v.encode() for v in values)
    with grpc.insecure_channel(served_app.grpc) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, metadata=GRPC_APP, timeout=60)
    assert np.frombuffer(response.raw_output_contents[0], dtype="<f4").tolist() == pytest.approx(expected, abs=1e-6)


# -- unknown ids: 404 / NOT_FOUND naming them --------------------------------------------------------


@pytest.mark.parametrize("method, path, body, named", [
    ("POST", "/recommend", {"user_id": "u-0", "movie_ids": ["m-1"]}, "unknown user 'u-0'"),
    ("POST", "/recommend", {"user_id": "u-1", "movie_ids": ["m-1", "m-9999"]}, "unknown item 'm-9999'"),
    ("POST", "/recommend", {"user_id": 42, "movie_ids": ["m-1"]}, "unknown user 42"),  # "42": no user here
    ("GET", "/recommend/nobody/top", None, "unknown user 'nobody'"),
    ("POST", f"/v1/models/{MODEL}:predict", {"instances": [{"user_id": "u-1", "movie_id": "m-0"}]},
     "unknown item 'm-0'"),
    ("POST", f"/v2/models/{MODEL}/infer", {"inputs": [
        {"name": "user_id", "datatype": "BYTES", "shape": [1], "data": ["ghost"]},
        {"name": "movie_id", "datatype": "BYTES", "shape": [1], "data": ["m-1"]}]}, "unknown user 'ghost'"),
])
def test_unknown_string_ids_are_404s_naming_them(http, method, path, body, named):
    response = http.request(method, path, json=body)
    assert response.status_code == 404, response.text
    message = response.json()["detail" if path.startswith("/recommend") else "error"]  # each protocol's body
    assert message.startswith(named), message
    assert "not among this model's" in message


def test_unknown_string_ids_over_grpc_are_not_found_naming_them(served_app):
    import tritonclient.grpc as triton

    inputs = []
    for name, value in (("user_id", b"u-1"), ("movie_id", b"m-0")):
        tensor = triton.InferInput(name, [1], "BYTES")
        tensor.set_data_from_numpy(np.array([value], dtype=np.object_))
        inputs.append(tensor)
    with triton.InferenceServerClient(served_app.grpc) as client, \
            pytest.raises(triton.InferenceServerException) as unknown:
        client.infer(MODEL, inputs, headers=dict(GRPC_APP))
    assert "NOT_FOUND" in str(unknown.value.status()) and "unknown item 'm-0'" in unknown.value.message()


# -- the integer-id application takes BYTES ids as their decimal strings -----------------------------


def test_an_integer_model_reads_bytes_ids_as_their_integers(served_app, model):
    body = {"inputs": [{"name": "user_id", "datatype": "BYTES", "shape": [2], "data": ["42", "42"]},
                       {"name": "movie_id", "datatype": "INT32", "shape": [2], "data": [1, 50]}]}
    with httpx.Client(base_url=served_app.base, timeout=60) as client:
        response = client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == pytest.approx(model.predict(42, [1, 50]), abs=1e-6)
