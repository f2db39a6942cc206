"""The whole lifecycle on the real node, as a user's staging run types it: up → train → logs → a
deleted worker pod → doctor → a failing job → tune → serve → predict (HTTP and gRPC, against a
local serve of the same checkpoint) → status → delete → verify → down.

``train`` and ``serve`` run on a user's own table, not MovieLens: a synthetic Parquet table with
string ids (``u-17``, ``m-4``) and the user's own column names, uploaded to the platform's MinIO as a
user does (``aws s3 cp``), trained with ``--data s3://… --columns … --split temporal`` and predicted
through the Services with those string ids. The rest stays on the profile's default dataset (ml-100k,
the profile's ``data``: the platform's MinIO copy): the spot step, tune, the failing job and verify
(its own train and serve) are what a user runs without ``--data``, so the default's path stays covered.

Everything runs for real: the platform's MinIO and MLflow in pods (images built here,
tests/testenv/images.py), Ray in pods from Sentinel's images, the CLI as a subprocess with the
user's environment. The KubeRay operator is the test environment's own (a host process: pods cannot
reach this API server, which listens on 127.0.0.1 only), so ``up`` runs with ``--no-operator``.

The node has 2 CPUs. Requests are sized so that the platform (MinIO + MLflow, 0.5 CPU) and one
job's cluster (head 0.5, 2 workers 0.4 each, submitter 0.1) fit at once; each RayJob's cluster
goes when its job ends (``rayjob.ttl_seconds_after_finished: 0``).

Before ``delete``, every command's output, the namespace's live objects, the pods' logs, the platform
MLflow's runs and the checkpoint index records are searched for the known credentials (the user's
own platform Secret, the serving token given with ``--token-file``, every Ray token KubeRay made):
none may appear (issue 27; tests/support/secret_scan.py).

Each step is timed; the times, and the node's peak memory, print at the end of the session
(``node lifecycle`` in the terminal summary). A failing step attaches the pods' states, their
last log lines and the namespace's events.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from sentinel_cli.k8s import platform_objects
from tests.support.cli import Run
from tests.support.node import TIMINGS, node_memory
from tests.support.ray_train import SNAPSHOT, checkpoint_taken
from tests.support.secret_scan import Scan, SecretWatch
from tests.testenv import node
from tests.testenv.process import wait_for

pytestmark = [
    pytest.mark.k8s, pytest.mark.node, pytest.mark.lifecycle,
    # About 21 min on 2 quiet cores; SENTINEL_LIFECYCLE=0 leaves it out of a quicker local run.
    # It needs a quiet machine: under a load of 60+ Ray's heads time out at start-up (docs/testing.md).
    pytest.mark.skipif(os.environ.get("SENTINEL_LIFECYCLE") == "0",
                       reason="SENTINEL_LIFECYCLE=0 leaves out the whole lifecycle on the real node"),
]

REPO = Path(__file__).resolve().parents[2]
DATA_ZIP = REPO.parent / "shared" / "data" / "ml-100k.zip"
BUCKET = "sentinel"
STORAGE = f"s3://{BUCKET}/runs"
DATA = f"s3://{BUCKET}/data/ml-100k.zip"
# The user's own table: string ids, the user's column names, a split for any dataset.
TABLE = f"s3://{BUCKET}/data/synthetic/ratings/"
COLUMNS = "user=member,item=film,rating=stars,timestamp=ts"
SPLIT = "temporal"
TABLE_SHAPE = {"ratings": 20_000, "users": 400, "items": 300}
UNKNOWN_USER = "u-nobody"
SERVICE = "recommender"
TOLERANCE = 1e-5
STEP_TIMEOUT_S = 900  # the longest step (tune) on 2 busy cores, with room; each CLI wait is bounded too
# The credentials the test chooses (issue 27, secrets never shown): the platform's Secret is the
# user's own (`up` keeps it), the serving token comes from --token-file. The Ray tokens are KubeRay's,
# read from their Secrets while they exist (tests/support/secret_scan.py SecretWatch).
KNOWN_S3_KEY_ID = "sentinel-knownkeyid"
KNOWN_S3_SECRET = "known-minio-root-password-5c1e9a7f"
KNOWN_SERVE_TOKEN = "known-serving-token-0b8d4e2a6f1c9e3d"


# -- the platform's volumes: what a cluster admin provides where there is no StorageClass --------


def _volumes(k8s_api: client.ApiClient, namespace: str, root: Path) -> list[str]:
    """hostPath PersistentVolumes on the real node, each bound ahead to the claim `up` makes."""
    core = client.CoreV1Api(k8s_api)
    names = []
    for claim in ("sentinel-minio-data", "sentinel-mlflow-data"):
        folder = root / claim
        folder.mkdir(parents=True)
        folder.chmod(0o777)  # hostPath volumes take no fsGroup; the pods run as uid 1000
        name = f"{namespace}-{claim}"
        core.create_persistent_volume(client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/created-by": "sentinel-tests"}),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": "20Gi"}, access_modes=["ReadWriteOnce"],
                persistent_volume_reclaim_policy="Retain", storage_class_name="",
                host_path=client.V1HostPathVolumeSource(path=str(folder), type="Directory"),
                claim_ref=client.V1ObjectReference(namespace=namespace, name=claim),
                node_affinity=client.V1VolumeNodeAffinity(required=client.V1NodeSelector(
                    node_selector_terms=[client.V1NodeSelectorTerm(match_expressions=[
                        client.V1NodeSelectorRequirement(key="sentinel.dev/node", operator="In",
                                                         values=["real"])])])))))
        names.append(name)
    return names


def _profile(real_node: node.RealNode, namespace: str) -> dict[str, Any]:
    # The head holds the job's driver and Ray Train's controller besides Ray's own processes: at
    # 2Gi Ray's memory monitor (95% of the limit) killed Train's helper actors and the job hung.
    return real_node.profile(
        namespace=namespace, storage=STORAGE, data=DATA,
        s3={"endpoint": f"http://sentinel-minio.{namespace}.svc:9000", "credentials_secret": "sentinel-minio"},
        mlflow_uri=f"http://sentinel-mlflow.{namespace}.svc:5000",
        head={"cpu": "500m", "memory": "4Gi"}, worker={"cpu": "400m", "memory": "2Gi"},
        submitter={"cpu": "100m", "memory": "512Mi"}, serve_worker={"cpu": "500m", "memory": "2Gi"}, workers=2,
        serve={"node_selector": {"sentinel.dev/node": "real"}, "workers": 1, "max_workers": 1,
               "min_replicas": 1, "max_replicas": 1},
        rayjob={"ttl_seconds_after_finished": 0}, wait_timeout_s=300)


# -- the CLI as the user runs it ---------------------------------------------------------------


class Lifecycle:
    """The namespace, the user's environment for the CLI, and what the steps found."""

    def __init__(self, real_node: node.RealNode, k8s_api: client.ApiClient, namespace: str,
                 environ: dict[str, str], logs: Path) -> None:
        self.real_node, self.api, self.namespace, self.environ = real_node, k8s_api, namespace, environ
        self.logs = logs  # every command's whole output: a failure shows only the end of it
        self.found: dict[str, Any] = {}
        self.scan = Scan()  # the known secrets; `_no_secret_anywhere` searches for them
        self.token_file = logs.parent / "serve-token"

    def cli(self, *args: str, timeout_s: float = STEP_TIMEOUT_S) -> tuple[int, str, str]:
        """``sentinel …`` as a subprocess: (exit code, stdout, stderr); a hang fails the step."""
        try:
            done = subprocess.run([sys.executable, "-m", "sentinel_cli", *args], cwd=REPO, env=self.environ,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            self.keep(args, "(still running)", error.stdout, error.stderr)
            raise AssertionError(f"`sentinel {' '.join(args)}` still running after {timeout_s:.0f} s; "
                                 f"its stderr:\n{_tail(error.stderr)}") from None
        self.keep(args, done.returncode, done.stdout, done.stderr)
        return done.returncode, done.stdout, done.stderr

    def keep(self, args: tuple[str, ...] | list[str], code: Any, out: str | bytes | None,
             err: str | bytes | None) -> None:
        """Write a command's whole output to ``logs`` (numbered in order)."""
        name = f"{len(list(self.logs.iterdir())):02d}-{'-'.join(args[:1]) or 'sentinel'}.log"
        (self.logs / name).write_text(f"$ sentinel {' '.join(args)}\nexit {code}\n--- stdout\n{_text(out)}\n"
                                      f"--- stderr\n{_text(err)}\n")

    def ok(self, *args: str, timeout_s: float = STEP_TIMEOUT_S) -> tuple[str, str]:
        code, out, err = self.cli(*args, timeout_s=timeout_s)
        assert code == 0, f"`sentinel {' '.join(args)}` exited {code}:\n{_tail(err)}\n{_tail(out)}"
        return out, err

    def service_address(self, name: str) -> str:
        return client.CoreV1Api(self.api).read_namespaced_service(name, self.namespace).spec.cluster_ip

    def diagnostics(self) -> str:
        """The pods' states, the end of each container's log, and the namespace's events."""
        core = client.CoreV1Api(self.api)
        parts = []
        for pod in core.list_namespaced_pod(self.namespace).items:
            states = [f"{c.name}: {_state(c)}" for c in pod.status.container_statuses or []]
            parts.append(f"pod {pod.metadata.name} {pod.status.phase} on {pod.spec.node_name}: {'; '.join(states)}")
            for container in pod.spec.containers:
                try:
                    log = core.read_namespaced_pod_log(pod.metadata.name, self.namespace,
                                                       container=container.name, tail_lines=40)
                except client.ApiException as error:
                    log = f"(no log: {error.reason})"
                parts.append(f"--- {pod.metadata.name}/{container.name}, last lines:\n{log}")
        events = core.list_namespaced_event(self.namespace).items
        parts.append("--- events:\n" + "\n".join(
            f"{e.last_timestamp or e.event_time} {e.type} {e.reason} {e.involved_object.kind}/"
            f"{e.involved_object.name}: {e.message}" for e in events[-60:]))
        parts.append(f"--- node memory: {node_memory(self.real_node)}")
        parts.append(f"--- every command's whole output: {self.logs}")
        return "\n".join(parts)


def _state(status: client.V1ContainerStatus) -> str:
    state = status.state
    if state.waiting:
        return f"waiting {state.waiting.reason} {state.waiting.message or ''}".strip()
    if state.terminated:
        return f"terminated {state.terminated.reason} exit {state.terminated.exit_code}"
    return "running" if state.running else "?"


def _text(text: str | bytes | None) -> str:
    return text.decode(errors="replace") if isinstance(text, bytes) else text or ""


def _tail(text: str | bytes | None, lines: int = 60) -> str:
    return "\n".join(_text(text).splitlines()[-lines:])


@contextmanager
def step(life: Lifecycle, name: str) -> Iterator[None]:
    """Time a step; on failure, attach what the cluster says."""
    started = time.monotonic()
    try:
        yield
    except BaseException as error:
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        pytest.fail(f"step `{name}` failed after {time.monotonic() - started:.0f} s: {error}\n\n"
                    f"{life.diagnostics()}", pytrace=False)
    finally:
        TIMINGS.append((name, time.monotonic() - started))


@contextmanager
def platform_namespace(real_node: node.RealNode, k8s_api: client.ApiClient, root: Path, prefix: str,
                       profile: Callable[[node.RealNode, str], dict[str, Any]]) -> Iterator[Lifecycle]:
    """A namespace of the real node's own for one test module, as a user's cluster would give it: the
    platform's hostPath volumes, ``profile(real_node, namespace)`` written as the user's profile, the
    user's environment for the CLI (none of this process's SENTINEL_/AWS_/RAY_/MLFLOW_ settings), and
    its default ServiceAccount made. The namespace and its volumes go on the way out."""
    namespace = f"{prefix}-{int(time.time()) % 100000}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=namespace, labels={"app.kubernetes.io/created-by": "sentinel-tests"})))
    volumes = _volumes(k8s_api, namespace, root / "volumes")
    try:
        (root / "profile.yaml").write_text(yaml.safe_dump(profile(real_node, namespace)))
        for folder in ("home", "commands"):
            (root / folder).mkdir()
        environ = {key: value for key, value in os.environ.items()
                   if not key.startswith(("SENTINEL_", "AWS_", "RAY_", "MLFLOW_"))}
        environ.update(SENTINEL_PROFILE=str(root / "profile.yaml"), SENTINEL_HOME=str(root / "home"),
                       COLUMNS="200", KUBECONFIG=str(real_node.env.kubeconfig), AWS_DEFAULT_REGION="us-east-1")
        wait_for(f"the default ServiceAccount of {namespace}",
                 lambda: None if core.list_namespaced_service_account(namespace).items else "not yet", 30)
        yield Lifecycle(real_node, k8s_api, namespace, environ, root / "commands")
    finally:
        core.delete_namespace(namespace)
        for name in volumes:
            core.delete_persistent_volume(name)


@pytest.fixture(scope="module")
def life(real_node: node.RealNode, k8s_api: client.ApiClient, tmp_path_factory) -> Iterator[Lifecycle]:
    with platform_namespace(real_node, k8s_api, tmp_path_factory.mktemp("lifecycle"), "t-life", _profile) as life:
        # The user's own platform credentials, made before `up` (which keeps them): known values to search for.
        client.CoreV1Api(k8s_api).create_namespaced_secret(
            life.namespace, platform_objects.secret(life.namespace, KNOWN_S3_KEY_ID, KNOWN_S3_SECRET))
        life.token_file.write_text(KNOWN_SERVE_TOKEN + "\n")
        life.token_file.chmod(0o600)
        for label, value in (("S3 access key id", KNOWN_S3_KEY_ID), ("S3 secret key = MinIO root password",
                                                                    KNOWN_S3_SECRET),
                             ("serving token", KNOWN_SERVE_TOKEN)):
            life.scan.add(label, value)
        with SecretWatch(life.scan, k8s_api, life.namespace):  # every Secret's values, the RayJobs' Ray tokens too
            yield life


def _platform_credentials(life: Lifecycle) -> None:
    """What a user exports to reach the platform's MinIO from their machine (here: its ClusterIP,
    which the host routes to the node; on EKS, a port-forward)."""
    secret = client.CoreV1Api(life.api).read_namespaced_secret("sentinel-minio", life.namespace)
    keys = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
    life.environ.update(AWS_ENDPOINT_URL=f"http://{life.service_address('sentinel-minio')}:9000",
                        AWS_ACCESS_KEY_ID=keys["AWS_ACCESS_KEY_ID"],
                        AWS_SECRET_ACCESS_KEY=keys["AWS_SECRET_ACCESS_KEY"])


def _s3(life: Lifecycle):
    import boto3

    return boto3.client("s3", endpoint_url=life.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id=life.environ["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=life.environ["AWS_SECRET_ACCESS_KEY"])


def _s3_text(life: Lifecycle, uri: str) -> str | None:
    """The object at ``uri`` in the platform's MinIO, None while there is none."""
    s3, (bucket, key) = _s3(life), _key(uri)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except s3.exceptions.NoSuchKey:
        return None


def _key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _mlflow_epochs(life: Lifecycle, run_id: str) -> list[dict[str, Any]]:
    """The per-epoch validation RMSE of an MLflow run, from the platform's MLflow server."""
    import urllib.request

    base = f"http://{life.service_address('sentinel-mlflow')}:5000/api/2.0/mlflow"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None,
                                         headers={"Content-Type": "application/json"})
        with opener.open(request, timeout=30) as response:
            return json.load(response)

    history = call(f"/metrics/get-history?run_id={run_id}&metric_key=val_rmse")
    return history.get("metrics", [])


def _unroutable(*addresses: str) -> str | None:
    """The first address that refuses a TCP connection, with the error; None when all accept."""
    for address in addresses:
        host, port = address.removeprefix("http://").rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as error:
            return f"{address}: {error}"
    return None


def _token_file(life: Lifecycle, rayservice: str) -> str:
    """The RayService's serving token, from its Secret, in a file only its owner reads (--token-file)."""
    from sentinel_cli.k8s import manifests

    secret = client.CoreV1Api(life.api).read_namespaced_secret(manifests.serve_token_secret(rayservice),
                                                                 life.namespace)
    path = Path(life.environ["SENTINEL_HOME"]) / f"{rayservice}.token"
    path.write_bytes(base64.b64decode(secret.data[manifests.SERVE_TOKEN_KEY]))
    path.chmod(0o600)
    return str(path)


def _predictions(out: str) -> list[float]:
    answer = json.loads(out)
    return [row["predicted_rating"] if isinstance(row, dict) else row
            for row in answer.get("predictions", answer.get("recommendations", []))]


def test_the_whole_lifecycle_on_the_real_node(life: Lifecycle) -> None:
    ns = life.namespace

    with step(life, "up"):
        out, err = life.ok("up", "--target", "k8s", "--no-operator", "-o", "json", timeout_s=600)
        report = json.loads(out)
        states = {i["name"]: i["state"] for i in report["items"]}
        assert states["minio"] == states["mlflow"] == "created" and states["ready"] == "pass", report
        assert states["kuberay-operator"] == "skip"  # --no-operator: the environment's own
        _platform_credentials(life)
        s3 = _s3(life)
        assert {b["Name"] for b in s3.list_buckets()["Buckets"]} >= {"mlflow", BUCKET}  # the bucket Job's
        s3.put_object(Bucket=BUCKET, Key=_key(DATA)[1], Body=DATA_ZIP.read_bytes())  # `aws s3 cp`
        life.found["sample"] = _upload_table(life, life.logs.parent / "table")

    with step(life, "up again (idempotent)"):
        out, _ = life.ok("up", "--target", "k8s", "--no-operator", "-o", "json", timeout_s=300)
        states = {i["name"]: i["state"] for i in json.loads(out)["items"]}
        assert states["minio"] == states["mlflow"] == states["credentials"] == "unchanged", states

    with step(life, f"train --workers 2 --data {TABLE} --columns … --split {SPLIT}"):
        code, out, err = life.cli("train", "--target", "k8s", "--workers", "2", "--epochs", "2",
                                  "--data", TABLE, "--columns", COLUMNS, "--split", SPLIT,
                                  "--name", "life-train", "-o", "json")
        assert code == 0, f"exit {code}\n{_tail(err)}"
        summary = json.loads(out)
        assert summary["state"] == "Complete", summary
        data = summary["data"]  # what the job in the pods prepared: the table, read from MinIO
        assert data["dataset"] == "table" and data["split"] == SPLIT, data
        assert {k: data[k] for k in TABLE_SHAPE} == TABLE_SHAPE, data
        entrypoint = _rayjob_argv(life, "life-train")  # the flags travelled into the RayJob
        for flag, value in (("--data", TABLE), ("--columns", COLUMNS), ("--split", SPLIT)):
            assert value in _values_of(entrypoint, flag), (flag, entrypoint)
        checkpoint = summary["checkpoints"]["best"]
        assert checkpoint.startswith(STORAGE + "/") and summary["index_uri"].startswith(STORAGE + "/"), summary
        assert "epoch" in err  # the driver's epoch lines, followed live
        bucket, key = _key(checkpoint)
        _s3(life).head_object(Bucket=bucket, Key=key)  # the printed URI exists
        for uri in (summary["checkpoints"]["last"], summary["index_uri"]):
            _s3(life).head_object(Bucket=bucket, Key=_key(uri)[1])
        epochs = _mlflow_epochs(life, summary["mlflow_run_id"])
        assert [m["step"] for m in epochs] == [1, 2], epochs  # one val_rmse per epoch, from the pods
        life.found["train"] = checkpoint

    with step(life, "logs of the finished job"):
        _, err = life.ok("logs", "life-train", timeout_s=120)
        assert "epoch" in err, _tail(err)

    with step(life, "a deleted worker pod is survived (spot preemption)"):
        _survive_a_deleted_worker_pod(life)

    with step(life, "doctor"):
        out, _ = life.ok("doctor", "--target", "k8s", "-o", "json", timeout_s=120)
        assert json.loads(out)["ok"] is True

    with step(life, "a failing job is honest"):
        code, out, err = life.cli("train", "--target", "k8s", "--workers", "1", "--epochs", "1", "--name", "life-bad",
                                  "--set", "data=s3://sentinel/data/missing.zip", timeout_s=900)
        assert code == 1, f"exit {code}\n{_tail(err)}"
        assert "dataset not found at s3://sentinel/data/missing.zip" in " ".join(err.split()), _tail(err)
        assert "Traceback" not in out

    with step(life, "tune --samples 2 --max-epochs 2"):
        code, out, err = life.cli("tune", "--target", "k8s", "--model", "mf", "--samples", "2", "--max-epochs", "2",
                                  "--name", "life-tune", "-o", "json")
        assert code == 0, f"exit {code}\n{_tail(err)}"
        life.found["tune"] = json.loads(out)

    with step(life, "serve --checkpoint life-train (the table's run)"):
        # By run id: `best` compares val RMSE across every run in the index, ml-100k's tune trials too.
        # --token-file: the serving token is the test's known value (the secret scan searches for it); without
        # it `serve` makes one (token is the default on Kubernetes: tests/k8s/test_serve_token.py).
        code, out, err = life.cli("serve", "--target", "k8s", "--checkpoint", "life-train",
                                  "--token-file", str(life.token_file), "-o", "json")
        assert code == 0, f"exit {code}\n{_tail(err)}"
        served = json.loads(out)
        assert served.get("checkpoint") == life.found["train"], served
        assert served["auth"] == "token", served
        life.found["best"] = served["checkpoint"]

    with step(life, "predict: HTTP and gRPC through the Services, equal to a local serve"):
        http = f"http://{life.service_address(f'{SERVICE}-serve-svc')}:8000"
        grpc = f"{life.service_address(f'{SERVICE}-grpc')}:9000"
        # Ready means the Services have endpoints in the API; kube-proxy on the node programs their
        # ClusterIPs a little later (until then the node answers "network unreachable").
        wait_for(f"kube-proxy to route {http} and {grpc}", lambda: _unroutable(http, grpc), 90)
        user, items = life.found["sample"]  # the table's own string ids: JSON strings, OIP BYTES
        # A ClusterIP names no RayService, so predict cannot find its Secret by itself (a Service's DNS
        # name would): the user passes the token, as they would to any server's address. The Secret holds
        # the token `serve --token-file` was given.
        token = _token_file(life, SERVICE)
        assert Path(token).read_text().strip() == life.token_file.read_text().strip()
        code, out, err = life.cli("predict", "--url", http, "-u", user, "-m", items, "-o", "json", timeout_s=120)
        assert code == 2 and "needs a valid bearer token (none was sent)" in " ".join(err.split()), \
            f"without the token: exit {code}\n{_tail(err)}"
        out, _ = life.ok("predict", "--url", http, "--token-file", token, "-u", user, "-m", items, "-o", "json")
        cluster_http = _predictions(out)
        out, _ = life.ok("predict", "--protocol", "grpc", "--grpc", grpc, "--token-file", token, "-u", user,
                         "-m", items, "-o", "json")
        cluster_grpc = _predictions(out)
        local = _local_predictions(life, life.found["best"], user, items)
        assert len(cluster_http) == len(local) == 5
        assert all(abs(a - b) <= TOLERANCE for a, b in zip(cluster_http, local)), (cluster_http, local)
        assert all(abs(a - b) <= TOLERANCE for a, b in zip(cluster_grpc, local)), (cluster_grpc, local)
        for where in (["--url", http, "--token-file", token],  # an unknown id: 404 naming it
                      ["--protocol", "grpc", "--grpc", grpc, "--token-file", token]):
            code, out, err = life.cli("predict", *where, "-u", UNKNOWN_USER, "-m", items, "-o", "json", timeout_s=120)
            said = " ".join(err.split())
            assert code == 2 and ("(404)" in said or "NOT_FOUND" in said) and UNKNOWN_USER in said, \
                f"exit {code}\n{_tail(err)}"

    with step(life, "status"):
        out, _ = life.ok("status", "--target", "k8s", "-o", "json", timeout_s=120)
        status = json.loads(out)
        rows = {(r["kind"], r["name"]): r for r in status["objects"]}
        assert rows[("RayJob", "life-train")]["state"] == "Complete (SUCCEEDED)", rows
        assert rows[("RayJob", "life-bad")]["state"].startswith("Failed"), rows
        service = rows[("RayService", SERVICE)]
        assert service["state"] == "Ready" and service["checkpoint"] == life.found["best"], service
        runs = {run["run_id"]: run for run in status["runs"]}  # the checkpoint index in MinIO
        assert "life-train" in runs and runs["life-train"]["checkpoints"]["best"] == life.found["train"], runs
        assert any(run_id.startswith("life-tune") for run_id in runs), list(runs)

    with step(life, "no secret in any output, object, log, MLflow run or index record"):
        _no_secret_anywhere(life)

    with step(life, "delete"):
        for name in (SERVICE, "life-train", "life-spot", "life-bad", "life-tune"):
            life.ok("delete", name, "--target", "k8s", timeout_s=300)
        wait_for("the RayService's and jobs' pods to go", lambda: _ray_pods(life), 300)

    with step(life, "verify (alone on the node: 2 CPUs)"):
        code, out, err = life.cli("verify", "--target", "k8s", "-o", "json")
        report = json.loads(out)
        assert code == 0 and report["ok"] is True, f"exit {code}: {json.dumps(report, indent=1)}\n{_tail(err)}"

    with step(life, "down keeps the data, --purge removes it"):
        out, _ = life.ok("down", "--target", "k8s", "-o", "json", timeout_s=300)
        states = {i["name"]: i["state"] for i in json.loads(out)["items"]}
        assert states["minio"] == states["mlflow"] == "deleted" and states["credentials"] == "kept", states
        claims = client.CoreV1Api(life.api).list_namespaced_persistent_volume_claim(ns).items
        assert sorted(c.metadata.name for c in claims) == ["sentinel-minio-data", "sentinel-mlflow-data"]
        out, _ = life.ok("down", "--target", "k8s", "--purge", "-o", "json", timeout_s=300)
        assert client.CoreV1Api(life.api).list_namespaced_persistent_volume_claim(ns).items == []

    TIMINGS.append(("node memory at the end", node_memory(life.real_node)))


def _survive_a_deleted_worker_pod(life: Lifecycle) -> None:
    """Issue 16 on the real node: a Ray Train worker's pod deleted mid-run (what a spot preemption
    does); KubeRay recreates it, Ray Train restarts the group from the last epoch's checkpoint."""
    core = client.CoreV1Api(life.api)
    args = ["train", "--target", "k8s", "--workers", "2", "--epochs", "3", "--name", "life-spot", "-o", "json"]
    run = Run(args, life.environ)
    try:
        run.wait_for(r"^epoch\s+1/3\b", timeout=STEP_TIMEOUT_S)
        # Ray Train's controller takes in the report and its checkpoint at its next poll (every 2 s).
        wait_for("life-spot's checkpoint of epoch 1, taken in by Ray Train's controller",
                 checkpoint_taken(lambda: _s3_text(life, f"{STORAGE}/ray/life-spot/{SNAPSHOT}"), 1), timeout_s=60)
        workers = core.list_namespaced_pod(
            life.namespace, label_selector="ray.io/node-type=worker,sentinel.io/run-id=life-spot").items
        assert len(workers) == 2, [w.metadata.name for w in workers]
        core.delete_namespaced_pod(workers[0].metadata.name, life.namespace, grace_period_seconds=0)
        code, out, err = run.finish(timeout=STEP_TIMEOUT_S)
        life.keep(args, code, out, err)
    finally:
        run.stop()
    assert code == 0, f"exit {code}\n{_tail(err)}"
    summary = json.loads(out)
    assert summary["restarts"], summary
    assert summary["restarts"][0]["resumed_from_epoch"] >= 1, summary["restarts"]  # not from scratch
    assert "resuming from epoch" in err
    life.found["spot"] = summary["restarts"]


def _upload_table(life: Lifecycle, folder: Path) -> tuple[str, str]:
    """A user's ratings table in the platform's MinIO, under ``TABLE``: ``sentinel data synth``'s
    generator with its ids rewritten as strings (``u-17``, ``m-4``) and its columns named as the user's
    are (``COLUMNS``), a few Parquet parts uploaded as ``aws s3 cp --recursive`` does. Returns a sample
    request of the table's own ids: its first user and its five most rated items."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from sentinel_ml.data.synth import SynthSpec, synthesize

    synthesize(SynthSpec(ratings=TABLE_SHAPE["ratings"], users=TABLE_SHAPE["users"], items=TABLE_SHAPE["items"],
                         seed=7, part_rows=8_000), str(folder / "synth"))

    def tagged(prefix: str, ids: pa.ChunkedArray) -> pa.ChunkedArray:  # 17 → "u-17"
        return pc.binary_join_element_wise(prefix, pc.cast(ids, pa.string()), "")

    s3, (bucket, prefix) = _s3(life), _key(TABLE)
    parts = []
    for part in sorted((folder / "synth").glob("*.parquet")):
        raw = pq.read_table(part)
        table = pa.table({"member": tagged("u-", raw["user_id"]), "film": tagged("m-", raw["item_id"]),
                          "stars": raw["rating"], "ts": raw["timestamp"]})
        pq.write_table(table, folder / part.name)
        s3.upload_file(str(folder / part.name), bucket, prefix + part.name)
        parts.append(table)
    table = pa.concat_tables(parts)
    assert len(parts) > 1 and table.num_rows == TABLE_SHAPE["ratings"], (len(parts), table.num_rows)
    popular = table.group_by("film").aggregate([("film", "count")]).sort_by([("film_count", "descending")])
    return table["member"][0].as_py(), ",".join(popular["film"].to_pylist()[:5])


def _rayjob_argv(life: Lifecycle, name: str) -> list[str]:
    """The RayJob's entrypoint, as the API server holds it, split into words."""
    job = client.CustomObjectsApi(life.api).get_namespaced_custom_object("ray.io", "v1", life.namespace, "rayjobs", name)
    return shlex.split(job["spec"]["entrypoint"])


def _values_of(argv: list[str], flag: str) -> list[str]:
    return [value for word, value in zip(argv, argv[1:]) if word == flag]


def _ray_pods(life: Lifecycle) -> str | None:
    pods = client.CoreV1Api(life.api).list_namespaced_pod(life.namespace, label_selector="ray.io/cluster").items
    return f"{len(pods)} Ray pods left: {', '.join(p.metadata.name for p in pods)}" if pods else None


def _local_predictions(life: Lifecycle, checkpoint: str, user: str, items: str) -> list[float]:
    """`sentinel serve` on the local target, of the same checkpoint (from the platform's S3; the
    checkpoint carries its id maps, so no data goes with it)."""
    port, grpc_port = 18765, 19765
    local = {**life.environ, "SENTINEL_PROFILE": str(Path(life.environ["SENTINEL_HOME"]) / "none.yaml")}
    Path(local["SENTINEL_PROFILE"]).write_text("target: local\n")
    serve = [sys.executable, "-m", "sentinel_cli", "serve", "--target", "local", "--checkpoint", checkpoint,
             "--port", str(port), "--grpc-port", str(grpc_port), "--max-replicas", "1"]
    done = subprocess.run(serve, cwd=REPO, env=local, capture_output=True, text=True, timeout=600)
    life.keep(serve[3:], done.returncode, done.stdout, done.stderr)
    try:
        assert done.returncode == 0, f"local serve exited {done.returncode}:\n{_tail(done.stderr)}"
        answer = subprocess.run([sys.executable, "-m", "sentinel_cli", "predict", "--url",
                                 f"http://127.0.0.1:{port}", "-u", user, "-m", items,
                                 "-o", "json"], cwd=REPO, env=local, capture_output=True, text=True, timeout=120)
        life.keep(["predict", "--url", f"http://127.0.0.1:{port}"], answer.returncode, answer.stdout, answer.stderr)
        assert answer.returncode == 0, _tail(answer.stderr)
        return _predictions(answer.stdout)
    finally:
        subprocess.run([sys.executable, "-m", "sentinel_cli", "serve", "stop", "--target", "local"], cwd=REPO,
                       env=local, capture_output=True, text=True, timeout=180)


def _no_secret_anywhere(life: Lifecycle) -> None:
    """Issue 27 item 4: none of the known secrets (the platform's S3 keys = MinIO's root credentials,
    the serving token, every Ray token KubeRay made, every other Secret value seen in the namespace)
    in any command's output, the namespace's live objects (not its Secrets), the pods' logs, the
    platform MLflow's runs or the checkpoint index records. Call before `delete`: the RayService's
    pods and the platform's still run. The RayJobs' pods are gone (ttl 0): their drivers' logs are
    in the `train`/`tune`/`logs` outputs."""
    scan = life.scan
    for label in ("S3 access key id", "serving token"):
        assert label in scan.secrets, sorted(scan.secrets)
    assert any(label.endswith("/auth_token") for label in scan.secrets), sorted(scan.secrets)  # Ray tokens seen
    scan.files("command output", life.logs)
    scan.objects(life.api, life.namespace)
    scan.pod_logs(life.api, life.namespace)
    scan.mlflow(f"http://{life.service_address('sentinel-mlflow')}:5000")
    scan.s3_records(_s3(life), BUCKET, _key(STORAGE)[1] + "/")
    TIMINGS.append(("secret scan", scan.report()))
    assert scan.hits == [], scan.report()
    for kind in ("command output", "pod log", "mlflow run", "index record", "RayService", "Pod"):
        assert scan.searched[kind] >= 1, scan.report()
