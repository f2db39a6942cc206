"""The plan: exactly the objects a command applies, shared by running it and rendering it.

``plan_train``, ``plan_tune``, ``plan_serve`` and ``plan_cluster`` take the command's typed request
and its ``KubeRequest``, load the settings (defaults < profile < environment < flags, where the
request's own fields arrive as typed values) and render the templates. Pure but for reading the
profile, for a named checkpoint the index in S3 and, for a canary's start or end (and ``serve``'s
check that none runs), the live RayService.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sentinel_cli.k8s.request import KubeRequest, Overrides, ServeOverrides
from sentinel_cli.k8s.settings import KubeSettings
from sentinel_ml.errors import ConfigError

if TYPE_CHECKING:
    from sentinel_ml.serving.config import ServeRequest
    from sentinel_ml.training.config import TrainConfig
    from sentinel_ml.tuning.config import StudyConfig


@dataclass(frozen=True)
class Plan:
    name: str
    settings: KubeSettings
    objects: list[dict[str, Any]]
    timeout_s: float  # how long to wait without progress: --timeout, else the profile's wait_timeout_s


@dataclass(frozen=True)
class ServePlan(Plan):
    checkpoint: str = ""  # the exact URI resolved (with a canary: the incumbent's)
    run_id: str | None = None  # the run it came from
    canary: dict[str, Any] | None = None  # the canary it serves (ServeArgs.canary), in serveConfigV2
    ended: dict[str, Any] | None = None  # the canary this plan ends (promote, rollback)
    model_version: int | None = None  # the version it serves (an ended canary's: the one kept)
    auth: str = "none"  # none | token (the serving API's bearer token)
    token_secret: str | None = None  # auth token: the Secret `serve` makes (when absent) and mounts
    token_file: str | None = None  # --token-file: the token the Secret takes (a path on this machine)


# The serving API's default on Kubernetes: a Service reachable from every pod in the cluster takes a
# token. Sentinel's own calls carry it (verify: a port-forward, k8s/service_call.py; predict: the Secret).
K8S_DEFAULT_AUTH = "token"


def plan_train(config: TrainConfig, deploy: KubeRequest) -> Plan:
    """A RayJob running ``python -m sentinel_ml.train`` for ``config``."""
    from sentinel_cli.k8s import manifests

    settings, name = _job(config, deploy, "train")
    return _plan(deploy, settings, name, "train", manifests.train_values(settings, config, name))


def plan_tune(config: StudyConfig, deploy: KubeRequest) -> Plan:
    """A RayJob running ``python -m sentinel_ml.tune`` for ``config``."""
    from sentinel_cli.k8s import manifests

    settings, name = _job(config, deploy, "tune")
    return _plan(deploy, settings, name, "tune", manifests.tune_values(settings, config, name))


def plan_serve(request: ServeRequest, deploy: KubeRequest, live: bool = False) -> ServePlan:
    """A RayService for ``request``'s checkpoint (a named one resolved through the index in S3). With
    ``live`` (always for a canary) the RayService serving now is read first: a canary joins it (its
    args, the candidate added), and a plain checkpoint is refused while a canary runs in it."""
    from sentinel_cli.backends.kubernetes import canary
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.render import render

    if request.host is not None:
        raise ConfigError("--host only applies to the local target",
                          hint="on k8s the RayService's Service exposes the port")
    auth = request.auth or ("token" if request.token_file else K8S_DEFAULT_AUTH)
    token_file = _token_file(request.token_file) if auth == "token" and request.token_file else None
    settings = load_settings(deploy, _flags(request, serve=_serve_overrides(request)))
    uri, run_id = resolve_checkpoint(request.checkpoint or "latest", settings)
    timeout = _timeout(deploy, settings, request.timeout_s)
    if live or request.canary_percent is not None:
        name = deploy.name or settings.serve.name
        where = f"RayService {name} in namespace {settings.namespace}"
        current = canary.live_args(read_live(settings, name))
        if request.canary_percent is not None:  # joins the live application: its args, auth included
            fault = float(request.app_args.get("canary_fault_rate") or 0.0)
            args = canary.start_args(current, where, uri, run_id, request.canary_percent, fault)
            return _live_plan(deploy, settings, name, args, timeout, canary=args.canary)
        canary.refuse_replacing(current, where)
    values = manifests.serve_values(settings, uri, run_id, deploy.name, auth=auth)
    secret = manifests.serve_token_secret(values["name"]) if auth == "token" else None
    return ServePlan(values["name"], settings, render("serve", values), timeout, checkpoint=uri, run_id=run_id,
                     auth=auth, token_secret=secret, token_file=token_file)


def _live_plan(deploy: KubeRequest, settings: KubeSettings, name: str, args, timeout: float,
               **extra: Any) -> ServePlan:
    """The RayService ``name`` serving ``args`` (the live application's, changed): a canary's start or end."""
    from sentinel_cli.backends.kubernetes import canary
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.render import render

    values = manifests.serve_values(settings, args.checkpoint, args.run_id, name, auth=args.auth,
                                    app_args=canary.app_args(args))
    secret = manifests.serve_token_secret(values["name"]) if args.auth == "token" else None
    return ServePlan(values["name"], settings, render("serve", values), timeout, checkpoint=args.checkpoint,
                     run_id=args.run_id, auth=args.auth, token_secret=secret, **extra)


def _token_file(path: str) -> str:
    """--token-file on k8s: its token becomes the RayService's Secret; checked now (readable by its
    owner only, one token), never read into the plan."""
    from sentinel_ml.paths import absolute
    from sentinel_ml.serving import auth

    path = absolute(path)
    auth.check_private(path)
    auth.read_token(path)
    return path


def plan_canary_end(decision: str, deploy: KubeRequest, timeout_s: float | None = None) -> ServePlan:
    """The RayService serving now with its canary ended (``promote``: the candidate alone, ``rollback``:
    the incumbent alone); only its serveConfigV2 (and the checkpoint annotation, run-id label) change."""
    from sentinel_cli.backends.kubernetes import canary
    from sentinel_ml.serving.config import model_version

    settings = load_settings(deploy)
    name = deploy.name or settings.serve.name
    where = f"RayService {name} in namespace {settings.namespace}"
    current = canary.live_args(read_live(settings, name))
    args = canary.end_args(current, where, decision)
    return _live_plan(deploy, settings, name, args, _timeout(deploy, settings, timeout_s),
                      ended=current.canary if current else None,
                      model_version=args.model_version or model_version(args.run_id, args.checkpoint))


def read_live(settings: KubeSettings, name: str) -> dict[str, Any] | None:
    """The RayService ``name`` as the API server has it now (None when there is none)."""
    from sentinel_cli.k8s import client
    from sentinel_cli.k8s.client import RAYSERVICE

    with client.connect(settings.kubeconfig, settings.context, settings.namespace) as kube:
        return kube.get(RAYSERVICE, name)


def plan_cluster(deploy: KubeRequest) -> Plan:
    """A standalone RayCluster with the training worker group (for interactive work)."""
    from sentinel_cli.k8s import manifests

    settings = load_settings(deploy)
    name = deploy.name or "sentinel"
    return _plan(deploy, settings, name, "cluster", manifests.cluster_values(settings, name))


def load_settings(deploy: KubeRequest, request: Overrides | None = None) -> KubeSettings:
    """The settings for ``deploy``; a request's own fields (``request``) count where ``deploy``'s
    flags leave them unset."""
    from sentinel_cli.k8s import settings

    overrides = deploy.overrides
    if request is not None:
        given = {"storage": request.storage, "mlflow_uri": request.mlflow_uri, "worker_gpus": request.worker_gpus}
        unset = {k: v for k, v in given.items() if v is not None and getattr(overrides, k) is None}
        overrides = replace(overrides, **unset, serve=_over(overrides.serve, request.serve))
    return settings.load(overrides)


def resolve_checkpoint(reference: str, settings: KubeSettings) -> tuple[str, str | None]:
    """``latest`` / ``best`` / run id through the index in S3; an s3:// URI as given (pods cannot
    read this machine's files). The run id is kept only when it is a valid label value."""
    from sentinel_cli.k8s.settings import check_label
    from sentinel_ml.store import index

    if index.looks_like_uri(reference) and not reference.startswith("s3://"):
        raise ConfigError(f"checkpoint {reference} is not in S3; pods cannot read this machine's files",
                          hint="use latest, best, a run id, or an s3:// URI")
    root = None if index.looks_like_uri(reference) else settings.require_storage()
    uri, run_id = index.resolve_checkpoint(reference, root, must_exist=False)
    try:
        return uri, check_label(run_id, "run id") if run_id else None
    except ConfigError:
        return uri, None


