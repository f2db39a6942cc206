"""What goes into each template: pure functions from the settings and a request to template values.

The values are plain data (see ``render.render``); the names are checked here, before anything is
rendered, with KubeRay's own limits (a RayJob or RayService name becomes part of its RayCluster's
name, and every name must also be a DNS-1035 label: it starts with a letter).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from sentinel_cli.k8s import security
from sentinel_cli.k8s.settings import GPU_RESOURCE, KubeSettings, Resources, check_label
from sentinel_ml import compute
from sentinel_ml.errors import ConfigError
from sentinel_ml.serving import config as serving_app

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "sentinel"
SELECTOR = f"{MANAGED_BY}={MANAGER}"
COMPONENT = "app.kubernetes.io/component"
# Ray Serve's documented throughput mode: HAProxy forwards straight to the replicas instead of the
# Python proxy (measured locally: 0.05x -> 0.6-0.7x of a plain uvicorn server; docs/serving.md).
# The profile's env can override either.
COMPONENT_ENV = {"serve": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
                           **serving_app.HAPROXY_RETRIES}}  # a lost replica loses no request
RUN_ID = "sentinel.io/run-id"
# On the serving pods: which RayService they belong to, what the gRPC Service selects (KubeRay's own
# labels name the RayCluster, whose name changes with every cluster upgrade).
RAYSERVICE_LABEL = "sentinel.io/rayservice"
SERVE_READY = {"ray.io/serve": "true"}  # KubeRay's label on pods whose Serve proxy takes traffic
CHECKPOINT = "sentinel.io/checkpoint"
STORAGE = "sentinel.io/storage"
IRSA_ROLE = "eks.amazonaws.com/role-arn"
SUBMITTER_CONTAINER = "ray-job-submitter"  # KubeRay 1.5's name for it
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")  # in kubernetes.s3.credentials_secret

# The serving API's token on Kubernetes (serve --auth token, the default there): a Secret per RayService
# (<name>-serve-token, key token, made by `serve` when absent, owned by the RayService), mounted
# read-only into the serve pods; ServeArgs.token_file names the file, never the token.
SERVE_TOKEN_KEY = "token"
SERVE_TOKEN_DIR = "/etc/sentinel/serve-token"
SERVE_TOKEN_FILE = f"{SERVE_TOKEN_DIR}/{SERVE_TOKEN_KEY}"
SERVE_TOKEN_VOLUME = "serve-token"
SERVE_TOKEN_MODE = 0o444  # the Ray container runs as 1000:100 without fsGroup: it must read a root-owned file

# KubeRay 1.5: a RayCluster name is at most 53 characters; RayJob and RayService names at most 47.
NAME_LIMITS = {"RayJob": 47, "RayService": 47, "RayCluster": 53}

HEAD_PORTS = [
    {"name": "gcs-server", "containerPort": 6379},
    {"name": "dashboard", "containerPort": 8265},
    {"name": "client", "containerPort": 10001},
    {"name": "metrics", "containerPort": 8080},
]
WORKER_PORTS = [{"name": "metrics", "containerPort": 8080}]


def check_name(name: str, kind: str) -> str:
    check_label(name, f"{kind} name", NAME_LIMITS[kind])
    if not name[0].isalpha():
        raise ConfigError(f"invalid {kind} name {name!r}: it must start with a letter",
                          hint=f"for example {'s-' + name!r}")
    return name


def train_values(settings: KubeSettings, config, name: str) -> dict[str, Any]:
    """A RayJob running ``python -m sentinel_ml.train`` for ``config`` (a TrainConfig), with the
    cluster's workers, storage, tracking and data."""
    from sentinel_ml import train

    check_name(name, "RayJob")
    job = _in_cluster(settings, config, name, workers=settings.workers)
    return _rayjob_values(settings, name, "train", train.job_argv(job), job.storage,
                          worker_cpus=config.compute.cpus)


def tune_values(settings: KubeSettings, config, name: str) -> dict[str, Any]:
    """A RayJob running ``python -m sentinel_ml.tune`` for ``config`` (a StudyConfig)."""
    from sentinel_ml import tune

    check_name(name, "RayJob")
    job = _in_cluster(settings, config, name)
    return _rayjob_values(settings, name, "tune", tune.job_argv(job), job.storage)


def _in_cluster(settings: KubeSettings, config, name: str, **more: Any):
    """``config`` as the job runs it in the cluster: the profile's storage, MLflow and data."""
    return replace(config, storage=settings.require_storage(), mlflow_uri=settings.mlflow_uri or "off",
                   run_id=name, source=in_cluster_source(settings, config.source), **more)


