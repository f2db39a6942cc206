"""The Kubernetes target's typed configuration: defaults < profile file < environment < flags.

A profile is a YAML file: ``--profile PATH``, else ``$SENTINEL_PROFILE``, else
``$SENTINEL_HOME/config.yaml`` when it exists. Its top-level ``target`` picks the default target;
its ``kubernetes`` section maps onto ``KubeSettings``::

    target: k8s
    kubernetes:
      namespace: ml
      storage: s3://my-bucket/sentinel
      images: {train: registry/sentinel-train:0.1.0, serve: registry/sentinel-serve:0.1.0}
      service_account: {name: sentinel, role_arn: arn:aws:iam::123456789012:role/sentinel}

Environment variables (``ENV_VARS``) override the file, and flags (``--namespace``, ``--storage``,
``--mlflow-uri``, ``--set key=value`` with dotted keys inside ``kubernetes``) override both.
Validation errors name the source and the key and become a ``ConfigError`` (exit 2).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sentinel_cli.k8s.request import Overrides, parse_set
from sentinel_ml.errors import ConfigError
from sentinel_ml.paths import sentinel_home
from sentinel_ml.serving.config import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, NAMES, Autoscaling

PROFILE_ENV = "SENTINEL_PROFILE"
# Environment variable -> dotted key inside the `kubernetes` section.
ENV_VARS = {
    "SENTINEL_NAMESPACE": "namespace",
    "SENTINEL_STORAGE": "storage",
    "SENTINEL_MLFLOW_URI": "mlflow_uri",
    "SENTINEL_TRAIN_IMAGE": "images.train",
    "SENTINEL_SERVE_IMAGE": "images.serve",
    "SENTINEL_CLI_IMAGE": "images.cli",
    "SENTINEL_SERVICE_ACCOUNT": "service_account.name",
    "SENTINEL_IAM_ROLE_ARN": "service_account.role_arn",
    "SENTINEL_KUBE_CONTEXT": "context",
}

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_label(name: str, what: str = "name", max_length: int = 63) -> str:
    """``name`` if it is an RFC 1123 label (lower case, digits, '-'), else a ConfigError."""
    if not isinstance(name, str) or not _LABEL.match(name) or len(name) > max_length:
        shown = name if isinstance(name, str) else repr(name)
        raise ConfigError(
            f"invalid {what} {shown!r}: must be at most {max_length} characters of lower-case letters, "
            "digits and '-', starting and ending with a letter or digit (an RFC 1123 label)",
            hint=f"for example {_suggest(shown, max_length)!r}",
        )
    return name


def _suggest(name: str, max_length: int) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-")[:max_length].strip("-")
    return slug or "sentinel"


def installed_ray_version() -> str:
    try:
        return version("ray")
    except PackageNotFoundError:
        return "2.60.0"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's resource


class Resources(_Model):
    """CPU, memory and GPUs of one pod; requests and limits are set equal (Guaranteed QoS). ``gpu``: whole
    ``nvidia.com/gpu`` devices (the jobs' ``--gpus`` flags set it for the pods that need them)."""

    cpu: str = "1"
    memory: str = "2Gi"
    gpu: int = Field(0, ge=0)

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> str:
        text = str(value)
        if not _QUANTITY.match(text):
            raise ValueError(f"{text!r} is not a Kubernetes quantity such as 500m, 1, 2Gi")
        return text


class Toleration(_Model):
    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = "NoSchedule"

    @model_validator(mode="after")
    def _label_like(self) -> Toleration:
        _check_labels({self.key: self.value or ""})
        return self


class Images(_Model):
    train: str = "sentinel-train:latest"
    serve: str = "sentinel-serve:latest"
    cli: str = "sentinel-cli:latest"  # the runs of `sentinel schedule` (Dockerfile.cli)
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # What `sentinel build` makes: cpu (Ray's -cpu image, torch's CPU build) or gpu (Ray's -gpu image,
    # torch's CUDA build). Point train/serve at the GPU build's references for GPU jobs.
    variant: Literal["cpu", "gpu"] = "cpu"

    @field_validator("train", "serve", "cli")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not an image reference")
        return value


class Spot(_Model):
    """Where training workers go: spot nodes, by label, tolerating their taint if they have one."""

    node_selector: dict[str, str] = Field(
        default_factory=lambda: {"intention": "training", "lifecycle": "Ec2Spot"})
    tolerations: list[Toleration] = Field(default_factory=lambda: [
        Toleration(key="lifecycle", operator="Equal", value="Ec2Spot", effect="NoSchedule")])

    @field_validator("node_selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_labels(value)


class GpuNodes(_Model):
    """Where pods that ask for ``nvidia.com/gpu`` go, on top of their own selector: nodes with these labels
    (none by default: the GPU request itself already needs a node that offers GPUs), tolerating the
    taint EKS GPU node groups carry (``nvidia.com/gpu=<any>:NoSchedule``)."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=lambda: [
        Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")])

    @field_validator("node_selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_labels(value)


class ServiceAccount(_Model):
    name: str = "sentinel"
    create: bool = True  # render the ServiceAccount (with the IRSA annotation) beside the job
    role_arn: str | None = None  # IRSA: eks.amazonaws.com/role-arn

    @field_validator("role_arn")
    @classmethod
    def _arn(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("arn:"):
            raise ValueError(f"{value!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        return value


class S3(_Model):
    """How pods reach the checkpoint store when it is not AWS S3 through IRSA: an S3-compatible
    endpoint (the platform's MinIO: http://sentinel-minio.<namespace>.svc:9000) and a Secret with
    the keys ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` (``sentinel up`` makes
    ``sentinel-minio``). The CLI itself uses the usual AWS settings of its own machine."""

    endpoint: str | None = None
    credentials_secret: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s):// endpoint URL")
        return value.rstrip("/") if value else value

    @field_validator("credentials_secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not _LABEL.match(value):
            raise ValueError(f"{value!r} is not a Secret name (lower-case letters, digits, '-')")
        return value


class RayJobPolicy(_Model):
    shutdown_after_job_finishes: bool = True
    ttl_seconds_after_finished: int = Field(300, ge=0)
    active_deadline_seconds: int | None = Field(7200, gt=0)
    backoff_limit: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _ttl_needs_shutdown(self) -> RayJobPolicy:
        if self.ttl_seconds_after_finished > 0 and not self.shutdown_after_job_finishes:
            raise ValueError("ttl_seconds_after_finished > 0 needs shutdown_after_job_finishes: true "
                             "(KubeRay only deletes the cluster of a job it shuts down)")
        return self


class Peer(_Model):
    """Who may connect, as a NetworkPolicy peer: pods by label (``pods``; ``{}`` is every pod) in this
    namespace, or in the namespaces ``namespaces`` selects by label (``{}`` is every namespace), or
    an address range (``cidr``: what runs outside the cluster's pods, such as an operator on a host)."""

    namespaces: dict[str, str] | None = None
    pods: dict[str, str] | None = None
    cidr: str | None = None

    @field_validator("namespaces", "pods")
    @classmethod
    def _labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else _check_labels(value)

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        if value is None:
            return value
        import ipaddress

        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an address range such as 10.0.0.0/8") from None

    @model_validator(mode="after")
    def _one_kind(self) -> Peer:
        if self.cidr is not None and (self.namespaces is not None or self.pods is not None):
            raise ValueError("a peer is either a cidr or pods/namespaces by label, not both")
        if self.cidr is None and self.namespaces is None and self.pods is None:
            raise ValueError("a peer needs pods, namespaces or cidr (pods: {} is every pod of this namespace)")
        return self


OPERATOR_POD = {"app.kubernetes.io/name": "kuberay-operator"}  # the helm chart's and `sentinel up`'s label


class NetworkPolicies(_Model):
    """The NetworkPolicies rendered with every RayCluster, RayJob and RayService: Ray's own ports
    admit only the same cluster's pods; the dashboard (and Serve's health check) also the operator
    (and a RayJob's submitter); the metrics port Prometheus; Serve's HTTP and gRPC ports ``serve_from``."""

    enabled: bool = True
    serve_from: list[Peer] = Field(default_factory=lambda: [Peer(pods={})])  # this namespace's pods
    operator: list[Peer] = Field(default_factory=lambda: [Peer(pods=dict(OPERATOR_POD))])
    prometheus: list[Peer] = Field(default_factory=lambda: [
        Peer(namespaces={}, pods={"app.kubernetes.io/name": "prometheus"})])


class Serving(_Model, Autoscaling):
    """The RayService: its name, Serve's autoscaling of the deployment (the fields of
    ``sentinel_ml.serving.config.Autoscaling``, flat: ``serve.min_replicas`` …) and the worker pods it
    may use."""

    name: str = NAMES.service
    workers: int = Field(1, ge=0)  # worker pods at start
    max_workers: int = Field(5, ge=0)
    port: int = Field(DEFAULT_HTTP_PORT, ge=1, le=65535)
    grpc_port: int = Field(DEFAULT_GRPC_PORT, ge=1, le=65535)  # the OIP gRPC service (Service <name>-grpc)
    node_selector: dict[str, str] = Field(default_factory=dict)  # where serve worker pods go (any node)
    gpus: float = Field(0.0, ge=0, description="GPUs per replica (a fraction shares one); the serve worker "
                        "pods then ask for the whole GPUs a replica needs.")
    cpus: float | None = Field(None, gt=0, description="Ray's CPUs per replica (a fraction allowed); the serve "
                               "worker pods then request at least this. None: ServeArgs' default (0.5).")

    @field_validator("node_selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_labels(value)

    @model_validator(mode="after")
    def _ranges(self) -> Serving:
        if self.grpc_port == self.port:
            raise ValueError("grpc_port must differ from port")
        if self.max_workers < self.workers:
            raise ValueError("max_workers must be >= workers")
        return self

    @property
    def autoscaling(self) -> Autoscaling:
        return Autoscaling(**self.model_dump(include=set(Autoscaling.model_fields)))


class KubeSettings(_Model):
    """Everything the templates need besides the job's own arguments."""

    namespace: str = "default"
    kubeconfig: str | None = None  # default: $KUBECONFIG, ~/.kube/config, then in-cluster
    context: str | None = None
    images: Images = Field(default_factory=Images)
    ray_version: str = Field(default_factory=installed_ray_version)
    # Ray token authentication on every cluster (KubeRay authOptions; sentinel_cli/k8s/ray_auth.py).
    # disabled: --insecure-ray, for an operator older than KubeRay 1.5.1 (says what it leaves open).
    ray_auth: Literal["token", "disabled"] = "token"
    # The head holds the job's driver, Ray Train's controller and helper actors besides Ray's own
    # processes: at 2Gi Ray's memory monitor (95% of the limit) killed Train's helper actors on the real
    # node and the job hung; 4Gi ran the whole lifecycle (docs/kubernetes.md, "Default requests").
    head: Resources = Field(default_factory=lambda: Resources(cpu="1", memory="4Gi"))
    worker: Resources = Field(default_factory=Resources)
    serve_worker: Resources = Field(default_factory=lambda: Resources(cpu="500m", memory="2Gi"))
    # The RayJob's submitter pod (`ray job submit`, then following the job's logs); KubeRay's own
    # default asks for 500m.
    submitter: Resources = Field(default_factory=lambda: Resources(cpu="200m", memory="512Mi"))
    workers: int = Field(4, ge=1, description="Ray Train workers (one worker pod each).")
    head_node_selector: dict[str, str] = Field(default_factory=lambda: {"lifecycle": "OnDemand"})
    spot: Spot = Field(default_factory=Spot)
    gpu: GpuNodes = Field(default_factory=GpuNodes)
    service_account: ServiceAccount = Field(default_factory=ServiceAccount)
    storage: str | None = None  # s3://bucket/prefix: checkpoints and the index
    mlflow_uri: str | None = None  # None: tracking off inside the cluster
    data: str | None = None  # MovieLens inside the pods (s3://, http(s):// or a path); None: GroupLens
    s3: S3 = Field(default_factory=S3)
    env: dict[str, str] = Field(default_factory=dict)
    rayjob: RayJobPolicy = Field(default_factory=RayJobPolicy)
    serve: Serving = Field(default_factory=Serving)
    network_policy: NetworkPolicies = Field(default_factory=NetworkPolicies)
    wait_timeout_s: float = Field(600, gt=0, description="Give up after this long without progress.")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _LABEL.match(value) or len(value) > 63:
            raise ValueError(f"{value!r} is not an RFC 1123 label (lower-case letters, digits, '-')")
        return value

    @field_validator("ray_version")
    @classmethod
    def _ray_version(cls, value: str) -> str:
        if not re.match(r"^\d+\.\d+\.\d+$", value):
            raise ValueError(f"{value!r} is not a Ray version such as 2.60.0")
        return value

    @field_validator("head_node_selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_labels(value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not _ENV_NAME.match(k)]
        if bad:
            raise ValueError(f"invalid environment variable names: {', '.join(map(repr, bad))}")
        return {k: str(v) for k, v in value.items()}

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("s3://"):
            raise ValueError(f"{value!r}: pods share checkpoints through S3; use s3://bucket/prefix")
        return value.rstrip("/") if value else value

    def require_storage(self) -> str:
        if not self.storage:
            raise ConfigError(
                "no checkpoint storage for the Kubernetes target",
                hint="set kubernetes.storage: s3://bucket/prefix in the profile, "
                     "or pass --storage s3://bucket/prefix (or SENTINEL_STORAGE)",
            )
        return self.storage


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    for key, item in value.items():
        if not _LABEL_KEY.match(key):
            raise ValueError(f"{key!r} is not a valid label key")
        if not _LABEL_VALUE.match(str(item)):
            raise ValueError(f"{item!r} is not a valid label value")
    return {k: str(v) for k, v in value.items()}


def profile_path(explicit: str | None = None) -> Path | None:
    """The profile file in use, or None when there is none."""
    chosen = explicit or os.environ.get(PROFILE_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise ConfigError(f"profile {path} does not exist",
                              hint=f"create it, or unset {PROFILE_ENV} / drop --profile")
        return path
    default = sentinel_home() / "config.yaml"
    return default if default.is_file() else None


def read_profile_data(explicit: str | None = None) -> tuple[dict[str, Any], Path | None]:
    path = profile_path(explicit)
    if path is None:
        return {}, None
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read profile {path}: {e}", hint="fix the YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path} is not a mapping", hint="see docs/kubernetes.md for the format")
    return data, path


def profile_target(explicit: str | None = None) -> str | None:
    """The profile's ``target``, if a profile sets one."""
    data, path = read_profile_data(explicit)
    target = data.get("target")
    if target not in (None, "local", "k8s"):
        raise ConfigError(f"profile {path}: target {target!r} is not local or k8s")
    return target


def load(overrides: Overrides | None = None, environ: Mapping[str, str] | None = None) -> KubeSettings:
    """Defaults < profile < environment < flags, validated."""
    overrides = overrides or Overrides()
    environ = os.environ if environ is None else environ
    data, path = read_profile_data(overrides.profile)
    section = data.get("kubernetes") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"profile {path}: `kubernetes` must be a mapping")
    unknown = set(data) - {"target", "kubernetes"}
    if unknown:
        raise ConfigError(f"profile {path}: unknown keys {', '.join(sorted(unknown))}",
                          hint="a profile has `target` and a `kubernetes` section")
    merged = copy.deepcopy(section)
    sources: dict[str, str] = {}
    for name, key in ENV_VARS.items():
        if environ.get(name):
            _set_dotted(merged, key, environ[name])
            sources[key] = f"${name}"
    _merge(merged, overrides.values(), sources)
    for key, value in map(parse_set, overrides.sets):
        _set_dotted(merged, key, value)
        sources[key] = "the command line"
    try:
        return KubeSettings.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_describe(e, path, sources),
                          hint="fix the value (see docs/kubernetes.md for every key and its default)") from None


def _describe(error: ValidationError, path: Path | None, sources: dict[str, str]) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        origin = next((src for k, src in sources.items()
                       if key == k or key.startswith(k + ".") or k.startswith(key + ".")),
                      f"profile {path}" if path else "the defaults")
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"kubernetes.{key} (from {origin}): {message}")
    return "invalid Kubernetes settings: " + "; ".join(problems)


# Mappings keyed by free-form strings: `--set env.NAME=value` sets one key, keeping the others
# (the profile's, else the defaults).
_MAPPINGS = ("env", "head_node_selector", "spot.node_selector", "serve.node_selector", "gpu.node_selector")


def _merge(target: dict[str, Any], values: Mapping[str, Any], sources: dict[str, str], prefix: str = "") -> None:
    """Typed values from the command line (``Overrides.values``) over the profile, key by key."""
    for key, value in values.items():
        if isinstance(value, Mapping):
            child = target.get(key)
            target[key] = child = dict(child) if isinstance(child, dict) else {}
            _merge(child, value, sources, f"{prefix}{key}.")
        else:
            target[key] = value
            sources[prefix + key] = "the command line"


def _set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    mapping = next((m for m in _MAPPINGS if key.startswith(m + ".")), None)
    path = (mapping.split(".") if mapping else key.split("."))
    node = target
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    if mapping is None:
        node[path[-1]] = value
        return
    current = node.get(path[-1])
    if not isinstance(current, dict):
        current = node[path[-1]] = _default_of(mapping)
    current[key[len(mapping) + 1:]] = value


def _default_of(dotted: str) -> dict[str, Any]:
    value: Any = KubeSettings().model_dump()
    for part in dotted.split("."):
        value = value[part]
    return dict(value)

