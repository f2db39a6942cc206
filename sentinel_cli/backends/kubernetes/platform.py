"""The platform on Kubernetes: ``up`` (server-side apply, idempotent), ``down`` and ``doctor``.

Objects come from ``platform_objects`` (pure); every API call goes through ``k8s.client.Kube``'s
funnel, which knows every kind the platform uses (core, apps, batch, RBAC, CRDs, PodMonitors) from
its one table and names the cause and the next step of any failure. The bucket goes through the
storage funnel (``sentinel_ml.store.uri``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentinel_cli.checks import FAIL, PASS, SKIP, Item, report, run_check
from sentinel_cli.k8s import platform_objects as po
from sentinel_cli.k8s.client import FIELD_MANAGER, Kube, KubeRayMissing
from sentinel_cli.k8s.request import PLATFORM_WAIT_S
from sentinel_ml.errors import ConfigError, SentinelError


def connect(settings) -> Kube:
    from sentinel_cli.k8s import client as kube

    return kube.connect(settings.kubeconfig, settings.context, settings.namespace)


# -- up --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpRequest:
    crds: str | None = None  # directory or URL of the KubeRay CRDs (helm absent)
    metrics_server: bool = False
    role_arn: str | None = None
    dry_run: bool = False
    operator: bool = True  # False: the cluster already runs a KubeRay operator; only check its CRDs
    wait: bool = True  # wait (bounded) until MinIO, its buckets and MLflow are ready
    timeout_s: float = PLATFORM_WAIT_S  # give up waiting after this long without progress


def up(settings, request: UpRequest) -> dict[str, Any]:
    items: list[Item] = []
    ns, heads = settings.namespace, dict(settings.head_node_selector)
    with connect(settings) as kube:
        items.append(run_check("cluster", lambda: f"{kube.server} ({kube.version()})"))
        if items[-1].failed:
            return report("k8s", items, namespace=ns, dry_run=request.dry_run)
        items += _operator(kube, settings, request) if request.operator else [_existing_operator(kube)]
        items.append(_apply_all(kube, "service account", [po.service_account(
            ns, settings.service_account.name, request.role_arn or settings.service_account.role_arn)], request))
        items.append(_credentials(kube, ns, request.dry_run))
        items.append(_apply_all(kube, "minio", po.minio(ns, heads, buckets=_platform_buckets(settings)), request))
        items.append(_apply_all(kube, "mlflow", po.mlflow(ns, heads), request))
        items += _monitoring(kube, ns, request)
        items.append(_metrics_server(kube, request))
        items.append(run_check("nvidia device plugin", lambda: _device_plugin(kube, request)))
        if request.wait and not request.dry_run and not any(i.failed for i in items):
            items.append(run_check("ready", lambda: _wait_ready(kube, ns, request)))
    items += _s3(settings, request.dry_run)
    policy = _policy(settings)
    return report("k8s", items, namespace=ns, dry_run=request.dry_run, iam_policy=policy,
                  profile=platform_profile(ns))


def platform_profile(ns: str) -> dict[str, Any]:
    """The profile keys that point jobs and services at this platform's MinIO and MLflow."""
    return {"s3": {"endpoint": po.endpoint(ns), "credentials_secret": po.SECRET},
            "mlflow_uri": po.mlflow_uri(ns)}


def _platform_buckets(settings) -> tuple[str, ...]:
    """The checkpoint store's bucket, when it lives in the platform's MinIO."""
    from sentinel_ml.store.uri import split_s3

    if settings.storage and settings.s3.endpoint == po.endpoint(settings.namespace):
        return (split_s3(settings.storage)[0],)
    return ()


def _existing_operator(kube: Kube) -> Item:
    """--no-operator: the cluster's own KubeRay operator (a platform team's, or a test environment's)."""
    missing = [name for name in po.RAY_CRDS if not kube.crd_exists(name)]
    if missing:
        return Item("kuberay-operator", FAIL, f"--no-operator, and the CRDs are missing: {', '.join(missing)}",
                    "install the KubeRay operator first, or drop --no-operator to let `up` install it")
    return Item("kuberay-operator", SKIP, "--no-operator: the cluster's own operator (its CRDs are present)")


