"""The smoke test behind ``sentinel verify``: train one epoch, serve it, check one prediction against
the checkpoint itself, and remove everything it made. One row per step (pass, fail, or skip when a
step it needs failed); cleanup always runs. The same steps run on the local target and on a cluster,
where the prediction goes through the API server's Service proxy, so no route into the cluster
network is needed (a staging EKS cluster, say).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sentinel_cli.backends.results import TrainReport
from sentinel_cli.checks import SKIP, Item, report, run_check
from sentinel_cli.k8s.request import KubeRequest
from sentinel_ml.data.source import DataSource
from sentinel_ml.errors import JobFailed, SentinelError

SAMPLE_ITEMS = 3  # items in verify's prediction request
TOLERANCE = 1e-4


@dataclass
class Made:
    """What the steps made: what the later steps use and cleanup removes."""

    run_id: str | None = None
    checkpoint: str | None = None
    index_uri: str | None = None
    endpoint: str | None = None
    service: str | None = None
    scratch: str | None = None
    removed: list[str] = field(default_factory=list)


def run(smoke) -> dict[str, Any]:
    """Run ``smoke``'s steps in order; after a failure the rest are skipped, then cleanup runs."""
    made, items, failed = Made(), [], None
    for name, step in smoke.steps():
        if failed:
            items.append(Item(name, SKIP, f"needs {failed}, which failed"))
            continue
        items.append(_timed(name, lambda step=step: step(made)))
        failed = name if items[-1].failed else None
    items.append(_timed("cleanup", lambda: smoke.cleanup(made)))
    return report(smoke.name, items, run_id=made.run_id)


def _timed(name: str, step: Callable[[], str | Item]) -> Item:
    started = time.monotonic()
    item = run_check(name, step)
    return replace(item, detail=f"{item.detail} ({time.monotonic() - started:.1f} s)")


@dataclass(frozen=True)
class Sample:
    """A prediction request every checkpoint can answer (its data's first user and first items, by the
    dataset's own ids) and the checkpoint's own predictions for it, computed here."""

    request: dict[str, Any]
    expected: list[float]


def prediction_sample(checkpoint: str) -> Sample:
    """``checkpoint``'s sample, from one read of it (its network and its serving artifact's id maps; the
    sample's indices are 0 for the user and 0..SAMPLE_ITEMS-1 for the items)."""
    import torch

    from sentinel_ml.store.checkpoint import load_network

    network, saved = load_network(checkpoint)
    data = saved.get("data") or {}
    if not data.get("user_ids") or not data.get("item_ids"):
        raise JobFailed(f"checkpoint {checkpoint} carries no id maps (written by an older Sentinel)",
                        hint="train again with this version: sentinel train")
    items = list(data["item_ids"][:SAMPLE_ITEMS])
    indices = torch.arange(len(items))
    expected = network.predict(torch.zeros_like(indices), indices).tolist()
    return Sample({"user_id": data["user_ids"][0], "movie_ids": items}, expected)


def check_prediction(answer: dict[str, Any], sample: Sample) -> str:
    """The served predictions for ``sample.request`` against the checkpoint's own."""
    served = answer.get("predictions") or []
    worst = max((abs(a - b) for a, b in zip(served, sample.expected)), default=float("inf"))
    if len(served) != len(sample.expected) or worst > TOLERANCE:
        raise JobFailed(f"served predictions {served} differ from the checkpoint's {sample.expected}",
                        hint="the service may be serving another checkpoint: sentinel status")
    return f"user {sample.request['user_id']}: {', '.join(f'{p:.3f}' for p in served)} (match the checkpoint)"


def _one_epoch(source: DataSource, storage: str | None):
    from sentinel_ml.training.config import Hyperparameters, TrainConfig

    hp = Hyperparameters.for_model("mf", epochs=1, split=source.default_split)
    return TrainConfig(hp=hp, source=source, storage=storage, mlflow_uri="off")


