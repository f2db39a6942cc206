"""The platform's Kubernetes objects as data (pure): KubeRay operator (when helm is absent), MinIO
with a bucket-creation Job, MLflow (each with a NetworkPolicy that admits only the platform's and
Sentinel's own pods), the pods' ServiceAccount, monitoring, metrics-server and the NVIDIA device plugin
(both only when asked for or needed). Every pod of MinIO, MLflow and the bucket Job meets Pod Security
``restricted`` (security.py); the device plugin cannot (it mounts the kubelet's socket).

Every object carries ``sentinel.io/platform: <component>`` so ``down`` finds what ``up`` made.
Credentials live in one Secret (``sentinel-minio``) that ``up`` creates once with random values
and never prints; pods read it through ``secretKeyRef``, never from a ConfigMap.
"""

from __future__ import annotations

from typing import Any

from sentinel_cli.k8s import client as kinds
from sentinel_cli.k8s import security

KUBERAY_VERSION = "1.5.2"
KUBERAY_CHART = ("kuberay-operator", "https://ray-project.github.io/kuberay-helm/")
CRD_URL = f"https://raw.githubusercontent.com/ray-project/kuberay/v{KUBERAY_VERSION}/ray-operator/config/crd/bases/"
CRD_SHA256 = {  # the release's files; Go's checksum database vouches for the same bytes in the module
    "ray.io_rayclusters.yaml": "9b5ada939fdfd0edb5a6cf48f24a63bd792254c264967dd0930155a3941c2557",
    "ray.io_rayjobs.yaml": "7825ddddb04eb775d6cf6c2fd4ad4d8eeff3cb7122dac95218ca1525fd85c91f",
    "ray.io_rayservices.yaml": "563d23ba5a73e5ca4b949ae7f41ff43468ce069afe336ebcb45db2beeb9a62ab",
}
RAY_CRDS = ("rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io")
PROMETHEUS_CRD = "podmonitors.monitoring.coreos.com"
MINIO_IMAGE = "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z"
MC_IMAGE = "quay.io/minio/mc:RELEASE.2025-04-16T18-13-26Z"
# The "-full" variant (MLflow >= 3.9): the plain image is core MLflow without boto3, so its server could
# not write or list the S3 (MinIO) artifacts that `--artifacts-destination s3://…` points it at.
MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow:v3.17.2-full"
COMPONENT = "sentinel.io/platform"
SECRET = "sentinel-minio"
MINIO, MLFLOW = "sentinel-minio", "sentinel-mlflow"  # Deployments and Services
BUCKET_JOB = "sentinel-minio-bucket"
MLFLOW_HOSTS = (MLFLOW, f"{MLFLOW}:*", f"{MLFLOW}.*", "localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*",
                "10.*", "172.*", "192.168.*")
MLFLOW_BUCKET = "mlflow"
DATA_KINDS = ("PersistentVolumeClaim", "Secret")  # kept by `down` unless --purge


def _meta(name: str, component: str, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {COMPONENT: component, "app.kubernetes.io/name": name,
                                                    "app.kubernetes.io/managed-by": "sentinel"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _secret_env(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"name": env, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}} for env, key in pairs]


def _deployment(name: str, component: str, ns: str, container: dict[str, Any], volume: str | None,
                node_selector: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeSelector": node_selector, "containers": [_least_privilege(container)],
                            "securityContext": {**security.pod_security(), "runAsUser": 1000, "fsGroup": 1000}}
    spec["volumes"] = [*([{"name": "data", "persistentVolumeClaim": {"claimName": volume}}] if volume else []),
                       *_SCRATCH_VOLUMES]
    return {**kinds.DEPLOYMENT.type_meta(), "metadata": _meta(name, component, ns),
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                     "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                     "template": {"metadata": {"labels": {"app.kubernetes.io/name": name, COMPONENT: component}},
                                  "spec": spec}}}


_SCRATCH_VOLUMES, _SCRATCH_MOUNTS = security.scratch(security.TMP)  # what they write: /tmp only


def _least_privilege(container: dict[str, Any]) -> dict[str, Any]:
    """``container`` under Pod Security ``restricted`` (security.py): no privilege escalation, no
    capabilities, a read-only root filesystem with an emptyDir ``/tmp`` (its pod needs
    ``_SCRATCH_VOLUMES``)."""
    return {**container, "securityContext": {**security.container_security(), **container.get("securityContext", {})},
            "volumeMounts": [*container.get("volumeMounts", []), *_SCRATCH_MOUNTS]}