def _wait_ready(kube: Kube, ns: str, request: UpRequest) -> str:
    """Until MinIO and MLflow answer their readiness probes and the bucket Job has completed;
    bounded: ``timeout_s`` without a change in what is still waited for."""
    import time

    from sentinel_ml.errors import WaitTimeout

    started = last_change = time.monotonic()
    previous = None
    while True:
        waiting = _not_ready(kube, ns)
        if not waiting:
            return f"MinIO, its buckets and MLflow ready in {time.monotonic() - started:.0f} s"
        if waiting != previous:
            previous, last_change = waiting, time.monotonic()
        if time.monotonic() - last_change > request.timeout_s:
            raise WaitTimeout(f"still waiting after {request.timeout_s:.0f} s without progress for: "
                              + "; ".join(waiting),
                              hint=f"kubectl -n {ns} describe pods -l {po.COMPONENT}; then `sentinel up` again")
        time.sleep(2)


def _not_ready(kube: Kube, ns: str) -> list[str]:
    from sentinel_cli.k8s.client import DEPLOYMENT, JOB

    _claims_can_bind(kube, ns)
    waiting = []
    for name in (po.MINIO, po.MLFLOW):
        deployment = kube.get(DEPLOYMENT, name, ns) or {}
        if not (deployment.get("status") or {}).get("availableReplicas"):
            waiting.append(f"Deployment {name} available ({_pod_reasons(kube, name)})")
    job = kube.get(JOB, po.BUCKET_JOB, ns)
    if job is not None and not (job.get("status") or {}).get("succeeded"):
        waiting.append(f"Job {po.BUCKET_JOB} complete ({_pod_reasons(kube, None)})")
    return waiting


def _failing(pod: dict[str, Any]) -> None:
    name, ns = pod["metadata"]["name"], pod["metadata"].get("namespace")
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in IMAGE_ERRORS:
            raise ConfigError(f"pod {name}: image {container.get('image')} cannot be pulled "
                              f"({waiting['reason']}: {waiting.get('message', '').strip()})",
                              hint="make the image available to the cluster's nodes (a registry they reach, "
                                   "or preloaded), then `sentinel up` again")
        last = (container.get("lastState") or {}).get("terminated")
        if last and container.get("restartCount", 0) >= CRASH_RESTARTS:
            raise SentinelError(
                f"pod {name}: container {container['name']} keeps failing: {last.get('reason', 'Error')} "
                f"(exit code {last.get('exitCode')}), restarted {container['restartCount']} times",
                hint=f"read its log: kubectl -n {ns} logs {name} -c {container['name']} --previous"
                     + ("; raise its memory limit" if last.get("reason") == "OOMKilled" else ""))


def _claims_can_bind(kube: Kube, ns: str) -> None:
    """A claim that the cluster cannot bind (no default StorageClass, no matching volume) never
    will by waiting: say so at once, with the fix."""
    from sentinel_cli.k8s.client import PVC

    pending = {f"{name}-data" for name in (po.MINIO, po.MLFLOW)
               if ((kube.get(PVC, f"{name}-data", ns) or {}).get("status") or {}).get("phase") == "Pending"}
    for event in kube.events() if pending else []:
        involved = event.get("involvedObject") or {}
        if involved.get("kind") == "PersistentVolumeClaim" and involved.get("name") in pending \
                and event.get("reason") in ("FailedBinding", "ProvisioningFailed"):
            raise ConfigError(
                f"PersistentVolumeClaim {involved['name']} cannot bind: {event.get('message', '').strip()}",
                hint="give the cluster a default StorageClass (on EKS: gp3 through the EBS CSI driver) or a "
                     "PersistentVolume for the claim; then `sentinel up` again (or --no-wait to skip waiting)")


CRASH_RESTARTS = 3  # a container restarted this often keeps failing: waiting longer will not help
IMAGE_ERRORS = ("ErrImageNeverPull", "InvalidImageName", "ImagePullBackOff", "ErrImagePull")


