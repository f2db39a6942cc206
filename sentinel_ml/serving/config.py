"""The serving application's configuration, defined once: its autoscaling, the arguments it
is built from (``ServeArgs``) and what ``sentinel serve`` asks a target for (``ServeRequest``). Plain
data and pydantic, cheap to import (no Ray, no FastAPI), so that the local target, the RayService
manifest, the profile's ``serve`` settings and the application itself all read them from here
(the names and addresses live in ``names.py``, which the CLI reads at start-up), and the
Kubernetes target validates what it renders before anything is applied."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sentinel_ml.compute import SERVE_REPLICA_CPUS
from sentinel_ml.errors import ConfigError
from sentinel_ml.serving.auth import AUTH_MODES, AuthMode
from sentinel_ml.serving.names import (  # noqa: F401 - the names, read here and through this module
    DEFAULT_GRPC_ADDRESS,
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_HOST,
    DEFAULT_HTTP_PORT,
    DEFAULT_URL,
    GRPC_SERVICE,
    GRPC_SERVICER,
    IMPORT_PATH,
    LOOPBACK_HOSTS,
    NAMES,
    PROTOCOLS,
    RECOMMEND_PATH,
    ROUTE_PREFIX,
    SIGNATURE_NAME,
    ServeNames,
)


class Autoscaling(BaseModel):
    """Serve's autoscaling of the deployment, the one definition of its fields, defaults and limits:
    ``ServeArgs.autoscaling`` (local target) and the profile's ``serve.*`` keys (Kubernetes) are this
    model. It reaches Serve once: as the deployment's options locally, as the deployment's
    ``autoscaling_config`` in a RayService's ``serveConfigV2``."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0, description="Autoscaling floor (0: scale to zero when idle).")
    max_replicas: int = Field(5, ge=1, description="Autoscaling ceiling.")
    target_ongoing_requests: float = Field(5.0, gt=0, description="Ongoing requests per replica the "
                                           "autoscaler aims at.")
    upscale_delay_s: float = Field(1.0, ge=0, description="How long the load must call for more replicas.")
    downscale_delay_s: float = Field(30.0, ge=0, description="How long the load must call for fewer replicas.")

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self

    def serve_config(self) -> dict[str, Any]:
        """Ray Serve's ``AutoscalingConfig`` (key names as in Ray 2.60): these fields, and a first
        replica at once even when the floor is zero, so a new deployment answers its health check."""
        fields = self.model_dump(include=set(Autoscaling.model_fields))
        return {**fields, "initial_replicas": max(self.min_replicas, 1)}


