"""TF-Serving REST, the Open Inference Protocol over REST and gRPC, beside /recommend, on the real
application behind Serve's HTTP and gRPC proxies, with real clients: httpx for TF-Serving,
tritonclient (http and grpc) for OIP, and Triton's own generated gRPC messages for requests
tritonclient refuses to build. Every protocol gets the bad-input table; none may answer 5xx or
INTERNAL/UNKNOWN, and each keeps answering good requests afterwards.

This process never imports Sentinel's own gRPC stubs: they and tritonclient's define the same
protobuf names (package ``inference``), and one process holds only one of them.
"""

from __future__ import annotations

import json

import grpc
import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

MODEL = "recommender"
TEN_MB = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def http(served_app):
    with httpx.Client(base_url=served_app.base, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def version(http) -> int:
    return http.get("/recommend/model").json()["model_version"]


@pytest.fixture(scope="module")
def triton_http(served_app):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(served_app.base.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def triton_grpc(served_app):
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(served_app.grpc)
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(served_app):
    """Triton's generated stub: any message, including the ones tritonclient would refuse to send."""
    from tritonclient.grpc import service_pb2_grpc

    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(served_app.grpc, options=options) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _pairs(seed: int = 3, n: int = 40) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 944, n).tolist(), rng.integers(1, 1683, n).tolist()


def _reference(model, users: list[int], movies: list[int]) -> np.ndarray:
    return np.array([model.predict(u, [m])[0] for u, m in zip(users, movies)])


def _triton_inputs(module, users, movies, binary: bool | None = None):
    inputs = []
    for name, values in (("user_id", users), ("movie_id", movies)):
        tensor = module.InferInput(name, [len(values)], "INT64")
        kwargs = {} if binary is None else {"binary_data": binary}
        tensor.set_data_from_numpy(np.asarray(values, dtype=np.int64), **kwargs)
        inputs.append(tensor)
    return inputs


# -- TensorFlow Serving REST ----------------------------------------------------------------------


def test_tfserving_rows_and_columns_give_the_models_ratings(http, model):
    users, movies = _pairs()
    rows = http.post(f"/v1/models/{MODEL}:predict",
                     json={"instances": [{"user_id": u, "movie_id": m} for u, m in zip(users, movies)]})
    columns = http.post(f"/v1/models/{MODEL}:predict",
                        json={"signature_name": "serving_default", "inputs": {"user_id": users, "movie_id": movies}})

    assert rows.status_code == 200, rows.text
    assert columns.status_code == 200, columns.text
    expected = _reference(model, users, movies)
    assert rows.json()["predictions"] == pytest.approx(expected, abs=1e-6)
    # Both name the version that answered, in the body and the header (docs/serving.md "Canary").
    assert columns.json() == {"outputs": rows.json()["predictions"], "model_version": rows.json()["model_version"]}
    assert columns.headers["x-sentinel-model-version"] == rows.json()["model_version"]


def test_tfserving_version_status_and_metadata(http, version, served_app):
    assert http.post(f"/v1/models/{MODEL}/versions/{version}:predict",
                     json={"instances": [{"user_id": 1, "movie_id": 1}]}).status_code == 200
    status = {"model_version_status": [{"version": str(version), "state": "AVAILABLE",
                                        "status": {"error_code": "OK", "error_message": ""}}]}
    assert http.get(f"/v1/models/{MODEL}").json() == status
    assert http.get(f"/v1/models/{MODEL}/versions/{version}").json() == status
    metadata = http.get(f"/v1/models/{MODEL}/metadata").json()
    assert metadata["model_spec"] == {"name": MODEL, "signature_name": "", "version": str(version)}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert {k: v["dtype"] for k, v in signature["inputs"].items()} == {"user_id": "DT_INT64", "movie_id": "DT_INT64"}
    assert signature["outputs"]["predictions"]["dtype"] == "DT_FLOAT"
    assert http.get(f"/v1/models/{MODEL}/versions/{version}/metadata").json() == metadata


def test_the_model_version_is_the_runs_time_and_positive(version, served_app):
    from sentinel_ml.serving.recommender import model_version

    stamp = served_app.run_id.split("-")[1] + served_app.run_id.split("-")[2]  # train-YYYYMMDD-HHMMSS-xxxx
    assert version == int(stamp) == model_version(served_app.run_id, served_app.checkpoint) > 0
    other = model_version("my-run", "s3://b/runs/my-run/best.pt")
    assert other == model_version("my-run", "s3://b/runs/my-run/best.pt") and 10**8 <= other < 10**9


# -- Open Inference Protocol REST, with tritonclient ------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_oip_rest_infer_with_tritonclient(triton_http, model, binary, version):
    import tritonclient.http as triton

    users, movies = _pairs(5)
    outputs = [triton.InferRequestedOutput("predictions", binary_data=binary)]
    result = triton_http.infer(MODEL, _triton_inputs(triton, users, movies, binary), outputs=outputs,
                               request_id="req-1")

    predictions = result.as_numpy("predictions")
    assert predictions.dtype == np.float32 and predictions.shape == (len(users),)
    assert predictions == pytest.approx(_reference(model, users, movies), abs=1e-6)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (MODEL, str(version), "req-1")


def test_oip_rest_defaults_of_tritonclient_binary_both_ways(triton_http, model):
    """tritonclient's defaults: binary inputs, no outputs named (binary_data_output)."""
    import tritonclient.http as triton

    users, movies = _pairs(6, 7)
    result = triton_http.infer(MODEL, _triton_inputs(triton, users, movies))
    assert result.as_numpy("predictions") == pytest.approx(_reference(model, users, movies), abs=1e-6)


def test_oip_rest_health_and_metadata(triton_http, http, version):
    assert triton_http.is_server_live() and triton_http.is_server_ready()
    assert triton_http.is_model_ready(MODEL) and triton_http.is_model_ready(MODEL, str(version))
    assert not triton_http.is_model_ready("other")
    server = triton_http.get_server_metadata()
    assert server["name"] == "sentinel" and "binary_tensor_data" in server["extensions"]
    metadata = triton_http.get_model_metadata(MODEL)
    assert metadata == {"name": MODEL, "versions": [str(version)], "platform": "pytorch",
                        "inputs": [{"name": "user_id", "datatype": "INT64", "shape": [-1]},
                                   {"name": "movie_id", "datatype": "INT64", "shape": [-1]}],
                        "outputs": [{"name": "predictions", "datatype": "FP32", "shape": [-1]}]}
    assert triton_http.get_model_metadata(MODEL, str(version)) == metadata
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}


