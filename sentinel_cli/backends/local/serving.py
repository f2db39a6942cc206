"""Serving on the local target: the MovieRecommender application on a detached local Ray.

``start`` resolves the checkpoint through the index, starts (or reuses) the local cluster, deploys
the application (HTTP: /recommend, TF-Serving /v1, OIP /v2; gRPC: the OIP service) and returns once
``/recommend/healthz`` answers and ``/recommend/model`` reports the checkpoint asked for; every wait
is bounded and says what it waits on. ``describe`` feeds
``sentinel status``; ``stop`` removes the application and the cluster Sentinel started.

Authentication (``--auth``): ``none`` by default while the API listens on loopback, ``token`` when
``--host`` opens it to a network. The token lives in ``$SENTINEL_HOME/serve-token`` (0600, made once)
or the ``--token-file`` given; the application's args and ``serving.json`` name the file, never the
token, and ``token_for`` lets the CLI's own calls send it without being asked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sentinel_cli import api_client
from sentinel_cli.backends.local import ray_cluster as local_ray
from sentinel_ml import local_capacity
from sentinel_ml.compute import SERVE_CPUS_FLAG
from sentinel_ml.errors import ConfigError, JobFailed, WaitTimeout
from sentinel_ml.paths import absolute, sentinel_home, storage_root
from sentinel_ml.serving import auth
from sentinel_ml.serving.config import (
    HAPROXY_RETRIES,
    LOOPBACK_HOSTS,
    NAMES,
    RECOMMEND_PATH,
    ROUTE_PREFIX,
    Autoscaling,
    ServeArgs,
    ServeRequest,
    grpc_options,
    serve_args,
)
from sentinel_ml.store.index import resolve_checkpoint

STATE_FILE = "serving.json"
HEALTH_TIMEOUT_S = 180.0  # the default bound on the wait until the API passes its health check

Progress = Callable[[str], None]


def start(request: ServeRequest, on_progress: Progress | None = None,
          cluster_env: dict[str, str] | None = None) -> dict[str, Any]:
    from sentinel_ml.serving.recommender import load_checked

    notify = on_progress or (lambda message: None)
    request.validate()
    request = request.with_local_defaults(timeout_s=HEALTH_TIMEOUT_S)
    cluster = local_ray.find()
    if cluster is None and (request.app_args.get("num_gpus") or request.app_args.get("num_cpus")):
        # the cluster it would start: this machine's
        local_ray.prepare_auth()  # before Ray is imported to count them (it reads its auth settings once)
        _check_replica_gpus(request.app_args, local_capacity.machine_gpus)
        _check_replica_cpus(request.app_args)
    uri, run_id = resolve_checkpoint(request.checkpoint, storage_root(request.storage))
    notify(f"checkpoint: {uri}")
    load_checked(uri)  # a file that is no checkpoint fails here (exit 2), not in a replica minutes later
    if cluster is None:
        local_ray.prepare_auth()  # Ray reads its auth settings once, when first loaded
    serving = _read_state() if cluster else None
    if request.canary_percent is not None:
        args = _canary_args(serving, uri, run_id, request)
        # A canary joins the running application: its address and ports.
        request = replace(request, host=serving["host"], port=serving["port"], grpc_port=serving["grpc_port"])
    else:
        args = _app_args(request, uri, run_id)
    if request.canary_percent is None and serving and (serving.get("args") or {}).get("canary_checkpoint"):
        raise ConfigError("a canary is running: serving another checkpoint now would end it unjudged",
                          hint="end it first with `sentinel serve promote` or `sentinel serve rollback`")
    token = auth.read_token(args["token_file"]) if args["auth"] == "token" else None
    if serving and serving["port"] != request.port:
        raise ConfigError(f"the local cluster already serves on port {serving['port']}",
                          hint=f"run `sentinel serve stop` first, or pass --port {serving['port']}")
    if serving and serving.get("grpc_port", request.grpc_port) != request.grpc_port:
        raise ConfigError(f"the local cluster already serves gRPC on port {serving['grpc_port']}",
                          hint=f"run `sentinel serve stop` first, or pass --grpc-port {serving['grpc_port']}")
    if not serving:
        for flag, port in (("--port", request.port), ("--grpc-port", request.grpc_port)):
            if _port_taken(request.host, port):
                raise ConfigError(f"port {port} on {request.host} is already in use",
                                  hint=f"pass {flag} with a free port")
    if cluster is None:
        local_ray.forget()
        cluster = local_ray.start({**serve_env(), **(cluster_env or {})}, on_progress=notify)
        local_ray.connect(cluster)
    else:
        local_ray.connect(cluster)
        _check_replica_gpus(request.app_args, _cluster_gpus)
    deadline = time.monotonic() + request.timeout_s
    uri, run_id, candidate = args["checkpoint"], args["run_id"], args.get("canary_checkpoint")
    if serving and serving.get("args") == args and _model_info(request.url, token).get("checkpoint_uri") == uri:
        notify("already serving this checkpoint with these settings")
        replicas = _wait_until_serving(request, uri, deadline, notify, token, candidate)
        return {**serving, **_model_fields(_model_info(request.url, token)), "status": "RUNNING",
                "replicas": replicas}
    return _redeploy(request, args, cluster.address, deadline, notify, token)


def _redeploy(request: ServeRequest, args: dict[str, Any], ray_address: str, deadline: float, notify: Progress,
              token: str | None) -> dict[str, Any]:
    """Write the state, deploy ``args`` in place (Serve replaces the replicas one by one) and wait until
    the new replicas answer: the one path of a new checkpoint, a canary's start and its end."""
    uri, candidate = args["checkpoint"], args.get("canary_checkpoint")
    state = {"application": NAMES.application, "url": request.url + RECOMMEND_PATH, "http": request.url,
             "auth": args["auth"], "token_file": args["token_file"],
             "grpc": request.grpc_address, "host": request.host, "port": request.port,
             "grpc_port": request.grpc_port, "checkpoint": uri, "run_id": args["run_id"], "ray_address": ray_address,
             "deployed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "args": args,
             "canary": ServeArgs.model_validate(args).canary}
    (local_ray.cluster_dir() / STATE_FILE).write_text(json.dumps(state, indent=2))  # the port is taken now
    _deploy(request, args, notify)
    replicas = _wait_until_serving(request, uri, deadline, notify, token, candidate)
    return {**state, **_model_fields(_model_info(request.url, token)), "status": "RUNNING", "replicas": replicas}