class ServeArgs(BaseModel):
    """What the application is built from (``app_builder``): the local target passes these, and a
    RayService's ``serveConfigV2`` passes them as the application's ``args``. Build them with
    ``serve_args`` (both targets do) to get a ``ConfigError`` with a hint for bad values."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(min_length=1, description="Checkpoint URI: a local path or s3://bucket/…/best.pt.")
    run_id: str | None = Field(None, description="Run the checkpoint came from (shown by /model).")
    model_name: str = Field(NAMES.model, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
                            description="The model's name in TF-Serving and OIP requests.")
    model_version: int | None = Field(None, ge=1, description="The model's version in TF-Serving and OIP. "
                                      "Default: from the run id's time, else from the checkpoint URI.")
    data: str | None = Field(None, description="Not read: a replica takes everything from the checkpoint "
                             "(its serving data: id maps, titles, seen items). Accepted so that older "
                             "serve configs still validate.")
    autoscaling: Autoscaling | None = Field(None, description="Set: the builder applies it (local "
                                            "target). None: the Serve config applies it (a RayService's "
                                            "serveConfigV2 carries it as the deployment's autoscaling_config).")
    num_cpus: float = Field(SERVE_REPLICA_CPUS, gt=0, description="CPUs reserved per replica (`serve --cpus`; "
                            "a fraction allowed).")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (`serve --gpus`; a fraction shares one "
                            "GPU). 0: the replica scores on its CPU.")
    max_ongoing_requests: int = Field(32, ge=1, description="Requests one replica takes at once; "
                                      "the rest wait in the proxy. Also the largest useful batch.")
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(0.005, ge=0, description="The longest a batch waits for more "
                                        "requests while they keep arriving (at most 1 ms after the last; "
                                        "a lone caller does not wait; see sentinel_ml.serving.batching). "
                                        "0: never wait, batch whatever queued while the previous batch ran.")
    torch_threads: int = Field(1, ge=1, description="Intra-op threads per replica.")
    access_log: bool = Field(False, description="Log every request in the replica logs (costs throughput).")
    auth: AuthMode = Field("none", description="token: every inference and metadata "
                                           "route needs `Authorization: Bearer <token>` (gRPC: the "
                                           "`authorization` metadata); health and readiness stay open.")
    token_file: str | None = Field(None, description="auth token: the file each replica reads the token "
                                   "from (a path, never the token: these args are shown by status).")
    # The canary (sentinel_ml.serving.canary): a candidate beside the incumbent in every replica.
    canary_checkpoint: str | None = Field(None, min_length=1, description="The candidate's checkpoint "
                                          "URI: it answers canary_percent % of users (by a stable hash "
                                          "of the user id), the incumbent (checkpoint) the rest.")
    canary_run_id: str | None = Field(None, description="Run the candidate came from.")
    canary_percent: float | None = Field(None, gt=0, lt=100, description="Share of users (percent, "
                                         "two decimals) the candidate answers.")
    canary_model_version: int | None = Field(None, ge=1, description="The candidate's version. Default: "
                                             "from its run id's time, else from its checkpoint URI.")
    canary_fault_rate: float = Field(0.0, ge=0, le=1, description="Development and tests only: the share "
                                     "of the candidate's requests that fail on purpose (bench/faults.py's "
                                     "automatic rollback). Never set it on a real service.")

    @model_validator(mode="after")
    def _consistent(self) -> ServeArgs:
        if self.autoscaling and self.max_ongoing_requests < self.autoscaling.target_ongoing_requests:
            raise ValueError("max_ongoing_requests must be >= target_ongoing_requests")
        if self.auth == "token" and not self.token_file:
            raise ValueError("auth token needs token_file")
        if self.auth == "none" and self.token_file:
            raise ValueError("token_file is set but auth is none")
        if (self.canary_checkpoint is None) != (self.canary_percent is None):
            raise ValueError("a canary needs both canary_checkpoint and canary_percent")
        if self.canary_checkpoint is None and (self.canary_fault_rate or self.canary_run_id
                                               or self.canary_model_version):
            raise ValueError("canary settings without a canary_checkpoint")
        return self

    @property
    def canary(self) -> dict[str, Any] | None:
        """The canary these args serve, as status shows it (None without one)."""
        if self.canary_checkpoint is None:
            return None
        return {"checkpoint": self.canary_checkpoint, "run_id": self.canary_run_id,
                "percent": self.canary_percent, "model_version": self.canary_model_version}

    def with_canary(self, uri: str, run_id: str | None, percent: float, fault_rate: float = 0.0) -> ServeArgs:
        """These args with ``uri`` as the canary's candidate for ``percent`` % of users; the incumbent and
        every other setting stay as they are. Refused (ConfigError): a canary already running, the
        incumbent itself, a bad share. Both targets start a canary with it (local: the application's
        args; k8s: the RayService's serveConfigV2)."""
        if self.canary_checkpoint:
            raise ConfigError(f"a canary is already running ({self.canary_checkpoint} for "
                              f"{self.canary_percent:g}% of users)",
                              hint="end it first with `sentinel serve promote` or `sentinel serve rollback`")
        if uri == self.checkpoint:
            raise ConfigError(f"{uri} is already the incumbent", hint="give the candidate's run or checkpoint")
        incumbent = self.model_version or model_version(self.run_id, self.checkpoint)
        version = model_version(run_id, uri)
        if version == incumbent:  # two checkpoints of one run (best.pt, last.pt): the URI's version
            version = model_version(None, uri)
        try:
            return ServeArgs.model_validate({**self.model_dump(exclude_unset=True), "canary_checkpoint": uri,
                                             "canary_run_id": run_id, "canary_percent": percent,
                                             "canary_model_version": version,
                                             **({"canary_fault_rate": fault_rate} if fault_rate else {})})
        except ValueError as e:
            raise ConfigError(f"invalid canary: {e}") from None

    def ended(self, decision: str, candidate_version: int | None = None) -> ServeArgs:
        """These args without the canary: ``promote`` serves the candidate alone (as its version, so
        answers keep naming the version they named during the canary), ``rollback`` the incumbent."""
        if self.canary_checkpoint is None:
            raise ValueError("no canary to end")
        data = {k: v for k, v in self.model_dump(exclude_unset=True).items() if not k.startswith("canary_")}
        if decision == "promote":
            data.update(checkpoint=self.canary_checkpoint, run_id=self.canary_run_id)
            version = self.canary_model_version or candidate_version
            data.pop("model_version", None)
            if version is not None:
                data["model_version"] = version
        elif decision != "rollback":
            raise ValueError(f"unknown decision {decision!r}")
        return ServeArgs.model_validate(data)

    def deployment_options(self) -> dict[str, Any]:
        """``Deployment.options`` keyword arguments (names as in Ray Serve 2.60); autoscaling only
        when these args carry it (else the Serve config's deployment entry does)."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus,
                                  **({"num_gpus": self.num_gpus} if self.num_gpus else {})},
            "logging_config": {"enable_access_log": self.access_log},
            "user_config": {"max_batch_size": self.max_batch_size,
                            "batch_wait_timeout_s": self.batch_wait_timeout_s},
        }
        if self.autoscaling is not None:
            options["autoscaling_config"] = self.autoscaling.serve_config()
        return options


_RUN_STAMP = re.compile(r"(\d{8})-(\d{6})")


def model_version(run_id: str | None, checkpoint_uri: str) -> int:
    """The model's version in TF-Serving and OIP: a positive integer, the same for one checkpoint.

    The run's creation time as ``YYYYMMDDHHMMSS`` when the run id carries it (``new_run_id`` makes
    ``train-20261127-115300-3f9a`` → 20261127115300: later runs get larger versions); otherwise a
    9-digit number from the checkpoint URI's SHA-256. ``ServeArgs.model_version`` overrides both.
    """
    stamp = _RUN_STAMP.search(run_id or "")
    if stamp:
        return int(stamp.group(1) + stamp.group(2))
    return int(hashlib.sha256(checkpoint_uri.encode()).hexdigest()[:12], 16) % 900_000_000 + 100_000_000


def serve_args(checkpoint: str, run_id: str | None, settings: Mapping[str, Any] | None = None) -> ServeArgs:
    """``ServeArgs`` the way both targets build them: ``settings`` are flat, ``ServeArgs`` fields and
    ``Autoscaling`` fields by their own names (``ServeRequest.app_args``, the profile's ``serve.*``);
    the autoscaling is always set, from its defaults where ``settings`` say nothing. Bad values are a
    ``ConfigError`` naming each field, before anything is deployed or rendered."""
    settings = dict(settings or {})
    scaling = {k: settings.pop(k) for k in list(settings) if k in Autoscaling.model_fields}
    given = {**settings, "checkpoint": checkpoint, "run_id": run_id}
    try:
        return ServeArgs.model_validate({**given, "autoscaling": scaling})
    except ValidationError as e:
        problems = "; ".join(f"{_field(err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
                             for err in e.errors())
        raise ConfigError(f"invalid serving settings: {problems}",
                          hint="see the application's settings and their limits in docs/serving.md "
                               "(\"The application\")") from None


def _field(loc: tuple) -> str:
    names = [str(part) for part in loc if part != "autoscaling"]
    return ".".join(names) or "settings"


def serve_application(args: ServeArgs) -> dict[str, Any]:
    """The application's entry in a Serve config file (a RayService's ``serveConfigV2``
    ``applications[]``). The autoscaling goes once, into the deployment's ``autoscaling_config``, which
    Serve applies; the builder's ``args`` leave it out, so the builder sets none."""
    if args.autoscaling is None:
        raise ValueError("serve_application needs args with autoscaling (build them with serve_args)")
    return {
        "name": NAMES.application,
        "import_path": IMPORT_PATH,
        "route_prefix": ROUTE_PREFIX,
        "args": args.model_dump(exclude_unset=True, exclude={"autoscaling"}),
        "deployments": [{"name": NAMES.deployment, "autoscaling_config": args.autoscaling.serve_config()}],
    }