def test_oip_rest_plain_json_infer(http, model, version):
    body = {"id": "a", "inputs": [{"name": "movie_id", "shape": [2], "datatype": "INT64", "data": [1, 50]},
                                  {"name": "user_id", "shape": [2], "datatype": "INT64", "data": [42, 42]}]}
    response = http.post(f"/v2/models/{MODEL}/versions/{version}/infer", json=body)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["outputs"][0]["name"] == "predictions" and answer["outputs"][0]["datatype"] == "FP32"
    assert answer["outputs"][0]["shape"] == [2] and answer["id"] == "a"
    assert answer["outputs"][0]["data"] == pytest.approx(model.predict(42, [1, 50]), abs=1e-6)


# -- Open Inference Protocol gRPC, with tritonclient --------------------------------------------------


def test_oip_grpc_with_tritonclient(triton_grpc, model, version):
    import tritonclient.grpc as triton

    assert triton_grpc.is_server_live() and triton_grpc.is_server_ready()
    assert triton_grpc.is_model_ready(MODEL) and triton_grpc.is_model_ready(MODEL, str(version))
    assert not triton_grpc.is_model_ready("other")
    server = triton_grpc.get_server_metadata()
    assert server.name == "sentinel"
    metadata = triton_grpc.get_model_metadata(MODEL, as_json=True)
    assert metadata["versions"] == [str(version)]
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [("user_id", "INT64"), ("movie_id", "INT64")]
    assert [(t["name"], t["datatype"]) for t in metadata["outputs"]] == [("predictions", "FP32")]

    users, movies = _pairs(9)
    result = triton_grpc.infer(MODEL, _triton_inputs(triton, users, movies), request_id="g-1")
    predictions = result.as_numpy("predictions")
    assert predictions.dtype == np.float32 and predictions.shape == (len(users),)
    assert predictions == pytest.approx(_reference(model, users, movies), abs=1e-6)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (MODEL, str(version), "g-1")