def _job(config: TrainConfig | StudyConfig, deploy: KubeRequest, kind: str) -> tuple[KubeSettings, str]:
    from sentinel_ml.store.index import new_run_id

    settings = load_settings(deploy, _flags(config))
    config.validate()
    return settings, deploy.name or config.run_id or new_run_id(kind)


def _plan(deploy: KubeRequest, settings: KubeSettings, name: str, what: str, values: dict[str, Any]) -> Plan:
    from sentinel_cli.k8s.render import render

    return Plan(name, settings, render(what, values), _timeout(deploy, settings))


def _flags(request: Any, serve: ServeOverrides | None = None) -> Overrides:
    """The settings a request carries (--storage, --mlflow-uri; a job's GPUs per worker pod; serve's
    ports, replica bounds and GPUs per replica)."""
    compute = getattr(request, "compute", None)
    gpus = compute.pod_gpus() if compute is not None else 0
    return Overrides(storage=getattr(request, "storage", None), mlflow_uri=getattr(request, "mlflow_uri", None),
                     worker_gpus=gpus or None, serve=serve or ServeOverrides())


def _serve_overrides(request: ServeRequest) -> ServeOverrides:
    """A ServeRequest's ports and replica bounds, over the profile's ``serve`` settings."""
    scaling = request.app_args or {}
    return ServeOverrides(port=request.port, grpc_port=request.grpc_port, min_replicas=scaling.get("min_replicas"),
                          max_replicas=scaling.get("max_replicas"), gpus=scaling.get("num_gpus"),
                          cpus=scaling.get("num_cpus"))


def _over(flags: ServeOverrides, request: ServeOverrides) -> ServeOverrides:
    """``request``'s values where ``flags`` has none."""
    return ServeOverrides(**{k: v if v is not None else getattr(request, k) for k, v in vars(flags).items()})


def _timeout(deploy: KubeRequest, settings: KubeSettings, requested: float | None = None) -> float:
    if deploy.timeout_s is not None:
        return deploy.timeout_s
    return requested if requested is not None else settings.wait_timeout_s