def _canary_args(serving: dict[str, Any] | None, uri: str, run_id: str | None,
                 request: ServeRequest) -> dict[str, Any]:
    """The running application's args with ``uri`` as the canary's candidate. The incumbent and every
    other setting stay as they are; only the canary's fields change (and the fault knob of tests)."""
    if not serving or not serving.get("args"):
        raise ConfigError("nothing is serving: a canary needs an incumbent to serve beside",
                          hint="serve the incumbent first: `sentinel serve --checkpoint <run>`")
    current = ServeArgs.model_validate(serving["args"])
    fault = float(request.app_args.get("canary_fault_rate") or 0.0)
    return current.with_canary(uri, run_id, request.canary_percent, fault).model_dump()


def end_canary(decision: str, timeout_s: float | None = None, on_progress: Progress | None = None,
               reason: str | None = None) -> dict[str, Any]:
    """End the running canary in place: ``promote`` serves the candidate alone, ``rollback`` the
    incumbent alone (``ServeArgs.ended``); returns once the new replicas answer."""
    notify = on_progress or (lambda message: None)
    cluster, state = local_ray.find(), _read_state()
    args = ServeArgs.model_validate(state["args"]) if cluster and state and state.get("args") else None
    if args is None or args.canary is None:
        raise ConfigError("no canary is running on the local cluster",
                          hint="start one with `sentinel serve --checkpoint <candidate> --canary 10`")
    local_ray.connect(cluster)
    request = ServeRequest(checkpoint=args.checkpoint, host=state["host"], port=state["port"],
                           grpc_port=state["grpc_port"], timeout_s=timeout_s or HEALTH_TIMEOUT_S)
    ended = args.ended(decision).model_dump()
    kept = args.canary_checkpoint if decision == "promote" else args.checkpoint
    notify(f"{decision}: serving {kept} alone" + (f" ({reason})" if reason else ""))
    report = _redeploy(request, ended, cluster.address, time.monotonic() + request.timeout_s, notify,
                       _state_token(state))
    return {**report, "decision": decision, "ended_canary": args.canary, "reason": reason}


def canary_versions() -> tuple[str, str]:
    """(candidate, incumbent) versions of the running canary, as the replicas report them."""
    state = _read_state()
    info = _model_info(state["url"], _state_token(state)) if state and local_ray.find() else {}
    if not info.get("canary"):
        raise ConfigError("no canary is running on the local cluster",
                          hint="start one with `sentinel serve --checkpoint <candidate> --canary 10`")
    return str(info["canary"]["model_version"]), str(info["model_version"])


