"""Serving pieces that need no Ray: the API contract, the app's arguments, checkpoint resolution,
and the CLI's answers when there is nothing to serve or nothing answering."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_ml.serving.api import (
    ApiError,
    PredictRequest,
    check_pairs,
    validation_message,
)

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


# -- the API contract ----------------------------------------------------------------------------


@pytest.mark.parametrize("body, user, movies", [
    ({"user_id": 42, "movie_ids": [1, 2, 3]}, 42, [1, 2, 3]),
    ({"user_id": 42.0, "movie_ids": [1.0]}, 42, [1]),  # the JSON Schema integer 42
    ({"user_id": 1, "movie_ids": [1] * 1000}, 1, [1] * 1000),
    ({"user_id": "u-42", "movie_ids": ["m-1", 7]}, "u-42", ["m-1", 7]),  # the dataset's ids, strings as strings
    ({"user_id": "42", "movie_ids": [0, -1]}, "42", [0, -1]),  # any id: whether it is known is the catalogue's
])
def test_valid_requests(body, user, movies):
    request = PredictRequest.model_validate_json(json.dumps(body))
    assert (request.user_id, request.movie_ids) == (user, movies)
    assert [type(m) for m in request.movie_ids] == [type(m) for m in movies]


@pytest.mark.parametrize("body", [
    {"user_id": True, "movie_ids": [1]}, {"user_id": 4.5, "movie_ids": [1]}, {"user_id": None, "movie_ids": [1]},
    {"user_id": "", "movie_ids": [1]}, {"user_id": "x" * 257, "movie_ids": [1]}, {"user_id": [1], "movie_ids": [1]},
    {"user_id": 1, "movie_ids": [{"id": 1}]}, {"user_id": 1, "movie_ids": []},
    {"user_id": 1, "movie_ids": [1] * 1001}, {"user_id": 1, "movie_ids": [1], "extra": 1}, {"movie_ids": [1]},
])
def test_invalid_requests(body):
    with pytest.raises(ValidationError):
        PredictRequest.model_validate_json(json.dumps(body))


def test_pairs_need_one_user_per_movie_within_the_limit():
    check_pairs([1, "u"], [2, "m"])
    for users, movies in [([1, 2], [1]), ([], []), ([1] * 1001, [1] * 1001)]:
        with pytest.raises(ApiError) as bad:
            check_pairs(users, movies)
        assert bad.value.status_code == 400


def test_validation_message_is_one_readable_line():
    errors = [{"loc": ("body", "user_id"), "msg": "Input should be a valid integer"}] * 7
    message = validation_message(errors)
    assert message.startswith("body.user_id: Input should be a valid integer")
    assert message.endswith("(and 2 more)") and "\n" not in message


# -- the application's arguments (what a RayService passes) ---------------------------------------


def test_app_args_defaults_follow_the_design():
    from ray.serve.config import AutoscalingConfig

    from sentinel_ml.serving.config import serve_args

    options = serve_args("/x/runs/r/best.pt", None).deployment_options()
    autoscaling = options["autoscaling_config"]
    assert (autoscaling["min_replicas"], autoscaling["max_replicas"]) == (1, 5)
    assert autoscaling["target_ongoing_requests"] == 5
    assert (autoscaling["upscale_delay_s"], autoscaling["downscale_delay_s"]) == (1, 30)
    assert autoscaling["initial_replicas"] == 1
    assert options["ray_actor_options"] == {"num_cpus": 0.5}
    AutoscalingConfig(**autoscaling)  # the key names of the installed Ray


def test_serving_config_imports_no_ray_and_no_fastapi():
    """So that the Kubernetes target and `sentinel --help` can read it."""
    import subprocess
    import sys

    code = ("import sys, sentinel_ml.serving.config; "
            "print(sorted(m for m in ('ray', 'fastapi', 'torch', 'starlette') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_serve_args_take_flat_settings_and_name_bad_ones():
    from sentinel_ml.errors import ConfigError
    from sentinel_ml.serving.config import Autoscaling, serve_args

    args = serve_args("s3://b/best.pt", "r", {"min_replicas": 2, "max_replicas": 3, "num_cpus": 1,
                                              "checkpoint": "ignored: the resolved URI wins"})
    assert (args.checkpoint, args.run_id, args.num_cpus) == ("s3://b/best.pt", "r", 1)
    assert args.autoscaling == Autoscaling(min_replicas=2, max_replicas=3)
    assert serve_args("x", None).autoscaling == Autoscaling()  # always set, from its one set of defaults
    for settings, named in [({"min_replicas": 4, "max_replicas": 2}, "max_replicas must be >= min_replicas"),
                            ({"target_ongoing_requests": 64}, "max_ongoing_requests must be >= target"),
                            ({"max_batch_size": 0}, "max_batch_size:"),
                            ({"replicas": 2}, "replicas: Extra inputs are not permitted")]:
        with pytest.raises(ConfigError, match=named) as refused:
            serve_args("x", None, settings)
        assert refused.value.message.startswith("invalid serving settings: ") and refused.value.hint
    with pytest.raises(ConfigError, match="checkpoint"):
        serve_args("", None)


def test_the_serve_config_sends_autoscaling_once_to_the_deployment():
    from ray.serve.schema import ServeApplicationSchema

    from sentinel_ml.serving.config import IMPORT_PATH, NAMES, ServeArgs, serve_application, serve_args

    args = serve_args("s3://b/best.pt", "r", {"min_replicas": 0, "max_replicas": 2})
    application = serve_application(args)
    ServeApplicationSchema.model_validate(application)  # Ray 2.60's own schema
    assert (application["name"], application["import_path"]) == (NAMES.application, IMPORT_PATH)
    assert application["args"] == {"checkpoint": "s3://b/best.pt", "run_id": "r"}
    assert application["deployments"] == [{"name": NAMES.deployment, "autoscaling_config": {
        "min_replicas": 0, "max_replicas": 2, "target_ongoing_requests": 5.0, "upscale_delay_s": 1.0,
        "downscale_delay_s": 30.0, "initial_replicas": 1}}]
    # The replica's args carry no autoscaling, so the builder sets none and Serve's config applies.
    assert "autoscaling_config" not in ServeArgs.model_validate(application["args"]).deployment_options()


def test_one_naming_scheme():
    """The profile's default RayService, the CLI's default model and the monitoring dashboard read
    the names from serving/config.py."""
    from sentinel_cli.k8s import monitoring
    from sentinel_cli.k8s.settings import Serving
    from sentinel_ml.serving.config import NAMES, ServeArgs

    assert Serving().name == NAMES.service
    assert ServeArgs(checkpoint="x").model_name == NAMES.model
    assert any(f'deployment="{NAMES.deployment}"' in query for _, query, _ in monitoring.SERVING_PANELS)


def test_app_builder_takes_a_rayservice_args_dict():
    """Serve converts serveConfigV2 ``args`` through the builder's annotation, as a RayService does."""
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.deployment import Application

    from sentinel_ml.serve import app_builder

    args = {"checkpoint": "s3://bucket/runs/r/best.pt", "run_id": "r"}
    built = call_user_app_builder_with_args_if_necessary(app_builder, args)
    assert isinstance(built, Application)
    assert built._bound_deployment._deployment_config.autoscaling_config is None  # the Serve config's
    scaled = {**args, "autoscaling": {"min_replicas": 2, "max_replicas": 3}}  # the local target's
    built = call_user_app_builder_with_args_if_necessary(app_builder, scaled)
    assert built._bound_deployment._deployment_config.autoscaling_config.max_replicas == 3
    with pytest.raises(ValidationError):
        call_user_app_builder_with_args_if_necessary(app_builder, {"checkpoint": "x", "autoscaling": {
            "min_replicas": 4, "max_replicas": 2}})
    with pytest.raises(ValidationError):
        call_user_app_builder_with_args_if_necessary(app_builder, {"checkpoint": "x", "replicas": 2})