def test_oip_grpc_typed_contents_work_too(stub, model):
    from tritonclient.grpc import service_pb2 as pb

    response = stub.ModelInfer(_message(pb, [42, 42], [1, 50], raw=False))
    assert np.frombuffer(response.raw_output_contents[0], dtype="<f4") == pytest.approx(
        model.predict(42, [1, 50]), abs=1e-6)


# -- one answer, one batching path ------------------------------------------------------------------


def test_every_protocol_gives_the_same_answer_through_the_same_batches(http, triton_http, triton_grpc):
    import tritonclient.grpc as triton_g
    import tritonclient.http as triton_h

    users = [u for u in (1, 42, 300, 943) for _ in range(6)]
    movies = [int(m) for m in np.random.default_rng(11).integers(1, 1683, len(users))]
    before = http.get("/recommend/model").json()["batching"]["requests"]

    recommend = []
    for user in sorted(set(users)):
        mine = [m for u, m in zip(users, movies) if u == user]
        recommend += http.post("/recommend", json={"user_id": user, "movie_ids": mine}).json()["predictions"]
    tf = http.post(f"/v1/models/{MODEL}:predict", json={"inputs": {"user_id": users, "movie_id": movies}}).json()
    oip_rest = triton_http.infer(MODEL, _triton_inputs(triton_h, users, movies)).as_numpy("predictions")
    oip_grpc = triton_grpc.infer(MODEL, _triton_inputs(triton_g, users, movies)).as_numpy("predictions")

    assert tf["outputs"] == pytest.approx(recommend, abs=1e-6)
    assert oip_rest.tolist() == pytest.approx(recommend, abs=1e-6)
    assert oip_grpc.tolist() == pytest.approx(recommend, abs=1e-6)
    after = http.get("/recommend/model").json()["batching"]["requests"]
    assert after - before == 4 + 3  # every request went through the one batching path (MicroBatcher)


# -- bad input: TF-Serving REST -----------------------------------------------------------------------

JSON = {"content-type": "application/json"}
ROW = {"user_id": 1, "movie_id": 1}
PREDICT = f"/v1/models/{MODEL}:predict"


def _rows(n: int) -> dict:
    return {"instances": [ROW] * n}