def canary_metrics() -> dict[str, Any]:
    """The per-version counters the replicas export (``sentinel_ml.serving.canary``), read from every
    node's Ray metrics agent, as Prometheus scrapes them: version → ``VersionStats``."""
    import httpx
    import ray

    from sentinel_ml.serving import canary

    cluster = local_ray.find()
    if cluster is None:
        return {}
    local_ray.connect(cluster)
    pages = []
    for node in ray.nodes():
        port = node.get("MetricsExportPort")
        if node.get("Alive") and port:
            try:
                pages.append(httpx.get(f"http://{node['NodeManagerAddress']}:{port}/metrics", timeout=5).text)
            except httpx.HTTPError:
                continue
    return canary.parse_metrics("\n".join(pages))


def default_auth(host: str) -> str:
    """``none`` on loopback (only this machine's users reach it), ``token`` on any other address."""
    return "none" if host in LOOPBACK_HOSTS else "token"


def auth_settings(request: ServeRequest) -> dict[str, Any]:
    """``ServeArgs.auth`` and ``token_file`` for ``request`` (local defaults filled in): the token
    file is checked (owner-only, one token) or, by default, made once."""
    mode = request.auth or default_auth(request.host)
    if mode == "none":
        return {"auth": "none", "token_file": None}
    if request.token_file:
        path = absolute(request.token_file)
        auth.check_private(path)
        auth.read_token(path)
    else:
        path = str(auth.ensure_token_file(sentinel_home() / auth.TOKEN_FILE_NAME))
    return {"auth": "token", "token_file": path}


def token_for(host: str | None, port: int | None) -> str | None:
    """The token of the local application when ``host:port`` is its HTTP or gRPC port on loopback
    and it requires one; None otherwise (the token is never sent anywhere else unasked)."""
    state = _read_state()
    if not state or state.get("auth") != "token" or host not in LOOPBACK_HOSTS:
        return None
    if port not in (state.get("port"), state.get("grpc_port")):
        return None
    return _state_token(state)




def serve_env() -> dict[str, str]:
    """Ray Serve's throughput mode for the local cluster, read by Ray's processes when they start.

    HAProxy (bundled with ray[serve]) takes the HTTP port and forwards straight to each replica's own
    HTTP server ("direct ingress"), so no Python proxy sits in the request path; the measurements
    behind this choice are in docs/serving.md. Its files live in a short directory of their own and its
    stats/metrics listeners and Serve's fallback proxy get free ports, so two clusters on one machine
    do not collide.
    """
    haproxy = _haproxy_dir()
    stats_port, metrics_port, fallback_http, fallback_grpc = local_ray.free_ports(4)
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_NBTHREAD": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(haproxy / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(fallback_http),  # Serve's own proxy, kept as a fallback
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(fallback_grpc),
        # Metrics (the canary's per-version counts) reach the metrics agent every second, not every
        # 10 s: an automatic canary watch sees a breach within about two seconds of it.
        "RAY_metrics_report_interval_ms": "1000",
        # No external load balancer to deregister from: stopping a replica need not wait 30 s.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        # A lost replica loses no request: HAProxy replays a request on another replica when the
        # connection to its replica fails (Ray's default), and also when that replica dies with the
        # request inside (closed without an answer, or with half a one). Safe because every call of
        # this API is an idempotent read; the environment may override (e.g. back to "conn-failure").
        **{name: os.environ.get(name, value) for name, value in HAPROXY_RETRIES.items()},
    }


def _haproxy_dir() -> Path:
    return haproxy_dir(local_ray.cluster_dir())


def haproxy_dir(cluster_dir: Path) -> Path:
    """HAProxy puts its admin socket at <dir>/<56-char node id>/admin.sock and allows 97 bytes: a
    short directory under /tmp (not $TMPDIR, which may be long), one per local cluster directory
    ($SENTINEL_HOME/ray)."""
    digest = hashlib.sha1(str(cluster_dir).encode()).hexdigest()[:8]
    return Path("/tmp") / f"sentinel-hap-{digest}"


def local_max_replicas() -> int:
    """More replicas than cores only adds context switches and start-up churn on one machine."""
    return max(1, min(Autoscaling().max_replicas, os.cpu_count() or 1))