def _service(name: str, component: str, ns: str, port: int) -> dict[str, Any]:
    return {**kinds.SERVICE.type_meta(), "metadata": _meta(name, component, ns),
            "spec": {"selector": {"app.kubernetes.io/name": name},
                     "ports": [{"name": "http", "port": port, "targetPort": port}]}}


def _policy(name: str, component: str, ns: str, port: int) -> dict[str, Any]:
    """A NetworkPolicy: ``name``'s pods admit, on ``port``, only the platform's own pods (those labelled
    ``sentinel.io/platform``: MLflow, the bucket Job) and the pods Sentinel renders (its Ray clusters)."""
    own = [{"podSelector": {"matchExpressions": [{"key": COMPONENT, "operator": "Exists"}]}},
           {"podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "sentinel"}}}]
    return {**kinds.NETWORKPOLICY.type_meta(), "metadata": _meta(name, component, ns),
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": own, "ports": [{"protocol": "TCP", "port": port}]}]}}


def _claim(name: str, component: str, ns: str, size: str) -> dict[str, Any]:
    return {**kinds.PVC.type_meta(), "metadata": _meta(name, component, ns),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}


def secret(ns: str, user: str, password: str) -> dict[str, Any]:
    """The credentials Secret (MinIO's root user, also MLflow's S3 credentials). Never printed.
    It carries them twice: as MinIO names them, and as boto3 does, for the jobs' pods
    (``kubernetes.s3.credentials_secret``)."""
    return {**kinds.SECRET.type_meta(), "metadata": _meta(SECRET, "minio", ns), "type": "Opaque",
            "stringData": {"root-user": user, "root-password": password,
                           "AWS_ACCESS_KEY_ID": user, "AWS_SECRET_ACCESS_KEY": password}}


def endpoint(ns: str) -> str:
    """The platform's MinIO as pods reach it (``kubernetes.s3.endpoint``)."""
    return f"http://{MINIO}.{ns}.svc:9000"


def mlflow_uri(ns: str) -> str:
    """The platform's MLflow as pods reach it (``kubernetes.mlflow_uri``)."""
    return f"http://{MLFLOW}.{ns}.svc:5000"


def operator(ns: str, node_selector: dict[str, str]) -> list[dict[str, Any]]:
    """The KubeRay operator from our own objects (when helm is absent); its CRDs are applied apart."""
    import yaml

    from sentinel_cli.k8s.render import templates_dir

    role = yaml.safe_load((templates_dir() / "platform" / "kuberay-operator-role.yaml").read_text())
    name = "kuberay-operator"
    container = {"name": name, "image": f"quay.io/kuberay/operator:v{KUBERAY_VERSION}",
                 "command": ["/manager"], "args": ["--feature-gates=RayClusterStatusConditions=true"],
                 "ports": [{"name": "http", "containerPort": 8080}],
                 "resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                               "limits": {"cpu": "100m", "memory": "512Mi"}},
                 "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
    deployment = _deployment(name, "kuberay-operator", ns, container, None, node_selector)
    deployment["spec"]["template"]["spec"]["serviceAccountName"] = name
    return [
        {**kinds.SERVICEACCOUNT.type_meta(), "metadata": _meta(name, "kuberay-operator", ns)},
        {**role, "metadata": _meta(f"sentinel-{name}", "kuberay-operator", None)},
        {**kinds.CLUSTERROLEBINDING.type_meta(),
         "metadata": _meta(f"sentinel-{name}", "kuberay-operator", None),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"sentinel-{name}"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        deployment,
    ]


def minio(ns: str, node_selector: dict[str, str], size: str = "20Gi",
          buckets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """MinIO, and a Job that makes MLflow's bucket and ``buckets`` (the checkpoint store's, when
    it lives here)."""
    name, endpoint = MINIO, f"http://{MINIO}:9000"
    container = {"name": "minio", "image": MINIO_IMAGE, "args": ["server", "/data", "--console-address", ":9001"],
                 "env": _secret_env(("MINIO_ROOT_USER", "root-user"), ("MINIO_ROOT_PASSWORD", "root-password")),
                 "ports": [{"name": "http", "containerPort": 9000}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                 "readinessProbe": {"httpGet": {"path": "/minio/health/ready", "port": 9000}},
                 "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}}
    wanted = " ".join(f"store/{bucket}" for bucket in dict.fromkeys((MLFLOW_BUCKET, *buckets)))
    script = f'mc alias set store "$STORE" "$USER" "$PASSWORD" >/dev/null && mc mb --ignore-existing {wanted}'

    job = {**kinds.JOB.type_meta(), "metadata": _meta(BUCKET_JOB, "minio", ns),
           "spec": {"backoffLimit": 6, "ttlSecondsAfterFinished": 3600, "template": {
               "metadata": {"labels": {COMPONENT: "minio"}},
               "spec": {"restartPolicy": "OnFailure", "nodeSelector": node_selector,
                        "securityContext": {**security.pod_security(), "runAsUser": 1000},
                        "volumes": _SCRATCH_VOLUMES,
                        "containers": [_least_privilege({"name": "mc", "image": MC_IMAGE, "command": ["/bin/sh", "-c", script],
                                        # mc keeps its aliases under $HOME, unwritable for uid 1000
                                        "env": [{"name": "STORE", "value": endpoint},
                                                {"name": "MC_CONFIG_DIR", "value": "/tmp/.mc"},
                                                *_secret_env(("USER", "root-user"), ("PASSWORD", "root-password"))],
                                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                                      "limits": {"memory": "128Mi"}}})]}}}}
    return [_claim(f"{name}-data", "minio", ns, size),
            _deployment(name, "minio", ns, container, f"{name}-data", node_selector),
            _service(name, "minio", ns, 9000), _policy(name, "minio", ns, 9000), job]


def mlflow(ns: str, node_selector: dict[str, str], size: str = "5Gi") -> list[dict[str, Any]]:
    name = MLFLOW
    # Two server workers and no job runner: MLflow 3.17's defaults (4 workers, a runner with 7
    # processes) take about 1.9 GiB and were OOM-killed at 1Gi on the test environment's node.
    command = ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", "--workers", "2",
               "--backend-store-uri", "sqlite:////data/mlflow.db",
               "--artifacts-destination", f"s3://{MLFLOW_BUCKET}/artifacts", "--serve-artifacts"]
    container = {"name": "mlflow", "image": MLFLOW_IMAGE, "command": command,
                 "env": [{"name": "MLFLOW_S3_ENDPOINT_URL", "value": f"http://{MINIO}:9000"},
                         {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "false"},
                         # MLflow answers only Host headers it allows (default: localhost and private
                         # IPs); the pods call it by its Service name (mlflow_uri).
                         {"name": "MLFLOW_SERVER_ALLOWED_HOSTS", "value": ",".join(MLFLOW_HOSTS)},
                         *_secret_env(("AWS_ACCESS_KEY_ID", "root-user"), ("AWS_SECRET_ACCESS_KEY", "root-password"))],
                 "ports": [{"name": "http", "containerPort": 5000}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                 "readinessProbe": {"httpGet": {"path": "/health", "port": 5000}},
                 "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1536Mi"}}}
    return [_claim(f"{name}-data", "mlflow", ns, size),
            _deployment(name, "mlflow", ns, container, f"{name}-data", node_selector),
            _service(name, "mlflow", ns, 5000), _policy(name, "mlflow", ns, 5000)]


def service_account(ns: str, name: str, role_arn: str | None) -> dict[str, Any]:
    obj = {**kinds.SERVICEACCOUNT.type_meta(), "metadata": _meta(name, "service-account", ns)}
    if role_arn:
        obj["metadata"]["annotations"] = {"eks.amazonaws.com/role-arn": role_arn}
    return obj


METRICS_SERVER_IMAGE = "registry.k8s.io/metrics-server/metrics-server:v0.7.2"
METRICS_SERVER_NS = "kube-system"


def metrics_server() -> list[dict[str, Any]]:
    """metrics-server v0.7.2 (upstream components.yaml, as objects), labelled as Sentinel's so that
    `down` removes only a metrics-server that `up` installed."""
    name, ns, component = "metrics-server", METRICS_SERVER_NS, "metrics-server"

    def meta(object_name: str, namespaced: bool = False, **labels: str) -> dict[str, Any]:
        m = _meta(object_name, component, ns if namespaced else None)
        # Some names (system:metrics-server) are not valid label values: label them all as the app.
        m["labels"].update({"app.kubernetes.io/name": name, "k8s-app": name, **labels})
        return m

    read = ["get", "list", "watch"]
    pod_labels = {"k8s-app": name}
    container = {
        "name": name, "image": METRICS_SERVER_IMAGE, "imagePullPolicy": "IfNotPresent",
        "args": ["--cert-dir=/tmp", "--secure-port=10250",
                 "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
                 "--kubelet-use-node-status-port", "--metric-resolution=15s"],
        "ports": [{"name": "https", "containerPort": 10250, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https", "scheme": "HTTPS"},
                           "initialDelaySeconds": 20, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/livez", "port": "https", "scheme": "HTTPS"},
                          "periodSeconds": 10, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": 1000,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "tmp-dir", "mountPath": "/tmp"}],
    }
    return [
        {**kinds.SERVICEACCOUNT.type_meta(), "metadata": meta(name, namespaced=True)},
        {**kinds.CLUSTERROLE.type_meta(),
         "metadata": meta("system:aggregated-metrics-reader", **{
             "rbac.authorization.k8s.io/aggregate-to-admin": "true",
             "rbac.authorization.k8s.io/aggregate-to-edit": "true",
             "rbac.authorization.k8s.io/aggregate-to-view": "true"}),
         "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": read}]},
        {**kinds.CLUSTERROLE.type_meta(), "metadata": meta("system:metrics-server"),
         "rules": [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                   {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": read}]},
        {**kinds.ROLEBINDING.type_meta(),
         "metadata": meta("metrics-server-auth-reader", namespaced=True),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "extension-apiserver-authentication-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        {**kinds.CLUSTERROLEBINDING.type_meta(),
         "metadata": meta("metrics-server:system:auth-delegator"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        {**kinds.CLUSTERROLEBINDING.type_meta(),
         "metadata": meta("system:metrics-server"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:metrics-server"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        {**kinds.SERVICE.type_meta(), "metadata": meta(name, namespaced=True),
         "spec": {"selector": pod_labels,
                  "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}]}},
        {**kinds.DEPLOYMENT.type_meta(), "metadata": meta(name, namespaced=True),
         "spec": {"selector": {"matchLabels": pod_labels},
                  "strategy": {"rollingUpdate": {"maxUnavailable": 0}},
                  "template": {"metadata": {"labels": pod_labels},
                               "spec": {"serviceAccountName": name, "priorityClassName": "system-cluster-critical",
                                        "nodeSelector": {"kubernetes.io/os": "linux"},
                                        "containers": [container],
                                        "volumes": [{"name": "tmp-dir", "emptyDir": {}}]}}}},
        {**kinds.APISERVICE.type_meta(),
         "metadata": meta("v1beta1.metrics.k8s.io"),
         "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100,
                  "versionPriority": 100, "insecureSkipTLSVerify": True,
                  "service": {"name": name, "namespace": ns}}},
    ]


# NVIDIA's k8s-device-plugin release (deployments/static/nvidia-device-plugin.yml of tag v0.20.0).
DEVICE_PLUGIN_VERSION = "v0.20.0"
DEVICE_PLUGIN_IMAGE = f"nvcr.io/nvidia/k8s-device-plugin:{DEVICE_PLUGIN_VERSION}"
DEVICE_PLUGIN_NS = "kube-system"
DEVICE_PLUGIN = "nvidia-device-plugin-daemonset"


def device_plugin() -> list[dict[str, Any]]:
    """NVIDIA's device plugin DaemonSet, as its release's static manifest has it, on GPU nodes only
    (node affinity: any label of ``gpus.GPU_NODE_LABELS``), tolerating the GPU taint and the spot
    taint of Sentinel's spot GPU group. It registers each node's GPUs as ``nvidia.com/gpu``."""
    from sentinel_cli.k8s.gpus import GPU_NODE_LABELS, GPU_TAINT_KEY

    pod_labels = {"name": "nvidia-device-plugin-ds"}
    terms = [{"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}
             for key, value in GPU_NODE_LABELS]
    container = {
        "name": "nvidia-device-plugin-ctr", "image": DEVICE_PLUGIN_IMAGE, "imagePullPolicy": "IfNotPresent",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "kubelet-device-plugins-dir", "mountPath": "/var/lib/kubelet/device-plugins"}],
    }
    meta = _meta(DEVICE_PLUGIN, "nvidia-device-plugin", DEVICE_PLUGIN_NS)
    return [{**kinds.DAEMONSET.type_meta(), "metadata": meta,
             "spec": {"selector": {"matchLabels": pod_labels},
                      "updateStrategy": {"type": "RollingUpdate"},
                      "template": {"metadata": {"labels": {**pod_labels, COMPONENT: "nvidia-device-plugin"}},
                                   "spec": {
                                       "priorityClassName": "system-node-critical",
                                       "tolerations": [
                                           {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"},
                                           {"key": "lifecycle", "operator": "Equal", "value": "Ec2Spot",
                                            "effect": "NoSchedule"}],
                                       "affinity": {"nodeAffinity": {
                                           "requiredDuringSchedulingIgnoredDuringExecution": {
                                               "nodeSelectorTerms": terms}}},
                                       "containers": [container],
                                       "volumes": [{"name": "kubelet-device-plugins-dir",
                                                    "hostPath": {"path": "/var/lib/kubelet/device-plugins",
                                                                 "type": "Directory"}}]}}}}]
