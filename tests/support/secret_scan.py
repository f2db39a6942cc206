"""Search everything Sentinel shows for known secret values (issue 27, "secrets never shown").

A ``Scan`` holds the secrets (a label and a value each: an S3 key, a Ray token, the serving token,
MinIO's root password). Each value is searched as itself and in its base64 forms (standard and
URL-safe, with and without padding): a leak through a Secret's ``data`` copied somewhere else, or a
header dumped encoded, is still found. The places:

    text / files    command outputs (one file each: what a user's terminal showed); a local
                    $SENTINEL_HOME (the MLflow sqlite store, the index records, checkpoints)
    objects         the namespace's live objects read from the API server: RayJobs, RayServices,
                    RayClusters, ConfigMaps, Deployments, Jobs, CronJobs, Pods (spec and status),
                    Services, NetworkPolicies, Events. Not Secrets: they hold the values by design.
    pod_logs        every container's log of the namespace's pods (read before pods are deleted)
    mlflow          every run of an MLflow tracking server, over its REST API: params, tags, metric
                    names, the run's name and artifact URI
    s3_records      the checkpoint index records (``*.json``) under an S3 prefix

Each place adds to ``searched`` (a count per kind) and each hit records the kind, where, and the
secret's label, never the value. ``SecretWatch`` keeps the values of every Secret a namespace holds
while it runs: a RayJob's Ray token lives in a Secret that goes with the job's cluster.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_LENGTH = 8  # shorter values (a user name like "admin") would match by chance: not a credential


@dataclass(frozen=True)
class Hit:
    kind: str
    where: str
    secret: str  # the label, never the value
    form: str  # "plain" or "base64"

    def __str__(self) -> str:
        return f"{self.kind} {self.where}: {self.secret} ({self.form})"


def _forms(value: str) -> list[tuple[str, str]]:
    raw = value.encode()
    forms = {("plain", value)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(raw).decode()
        forms |= {("base64", text), ("base64", text.rstrip("="))}
    return sorted(forms)


@dataclass
class Scan:
    secrets: dict[str, str] = field(default_factory=dict)  # label -> value
    searched: Counter = field(default_factory=Counter)
    hits: list[Hit] = field(default_factory=list)

    def add(self, label: str, value: str | bytes | None) -> None:
        """A secret to search for (too short or empty values are not credentials: left out)."""
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if value and len(value) >= MIN_LENGTH and value not in self.secrets.values():
            self.secrets[label] = value

    def add_secret_object(self, secret: Any) -> None:
        """Every value of a Secret (a ``V1Secret`` or its dict), labelled ``<name>/<key>``."""
        if not isinstance(secret, dict):
            secret = {"metadata": {"name": secret.metadata.name}, "data": secret.data}
        name = secret["metadata"]["name"]
        for key, encoded in (secret.get("data") or {}).items():
            self.add(f"Secret {name}/{key}", base64.b64decode(encoded))

    def text(self, kind: str, where: str, text: str | bytes | None) -> None:
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        self.searched[kind] += 1
        for label, value in list(self.secrets.items()):
            for form, needle in _forms(value):
                if needle in (text or ""):
                    self.hits.append(Hit(kind, where, label, form))
                    break

    def files(self, kind: str, folder: Path, skip: tuple[str, ...] = ()) -> None:
        """Every file under ``folder`` (bytes: an sqlite store, a checkpoint), but those under the
        relative paths ``skip``."""
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            where = path.relative_to(folder)
            if not any(where.is_relative_to(s) for s in skip):
                self.text(kind, str(where), path.read_bytes())

    def objects(self, api, namespace: str) -> None:
        """The namespace's live objects (not its Secrets), each as the JSON the API server returns."""
        from kubernetes import client

        core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
        custom, net = client.CustomObjectsApi(api), client.NetworkingV1Api(api)
        listed = {
            "Pod": core.list_namespaced_pod, "ConfigMap": core.list_namespaced_config_map,
            "Service": core.list_namespaced_service, "Event": core.list_namespaced_event,
            "Deployment": apps.list_namespaced_deployment, "Job": batch.list_namespaced_job,
            "CronJob": batch.list_namespaced_cron_job, "NetworkPolicy": net.list_namespaced_network_policy,
        }
        for kind, list_ in listed.items():
            for item in list_(namespace).items:
                self.text(kind, f"{kind}/{item.metadata.name}", json.dumps(api.sanitize_for_serialization(item)))
        for plural, kind in (("rayjobs", "RayJob"), ("rayservices", "RayService"), ("rayclusters", "RayCluster")):
            for item in custom.list_namespaced_custom_object("ray.io", "v1", namespace, plural)["items"]:
                self.text(kind, f"{kind}/{item['metadata']['name']}", json.dumps(item))

    def pod_logs(self, api, namespace: str) -> None:
        """Every container's log (init containers too) of every pod in the namespace."""
        from kubernetes import client

        core = client.CoreV1Api(api)
        for pod in core.list_namespaced_pod(namespace).items:
            for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
                try:
                    log = core.read_namespaced_pod_log(pod.metadata.name, namespace, container=container.name)
                except client.ApiException:
                    continue  # not started yet: nothing written
                self.text("pod log", f"{pod.metadata.name}/{container.name}", log)

    def mlflow(self, base_url: str) -> None:
        """Every run of every experiment of the tracking server at ``base_url`` (its REST API)."""
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
            request = urllib.request.Request(f"{base_url.rstrip('/')}/api/2.0/mlflow{path}",
                                             data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
            with opener.open(request, timeout=30) as response:
                return json.load(response)

        experiments = call("/experiments/search", {"max_results": 1000}).get("experiments", [])
        for experiment in experiments:
            self.text("mlflow experiment", f"experiment {experiment['experiment_id']}", json.dumps(experiment))
        ids = [e["experiment_id"] for e in experiments]
        token = None
        while ids:
            page = call("/runs/search", {"experiment_ids": ids, "max_results": 1000,
                                         **({"page_token": token} if token else {})})
            for found in page.get("runs", []):
                self.text("mlflow run", f"run {found['info']['run_id']}", json.dumps(found))
            token = page.get("next_page_token")
            if not token:
                break

    def s3_records(self, s3, bucket: str, prefix: str) -> None:
        """The JSON records (the checkpoint index) under ``s3://bucket/prefix``; ``s3`` a boto3 client."""
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if item["Key"].endswith(".json"):
                    body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                    self.text("index record", f"s3://{bucket}/{item['Key']}", body)

    def report(self) -> str:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.searched.items()))
        found = "; ".join(str(h) for h in self.hits) or "0 hits"
        return f"{len(self.secrets)} secrets searched in {sum(self.searched.values())} places ({counts}): {found}"


class SecretWatch:
    """Adds the values of every Secret of ``namespace`` to ``scan`` every ``every_s`` seconds, in a
    thread, until stopped: the Ray token of a RayJob's cluster goes with the cluster."""

    def __init__(self, scan: Scan, api, namespace: str, every_s: float = 2.0) -> None:
        self.scan, self.api, self.namespace, self.every_s = scan, api, namespace, every_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="secret-watch", daemon=True)

    def __enter__(self) -> SecretWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def poll(self) -> None:
        from kubernetes import client

        with self._lock:
            for secret in client.CoreV1Api(self.api).list_namespaced_secret(self.namespace).items:
                if secret.type != "kubernetes.io/service-account-token":
                    self.scan.add_secret_object(secret)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - a failed poll (API server busy) is retried at the next
                pass
            self._stop.wait(self.every_s)