def describe() -> dict[str, Any] | None:
    """What is serving on the local cluster, or None when nothing runs (no Ray import then)."""
    cluster = local_ray.find()
    state = _read_state()
    if cluster is None or state is None:
        return None
    from ray import serve

    local_ray.connect(cluster)
    app = serve.status().applications.get(NAMES.application)
    if app is None:
        return {**state, "status": "NOT DEPLOYED", "replicas": {}}
    deployment = app.deployments.get(NAMES.deployment)
    model = _model_info(state["url"], _state_token(state))
    canary = state.get("canary") or ServeArgs.model_validate(state["args"]).canary if state.get("args") else None
    if canary:  # the two versions' counts since their replicas started (older versions' are left out)
        versions = {str(model.get("model_version")), str((model.get("canary") or {}).get("model_version"))}
        canary = {**canary, "versions": [v.summary() for k, v in canary_metrics().items() if k in versions]}
    return {**state, **_model_fields(model), "canary": canary,
            "status": app.status.value if hasattr(app.status, "value") else str(app.status),
            "message": app.message or None,
            "replicas": dict(deployment.replica_states) if deployment else {},
            "checkpoint": model.get("checkpoint_uri", state["checkpoint"]),
            "run_id": model.get("run_id", state["run_id"])}


def current() -> dict[str, Any] | None:
    """The checkpoint serving now and the settings it was served with, or None when nothing serves.
    Asks the application itself (``/recommend/model``) over HTTP: no Ray import, no Ray connection."""
    state = _read_state()
    if state is None or local_ray.find() is None:
        return None
    model = _model_info(state["http"], _state_token(state))
    if not model.get("checkpoint_uri"):
        return None  # the cluster runs but the application does not answer: nothing to compare with
    scaling = (state.get("args") or {}).get("autoscaling") or {}
    request = {"host": state["host"], "port": state["port"], "grpc_port": state.get("grpc_port"),
               "auth": state.get("auth"), "token_file": state.get("token_file"),
               "app_args": {k: scaling[k] for k in ("min_replicas", "max_replicas") if scaling.get(k) is not None}}
    return {"checkpoint": model["checkpoint_uri"], "run_id": model.get("run_id", state.get("run_id")),
            "where": f"the local cluster at {state['http']}", "request": request}


def stop(timeout_s: float = 60.0) -> dict[str, Any]:
    cluster = local_ray.find()
    state_path = local_ray.cluster_dir() / STATE_FILE
    if cluster is None:
        local_ray.forget()
        state_path.unlink(missing_ok=True)
        return {"stopped": False, "message": "nothing is serving on the local cluster"}
    import ray
    from ray import serve

    local_ray.connect(cluster)
    drained = _bounded(serve.shutdown, timeout_s / 2)  # lets replicas finish in-flight requests
    ray.shutdown()
    local_ray.stop(cluster, grace_s=timeout_s / 2)
    state_path.unlink(missing_ok=True)
    shutil.rmtree(_haproxy_dir(), ignore_errors=True)
    message = f"stopped {NAMES.application} and the local Ray cluster at {cluster.address}"
    return {"stopped": True, "message": message if drained else message + " (Serve did not drain in time)"}


def _app_args(request: ServeRequest, uri: str, run_id: str | None) -> dict[str, Any]:
    """``ServeArgs`` as the Kubernetes target builds them (``serve_args``), with the local ceiling."""
    floor = int(request.app_args.get("min_replicas") or 1)
    settings = {"max_replicas": max(local_max_replicas(), floor), **request.app_args, **auth_settings(request)}
    return serve_args(uri, run_id, settings).model_dump()


def _check_replica_gpus(app_args: dict[str, Any], have: Callable[[], float]) -> None:
    """``serve --gpus``: the replicas at the floor (at least one) must fit the Ray cluster's GPUs
    (``have``, asked only when GPUs are), which nothing adds to on this machine; exit 2 before anything
    is deployed."""
    gpus, floor = app_args.get("num_gpus") or 0, max(1, app_args.get("min_replicas") or 1)
    if not gpus:
        return
    local_capacity.check_gpus(floor * gpus, f"--gpus {gpus:g} per replica x {floor} replica{'s' if floor > 1 else ''}",
               hint="lower --gpus (a fraction shares a GPU) or --min-replicas, or serve where the GPUs are "
                    "(--target k8s)", have=float(have()))


def _check_replica_cpus(app_args: dict[str, Any]) -> None:
    """``serve --cpus``: the replicas at the floor (at least one) must fit the Ray this would start (this
    machine's CPUs); exit 2 before anything is deployed."""
    cpus, floor = app_args.get("num_cpus"), max(1, app_args.get("min_replicas") or 1)
    if not cpus:
        return
    local_capacity.check_cpus(floor * cpus, f"{SERVE_CPUS_FLAG} {cpus:g} per replica x {floor} "
                              f"replica{'s' if floor > 1 else ''}",
                              hint=f"lower {SERVE_CPUS_FLAG} (a fraction is fine) or --min-replicas, or serve on a "
                                   "bigger cluster (--target k8s)")


