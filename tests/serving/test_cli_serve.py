"""`sentinel serve` as a user runs it, in separate processes: a detached local Ray with the
throughput settings (HAProxy straight to the replicas, HTTP and gRPC), status, predict over every
protocol, recommend, an idempotent second serve, bad input through HAProxy, the quality gate
(`serve --gate`, `promote`), and `serve stop` leaving no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.secret_scan import Scan
from tests.support.serving import check_stopped

pytestmark = pytest.mark.slow
SECRET_ENV = {"AWS_ACCESS_KEY_ID": "AKIASERVESCANKNOWN7", "AWS_SECRET_ACCESS_KEY": "serve-known-secret-key-4d9e2b"}


def _serve_with_a_token(cli, home, url, grpc_address, port, grpc_port, predictions, seen) -> None:
    """`serve --auth token` updates the application in place: the CLI's own calls send the token by
    themselves, callers without it get 401 / UNAUTHENTICATED through HAProxy, probes stay open, and the
    token is in no output, nor in the args Serve and serving.json hold. Neither it nor the S3 keys in the
    environment (``SECRET_ENV``) are in any output of the whole test (``seen``) or the local Ray's logs."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    served = cli("serve", "--auth", "token", "--port", str(port), "--grpc-port", str(grpc_port), "-o", "json",
                 timeout=300)
    assert served.returncode == 0, served.stderr
    token_file = home / "serve-token"
    token = token_file.read_text().strip()
    assert oct(token_file.stat().st_mode & 0o777) == "0o600" and len(token) >= 43
    summary = json.loads(served.stdout)
    assert (summary["auth"], summary["token_file"]) == ("token", str(token_file))
    status = cli("status", "-o", "json")
    assert json.loads(status.stdout)["serving"]["auth"] == "token"
    shown = [served.stdout, served.stderr, status.stdout, status.stderr, cli("status").stdout,
             (home / "ray" / "serving.json").read_text()]
    for protocol in ("recommend", "tfserving", "v2", "grpc"):  # sent without being asked
        asked = cli("predict", "--user", "42", "--movies", "1,2,3", "--url", url, "--grpc", grpc_address,
                    "--protocol", protocol, "-o", "json")
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout)["predictions"] == pytest.approx(predictions, abs=1e-6)
        shown += [asked.stdout, asked.stderr]
    top = cli("recommend", "--user", "42", "-k", "3", "--url", url, "-o", "json")
    assert top.returncode == 0 and len(json.loads(top.stdout)["movies"]) == 3, top.stderr
    assert not [text for text in shown if token in text]
    scan = Scan()
    for name, value in {**SECRET_ENV, "serving token": token}.items():
        scan.add(name, value)
    for number, text in enumerate(seen):
        scan.text("output", f"command {number}", text)
    logs = Path(json.loads((home / "ray" / "cluster.json").read_text())["temp_dir"]) / "session_latest" / "logs"
    scan.files("ray log", logs)  # the Serve controller's, the replicas', HAProxy's, the dashboard's
    assert scan.hits == [] and scan.searched["ray log"] > 0, scan.report()

    with httpx.Client(base_url=url, timeout=30) as client:  # through HAProxy
        for path, kwargs in (("/recommend", {"json": {"user_id": 1, "movie_ids": [1]}}),
                             ("/v1/models/recommender:predict", {"json": {"instances": []}}),
                             ("/v2/models/recommender/infer", {"json": {"inputs": []}})):
            for headers in ({}, {"Authorization": "Bearer not-the-token"}):
                refused = client.post(path, headers=headers, **kwargs)
                assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", path
                assert token not in refused.text
        assert client.get("/recommend/healthz").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        assert client.post("/recommend", json={"user_id": 1, "movie_ids": [1]},
                           headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with grpc.insecure_channel(grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(pb.ModelInferRequest(model_name="recommender"), timeout=30)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stranger = cli("predict", "--user", "42", "--movies", "1", "--url", url, "--token-file", str(home / "none"))
    assert stranger.returncode == 2 and "cannot read the serving token file" in stranger.stderr


def _train(root, dataset_dir, **hp):
    from sentinel_ml.data.source import DataSource
    from sentinel_ml.training.config import Hyperparameters, TrainConfig
    from sentinel_ml.training.run import train

    return train(TrainConfig(hp=Hyperparameters(**hp), source=DataSource(data=str(dataset_dir)), storage=root,
                             mlflow_uri="off"))


def _gate(cli, trained_run, dataset_dir, root, port) -> None:
    """The quality gate against what serves (the session's run): `promote` refuses a worse model (exit 1,
    both numbers) and one measured on another split; `--force` serves the worse one in place, saying so.
    The candidates are two more short real runs on ml-100k in a store of their own, named by URI."""
    worse = _train(root, dataset_dir, epochs=1, lr=1e-4)  # barely moved from the global mean
    other_split = _train(root, dataset_dir, epochs=1, split="random")
    candidate, best = worse.checkpoints["best"], trained_run.checkpoints["best"]
    assert worse.metrics["test_rmse"] > trained_run.metrics["test_rmse"]

    refused = cli("promote", candidate, "-o", "json")
    assert refused.returncode == 1, refused.stderr
    result = json.loads(refused.stdout)
    assert (result["outcome"], result["promoted"], result["metric"]) == ("refused", False, "rmse")
    assert (result["candidate"]["value"], result["serving"]["value"]) == pytest.approx(
        (worse.metrics["test_rmse"], trained_run.metrics["test_rmse"]))
    assert (result["candidate"]["run_id"], result["serving"]["checkpoint"]) == (worse.run_id, best)
    numbers = f"{worse.metrics['test_rmse']:.4f}", f"{trained_run.metrics['test_rmse']:.4f}"
    assert all(n in refused.stderr for n in numbers)
    assert all(n in cli("promote", candidate).stdout for n in numbers)  # side by side for people

    elsewhere = cli("promote", other_split.checkpoints["best"], "--metric", "ndcg@10", "-o", "json")
    assert elsewhere.returncode == 1, elsewhere.stderr
    assert "other data" in json.loads(elsewhere.stdout)["reason"] and "split random" in elsewhere.stderr

    forced = cli("promote", candidate, "--force", "-o", "json", timeout=300)
    assert forced.returncode == 0, forced.stderr
    result = json.loads(forced.stdout)
    assert (result["outcome"], result["promoted"]) == ("forced", True) and "FORCED (--force)" in forced.stderr
    assert (result["serve"]["checkpoint"], result["serve"]["port"]) == (candidate, port)  # settings kept
    assert json.loads(cli("status", "-o", "json").stdout)["serving"]["checkpoint"] == candidate


def test_serve_status_predict_recommend_stop(tmp_path, trained_run, dataset_dir):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SENTINEL_TARGET")}
    env.update(SENTINEL_HOME=str(home), SENTINEL_STORAGE=trained_run.storage_root, SENTINEL_DATA=str(dataset_dir))
    env.update(SECRET_ENV)  # credentials a user has exported: never shown (_serve_with_a_token scans)
    seen: list[str] = []
    env.pop("SENTINEL_GRPC", None)
    port, grpc_port = free_port(), free_port()
    url, grpc_address = f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}"
    best = trained_run.checkpoints["best"]

    def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "sentinel_cli", *args], env=env, capture_output=True,
                              text=True, timeout=timeout)
        seen.extend((done.stdout, done.stderr))
        return done

    leader = None
    try:
        served = cli("serve", "--checkpoint", "latest", "--gate", "--port", str(port), "--grpc-port", str(grpc_port),
                     "--timeout", "240", "-o", "json", timeout=300)
        assert served.returncode == 0, served.stderr
        gated = json.loads(served.stdout)  # nothing served yet: the gate passes it, and says so
        assert (gated["outcome"], gated["serving"], gated["promoted"]) == ("passed", None, True)
        assert "nothing is serving" in gated["reason"] and "gate: nothing is serving" in served.stderr
        summary = gated["serve"]
        assert summary["checkpoint"] == best and summary["run_id"] == trained_run.run_id
        assert (summary["http"], summary["grpc"]) == (url, grpc_address)
        assert summary["model_name"] == "recommender" and summary["model_version"] > 0
        assert f"checkpoint: {best}" in served.stderr  # the exact URI it resolved
        assert summary["status"] == "RUNNING" and summary["replicas"].get("RUNNING", 0) >= 1
        leader = json.loads((home / "ray" / "cluster.json").read_text())["pid"]

        serving = json.loads(cli("status", "-o", "json").stdout)["serving"]
        assert serving["status"] == "RUNNING" and serving["replicas"].get("RUNNING", 0) >= 1
        assert serving["checkpoint"] == best and serving["url"] == f"{url}/recommend"
        assert (serving["grpc"], serving["model_version"]) == (grpc_address, summary["model_version"])
        table = cli("status").stdout
        assert "serving" in table and grpc_address in table and "model version" in table

        predicted = cli("predict", "--user", "42", "--movies", "1,2,3", "--url", url, "-o", "json")
        assert predicted.returncode == 0, predicted.stderr
        body = json.loads(predicted.stdout)
        assert body["user_id"] == 42 and len(body["predictions"]) == 3
        assert all(1.0 <= p <= 5.0 for p in body["predictions"])
        assert "predicted rating" in cli("predict", "--user", "42", "--movies", "1,2,3", "--url", url).stdout
        for protocol in ("tfserving", "v2", "grpc"):  # the same answer over every protocol
            other = cli("predict", "--user", "42", "--movies", "1,2,3", "--url", url, "--grpc", grpc_address,
                        "--protocol", protocol, "-o", "json")
            assert other.returncode == 0, other.stderr
            assert json.loads(other.stdout)["predictions"] == pytest.approx(body["predictions"], abs=1e-6)
        refused_grpc = cli("predict", "--user", "944", "--movies", "1", "--protocol", "grpc", "--grpc", grpc_address)
        assert refused_grpc.returncode == 2 and "NOT_FOUND" in refused_grpc.stderr

        import numpy as np
        import tritonclient.grpc as triton  # OIP over gRPC through HAProxy, with a real client

        with triton.InferenceServerClient(grpc_address) as oip:
            inputs = [triton.InferInput(n, [3], "INT64") for n in ("user_id", "movie_id")]
            inputs[0].set_data_from_numpy(np.array([42, 42, 42], dtype=np.int64))
            inputs[1].set_data_from_numpy(np.array([1, 2, 3], dtype=np.int64))
            answer = oip.infer("recommender", inputs).as_numpy("predictions")
            assert answer.tolist() == pytest.approx(body["predictions"], abs=1e-6)
            inputs[0].set_data_from_numpy(np.array([42, 42, 0], dtype=np.int64))
            with pytest.raises(triton.InferenceServerException) as bad:
                oip.infer("recommender", inputs)
            assert "NOT_FOUND" in str(bad.value.status()) and "unknown user 0" in bad.value.message()

        top = json.loads(cli("recommend", "--user", "42", "-k", "5", "--url", url, "-o", "json").stdout)
        assert len(top["movies"]) == 5 and all(m["title"] for m in top["movies"]) and top["min_ratings"] == 20
        everything = json.loads(cli("recommend", "--user", "42", "-k", "5", "--min-ratings", "0", "--url", url,
                                    "-o", "json").stdout)
        assert everything["min_ratings"] == 0 and len(everything["movies"]) == 5

        refused = cli("predict", "--user", "944", "--movies", "1", "--url", url)
        assert refused.returncode == 2 and "unknown user 944" in refused.stderr

        with httpx.Client(base_url=f"{url}/recommend", timeout=30) as client:  # through HAProxy
            assert client.post("", content=b"{oops", headers={"content-type": "application/json"}).status_code == 422
            assert client.post("", json={"user_id": 1, "movie_ids": [1] * 1001}).status_code == 422
            assert client.get("/0/top").status_code == 404
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.post("/v1/models/recommender:predict", json={"instances": []}).status_code == 400
            assert client.post("/v2/models/other/infer", json={"inputs": []}).status_code == 404

        again = cli("serve", "--checkpoint", trained_run.run_id, "--port", str(port), "--grpc-port", str(grpc_port),
                    "-o", "json")
        assert again.returncode == 0, again.stderr
        assert "already serving" in again.stderr
        assert json.loads(again.stdout)["ray_address"] == summary["ray_address"]

        other_port = cli("serve", "--port", str(free_port()))
        assert other_port.returncode == 2 and f"already serves on port {port}" in other_port.stderr

        _gate(cli, trained_run, dataset_dir, str(tmp_path / "candidates"), port)
        _serve_with_a_token(cli, home, url, grpc_address, port, grpc_port, body["predictions"], seen)
    finally:
        stopped = cli("serve", "stop", "-o", "json", timeout=120)
    check_stopped(stopped, leader)
    assert json.loads(cli("status", "-o", "json").stdout)["serving"] is None