def _trained(report: TrainReport, made: Made) -> str:
    if not report.finished:
        raise JobFailed(f"run {report.run_id} finished without an index record to serve from",
                        hint="check the storage settings: sentinel doctor")
    made.run_id, made.checkpoint = report.run_id, report.checkpoints["best"]
    made.index_uri = report.index_uri
    return f"run {made.run_id}: val RMSE {report.metrics['val_rmse']:.4f}, checkpoint {made.checkpoint}"


def _remove_run(made: Made) -> None:
    """The run's checkpoints and index record, so `latest` is what it was before."""
    from sentinel_ml.store import uri as storage

    for uri in (made.index_uri, made.checkpoint, made.checkpoint and made.checkpoint.replace("/best.pt", "/last.pt")):
        if uri and storage.delete(uri):
            made.removed.append(uri)


def select(target: str, deploy: KubeRequest, source: DataSource, storage: str | None):
    """The smoke test of ``target`` (``backends.target_name``): on the cluster, or on this machine."""
    if target == "k8s":
        return KubeSmoke(deploy, source, storage)
    from sentinel_cli.k8s.request import check_local

    check_local(deploy)
    return LocalSmoke(source)


class LocalSmoke:
    """On this machine: a scratch checkpoint store, a detached local Serve on a free port."""

    name = "local"

    def __init__(self, source: DataSource) -> None:
        self.source = source

    def steps(self):
        return [("ray", self._ray), ("train", self._train), ("serve", self._serve), ("predict", self._predict)]

    def _ray(self, made: Made) -> str:
        from sentinel_cli.backends.local import ray_cluster, serving

        if ray_cluster.find() is None:
            ray_cluster.prepare_auth()  # the serve step starts a cluster: Ray reads this once, at import
        import ray

        if serving.describe() is not None:
            raise JobFailed("an application is already serving on the local Ray cluster; verify would replace it",
                            hint="stop it first (sentinel serve stop), or verify a cluster with --target k8s")
        return f"ray {ray.__version__}"

    def _train(self, made: Made) -> str:
        from sentinel_cli.backends.local.backend import LocalBackend

        made.scratch = tempfile.mkdtemp(prefix="sentinel-verify-")
        return _trained(LocalBackend().train(_one_epoch(self.source, made.scratch), KubeRequest()), made)

    def _serve(self, made: Made) -> str:
        from sentinel_cli import api_client
        from sentinel_cli.backends.local.backend import LocalBackend
        from sentinel_cli.backends.local.ray_cluster import free_ports
        from sentinel_ml.serving.config import ServeRequest

        port, grpc_port = free_ports(2)
        # With a token: the prediction below proves that the CLI's own calls send it.
        request = ServeRequest(checkpoint=made.checkpoint, storage=made.scratch, port=port,
                               grpc_port=grpc_port, auth="token")
        made.service = "local"
        report = LocalBackend().serve(request, KubeRequest())
        made.endpoint = api_client.endpoint(report.url)
        return f"{made.endpoint} serves {made.checkpoint}"

    def _predict(self, made: Made) -> str:
        from sentinel_cli import api_client

        sample = prediction_sample(made.checkpoint)
        return check_prediction(api_client.call("POST", made.endpoint, sample.request), sample)

    def cleanup(self, made: Made) -> str:
        from sentinel_cli.backends.local import serving

        stopped = serving.stop()["stopped"] if made.service else False
        if made.scratch:
            shutil.rmtree(made.scratch, ignore_errors=True)
        return ("stopped the local application; " if stopped else "") + \
            (f"removed {made.scratch}" if made.scratch else "nothing to remove")