def _cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0))


def _model_fields(info: dict[str, Any]) -> dict[str, Any]:
    """The model's name and version as /recommend/model reports them (absent while it does not answer)."""
    return {k: info[k] for k in ("model_name", "model_version") if k in info}


def _deploy(request: ServeRequest, args: dict[str, Any], notify: Progress) -> None:
    """Start Serve's proxies on host:port (HTTP) and grpc_port (gRPC), then (re)deploy the application
    without waiting on it."""
    from ray import serve

    from sentinel_ml.logs import follow_root_level
    from sentinel_ml.serving.app import app_builder

    follow_root_level()  # Serve sets its driver logger to INFO on import
    serve.start(http_options={"host": request.host, "port": request.port},
                grpc_options=grpc_options(request.grpc_port), proxy_location="HeadOnly")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            serve.run(app_builder(args), name=NAMES.application, route_prefix=ROUTE_PREFIX)
        except BaseException as e:  # noqa: BLE001 - reported by the waiting loop
            errors.append(e)

    notify(f"deploying {NAMES.deployment} at {request.url} (HTTP: {RECOMMEND_PATH}, /v1, /v2) and "
           f"{request.grpc_address} (gRPC)")
    thread = threading.Thread(target=run, name="serve-run", daemon=True)
    thread.start()
    thread.join(timeout=5.0)  # serve.run returns quickly when the app is already healthy
    if errors:
        raise JobFailed(f"deploying {NAMES.application} failed: {_last_line(errors[0])}")


def _wait_until_serving(request: ServeRequest, uri: str, deadline: float, notify: Progress,
                        token: str | None, canary_uri: str | None = None) -> dict[str, int]:
    from ray import serve

    cluster = local_ray.find()
    logs = f"{cluster.temp_dir}/session_latest/logs/serve" if cluster else "the Ray temp dir"
    base = request.url
    last = None
    while True:
        app = serve.status().applications.get(NAMES.application)
        status = str(getattr(app.status, "value", app.status)) if app else "NOT DEPLOYED"
        deployment = app.deployments.get(NAMES.deployment) if app else None
        replicas = dict(deployment.replica_states) if deployment else {}
        if status == "DEPLOY_FAILED":
            cause = deployment.message if deployment and deployment.message else app.message
            raise JobFailed(f"{NAMES.deployment} failed to deploy: {_last_line(cause)}",
                            hint=f"check the checkpoint and the data; Serve's logs: {logs}; "
                                 "`sentinel serve stop` tears the cluster down")
        if status == "RUNNING" and api_client.is_healthy(base):
            info = _model_info(base, token)
            if info.get("checkpoint_uri") == uri and (info.get("canary") or {}).get("checkpoint_uri") == canary_uri:
                return replicas
            status = "RUNNING (the previous settings are still answering)"
        why = f"application {status}, replicas {replicas or 'none yet'}"
        if app and app.message:
            why += f": {_last_line(app.message)}"
        if why != last:
            notify(f"waiting: {why}")
            last = why
        if time.monotonic() > deadline:
            raise WaitTimeout(f"{NAMES.deployment} did not pass its health check within "
                              f"{request.timeout_s:.0f}s ({why})",
                              hint="raise --timeout, or see `sentinel status`; `sentinel serve stop` "
                                   "tears it down")
        time.sleep(0.5)


def _model_info(base_url: str, token: str | None) -> dict[str, Any]:
    try:
        return api_client.call("GET", api_client.endpoint(base_url, "/model"), timeout_s=5, token=token)
    except (ConfigError, JobFailed):
        return {}


def _state_token(state: dict[str, Any]) -> str | None:
    """The running application's token (None without auth, or when its file is gone)."""
    if state.get("auth") != "token":
        return None
    try:
        return auth.read_token(state["token_file"])
    except ConfigError:
        return None


def _read_state() -> dict[str, Any] | None:
    try:
        return json.loads((local_ray.cluster_dir() / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _port_taken(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _bounded(fn: Callable[[], Any], timeout_s: float) -> bool:
    """Run ``fn`` for at most ``timeout_s``; True when it finished in time (errors count as done)."""
    def run() -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - the cluster is stopped next either way
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return not thread.is_alive()


def _last_line(text: Any) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else str(text)