def in_cluster_source(settings: KubeSettings, source):
    """The data source as the pods read it. The default dataset without ``--data`` reads the profile's
    copy (``data``: the platform's MinIO, say); any ``--data`` or ``--items`` must be a location the pods
    can reach (``s3://``, or http(s) for an archive): a path on this machine is refused here."""
    from sentinel_ml.data import DEFAULT_DATASET
    from sentinel_ml.errors import ConfigError

    for flag, location in (("--data", source.data), ("--items", source.items)):
        if location and ("://" not in location or location.startswith("file://")):
            raise ConfigError(f"{flag} {location} is a path on this machine, which the cluster's pods cannot read",
                              hint=f"upload it to the platform's storage (aws s3 cp … s3://…) and pass {flag} s3://…")
    if source.data is None and source.dataset == DEFAULT_DATASET and settings.data:
        return replace(source, data=settings.data)
    return source


def grpc_service_name(rayservice: str) -> str:
    return f"{rayservice}-grpc"


def serve_token_secret(rayservice: str) -> str:
    return f"{rayservice}-serve-token"


def serve_values(settings: KubeSettings, checkpoint: str, run_id: str | None,
                 name: str | None = None, auth: str = "none",
                 app_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """A RayService serving ``checkpoint`` (an exact URI, already resolved), and a Service for its
    gRPC port: KubeRay 1.5's serve Service (``<name>-serve-svc``) carries only the container port
    named ``serve``, even from a custom ``serveService``, so Sentinel adds ``<name>-grpc``, which
    selects this RayService's pods whose Serve proxy is ready (``ray.io/serve=true``)."""
    name = check_name(name or settings.serve.name, "RayService")
    serving = settings.serve
    # Built and validated as the local target builds them (bad values: a ConfigError, before any
    # object is rendered or applied); the autoscaling goes once, to the deployment.
    token = {"auth": "token", "token_file": SERVE_TOKEN_FILE} if auth == "token" else {}
    gpus = {"num_gpus": serving.gpus} if serving.gpus else {}
    cpus = {"num_cpus": serving.cpus} if serving.cpus is not None else {}
    args = serving_app.serve_args(checkpoint, run_id, {**serving.autoscaling.model_dump(), **gpus, **cpus, **token})
    if app_args is not None:  # the live application's args, changed (a canary's start or end): kept as given
        args = serving_app.ServeArgs.model_validate({**app_args, "autoscaling": args.autoscaling.model_dump()})
    serve_ports = [{"name": "serve", "containerPort": serving.port},
                   {"name": "grpc", "containerPort": serving.grpc_port}]
    head = _head(settings, settings.images.serve, "serve")
    head["ports"] = [*HEAD_PORTS, *serve_ports]
    # A replica's GPUs (a fraction shares one) need whole GPUs in its pod; its CPUs (serve --cpus), at least
    # that CPU request (KubeRay gives Ray the request rounded up: a 500m pod holds two 0.5-CPU replicas).
    pod = settings.serve_worker.model_copy(update={"gpu": max(settings.serve_worker.gpu, math.ceil(serving.gpus)),
                                                   **_at_least_cpus(settings.serve_worker, serving.cpus)})
    workers = _group(settings, "serve", settings.images.serve, pod, "serve",
                     replicas=serving.workers, min_replicas=serving.workers,
                     max_replicas=serving.max_workers, spot=False)
    workers["ports"] = [*WORKER_PORTS, *serve_ports]
    for group in (head, workers):
        group["pod_labels"] = {**group["pod_labels"], RAYSERVICE_LABEL: name}
        if token:  # replicas may run on either
            group["volumes"] = [*group["volumes"], {"name": SERVE_TOKEN_VOLUME, "secret": {
                "secretName": serve_token_secret(name), "defaultMode": SERVE_TOKEN_MODE}}]
            group["volume_mounts"] = [*group["volume_mounts"],
                                      {"name": SERVE_TOKEN_VOLUME, "mountPath": SERVE_TOKEN_DIR, "readOnly": True}]
    labels = _labels("serve", run_id)
    return {
        **_common(settings, name, labels, {CHECKPOINT: checkpoint}),
        "network_policy": security.ray_policies(settings, name, labels,
                                                serve_ports=(serving.port, serving.grpc_port)),
        "grpc_options": serving_app.grpc_options(serving.grpc_port),
        "grpc_service": {
            "name": grpc_service_name(name),
            "labels": {**_labels("serve", None), RAYSERVICE_LABEL: name},
            "selector": {RAYSERVICE_LABEL: name, **SERVE_READY},
            "port": serving.grpc_port,
        },
        "app": serving_app.serve_application(args),
        "cluster": _cluster(settings, name, head, [workers], autoscaling=True),
    }


def cluster_values(settings: KubeSettings, name: str) -> dict[str, Any]:
    """A standalone RayCluster with the training worker group."""
    check_name(name, "RayCluster")
    head = _head(settings, settings.images.train, "cluster")
    workers = _train_workers(settings, "cluster")
    labels = _labels("cluster", None)
    return {**_common(settings, name, labels, {}),
            "network_policy": security.ray_policies(settings, name, labels),
            "cluster": _cluster(settings, name, head, [workers], autoscaling=False)}


def _rayjob_values(settings: KubeSettings, name: str, component: str, argv: list[str],
                   storage: str, worker_cpus: float | None = None) -> dict[str, Any]:
    from sentinel_ml.store.checkpoint import checkpoint_uri

    head = _head(settings, settings.images.train, component, run_id=name)
    workers = _train_workers(settings, component, run_id=name, cpus=worker_cpus)
    annotations = {STORAGE: storage, CHECKPOINT: checkpoint_uri(storage, name, "best")}
    labels = _labels(component, name)
    return {
        **_common(settings, name, labels, annotations),
        "network_policy": security.ray_policies(settings, name, labels, submitter=True),
        "entrypoint": argv,
        "rayjob": settings.rayjob.model_dump(),
        "submitter": _submitter(settings, component, name),
        "cluster": _cluster(settings, name, head, [workers], autoscaling=False),
    }


def _submitter(settings: KubeSettings, component: str, run_id: str) -> dict[str, Any]:
    """The pod that runs `ray job submit` (KubeRay's K8sJobMode): beside the head, small. KubeRay
    fills in its command; the container keeps KubeRay's name, which `logs` looks for."""
    pod = _pod(settings, SUBMITTER_CONTAINER, settings.images.train, settings.submitter, component,
               run_id, node_selector=settings.head_node_selector, tolerations=[])
    pod["env"] = [e for e in pod["env"] if e["name"] in settings.env]  # no S3 credentials needed
    pod["pod_labels"][security.SUBMITTER_LABEL] = run_id  # the dashboard admits it (NetworkPolicy)
    return pod


def _labels(component: str, run_id: str | None) -> dict[str, str]:
    labels = {MANAGED_BY: MANAGER, "app.kubernetes.io/name": "sentinel", COMPONENT: component}
    if run_id:
        labels[RUN_ID] = check_label(run_id, "run id")
    return labels


def _common(settings: KubeSettings, name: str, labels: dict[str, str],
            annotations: dict[str, str]) -> dict[str, Any]:
    account = settings.service_account
    return {
        "name": name,
        "namespace": settings.namespace,
        "labels": labels,
        "annotations": annotations,
        "service_account": {
            "name": check_label(account.name, "service account name", 253),
            "create": account.create,
            "labels": {MANAGED_BY: MANAGER, "app.kubernetes.io/name": "sentinel"},
            "annotations": {IRSA_ROLE: account.role_arn} if account.role_arn else {},
        },
    }


def _cluster(settings: KubeSettings, name: str, head: dict[str, Any], groups: list[dict[str, Any]],
             autoscaling: bool) -> dict[str, Any]:
    from sentinel_cli.k8s import ray_auth

    ray_auth.check_ray_version(settings.ray_auth, settings.ray_version)
    for group in (head, *groups):  # the pods the cluster's NetworkPolicy admits to one another
        group["pod_labels"] = {**group["pod_labels"], security.CLUSTER_LABEL: name}
    return {"ray_version": settings.ray_version, "autoscaling": autoscaling, "head": head,
            "worker_groups": groups, "auth_options": ray_auth.auth_options(settings.ray_auth),
            "autoscaler_security": security.container_security(),
            # The sidecar writes under /tmp too (KubeRay mounts /tmp/ray over it); the head pod has the volume.
            "autoscaler_volume_mounts": security.scratch(security.RAY_SCRATCH)[1]}


def _head(settings: KubeSettings, image: str, component: str, run_id: str | None = None) -> dict[str, Any]:
    group = _pod(settings, "ray-head", image, settings.head, component, run_id,
                 node_selector=settings.head_node_selector, tolerations=[])
    # The head schedules no training or replicas: num-cpus 0 keeps it for drivers and control.
    group.update(ray_start_params={"dashboard-host": "0.0.0.0", "num-cpus": "0"}, ports=HEAD_PORTS)
    return group


def _train_workers(settings: KubeSettings, component: str, run_id: str | None = None,
                   cpus: float | None = None) -> dict[str, Any]:
    """The training worker group, one Ray Train worker a pod. ``cpus`` (``train --cpus-per-worker``): each
    pod requests (and is limited to) exactly that, and Ray's ``num-cpus`` there is it rounded up (``ray
    start`` takes whole CPUs; KubeRay rounds a derived one up the same way), so the worker's reservation
    fits its pod. None: the pods are sized by the profile's ``worker`` and Ray takes its CPUs from it."""
    pod = settings.worker if cpus is None else settings.worker.model_copy(update={"cpu": compute.pod_cpu(cpus)})
    group = _group(settings, "train", settings.images.train, pod, component,
                   replicas=settings.workers, min_replicas=settings.workers,
                   max_replicas=settings.workers, spot=True, run_id=run_id)
    if cpus is not None:
        group["ray_start_params"] = {"num-cpus": str(compute.ray_node_cpus(cpus)), **group["ray_start_params"]}
    return group


def _at_least_cpus(resources: Resources, cpus: float | None) -> dict[str, str]:
    """``{"cpu": …}`` raising ``resources``' CPU request to ``cpus``, or nothing where it already holds them."""
    from sentinel_cli.k8s.capacity import quantity

    if cpus is None or quantity(resources.cpu) >= quantity(compute.pod_cpu(cpus)):
        return {}
    return {"cpu": compute.pod_cpu(cpus)}


def _group(settings: KubeSettings, group_name: str, image: str, resources: Resources, component: str,
           *, replicas: int, min_replicas: int, max_replicas: int, spot: bool,
           run_id: str | None = None) -> dict[str, Any]:
    selector = settings.spot.node_selector if spot else settings.serve.node_selector
    tolerations = [t.model_dump(exclude_none=True) for t in settings.spot.tolerations] if spot else []
    group = _pod(settings, "ray-worker", image, resources, component, run_id,
                 node_selector=selector, tolerations=tolerations)
    # Ray's GPUs on the node: KubeRay 1.5 derives num-gpus from the nvidia.com/gpu limit when it is left
    # out (common/pod.go, addWellKnownAcceleratorResources); written here so the objects say it.
    params = {"num-gpus": str(resources.gpu)} if resources.gpu else {}
    group.update(name=group_name, replicas=replicas, min_replicas=min_replicas,
                 max_replicas=max_replicas, ray_start_params=params, ports=WORKER_PORTS)
    return group


def _pod(settings: KubeSettings, container: str, image: str, resources: Resources, component: str,
         run_id: str | None, *, node_selector: dict[str, str],
         tolerations: list[dict[str, Any]]) -> dict[str, Any]:
    amounts = {"cpu": resources.cpu, "memory": resources.memory}
    scratch = security.scratch(security.RAY_SCRATCH)
    if resources.gpu:  # on GPU nodes: their labels (kubernetes.gpu.node_selector) and taint
        amounts[GPU_RESOURCE] = str(resources.gpu)
        node_selector = {**node_selector, **settings.gpu.node_selector}
        tolerations = [*tolerations, *(t.model_dump(exclude_none=True) for t in settings.gpu.tolerations
                                       if t.model_dump(exclude_none=True) not in tolerations)]
    return {
        "container": container,
        "image": image,
        "pull_policy": settings.images.pull_policy,
        "service_account": settings.service_account.name,
        "pod_labels": _labels(component, run_id),
        "node_selector": dict(node_selector),
        "tolerations": tolerations,
        "volumes": scratch[0],  # what Ray and Sentinel write under the read-only root (security.py)
        "volume_mounts": scratch[1],
        "env": [*s3_env(settings), *({"name": k, "value": v}
                for k, v in {**COMPONENT_ENV.get(component, {}), **settings.env}.items())],
        "resources": amounts,
        "pod_security": security.pod_security(),  # Pod Security `restricted` (security.py)
        "security": security.container_security(),
    }


def s3_env(settings: KubeSettings) -> list[dict[str, Any]]:
    """The S3-compatible endpoint and the Secret's keys (kubernetes.s3), as boto3 reads them."""
    env: list[dict[str, Any]] = []
    if settings.s3.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": settings.s3.endpoint})
    if settings.s3.credentials_secret:
        env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": settings.s3.credentials_secret,
                                                             "key": key}}}
                for key in S3_SECRET_KEYS]
    return env