def _pod_reasons(kube: Kube, app: str | None) -> str:
    """What the pods of an app (or of the bucket Job) say: phase, or the reason a container waits.
    A container that keeps crashing, or whose image cannot be had, ends the wait with its cause."""
    selector = f"app.kubernetes.io/name={app}" if app else f"batch.kubernetes.io/job-name={po.BUCKET_JOB}"
    said = []
    for pod in kube.pods(selector):
        _failing(pod)
        status = pod.get("status") or {}
        reasons = [c["state"]["waiting"].get("reason", "waiting") for c in status.get("containerStatuses") or []
                   if (c.get("state") or {}).get("waiting")]
        unschedulable = [c.get("message", "") for c in status.get("conditions") or []
                         if c.get("reason") == "Unschedulable"]
        said.append(f"{pod['metadata']['name']}: {', '.join(reasons + unschedulable) or status.get('phase', '?')}")
    return "; ".join(said) or "no pods yet"


def _apply_all(kube: Kube, name: str, objects: list[dict[str, Any]], request: UpRequest) -> Item:
    def apply() -> Item:
        states = [_apply_one(kube, obj, request.dry_run) for obj in objects]
        state = ("would apply" if request.dry_run else "created" if all(s == "created" for s in states)
                 else "unchanged" if all(s == "unchanged" for s in states) else "configured")
        return Item(name, state, ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects))

    return run_check(name, apply)


def _apply_one(kube: Kube, obj: dict[str, Any], dry_run: bool) -> str:
    before = kube.get_object(obj)
    if before is not None and obj["kind"] == "Job" and _job_command(before) != _job_command(obj):
        if dry_run:
            return "replaced"
        _delete_job(kube, obj)  # a Job's pod template is immutable: a new one replaces it
        before = None
    after = kube.apply(obj, dry_run=dry_run)
    if before is None:
        return "created"
    # Controllers bump resourceVersion (status, annotations); our Apply entry's time moves only when
    # the apply changed one of our fields.
    return "configured" if _applied_at(after) != _applied_at(before) else "unchanged"


def _job_command(job: dict[str, Any]) -> list[str]:
    return job["spec"]["template"]["spec"]["containers"][0].get("command") or []


def _delete_job(kube: Kube, job: dict[str, Any]) -> None:
    import time

    from sentinel_cli.k8s.client import JOB

    name, ns = job["metadata"]["name"], job["metadata"].get("namespace")
    kube.delete(JOB, name, ns)
    deadline = time.monotonic() + 60
    while kube.get(JOB, name, ns) is not None:
        if time.monotonic() > deadline:
            raise SentinelError(f"Job {name} is still being deleted after 60 s",
                                hint=f"kubectl -n {ns} get job {name}; then `sentinel up` again")
        time.sleep(1)


def _applied_at(obj: dict[str, Any]) -> str | None:
    entries = obj["metadata"].get("managedFields") or []
    return next((e.get("time") for e in entries if e.get("manager") == FIELD_MANAGER and e.get("operation") == "Apply"),
                None)


def _operator(kube: Kube, settings, request: UpRequest) -> list[Item]:
    helm = shutil.which("helm")
    if helm:
        chart, repo = po.KUBERAY_CHART
        command = [helm, "upgrade", "--install", "kuberay-operator", chart, "--repo", repo,
                   "--version", po.KUBERAY_VERSION, "--namespace", settings.namespace]
        if request.dry_run:
            return [Item("kuberay-operator", "would run", shlex.join(command))]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode:
            return [Item("kuberay-operator", FAIL, f"helm failed: {result.stderr.strip()[-300:]}",
                         "check helm's access to the chart repository and the cluster")]
        return [Item("kuberay-operator", "installed", f"helm chart {chart} {po.KUBERAY_VERSION}")]
    present = all(kube.crd_exists(name) for name in po.RAY_CRDS)
    if present and not request.crds:
        crds = Item("kuberay crds", "unchanged", ", ".join(po.RAY_CRDS) + " present")
    else:
        crds = run_check("kuberay crds", lambda: _apply_all(kube, "kuberay crds", load_crds(request.crds), request))
    objects = po.operator(settings.namespace, dict(settings.head_node_selector))
    return [crds, _apply_all(kube, "kuberay-operator", objects, request)]


