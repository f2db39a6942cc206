"""A canary on the real local Ray, driven as a user drives it (`sentinel serve` in its own processes,
HAProxy in front): both versions answer, each answer names its version on every protocol, a user always
gets one version, `status` shows the canary with each version's counts from the live Prometheus
metrics, `serve promote --auto` rolls a failing candidate back in place under load (the path of `serve
rollback`), naming the breach, with no request failed, and `serve promote` ends a canary in place."""

from __future__ import annotations

import json
import os

import httpx
import numpy as np
import pytest

from sentinel_ml.serving import canary
from tests.support.load import RequestLoad, outcomes
from tests.support.serving import Served

pytestmark = pytest.mark.slow
HEADER = canary.VERSION_HEADER


def _versions(url: str, users, repeat: int = 2) -> dict[int, str]:
    """user → the version that answered /recommend (asked ``repeat`` times: it must be one version)."""
    seen: dict[int, set[str]] = {}
    with httpx.Client(timeout=30) as client:
        for _ in range(repeat):
            for user in users:
                answer = client.post(url, json={"user_id": user, "movie_ids": [1, 2]})
                assert answer.status_code == 200, answer.text
                assert answer.headers[HEADER] == str(answer.json()["model_version"])
                seen.setdefault(user, set()).add(answer.headers[HEADER])
    assert all(len(v) == 1 for v in seen.values()), seen
    return {user: versions.pop() for user, versions in seen.items()}


def _other_protocols(served: Served, user: int, version: str) -> None:
    """TF-Serving REST, OIP REST and OIP gRPC answer ``user`` (first of the batch) from ``version``."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    with httpx.Client(base_url=served.base, timeout=30) as client:
        tf = client.post("/v1/models/recommender:predict",
                         json={"instances": [{"user_id": user, "movie_id": 1}, {"user_id": 2, "movie_id": 3}]})
        assert (tf.status_code, tf.headers[HEADER], tf.json()["model_version"]) == (200, version, version), tf.text
        v2 = client.post("/v2/models/recommender/infer", json={"inputs": [
            {"name": "user_id", "shape": [1], "datatype": "INT64", "data": [user]},
            {"name": "movie_id", "shape": [1], "datatype": "INT64", "data": [1]}]})
        assert (v2.status_code, v2.headers[HEADER], v2.json()["model_version"]) == (200, version, version), v2.text
        top = client.get(f"/recommend/{user}/top", params={"k": 2})
        assert top.headers[HEADER] == str(top.json()["model_version"]) == version
    request = pb.ModelInferRequest(model_name="recommender")
    for name, values in (("user_id", [user]), ("movie_id", [1])):
        request.inputs.add(name=name, datatype="INT64", shape=[1])
        request.raw_input_contents.append(np.asarray(values, dtype="<i8").tobytes())
    with grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        response, call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(request, timeout=30)
    assert response.model_version == version
    assert (HEADER, version) in list(call.trailing_metadata())


def test_canary_split_status_promote_and_auto_rollback(tmp_path, trained_run, dataset_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SENTINEL_TARGET", "SENTINEL_GRPC")}
    env.update(SENTINEL_HOME=str(tmp_path / "home"), SENTINEL_STORAGE=trained_run.storage_root,
               SENTINEL_DATA=str(dataset_dir))
    served = Served(env)
    steps = Steps()
    incumbent_uri, candidate_uri = trained_run.checkpoints["best"], trained_run.checkpoints["last"]
    try:
        first = served.serve("--checkpoint", incumbent_uri, "--max-replicas", "1")
        incumbent = str(first["model_version"])
        steps.done("serve")
        for decision in ("promote", "rollback"):
            refused = served.cli("serve", decision)
            assert refused.returncode == 2 and "no canary is running" in refused.stderr

        started = served.serve("--checkpoint", candidate_uri, "--canary", "50")
        candidate = str(started["canary"]["model_version"])
        steps.done("canary")
        assert candidate != incumbent and started["canary"]["percent"] == 50
        assert started["checkpoint"] == incumbent_uri and started["canary"]["checkpoint"] == candidate_uri
        users = range(1, 41)
        answered = _versions(served.url, users)
        # The split is the pure rule's, for every user, in the running replicas.
        assert answered == {u: candidate if canary.to_candidate(u, 50) else incumbent for u in users}
        _other_protocols(served, next(u for u in users if answered[u] == candidate), candidate)
        _other_protocols(served, next(u for u in users if answered[u] == incumbent), incumbent)
        busy = served.cli("serve", "--checkpoint", incumbent_uri, "--port", str(served.port),
                          "--grpc-port", str(served.grpc_port))
        assert busy.returncode == 2 and "a canary is running" in busy.stderr

        status = json.loads(served.cli("status", "-o", "json").stdout)["serving"]["canary"]
        assert (status["checkpoint"], str(status["model_version"]), status["percent"]) == (candidate_uri, candidate, 50)
        counted = {v["version"]: v for v in status["versions"]}  # the live metrics: 2 x 40 + 6 per version
        assert counted[candidate]["role"] == "candidate" and counted[incumbent]["role"] == "incumbent"
        assert sum(v["requests"] for v in counted.values()) >= 2 * len(users) + 6
        assert counted[candidate]["errors"] == 0 and counted[candidate]["p99_ms"] > 0
        steps.done("answers and status")

        promoted = served.cli("serve", "promote", "-o", "json")
        assert promoted.returncode == 0, promoted.stderr
        assert json.loads(promoted.stdout)["checkpoint"] == candidate_uri
        steps.done("promote")
        assert set(_versions(served.url, users, repeat=1).values()) == {candidate}  # its version kept
        assert httpx.get(f"{served.url}/model", timeout=30).json()["canary"] is None

        # The former incumbent as a candidate that fails every request, watched under load: rolled back
        # at the first breach, and no user saw its failures (the incumbent answered each of them).
        served.serve("--checkpoint", incumbent_uri, "--canary", "50", "--dev-canary-fault-rate", "1")
        steps.done("faulty canary")
        load = RequestLoad(served.url, concurrency=8, duration_s=120)
        try:
            auto = served.cli("serve", "promote", "--auto", "--window", "60s", "--interval", "1s",
                              "--min-requests", "10", "-o", "json")
        finally:
            records = load.stop()
        steps.done("auto rollback")
        assert auto.returncode == 1, auto.stderr
        verdict = json.loads(auto.stdout)
        assert verdict["decision"] == "rollback" and verdict["checkpoint"] == candidate_uri
        assert f"error rate 100.00% of version {incumbent}" in verdict["reason"] and "breach" in auto.stderr
        assert verdict["watched_s"] < 30 and verdict["breach_to_rollback_s"] < 60
        assert "watching canary" in auto.stderr
        assert outcomes(records) == {"ok": len(records)} and len(records) > 100
        assert set(_versions(served.url, users, repeat=1).values()) == {candidate}
    finally:
        served.stop()
        print(steps)


class Steps:
    """Each step's seconds (printed with -s: where this test's time goes)."""

    def __init__(self) -> None:
        import time

        self.clock, self.last, self.times = time.monotonic, time.monotonic(), []

    def done(self, name: str) -> None:
        now = self.clock()
        self.times.append(f"{name}: {now - self.last:.1f}s")
        self.last = now

    def __str__(self) -> str:
        return "; ".join(self.times)