@dataclass(frozen=True)
class ServeRequest:
    checkpoint: str = "latest"  # latest | best | <run id> | <URI>
    storage: str | None = None  # checkpoint root holding the index; None: $SENTINEL_STORAGE or default
    host: str | None = None  # local target: the listen address; None: DEFAULT_HTTP_HOST
    port: int | None = None  # None: the target's default (8000; k8s: the profile's serve.port)
    grpc_port: int | None = None  # None: the target's default (9000; k8s: the profile's serve.grpc_port)
    timeout_s: float | None = None  # bound on the wait until it serves; None: the target's default
    app_args: dict[str, Any] = field(default_factory=dict)  # serve_args settings (replicas, CPUs, …)
    auth: str | None = None  # none | token; None: the target's default (local: none)
    token_file: str | None = None  # auth token: the file holding it; None: the target's default
    canary_percent: float | None = None  # set: serve `checkpoint` as a canary to this % of users

    def validate(self) -> None:
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} is not a TCP port", hint="use 1-65535, e.g. 8000")
        if self.grpc_port is not None and not 1 <= self.grpc_port <= 65535:
            raise ConfigError(f"--grpc-port {self.grpc_port} is not a TCP port", hint="use 1-65535, e.g. 9000")
        if (self.grpc_port or DEFAULT_GRPC_PORT) == (self.port or DEFAULT_HTTP_PORT):
            raise ConfigError(f"gRPC port {self.grpc_port or DEFAULT_GRPC_PORT} is also the HTTP port",
                              hint="give HTTP and gRPC different ports, e.g. --port 8000 --grpc-port 9000")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError("--timeout must be positive")
        if not self.checkpoint.strip():
            raise ConfigError("--checkpoint is empty", hint="use latest, best, a run id or a checkpoint URI")
        if self.auth is not None and self.auth not in AUTH_MODES:
            raise ConfigError(f"--auth {self.auth} is not one of {', '.join(AUTH_MODES)}")
        if self.token_file and self.auth == "none":
            raise ConfigError("--token-file with --auth none", hint="drop one of them")
        if self.canary_percent is not None and not 0 < self.canary_percent < 100:
            raise ConfigError(f"--canary {self.canary_percent:g} is not a share of users",
                              hint="give a percent between 0 and 100, e.g. --canary 10")

    def with_local_defaults(self, timeout_s: float) -> ServeRequest:
        """This request with the local target's defaults filled in."""
        from dataclasses import replace

        return replace(self, host=self.host or DEFAULT_HTTP_HOST, port=self.port or DEFAULT_HTTP_PORT,
                       grpc_port=self.grpc_port or DEFAULT_GRPC_PORT, timeout_s=self.timeout_s or timeout_s)

    @property
    def url(self) -> str:
        return f"http://{self.host or DEFAULT_HTTP_HOST}:{self.port or DEFAULT_HTTP_PORT}"

    @property
    def grpc_address(self) -> str:
        return f"{self.host or DEFAULT_HTTP_HOST}:{self.grpc_port or DEFAULT_GRPC_PORT}"


def grpc_options(port: int = DEFAULT_GRPC_PORT) -> dict[str, Any]:
    """Ray Serve's ``gRPCOptions`` (``serve.start(grpc_options=…)``, a RayService's ``grpc_options``)."""
    return {"port": port, "grpc_servicer_functions": [GRPC_SERVICER]}


# HAProxy's `retry-on` and `retries` (Ray renders them into its `defaults` section, with `option
# redispatch 1`: each retry goes to another replica). `empty-response`/`junk-response` are layer-7
# retries: HAProxy keeps a copy of the request (up to tune.bufsize, 16 kB; larger requests are not
# replayed) and sends it again when the replica closed the connection without a whole answer. Safe
# because every call of this API is an idempotent read. Locally and in the RayService's pods.
HAPROXY_RETRIES = {"RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response junk-response",
                   "RAY_SERVE_HAPROXY_RETRIES": "3"}