def load_crds(source: str | None) -> list[dict[str, Any]]:
    """The KubeRay CRDs from a directory or URL (``--crds``), else the pinned release, checksum-verified."""
    import yaml

    if source and not re.match(r"^https?://", source):
        files = sorted(Path(source).expanduser().glob("*.yaml"))
        if not files:
            raise ConfigError(f"no *.yaml CRD files in {source}", hint="point --crds at KubeRay's crd/bases folder")
        texts = [f.read_text() for f in files]
    elif source:
        texts = [_fetch(source)]
    else:
        texts = []
        for name, digest in po.CRD_SHA256.items():
            data = _fetch(po.CRD_URL + name).encode()
            if hashlib.sha256(data).hexdigest() != digest:
                raise ConfigError(f"{po.CRD_URL + name} does not match its pinned SHA-256",
                                  hint="pass --crds with a directory holding the KubeRay v1.5.2 CRDs")
            texts.append(data.decode())
    return [doc for text in texts for doc in yaml.safe_load_all(text) if doc
            and doc.get("kind") == "CustomResourceDefinition"]


def _fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read().decode()
    except OSError as e:
        raise ConfigError(f"cannot download {url}: {getattr(e, 'reason', e)}",
                          hint="pass --crds with a local directory of the CRDs") from None


def _credentials(kube: Kube, ns: str, dry_run: bool) -> Item:
    def ensure() -> Item:
        probe = po.secret(ns, "", "")
        existing = kube.get_object(probe)
        if existing is not None and set(probe["stringData"]) <= set(existing.get("data") or {}):
            return Item("credentials", "unchanged", f"Secret/{po.SECRET} kept (values never printed)")
        if existing is not None:  # made by an older `up`: add the keys boto3 reads, same values
            import base64

            data = existing["data"]
            user, password = (base64.b64decode(data[k]).decode() for k in ("root-user", "root-password"))
            kube.apply(po.secret(ns, user, password), dry_run=dry_run)
            return Item("credentials", "configured", f"Secret/{po.SECRET}: AWS_* keys added (values never printed)")
        obj = po.secret(ns, "sentinel-" + secrets.token_hex(4), secrets.token_urlsafe(24))
        kube.apply(obj, dry_run=dry_run)
        return Item("credentials", "would create" if dry_run else "created",
                    f"Secret/{po.SECRET} with random values (never printed)")

    return run_check("credentials", ensure)


def _monitoring(kube: Kube, ns: str, request: UpRequest) -> list[Item]:
    from sentinel_cli.k8s import monitoring

    items = [_apply_all(kube, "dashboards", monitoring.dashboard_configmaps(ns), request)]
    if kube.crd_exists(po.PROMETHEUS_CRD):
        items.append(_apply_all(kube, "pod monitors", monitoring.monitors(ns), request))
    else:
        items.append(Item("pod monitors", SKIP, "no Prometheus operator (podmonitors.monitoring.coreos.com absent)"))
    return items


def _metrics_server(kube: Kube, request: UpRequest) -> Item:
    """Opt-in: install metrics-server when the cluster has none (never touch someone else's)."""
    installed = kube.deployments("k8s-app=metrics-server")
    ours = [d for d in installed if _managed_by_sentinel(d)]
    if installed and not ours:
        return Item("metrics-server", "unchanged", "already installed (not by Sentinel)")
    if not installed and not request.metrics_server:
        return Item("metrics-server", SKIP, "absent; pass --metrics-server to install it")
    return _apply_all(kube, "metrics-server", po.metrics_server(), request)


def _device_plugin(kube: Kube, request: UpRequest) -> Item:
    """Install NVIDIA's device plugin when the cluster has GPU nodes and no device plugin runs (never
    touch someone else's: eksctl's, the GPU operator's); keep ours up to date."""
    from sentinel_cli.k8s import gpus
    from sentinel_cli.k8s.client import DAEMONSET, Forbidden

    name = "nvidia device plugin"
    try:
        nodes = gpus.gpu_nodes(kube.nodes())
        plugins = gpus.device_plugins(kube.list(DAEMONSET, all_namespaces=True))
    except Forbidden as e:  # a namespace-scoped account: GPUs are the cluster admin's business
        return Item(name, SKIP, f"cannot tell whether the cluster has GPU nodes: {e.message}")
    if not nodes and not any(p.managed_by_sentinel for p in plugins):
        return Item(name, SKIP, "no GPU nodes (none advertises nvidia.com/gpu, carries its taint or a GPU label)")
    others = [p for p in plugins if not p.managed_by_sentinel]
    if others:
        return Item(name, "unchanged", f"already installed (not by Sentinel): {others[0]}")
    applied = _apply_all(kube, name, po.device_plugin(), request)
    missed = gpus.unlabelled(nodes)
    if missed and not applied.failed:
        return Item(name, applied.state, f"{applied.detail}; it does not select GPU node(s) {', '.join(missed)} "
                                         "(no GPU label)", gpus.LABEL_FIX)
    return applied