TF_BAD = [
    ("malformed json", "POST", PREDICT, {"content": b'{"instances": [', "headers": JSON}, 400),
    ("empty body", "POST", PREDICT, {"content": b"", "headers": JSON}, 400),
    ("not an object", "POST", PREDICT, {"json": [ROW]}, 400),
    ("neither instances nor inputs", "POST", PREDICT, {"json": {}}, 400),
    ("both instances and inputs", "POST", PREDICT,
     {"json": {"instances": [ROW], "inputs": {"user_id": [1], "movie_id": [1]}}}, 400),
    ("ragged columns", "POST", PREDICT, {"json": {"inputs": {"user_id": [1, 2, 3], "movie_id": [1, 2]}}}, 400),
    ("missing column", "POST", PREDICT, {"json": {"inputs": {"user_id": [1]}}}, 400),
    ("extra column", "POST", PREDICT, {"json": {"inputs": {"user_id": [1], "movie_id": [1], "k": [1]}}}, 400),
    ("row missing movie", "POST", PREDICT, {"json": {"instances": [{"user_id": 1}]}}, 400),
    ("row with extra input", "POST", PREDICT, {"json": {"instances": [{**ROW, "rating": 5}]}}, 400),
    ("id as object", "POST", PREDICT, {"json": {"instances": [{"user_id": {"id": 1}, "movie_id": 1}]}}, 400),
    ("id as empty string", "POST", PREDICT, {"json": {"instances": [{"user_id": "", "movie_id": 1}]}}, 400),
    ("id as bool", "POST", PREDICT, {"json": {"instances": [{"user_id": True, "movie_id": 1}]}}, 400),
    ("id as fraction", "POST", PREDICT, {"json": {"instances": [{"user_id": 1.5, "movie_id": 1}]}}, 400),
    ("empty instances", "POST", PREDICT, {"json": {"instances": []}}, 400),
    ("empty columns", "POST", PREDICT, {"json": {"inputs": {"user_id": [], "movie_id": []}}}, 400),
    ("1001 pairs", "POST", PREDICT, {"json": _rows(1001)}, 400),
    ("other signature", "POST", PREDICT, {"json": {"signature_name": "classify", **_rows(1)}}, 400),
    ("negative id", "POST", PREDICT, {"json": {"instances": [{"user_id": -1, "movie_id": 1}]}}, 404),
    ("zero id", "POST", PREDICT, {"json": {"instances": [{"user_id": 1, "movie_id": 0}]}}, 404),
    ("string of no integer", "POST", PREDICT, {"json": {"instances": [{"user_id": "u-1", "movie_id": 1}]}}, 404),
    ("huge id", "POST", PREDICT, {"json": {"instances": [{"user_id": 10**30, "movie_id": 1}]}}, 404),
    ("unknown user", "POST", PREDICT, {"json": {"instances": [{"user_id": 944, "movie_id": 1}]}}, 404),
    ("unknown movie", "POST", PREDICT, {"json": {"inputs": {"user_id": [1, 1], "movie_id": [1, 1683]}}}, 404),
    ("unknown model", "POST", "/v1/models/other:predict", {"json": _rows(1)}, 404),
    ("unknown version", "POST", f"/v1/models/{MODEL}/versions/1:predict", {"json": _rows(1)}, 404),
    ("version not a number", "POST", f"/v1/models/{MODEL}/versions/latest:predict", {"json": _rows(1)}, 400),
    ("status of unknown model", "GET", "/v1/models/other", {}, 404),
    ("status of unknown version", "GET", f"/v1/models/{MODEL}/versions/7", {}, 404),
    ("metadata of unknown model", "GET", "/v1/models/other/metadata", {}, 404),
    ("10 MB body", "POST", PREDICT, {"content": b"[" + b"1," * (TEN_MB // 2) + b"1]", "headers": JSON}, 413),
    ("wrong method", "GET", PREDICT, {}, 404),  # GET reads it as the status of model "recommender:predict"
    ("unknown verb", "POST", f"/v1/models/{MODEL}:classify", {"json": _rows(1)}, 405),
]


@pytest.mark.parametrize("method, path, kwargs, status", [r[1:] for r in TF_BAD], ids=[r[0] for r in TF_BAD])
def test_tfserving_bad_input_is_a_4xx_with_an_error_line(http, method, path, kwargs, status):
    response = http.request(method, path, **kwargs)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and error and "\n" not in error
    assert http.post(PREDICT, json=_rows(2)).status_code == 200  # still answering


# -- bad input: OIP REST --------------------------------------------------------------------------------

INFER = f"/v2/models/{MODEL}/infer"


def _tensor(name: str, data, datatype: str = "INT64", shape=None) -> dict:
    return {"name": name, "datatype": datatype, "shape": [len(data)] if shape is None else shape, "data": data}


def _infer(users=(1,), movies=(1,), **more) -> dict:
    return {"inputs": [_tensor("user_id", list(users)), _tensor("movie_id", list(movies))], **more}


def _binary(header: dict, raw: bytes) -> dict:
    body = json.dumps(header).encode()
    return {"content": body + raw, "headers": {**JSON, "Inference-Header-Content-Length": str(len(body))}}


OIP_BAD = [
    ("malformed json", INFER, {"content": b'{"inputs": [', "headers": JSON}, 400),
    ("empty body", INFER, {"content": b"", "headers": JSON}, 400),
    ("not an object", INFER, {"json": [1, 2]}, 400),
    ("no inputs", INFER, {"json": {"inputs": []}}, 400),
    ("FP32 ids", INFER, {"json": {"inputs": [_tensor("user_id", [1.0], "FP32"), _tensor("movie_id", [1])]}}, 400),
    ("BYTES data as integers", INFER, {"json": {"inputs": [_tensor("user_id", [1], "BYTES"), _tensor("movie_id", [1])]}},
     400),
    ("strings as INT64", INFER, {"json": {"inputs": [_tensor("user_id", ["1"]), _tensor("movie_id", [1])]}}, 400),
    ("booleans as INT64", INFER, {"json": {"inputs": [_tensor("user_id", [True]), _tensor("movie_id", [1])]}}, 400),
    ("fractions as INT64", INFER, {"json": {"inputs": [_tensor("user_id", [1.5]), _tensor("movie_id", [1])]}}, 400),
    ("nested data", INFER, {"json": {"inputs": [_tensor("user_id", [[1]], shape=[1]), _tensor("movie_id", [1])]}}, 400),
    ("user [3] with movie [2]", INFER, {"json": _infer([1, 2, 3], [1, 2])}, 400),
    ("shape says 3, data has 2", INFER,
     {"json": {"inputs": [_tensor("user_id", [1, 2], shape=[3]), _tensor("movie_id", [1, 2], shape=[3])]}}, 400),
    ("2-D shape", INFER,
     {"json": {"inputs": [_tensor("user_id", [1], shape=[1, 1]), _tensor("movie_id", [1], shape=[1, 1])]}}, 400),
    ("empty tensors", INFER, {"json": _infer([], [])}, 400),
    ("1001 pairs", INFER, {"json": _infer([1] * 1001, [1] * 1001)}, 400),
    ("missing input", INFER, {"json": {"inputs": [_tensor("user_id", [1])]}}, 400),
    ("extra input", INFER, {"json": {"inputs": [*_infer()["inputs"], _tensor("rating", [5])]}}, 400),
    ("input twice", INFER, {"json": {"inputs": [*_infer()["inputs"], _tensor("user_id", [1])]}}, 400),
    ("unknown output", INFER, {"json": _infer(outputs=[{"name": "scores"}])}, 400),
    ("negative id", INFER, {"json": _infer([-1], [1])}, 404),
    ("zero id", INFER, {"json": _infer([1], [0])}, 404),
    ("huge id", INFER, {"json": _infer([10**30], [1])}, 404),
    ("unknown user", INFER, {"json": _infer([944], [1])}, 404),
    ("unknown movie", INFER, {"json": _infer([1, 1], [1, 1683])}, 404),
    ("unknown model", "/v2/models/other/infer", {"json": _infer()}, 404),
    ("unknown version", f"/v2/models/{MODEL}/versions/1/infer", {"json": _infer()}, 404),
    ("version not a number", f"/v2/models/{MODEL}/versions/v1/infer", {"json": _infer()}, 400),
    ("binary: bad header length", INFER,
     {"content": b"{}", "headers": {**JSON, "Inference-Header-Content-Length": "99"}}, 400),
    ("binary: wrong byte count", INFER, _binary(
        {"inputs": [{"name": "user_id", "shape": [2], "datatype": "INT64", "parameters": {"binary_data_size": 8}},
                    _tensor("movie_id", [1, 2])]}, np.array([1], "<i8").tobytes()), 400),
    ("binary: bytes left over", INFER, _binary(_infer(), b"\0" * 8), 400),
    ("10 MB body", INFER, {"content": b"[" + b"1," * (TEN_MB // 2) + b"1]", "headers": JSON}, 413),
]


@pytest.mark.parametrize("path, kwargs, status", [r[1:] for r in OIP_BAD], ids=[r[0] for r in OIP_BAD])
def test_oip_rest_bad_input_is_a_4xx_with_an_error_line(http, path, kwargs, status):
    response = http.post(path, **kwargs)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and error and "\n" not in error
    assert http.post(INFER, json=_infer([1, 2], [3, 4])).status_code == 200  # still answering


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/v2/models/other", 404), ("GET", "/v2/models/other/ready", 404),
    ("GET", f"/v2/models/{MODEL}/versions/3", 404), ("GET", INFER, 405), ("GET", "/v2/nothing", 404),
])
def test_oip_rest_unknown_models_and_paths(http, method, path, status):
    response = http.request(method, path)
    assert response.status_code == status and response.json()["error"]


# -- bad input: OIP gRPC ---------------------------------------------------------------------------------


def _message(pb, users, movies, *, raw=True, datatype="INT64", shapes=None, model=MODEL, version="",
             names=("user_id", "movie_id")):
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    for i, (name, values) in enumerate(zip(names, (users, movies))):
        shape = [len(values)] if shapes is None else shapes[i]
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        if raw:
            request.raw_input_contents.append(np.asarray(values, dtype="<i8").tobytes())
        else:
            tensor.contents.int64_contents.extend(values)
    return request


def _grpc_cases(pb):
    def fp32():
        r = _message(pb, [], [], raw=False, datatype="FP32", shapes=[[1], [1]])
        for t in r.inputs:
            t.contents.fp32_contents.append(1.0)
        return r

    def bytes_ids_in_int64_contents():
        r = _message(pb, [1], [1], raw=False, datatype="BYTES")
        return r

    def bytes_not_utf8():
        r = _message(pb, [], [], raw=False, datatype="BYTES", shapes=[[1], [1]])
        for t in r.inputs:
            t.contents.bytes_contents.append(b"\xff")
        return r

    def int64_in_fp32_contents():
        r = _message(pb, [], [], raw=False, shapes=[[1], [1]])
        for t in r.inputs:
            t.contents.fp32_contents.append(1.0)
        return r

    def raw_and_contents():
        r = _message(pb, [1], [1])
        r.inputs[0].contents.int64_contents.append(1)
        return r

    def extra_input():
        r = _message(pb, [1], [1])
        r.inputs.add(name="rating", datatype="INT64", shape=[1])
        r.raw_input_contents.append(np.array([5], "<i8").tobytes())
        return r

    def unknown_output():
        r = _message(pb, [1], [1])
        r.outputs.add(name="scores")
        return r

    def wrong_raw_size():
        r = _message(pb, [1, 2], [1, 2])
        r.raw_input_contents[0] = b"\0" * 4
        return r

    def ten_mb():
        n = TEN_MB // 8
        return _message(pb, [1] * n, [1] * n)

    invalid, not_found = "INVALID_ARGUMENT", "NOT_FOUND"
    return [
        ("FP32 ids", fp32, invalid),
        ("BYTES ids in int64_contents", bytes_ids_in_int64_contents, invalid),
        ("BYTES ids not UTF-8", bytes_not_utf8, invalid),
        ("INT64 declared, FP32 contents", int64_in_fp32_contents, invalid),
        ("user [3] with movie [2]", lambda: _message(pb, [1, 2, 3], [1, 2]), invalid),
        ("shape says 3, data has 2", lambda: _message(pb, [1, 2], [1, 2], raw=False, shapes=[[3], [3]]), invalid),
        ("2-D shape", lambda: _message(pb, [1], [1], shapes=[[1, 1], [1, 1]]), invalid),
        ("empty tensors", lambda: _message(pb, [], []), invalid),
        ("1001 pairs", lambda: _message(pb, [1] * 1001, [1] * 1001), invalid),
        ("missing input", lambda: _message(pb, [1], [1], names=("user_id",)), invalid),
        ("extra input", extra_input, invalid),
        ("input twice", lambda: _message(pb, [1], [1], names=("user_id", "user_id")), invalid),
        ("raw and typed contents", raw_and_contents, invalid),
        ("raw contents of the wrong size", wrong_raw_size, invalid),
        ("unknown output", unknown_output, invalid),
        ("negative id", lambda: _message(pb, [-1], [1]), not_found),
        ("zero id", lambda: _message(pb, [1], [0]), not_found),
        ("huge id", lambda: _message(pb, [2**62], [1]), not_found),
        ("unknown user", lambda: _message(pb, [944], [1]), not_found),
        ("unknown movie", lambda: _message(pb, [1, 1], [1, 1683]), not_found),
        ("unknown model", lambda: _message(pb, [1], [1], model="other"), not_found),
        ("unknown version", lambda: _message(pb, [1], [1], version="1"), not_found),
        ("version not a number", lambda: _message(pb, [1], [1], version="v1"), invalid),
        ("10 MB request", ten_mb, "RESOURCE_EXHAUSTED"),
    ]


GRPC_CASE_IDS = [case[0] for case in _grpc_cases(type("pb", (), {"ModelInferRequest": None}))]


@pytest.mark.parametrize("case", GRPC_CASE_IDS)
def test_oip_grpc_bad_input_is_a_client_error_code_with_a_message(stub, case):
    from tritonclient.grpc import service_pb2 as pb

    _, build, code = next(c for c in _grpc_cases(pb) if c[0] == case)
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(build(), timeout=60)

    assert raised.value.code().name == code, raised.value.details()
    details = raised.value.details()
    assert details and "\n" not in details and "Traceback" not in details
    assert len(stub.ModelInfer(_message(pb, [1, 2], [3, 4]), timeout=60).raw_output_contents[0]) == 8


def test_oip_grpc_metadata_of_an_unknown_model_is_not_found(stub):
    from tritonclient.grpc import service_pb2 as pb

    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="other"), timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND and "other" in raised.value.details()
    assert stub.ModelReady(pb.ModelReadyRequest(name="other"), timeout=30).ready is False