# -- the CLI with nothing to serve or nothing answering -------------------------------------------


def test_serve_with_an_empty_index_says_to_train_first(sentinel_home):
    result = invoke("serve", "--checkpoint", "latest")
    assert result.exit_code == 2, result.output
    assert "no checkpoints yet" in result.stderr and "sentinel train" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["serve", "--port", "0"], "--port"),
    (["serve", "--host", "0.0.0.0", "--target", "k8s"], "--host only applies"),
    (["serve", "--timeout", "5", "--checkpoint", "latest", "--target", "local"], "no checkpoints yet"),
    (["predict", "--user", "1", "--movies", " , "], "not a list of item ids"),
    (["predict", "--user", " ", "--movies", "1"], "an empty id"),
    (["recommend", "--user", "1", "-k", "0"], "-k"),
])
def test_bad_serving_flags_exit_2(sentinel_home, args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_serve_stop_with_nothing_running_is_a_no_op(sentinel_home):
    result = invoke("serve", "stop", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stopped"] is False


def test_predict_with_nothing_answering_names_the_next_step(sentinel_home):
    from tests.support.ports import free_port

    result = invoke("predict", "--user", "1", "--movies", "1", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 2
    assert "nothing answers" in result.stderr and "sentinel serve" in result.stderr


def test_status_without_serving_says_so(sentinel_home):
    result = invoke("status", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["serving"] is None
    assert "serving: nothing" in invoke("status").stdout


def test_api_client_endpoint_and_local_replica_cap():
    from sentinel_cli.api_client import endpoint
    from sentinel_cli.backends.local.serving import local_max_replicas
    assert endpoint("http://h:1") == endpoint("http://h:1/recommend/") + "" == "http://h:1/recommend"
    assert endpoint("http://h:1/", "/7/top?k=3") == "http://h:1/recommend/7/top?k=3"
    assert 1 <= local_max_replicas() <= 5


# -- the protocols' pieces that need no server ------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["serve", "--grpc-port", "0"], "--grpc-port"),
    (["serve", "--port", "9100", "--grpc-port", "9100"], "is also the HTTP port"),
    (["serve", "--port", "9000"], "gRPC port 9000 is also the HTTP port"),
    (["predict", "--user", "1", "--movies", "1", "--protocol", "soap"], "--protocol"),
])
def test_bad_protocol_flags_exit_2(sentinel_home, args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_predict_over_grpc_with_nothing_answering_names_the_next_step(sentinel_home):
    """In a child process: this one must not load Sentinel's gRPC stubs beside tritonclient's."""
    import os
    import subprocess
    import sys

    from tests.support.ports import free_port

    result = subprocess.run([sys.executable, "-m", "sentinel_cli", "predict", "--user", "1", "--movies", "1",
                             "--protocol", "grpc", "--grpc", f"127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, timeout=120, env=os.environ, check=False)
    assert result.returncode == 2, result.stderr
    assert "nothing answers gRPC" in result.stderr and "sentinel serve" in result.stderr


def test_http_base_and_grpc_options():
    from sentinel_cli.api_client import http_base
    from sentinel_ml.serving.config import GRPC_SERVICER, ServeRequest, grpc_options

    assert http_base("http://h:1/recommend/") == http_base("http://h:1") == "http://h:1"
    assert grpc_options(9100) == {"port": 9100, "grpc_servicer_functions": [GRPC_SERVICER]}
    request = ServeRequest().with_local_defaults(timeout_s=10)
    assert (request.url, request.grpc_address) == ("http://127.0.0.1:8000", "127.0.0.1:9000")


def test_the_grpc_servicer_is_importable_as_serve_imports_it():
    """What Serve's proxies import from gRPCOptions.grpc_servicer_functions (in a child process, for
    the descriptor-pool reason above)."""
    import subprocess
    import sys

    code = ("from ray.serve.config import gRPCOptions; from sentinel_ml.serving.config import grpc_options; "
            "print(len(gRPCOptions(**grpc_options()).grpc_servicer_func_callable))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "1", result.stderr


@pytest.mark.parametrize("run_id, uri, expected", [
    ("train-20261201-214838-12de", "/x/runs/train-20261201-214838-12de/best.pt", 20261201214838),
    ("tune-20260102-030405-ab12", "s3://b/runs/tune-20260102-030405-ab12/best.pt", 20260102030405),
])
def test_model_version_comes_from_the_runs_time(run_id, uri, expected):
    from sentinel_ml.serving.recommender import model_version

    assert model_version(run_id, uri) == expected
    assert 10**8 <= model_version(None, uri) < 10**9  # no run id: from the URI


def test_model_ref_checks_name_and_version():
    from sentinel_ml.serving.api import ModelRef

    ref = ModelRef("recommender", 7, 944, 1683)
    ref.check("recommender")
    ref.check("recommender", "7")
    for name, version, status in [("other", None, 404), ("recommender", "8", 404), ("recommender", "v7", 400),
                                  ("recommender", "0", 400)]:
        with pytest.raises(ApiError) as raised:
            ref.check(name, version)
        assert raised.value.status_code == status


# -- the batch wait --------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_batches_wait_while_callers_overlap_and_stop_for_a_lone_caller():
    from sentinel_ml.serving.batching import AdaptiveWait

    clock = _Clock()
    wait = AdaptiveWait(0.005, clock=clock)
    assert wait.current_s == 0.005
    lonely = AdaptiveWait.LONELY
    assert [wait.after_batch(n) for n in [6] + [1] * (lonely - 1) + [4]] == [None] * (lonely + 1)  # company came
    assert [wait.after_batch(1) for _ in range(lonely - 1)] == [None] * (lonely - 1)
    assert wait.after_batch(1) == 0.0  # LONELY lone batches in a row: stop waiting
    assert (wait.waiting, wait.current_s) == (False, 0.0)
    clock.now += AdaptiveWait.PROBE_EVERY_S / 2
    assert wait.after_batch(1) is None and wait.after_batch(5) is None  # not before the probe
    clock.now += AdaptiveWait.PROBE_EVERY_S / 2
    assert wait.after_batch(1) == 0.005  # probe: wait again, and keep waiting while batches fill
    assert [wait.after_batch(n) for n in (3, 8, 1)] == [None] * 3
    assert wait.current_s == 0.005


def test_a_zero_batch_wait_never_waits():
    from sentinel_ml.serving.batching import AdaptiveWait

    wait = AdaptiveWait(0.0, clock=_Clock())
    assert wait.current_s == 0.0
    assert {wait.after_batch(n) for n in (1, 1, 1, 1, 9, 1)} == {None}


def _batcher(wait_s: float, gap_s: float = 0.001, max_size: int = 32):
    from sentinel_ml.serving.batching import AdaptiveWait, MicroBatcher

    batches: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        batches.append(list(items))
        if -1 in items:
            raise ValueError("bad batch")
        return [item * 10 for item in items]

    return MicroBatcher(run, max_size, AdaptiveWait(wait_s), gap_s=gap_s), batches


def test_concurrent_callers_share_batches_and_each_gets_its_own_answer():
    import asyncio

    batcher, batches = _batcher(0.0, max_size=8)

    async def main():
        return await asyncio.gather(*(batcher.submit(i) for i in range(20)))

    assert asyncio.run(main()) == [i * 10 for i in range(20)]
    assert [len(b) for b in batches] == [8, 8, 4]  # everything queued when the worker ran, max_size at a time
    assert [item for batch in batches for item in batch] == list(range(20))  # arrival order


def test_a_batch_waits_for_trickling_callers_and_goes_when_they_stop():
    """The callers arrive one by one (as Serve's gRPC server admits them); the batch collects them while
    they keep coming and runs after a gap without arrivals, long before its longest wait."""
    import asyncio

    batcher, batches = _batcher(3600.0, gap_s=0.05)

    async def main():
        calls = []
        for i in range(5):
            calls.append(asyncio.ensure_future(batcher.submit(i)))
            await asyncio.sleep(0.001)
        return await asyncio.wait_for(asyncio.gather(*calls), 60)  # a bound, not a timing target

    assert asyncio.run(main()) == [0, 10, 20, 30, 40]
    assert batches == [[0, 1, 2, 3, 4]]


def test_a_failed_batch_fails_its_callers_and_the_next_batch_runs():
    import asyncio

    batcher, _ = _batcher(0.0)

    async def main():
        failed = await asyncio.gather(batcher.submit(-1), batcher.submit(2), return_exceptions=True)
        return failed, await batcher.submit(3)

    failed, after = asyncio.run(main())
    assert [type(e) for e in failed] == [ValueError, ValueError]
    assert after == 30


def test_a_caller_that_gave_up_is_left_out_of_its_batch():
    import asyncio

    batcher, batches = _batcher(3600.0, gap_s=0.05)

    async def main():
        gone = asyncio.ensure_future(batcher.submit(1))
        kept = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0)
        gone.cancel()
        return await asyncio.wait_for(kept, 60)

    assert asyncio.run(main()) == 20
    assert batches == [[2]]


def test_top_k_runs_off_the_event_loop_beside_the_batches():
    """While a slow top-k computes, the loop keeps running batches of predictions (a plain-asyncio
    check of Replica.top_k; the served application's latency is tests/serving/test_top_k_latency.py)."""
    import asyncio
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    import numpy as np

    from sentinel_ml.serving.replica import Replica

    loop_thread, started, release = [], threading.Event(), threading.Event()

    def top_k(user_id, k, min_ratings):
        loop_thread.append(threading.current_thread() is threading.main_thread())
        started.set()
        release.wait(30)  # a heavy scoring pass, held until the loop has shown it is free
        return [(1, "Toy Story (1995)", 4.5)][:k]

    def score_many(requests):
        return [np.full(len(users), 3.0, dtype=np.float32) for users, _ in requests]

    replica = Replica.__new__(Replica)  # no checkpoint: the model is a stand-in
    replica.model = SimpleNamespace(top_k=top_k, score_many=score_many)
    replica._top_k_pool = ThreadPoolExecutor(max_workers=1)
    replica.reconfigure({"max_batch_size": 8, "batch_wait_timeout_s": 0.0})

    async def main():
        top = asyncio.ensure_future(replica.top_k(42, 1, 0))
        while not started.is_set():
            await asyncio.sleep(0.001)
        predictions = [await replica.score([42, 42], [1, 2]) for _ in range(5)]  # while top-k computes
        assert not top.done()
        release.set()
        return predictions, await asyncio.wait_for(top, 30)

    start = time.monotonic()
    predictions, top = asyncio.run(main())
    assert [p.tolist() for p in predictions] == [[3.0, 3.0]] * 5 and top == [(1, "Toy Story (1995)", 4.5)]
    assert loop_thread == [False] and replica.batching.batches == 5
    assert time.monotonic() - start < 30
    replica._top_k_pool.shutdown()


# -- OIP tensors of every id datatype (REST parsing; gRPC's goes through the served app) -------------


def _oip_body(user, movie, binary: bytes = b"") -> tuple[bytes, str | None]:
    body = json.dumps({"inputs": [user, movie]}).encode()
    return body + binary, (str(len(body)) if binary else None)


def _byte_tensor(*values: bytes) -> bytes:
    import struct

    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def test_oip_takes_int64_int32_and_bytes_ids_as_json_and_binary():
    import numpy as np

    from sentinel_ml.serving import oip
    from sentinel_ml.serving.api import ModelRef

    ref = ModelRef("recommender", 7, 4, 6, "string")
    body, header = _oip_body({"name": "user_id", "datatype": "BYTES", "shape": [2], "data": ["u-1", "ü"]},
                             {"name": "movie_id", "datatype": "INT32", "shape": [2], "data": [3, 4]})
    parsed = oip.parse_rest(body, header, ref, "recommender")
    assert (parsed.users, parsed.movies) == (["u-1", "ü"], [3, 4])

    raw_users = _byte_tensor(b"u-1", "ü".encode())
    raw_movies = np.array([3, 4], "<i8").tobytes()
    body, header = _oip_body(
        {"name": "user_id", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(raw_users)}},
        {"name": "movie_id", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}},
        raw_users + raw_movies)
    parsed = oip.parse_rest(body, header, ref, "recommender")
    assert (parsed.users, parsed.movies) == (["u-1", "ü"], [3, 4])
    assert oip.model_metadata(ref)["inputs"][0]["datatype"] == "BYTES"
    assert oip.model_metadata(ModelRef("recommender", 7, 4, 6))["inputs"][0]["datatype"] == "INT64"


@pytest.mark.parametrize("user, raw, message", [
    ({"datatype": "BYTES", "data": [1]}, b"", "flat list of strings"),
    ({"datatype": "INT32", "data": [2**31]}, b"", "outside INT32"),
    ({"datatype": "FP32", "data": [1.0]}, b"", "takes INT64 or INT32"),
    ({"datatype": "BYTES", "parameters": {"binary_data_size": 3}}, b"\x05\x00\x00", "4-byte length"),
    ({"datatype": "BYTES", "parameters": {"binary_data_size": 6}}, b"\x05\x00\x00\x00ab", "runs past"),
    ({"datatype": "BYTES", "parameters": {"binary_data_size": 5}}, b"\x01\x00\x00\x00\xff", "not UTF-8"),
    ({"datatype": "BYTES", "parameters": {"binary_data_size": 10}}, _byte_tensor(b"a", b"b"), "holds more"),
    ({"datatype": "INT32", "parameters": {"binary_data_size": 8}}, b"\0" * 8, "takes 4"),
])
def test_oip_bad_id_tensors_are_400s(user, raw, message):
    from sentinel_ml.serving import oip
    from sentinel_ml.serving.api import ModelRef

    body, header = _oip_body({"name": "user_id", "shape": [1], **user},
                             {"name": "movie_id", "datatype": "INT64", "shape": [1], "data": [1]}, raw)
    with pytest.raises(ApiError, match=message) as bad:
        oip.parse_rest(body, header, ModelRef("recommender", 7, 4, 6, "string"), "recommender")
    assert bad.value.status_code == 400