class KubeSmoke:
    """On the cluster of the kubeconfig and profile: a RayJob, a RayService, the checkpoint store in S3."""

    name = "k8s"

    def __init__(self, deploy: KubeRequest, source: DataSource, storage: str | None) -> None:
        self.deploy, self.source, self.storage = deploy, source, storage

    def steps(self):
        return [("cluster", self._cluster), ("train", self._train), ("serve", self._serve),
                ("predict", self._predict)]

    def _settings(self):
        from sentinel_cli.k8s import settings

        overrides = self.deploy.overrides
        return settings.load(replace(overrides, storage=self.storage or overrides.storage))

    def _cluster(self, made: Made) -> str:
        from sentinel_cli.backends.kubernetes.platform import connect
        from sentinel_cli.k8s.platform_objects import RAY_CRDS
        from sentinel_ml.errors import ConfigError

        settings = self._settings()
        with connect(settings) as kube:
            version = kube.version()
            missing = [crd for crd in RAY_CRDS if not kube.crd_exists(crd)]
        if missing:
            raise ConfigError(f"missing CRDs: {', '.join(missing)}", hint="run `sentinel up --target k8s`")
        storage = settings.require_storage()
        return f"{kube.server} (Kubernetes {version}), namespace {settings.namespace}, storage {storage}"

    def _train(self, made: Made) -> str:
        from sentinel_cli.backends.kubernetes.backend import KubernetesBackend
        from sentinel_ml.store.index import new_run_id

        name = new_run_id("verify")
        made.run_id = name
        summary = KubernetesBackend().train(_one_epoch(self.source, self.storage), replace(self.deploy, name=name))
        return _trained(summary, made)

    def _serve(self, made: Made) -> str:
        from sentinel_cli.backends.kubernetes.backend import KubernetesBackend
        from sentinel_ml.serving.config import ServeRequest

        made.service = f"{made.run_id}-serve"
        report = KubernetesBackend().serve(ServeRequest(checkpoint=made.checkpoint, storage=self.storage),
                                           replace(self.deploy, name=made.service))
        return f"RayService {made.service} Ready, serving {report.checkpoint}"

    def _predict(self, made: Made) -> str:
        from sentinel_cli.backends.kubernetes.platform import connect
        from sentinel_ml.serving.config import RECOMMEND_PATH

        settings = self._settings()
        sample = prediction_sample(made.checkpoint)
        with connect(settings) as kube:
            answer = _call_serving(kube, made.service, settings.serve.port, RECOMMEND_PATH, sample.request)
        return check_prediction(answer, sample)

    def cleanup(self, made: Made) -> str:
        from sentinel_cli.backends.kubernetes.backend import KubernetesBackend

        deleted = []
        for name in (made.service, made.run_id):
            if name:
                try:
                    deleted.append(KubernetesBackend().delete(name, self.deploy).kind + f" {name}")
                except SentinelError:  # not made, or already gone: cleanup goes on
                    continue
        _remove_run(made)
        parts = ([f"deleted {', '.join(deleted)}"] if deleted else []) + \
            ([f"removed {len(made.removed)} objects of run {made.run_id}"] if made.removed else [])
        return "; ".join(parts) or "nothing to remove"


def _call_serving(kube, rayservice: str, port: int, path: str, body: Any) -> Any:
    """POST ``body`` to RayService ``rayservice``'s HTTP Service through a port-forward (the API
    server's Service proxy would strip the Authorization header), with its serving token from its
    Secret when it has one; the JSON answer."""
    from sentinel_cli.k8s import manifests, serve_token, service_call
    from sentinel_cli.k8s.client import NotFound
    from sentinel_ml.errors import JobFailed

    try:
        token = serve_token.token_for(kube, rayservice)
    except NotFound:  # served with --auth none
        token = None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = service_call.call(kube, f"{rayservice}-serve-svc", port, "POST", path, body, headers)
    if answer.status == 401:
        raise JobFailed(f"RayService {rayservice} refused verify's call (401): "
                        f"{'the token in its Secret was not accepted' if token else 'it needs a token'}",
                        hint=f"check Secret {manifests.serve_token_secret(rayservice)} in namespace {kube.namespace}")
    if not 200 <= answer.status < 300:
        raise JobFailed(f"RayService {rayservice} answered {answer.status} to {path}: "
                        f"{answer.body[:300].decode(errors='replace')}",
                        hint="sentinel status and the Serve logs say why")
    return answer.json()