def _managed_by_sentinel(obj: dict[str, Any]) -> bool:
    return (obj.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/managed-by") == "sentinel"


def _s3(settings, dry_run: bool) -> list[Item]:
    if not settings.storage:
        return [Item("s3 bucket", SKIP, "no kubernetes.storage (s3://bucket/prefix) configured")]
    in_minio = _platform_buckets(settings)
    if in_minio:  # this machine may not reach MinIO, nor have its keys yet
        bucket = "s3://" + in_minio[0]
        return [Item("s3 bucket", "would create" if dry_run else PASS,
                     f"{bucket} in the platform's MinIO, made by Job/{po.BUCKET_JOB}")]

    def ensure() -> Item:
        from sentinel_ml.store import uri as storage

        bucket = "s3://" + storage.split_s3(settings.storage)[0]
        if dry_run and not storage.bucket_exists(settings.storage):
            return Item("s3 bucket", "would create", bucket)
        if not dry_run and storage.ensure_bucket(settings.storage):
            return Item("s3 bucket", "created", bucket)
        return Item("s3 bucket", "unchanged", f"{bucket} exists")

    return [run_check("s3 bucket", ensure)]


def _policy(settings) -> dict[str, Any] | None:
    from sentinel_cli.aws.iam import bucket_policy
    from sentinel_ml.store.uri import split_s3

    if not settings.storage:
        return None
    bucket, prefix = split_s3(settings.storage)
    return bucket_policy(bucket, prefix)


# -- down ------------------------------------------------------------------------------------------


def down(settings, purge: bool = False, dry_run: bool = False, wait: bool = True,
         timeout_s: float = PLATFORM_WAIT_S) -> dict[str, Any]:
    """Delete what ``up`` made (the data too with ``purge``); with ``wait``, until it is gone: a
    claim still terminating when ``up`` runs again would be reused, then removed under MinIO."""
    ns, heads = settings.namespace, dict(settings.head_node_selector)
    from sentinel_cli.k8s import monitoring

    groups = [("pod monitors", monitoring.monitors(ns)), ("dashboards", monitoring.dashboard_configmaps(ns)),
              ("mlflow", po.mlflow(ns, heads)), ("minio", po.minio(ns, heads)),
              ("credentials", [po.secret(ns, "", "")]),
              ("service account", [po.service_account(ns, settings.service_account.name, None)]),
              ("kuberay-operator", po.operator(ns, heads))]
    items, deleted = [], []
    with connect(settings) as kube:
        has_monitors = kube.crd_exists(po.PROMETHEUS_CRD)
        if any(_managed_by_sentinel(d) for d in kube.deployments("k8s-app=metrics-server")):
            groups.insert(0, ("metrics-server", po.metrics_server()))  # only the one `up` installed
        if _device_plugin_ours(kube):
            groups.insert(0, ("nvidia device plugin", po.device_plugin()))
        for name, objects in groups:
            if name == "pod monitors" and not has_monitors:
                continue
            items.append(run_check(name, lambda name=name, objects=objects:
                                   _delete_group(kube, name, objects, purge, dry_run, deleted)))
        gone = _wait_gone(kube, ns, deleted, timeout_s) if wait and deleted else None
    return report("k8s", items, namespace=ns, dry_run=dry_run, purge=purge, gone_in_s=gone)


def _delete_group(kube: Kube, name: str, objects: list[dict[str, Any]], purge: bool, dry_run: bool,
                  deleted: list[dict[str, Any]]) -> Item:
    done, kept, absent = [], [], []
    for obj in objects:
        label = _label(obj)
        if obj["kind"] in po.DATA_KINDS and not purge:
            (kept if kube.get_object(obj) is not None else absent).append(label)
        elif dry_run:
            (done if kube.get_object(obj) is not None else absent).append(label)
        elif kube.delete_object(obj):
            done.append(label)
            deleted.append(obj)
        else:
            absent.append(label)
    state = ("would delete" if dry_run and done else "deleted" if done else "kept" if kept else "absent")
    detail = "; ".join(part for part in (", ".join(done), ("kept (data): " + ", ".join(kept)) if kept else "") if part)
    return Item(name, state, detail or "nothing there")


def _device_plugin_ours(kube: Kube) -> bool:
    from sentinel_cli.k8s.client import DAEMONSET

    live = kube.get(DAEMONSET, po.DEVICE_PLUGIN, po.DEVICE_PLUGIN_NS)
    return live is not None and _managed_by_sentinel(live)


def _label(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _wait_gone(kube: Kube, ns: str, deleted: list[dict[str, Any]], timeout_s: float) -> float:
    """Seconds until every deleted object is gone; bounded: ``timeout_s`` without one going."""
    import time

    from sentinel_cli.progress import kube_say
    from sentinel_ml.errors import WaitTimeout

    started = last_change = time.monotonic()
    previous: list[str] = []
    while True:
        left = [_still_there(obj, live) for obj in deleted if (live := kube.get_object(obj)) is not None]
        if not left:
            return round(time.monotonic() - started, 1)
        if left != previous:
            kube_say(f"waiting until deleted: {'; '.join(left)}")
            previous, last_change = left, time.monotonic()
        if time.monotonic() - last_change > timeout_s:
            raise WaitTimeout(f"deleted, and still there after {timeout_s:.0f} s without progress: "
                              + "; ".join(left),
                              hint=f"kubectl -n {ns} get pods,pvc to see what holds them; "
                                   "`sentinel down` again waits again")
        time.sleep(1)


def _still_there(obj: dict[str, Any], live: dict[str, Any]) -> str:
    """An object being deleted, and what holds it (a claim: a pod still using it)."""
    finalizers = (live.get("metadata") or {}).get("finalizers") or []
    if "kubernetes.io/pvc-protection" in finalizers:
        return f"{_label(obj)} (in use by a pod that is still stopping)"
    return f"{_label(obj)} (finalizers: {', '.join(finalizers)})" if finalizers else _label(obj)


# -- doctor ----------------------------------------------------------------------------------------


CLUSTER_CHECKS = ("cluster reachable", "namespace access", "kuberay crds", "ray token auth", "node labels",
                  "pod sizes fit", "gpu nodes", "prometheus monitors")


def doctor(settings, crds: tuple[str, ...] = po.RAY_CRDS) -> dict[str, Any]:
    """The whole checklist, always: a check that needs what failed before it is skipped and says so."""
    kubeconfig = _try_connect(settings)
    items = [kubeconfig.item]
    found: dict[str, Any] = {}
    if kubeconfig.kube is None:
        items += [Item(name, SKIP, "needs a kubeconfig (see above)") for name in CLUSTER_CHECKS]
    else:
        with kubeconfig.kube as kube:
            items += _cluster_checks(kube, settings, crds, found)
    items.append(run_check("s3 reachable", lambda: _s3_reachable(settings)))
    items.append(run_check("checkpoint index", lambda: _index(settings)))
    return report("k8s", items, namespace=settings.namespace, **({"gpus": found} if found else {}))


@dataclass(frozen=True)
class _Connected:
    item: Item
    kube: Kube | None


def _try_connect(settings) -> _Connected:
    try:
        kube = connect(settings)
    except SentinelError as e:
        return _Connected(Item("kubeconfig", FAIL, e.message, e.hint), None)
    context = f" (context {settings.context})" if settings.context else ""
    return _Connected(Item("kubeconfig", PASS, f"API server {kube.server}{context}"), kube)


def _cluster_checks(kube: Kube, settings, crds: tuple[str, ...], found: dict[str, Any]) -> list[Item]:
    reachable = run_check("cluster reachable", lambda: f"{kube.server} ({kube.version()})")
    if reachable.failed:
        return [reachable, *(Item(name, SKIP, "needs the API server (see above)") for name in CLUSTER_CHECKS[1:])]
    nodes: list[dict[str, Any]] = []
    items = [reachable,
             run_check("namespace access", lambda: _namespace_access(kube, settings.namespace)),
             run_check("kuberay crds", lambda: _crds(kube, crds)),
             run_check("ray token auth", lambda: _ray_auth(kube, settings)),
             run_check("node labels", lambda: _labels(_nodes(kube, nodes), settings))]
    items.append(run_check("pod sizes fit", lambda: _fit(_nodes(kube, nodes), settings)))
    items.append(run_check("gpu nodes", lambda: _gpus(kube, _nodes(kube, nodes), found)))
    items.append(run_check("prometheus monitors", lambda: _monitors(kube, settings.namespace)))
    return items


def _nodes(kube: Kube, cache: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cluster's nodes, listed once for the checks that need them."""
    if not cache:
        cache.extend(kube.nodes())
    return cache


def _namespace_access(kube: Kube, namespace: str) -> str:
    """What Sentinel does in the namespace: list pods and Ray objects (RBAC may forbid either)."""
    from sentinel_cli.k8s.client import RAYJOB

    kube.pods("app.kubernetes.io/managed-by=sentinel")
    try:
        kube.list(RAYJOB, None)
    except KubeRayMissing:
        pass  # the CRD check below says so
    return f"pods and RayJobs can be listed in namespace {namespace}"


def _crds(kube: Kube, crds: tuple[str, ...]) -> str:
    missing = [name for name in crds if not kube.crd_exists(name)]
    if missing:
        raise ConfigError(f"missing CRDs: {', '.join(missing)}",
                          hint="run `sentinel up --target k8s` to install the KubeRay operator and its CRDs")
    images = [c["image"] for d in kube.deployments("app.kubernetes.io/name=kuberay-operator")
              for c in d["spec"]["template"]["spec"]["containers"]]
    version = ", ".join(sorted({i.rsplit(":", 1)[-1] for i in images})) or "no operator Deployment found in the cluster"
    return f"{len(crds)} CRDs installed; operator: {version}"


def _ray_auth(kube: Kube, settings) -> str | Item:
    """The operator's version and whether it runs Ray with token authentication (KubeRay >= 1.5.1)."""
    from sentinel_cli.k8s import ray_auth
    from sentinel_cli.k8s.client import CRD

    ok, why = ray_auth.operator_support(kube.get(CRD, ray_auth.RAYCLUSTER_CRD),
                                        kube.deployments(ray_auth.OPERATOR_SELECTOR))
    if settings.ray_auth == "disabled":
        return Item("ray token auth", FAIL, f"{why}; the profile turns it off (ray_auth: disabled): "
                    + ray_auth.LEFT_OPEN, "remove kubernetes.ray_auth: disabled from the profile")
    if not ok:
        return Item("ray token auth", FAIL, why,
                    f"upgrade KubeRay to {'.'.join(map(str, ray_auth.MIN_KUBERAY))} or newer "
                    f"(sentinel up --target k8s installs {po.KUBERAY_VERSION}); until then jobs are refused "
                    f"unless run with {ray_auth.INSECURE_FLAG}")
    return why


def _matching(nodes: list[dict[str, Any]], selector: dict[str, str]) -> list[dict[str, Any]]:
    return [n for n in nodes if selector.items() <= (n["metadata"].get("labels") or {}).items()]


def _selectors(settings) -> dict[str, dict[str, str]]:
    return {"head": dict(settings.head_node_selector), "worker": dict(settings.spot.node_selector),
            "serve_worker": {}}


def _labels(nodes: list[dict[str, Any]], settings) -> str:
    missing = [f"{role}: {','.join(f'{k}={v}' for k, v in sel.items())}"
               for role, sel in _selectors(settings).items() if sel and not _matching(nodes, sel)]
    if missing:
        raise ConfigError(f"no node carries the labels of {'; '.join(missing)}",
                          hint="label nodes (kubectl label node <node> KEY=VALUE), give the node group these "
                               "labels (sentinel cluster render), or change the selector in the profile")
    return f"{len(nodes)} nodes; every selector matches a node"


def _quantity(text: str) -> float:
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.match(r"^(\d+(?:\.\d+)?)([A-Za-z]*)$", str(text))
    if not match:
        return 0.0
    return float(match[1]) * units.get(match[2], 1)


def _fit(nodes: list[dict[str, Any]], settings) -> str:
    sizes = {"head": settings.head, "worker": settings.worker, "serve_worker": settings.serve_worker}
    problems = []
    for role, selector in _selectors(settings).items():
        candidates = _matching(nodes, selector) or nodes
        need = sizes[role]
        fits = [n for n in candidates
                if _quantity(n["status"]["allocatable"]["cpu"]) >= _quantity(need.cpu)
                and _quantity(n["status"]["allocatable"]["memory"]) >= _quantity(need.memory)]
        if not fits:
            biggest = max(candidates, key=lambda n: _quantity(n["status"]["allocatable"]["cpu"]), default=None)
            largest = (f"largest node allocatable {biggest['status']['allocatable']['cpu']} CPU / "
                       f"{biggest['status']['allocatable']['memory']}") if biggest else "no nodes"
            problems.append(f"{role} pod {need.cpu} CPU / {need.memory} fits no node ({largest})")
    if problems:
        raise ConfigError("; ".join(problems),
                          hint="lower kubernetes.<role>.cpu / .memory in the profile (or --set), or use "
                               "larger instance types")
    return "head, worker and serve pods each fit a matching node"


def _gpus(kube: Kube, nodes: list[dict[str, Any]], found: dict[str, Any]) -> str | Item:
    """The GPU nodes, the GPUs each offers the scheduler, and whether a device plugin runs on them.
    ``found`` gets the same as data (doctor's ``gpus`` in -o json|yaml)."""
    from sentinel_cli.k8s import gpus
    from sentinel_cli.k8s.client import DAEMONSET

    gpu_nodes = gpus.gpu_nodes(nodes)
    plugins = gpus.device_plugins(kube.list(DAEMONSET, all_namespaces=True))
    found.update(nodes=[n.as_data() for n in gpu_nodes], device_plugins=[p.as_data() for p in plugins],
                 allocatable=sum(n.allocatable for n in gpu_nodes))
    if not gpu_nodes:
        return Item("gpu nodes", SKIP, "no GPU nodes (none advertises nvidia.com/gpu, carries its taint or a GPU "
                                       "label); add some with `sentinel cluster render --gpu-nodes`"
                    + (f"; device plugin: {plugins[0]}" if plugins else ""))
    each = ", ".join(f"{n.name} (group {n.group}): {n.allocatable} allocatable" for n in gpu_nodes)
    summary = f"{len(gpu_nodes)} GPU node(s), {found['allocatable']} GPUs allocatable: {each}"
    plugin = f"device plugin: {plugins[0]}" if plugins else "no device plugin runs"
    if not plugins or not any(p.ready for p in plugins):
        raise ConfigError(f"{summary}; {plugin}: their GPUs cannot be scheduled",
                          hint="run `sentinel up --target k8s` to install NVIDIA's device plugin "
                               f"({po.DEVICE_PLUGIN_IMAGE}), or install it yourself (eksctl, the GPU operator)")
    idle = [n.name for n in gpu_nodes if not n.allocatable]
    if idle:
        raise ConfigError(f"{summary}; {plugin}; no GPU registered on {', '.join(idle)}",
                          hint=(gpus.LABEL_FIX if set(idle) & set(gpus.unlabelled(gpu_nodes)) else
                                f"read the device plugin's log on those nodes: kubectl -n {plugins[0].namespace} "
                                f"logs ds/{plugins[0].name}"))
    return f"{summary}; {plugin}"


def _monitors(kube: Kube, ns: str) -> str | Item:
    from sentinel_cli.k8s import monitoring

    if not kube.crd_exists(po.PROMETHEUS_CRD):
        return Item("prometheus monitors", SKIP, "no Prometheus operator installed")
    missing = [m["metadata"]["name"] for m in monitoring.monitors(ns) if kube.get_object(m) is None]
    if missing:
        raise ConfigError(f"PodMonitors missing in {ns}: {', '.join(missing)}", hint="run `sentinel up --target k8s`")
    return "PodMonitors for Ray heads and workers present"


def _s3_reachable(settings) -> str | Item:
    if not settings.storage:
        return Item("s3 reachable", SKIP, "no kubernetes.storage configured")
    from sentinel_ml.store import uri as storage

    storage.list_names(settings.storage + "/index", suffix=".json")
    return f"{settings.storage} listable with the configured credentials"


def _index(settings) -> str | Item:
    if not settings.storage:
        return Item("checkpoint index", SKIP, "no kubernetes.storage configured")
    from sentinel_ml.store import index as checkpoints

    records = checkpoints.read_records(settings.storage)
    if not records:
        raise ConfigError(f"no runs in the checkpoint index under {settings.storage}",
                          hint="run `sentinel train --target k8s`")
    return f"{len(records)} runs, latest {records[0].run_id}"


