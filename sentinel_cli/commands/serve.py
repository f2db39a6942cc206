"""``sentinel serve``: the MovieRecommender API from a checkpoint; ``sentinel serve stop`` ends it;
``serve --canary P``, ``serve promote [--auto]`` and ``serve rollback`` run a canary."""

from __future__ import annotations

from typing import Annotated

import typer

from sentinel_cli import backends, options
from sentinel_cli.backends.results import CanaryReport, ServeReport, shown
from sentinel_cli.gate_options import DEFAULT_METRIC, GateMetric, MetricOpt, ToleranceOpt
from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.output import OutputFormat, emit, key_value_table
from sentinel_ml.serving.auth import AUTH_MODES

AuthMode = options.choice("AuthMode", AUTH_MODES)

app = typer.Typer(help="Serve the recommender with Ray Serve; `sentinel serve stop` tears it down.")

SUMMARY_ROWS = [
    ("application", "application"), ("status", "status"), ("url", "url"), ("HTTP", "http"),
    ("gRPC", "grpc"), ("model", "model_name"), ("model version", "model_version"),
    ("checkpoint", "checkpoint"), ("run id", "run_id"), ("replicas", "replicas"), ("auth", "auth"),
    ("token file", "token_file"), ("Ray cluster", "ray_address"),
    ("RayService", "rayservice"), ("namespace", "namespace"), ("endpoint", "endpoint"),
    ("gRPC endpoint", "grpc_endpoint"), ("state", "state"), ("canary", "canary"),
]


@app.callback(invoke_without_command=True)
@options.kube_options("profile", "namespace", "sets", "name", "wait", "dry_run", "preflight", "insecure_ray")
def serve(
    ctx: typer.Context,
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="latest, best, a run id (or a unique "
                                            "prefix of one), or a checkpoint URI (path or s3://).")] = "latest",
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="HTTP port of the API (/recommend, "
                                             "TF-Serving /v1, OIP /v2). Default: 8000 (k8s: the profile's "
                                             "serve.port).", show_default=False)] = None,
    grpc_port: Annotated[int | None, typer.Option(min=1, max=65535, help="gRPC port of the Open Inference "
                                                  "Protocol service. Default: 9000 (k8s: the profile's "
                                                  "serve.grpc_port).", show_default=False)] = None,
    host: Annotated[str | None, typer.Option(help="Local target: the address the API listens on. "
                                             "Default: 127.0.0.1.", show_default=False)] = None,
    min_replicas: Annotated[int | None, typer.Option(min=0, help="Autoscaling floor. Default: 1.",
                                                     show_default=False)] = None,
    max_replicas: Annotated[int | None, typer.Option(min=1, help="Autoscaling ceiling. Default: 5; on the "
                                                     "local target at most one per CPU core.",
                                                     show_default=False)] = None,
    gpus: Annotated[float | None, typer.Option(
        min=0, help="GPUs per replica (a fraction shares one GPU: 0.25 fits four replicas on it). Locally they "
                    "must fit the Ray cluster's GPUs; on k8s the serve worker pods ask for nvidia.com/gpu. "
                    "Default: 0 (k8s: the profile's serve.gpus).", show_default=False,
        rich_help_panel=options.COMPUTE_PANEL)] = None,
    cpus: Annotated[float | None, typer.Option(
        "--cpus", help="Ray's CPUs per replica, fractions allowed. On k8s a serve worker pod requests at least "
                       "this. Default: 0.5.", show_default=False, rich_help_panel=options.COMPUTE_PANEL)] = None,
    storage: options.StorageOpt = None,
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    timeout: Annotated[float | None, typer.Option("--timeout", min=1, help="Give up (exit 3) when the API "
                                                  "is not healthy after this many seconds. Default: 180 "
                                                  "(k8s: the profile's wait_timeout_s).",
                                                  show_default=False)] = None,
    auth: Annotated[AuthMode | None, typer.Option(  # type: ignore[valid-type]
        "--auth", help="token: every inference and metadata route needs 'Authorization: Bearer <token>' "
        "(gRPC: 'authorization' metadata); health and readiness stay open. Default: none on loopback, "
        "token when --host opens the API to a network, and token on Kubernetes (a Secret).", show_default=False)] = None,
    token_file: options.TokenFileOpt = None,
    gate: Annotated[bool, typer.Option("--gate", help="Serve the checkpoint only if it is no worse than the "
                                       "model serving now (the rule of `sentinel promote`; exit 1 if not).")] = False,
    metric: MetricOpt = GateMetric(DEFAULT_METRIC),  # type: ignore[valid-type]
    tolerance: ToleranceOpt = 0.0,
    # -- the canary (docs/serving.md "Canary") --
    canary: Annotated[float | None, typer.Option(
        "--canary", min=0.01, max=99.99, help="Serve --checkpoint as a canary to this percent of users (by a "
        "stable hash of the user id) beside the model serving now; end it with `serve promote` or `serve "
        "rollback`.", show_default=False)] = None,
    canary_fault_rate: Annotated[float | None, typer.Option(
        "--dev-canary-fault-rate", min=0.0, max=1.0, hidden=True,
        help="Development and tests only: the share of the candidate's requests that fail on purpose.")] = None,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """Serve MovieRecommender from a checkpoint (HTTP: /recommend, TF-Serving /v1, OIP /v2; gRPC: OIP);
    returns once it passes its health check."""
    if ctx.invoked_subcommand:
        return  # `sentinel serve stop`
    from sentinel_ml.compute import SERVE_CPUS_FLAG, check_cpus
    from sentinel_ml.serving.config import ServeRequest

    check_cpus(cpus, SERVE_CPUS_FLAG)
    scaling = {k: v for k, v in (("min_replicas", min_replicas), ("max_replicas", max_replicas),
                                 ("num_gpus", gpus), ("num_cpus", cpus)) if v is not None}
    request = ServeRequest(checkpoint=checkpoint, storage=storage, host=host, port=port,
                           grpc_port=grpc_port, timeout_s=timeout, app_args=scaling,
                           auth=AuthMode(auth).value if auth else ("token" if token_file else None),
                           token_file=token_file)
    request = _with_canary(request, canary, canary_fault_rate)
    if gate:
        from sentinel_cli.commands.promote import gated
        from sentinel_cli.gate import GateRule

        return gated(request, GateRule(metric=GateMetric(metric).value, tolerance=tolerance), target, deploy,
                     output)
    report = backends.select(target, deploy.overrides.profile).serve(request, deploy)
    emit(report, output, summary_table)


def _with_canary(request, percent: float | None, fault_rate: float | None):
    """``request`` as a canary of ``percent`` % (and the dev-only fault rate), or as it is."""
    from dataclasses import replace

    if fault_rate is not None and percent is None:
        raise typer.BadParameter("needs --canary", param_hint="--dev-canary-fault-rate")
    if percent is None:
        return request
    faults = {"canary_fault_rate": fault_rate} if fault_rate is not None else {}
    return replace(request, canary_percent=percent, app_args={**request.app_args, **faults})


@app.command("stop")
def stop(
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """Remove the application and stop the local Ray cluster `sentinel serve` started."""
    emit(backends.select(target).serve_stop(KubeRequest()), output, lambda r: r.message)


# `serve promote` and `serve rollback`: how long the replicas of the one model left may take.
EndCanaryTimeoutOpt = Annotated[float | None, typer.Option(
    "--timeout", min=1, help="Give up (exit 3) when the new replicas do not answer within this many seconds.",
    show_default=False)]


@app.command("promote")
@options.kube_options("profile", "namespace", "name", "wait")
def promote(
    auto: Annotated[bool, typer.Option("--auto", help="Watch the canary's live per-version metrics for "
                                       "--window first: promote if the candidate holds, roll back at the "
                                       "first breach (exit 1, naming it).")] = False,
    window: Annotated[str, typer.Option(help="--auto: how long to watch (90s, 10m, 1h).")] = "10m",
    max_error_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="--auto: the candidate's highest "
                                                  "error rate (a fraction: 0.01 is 1%).")] = 0.01,
    max_p99_ratio: Annotated[float, typer.Option(min=1.0, help="--auto: the candidate's highest p99 latency "
                                                 "as a multiple of the incumbent's.")] = 1.5,
    min_requests: Annotated[int, typer.Option(min=1, help="--auto: a version is judged from this many "
                                              "requests in the window.")] = 20,
    interval: Annotated[str, typer.Option(help="--auto: how often to read the metrics.")] = "5s",
    timeout: EndCanaryTimeoutOpt = None,
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """End the canary: the candidate becomes the only model (--auto: if it holds for --window)."""
    from sentinel_cli.canary_watch import WatchRequest, parse_duration
    from sentinel_ml.serving.canary import Thresholds

    watch = None
    if auto:
        try:
            window_s, interval_s = parse_duration(window), parse_duration(interval)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
        watch = WatchRequest(window_s, Thresholds(max_error_rate, max_p99_ratio, min_requests), interval_s)
    report = backends.select(target, deploy.overrides.profile).serve_canary("promote", watch, timeout, deploy)
    emit(report, output, canary_table)
    if report.decision == "rollback":
        raise typer.Exit(1)


@app.command("rollback")
@options.kube_options("profile", "namespace", "name", "wait")
def rollback(
    timeout: EndCanaryTimeoutOpt = None,
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """End the canary: the incumbent becomes the only model again."""
    emit(backends.select(target, deploy.overrides.profile).serve_canary("rollback", None, timeout, deploy), output,
         canary_table)


def canary_table(report: CanaryReport):
    rows = [("decision", report.decision), ("reason", shown(report.reason)), ("serving", report.checkpoint),
            ("model version", report.model_version), ("run id", report.run_id),
            ("watched", f"{report.watched_s:.0f}s" if shown(report.watched_s) is not None else None),
            ("breach to rollback", f"{report.breach_to_rollback_s:.1f}s"
             if shown(report.breach_to_rollback_s) is not None else None)]
    for stats in shown(report.versions) or []:
        rows.append((f"version {stats['version']} ({stats['role']})", _version_line(stats)))
    return key_value_table([(label, value) for label, value in rows if value is not None])


def _version_line(stats: dict) -> str:
    p99 = f"{stats['p99_ms']:.1f} ms" if stats.get("p99_ms") is not None else "n/a"
    return f"{stats['requests']} requests, {stats['errors']} errors ({stats['error_rate']:.2%}), p99 {p99}"


def _canary(canary) -> str:
    if not isinstance(canary, dict):
        return str(canary)
    head = f"{canary['checkpoint']} (version {canary.get('model_version')}) for {canary['percent']:g}% of users"
    lines = [head] + [f"version {s['version']} ({s['role']}): {_version_line(s)}" for s in canary.get("versions") or []]
    return "\n".join(lines)


def summary_table(report: ServeReport):
    """The rows the target reported (the local application, or the RayService), in one order."""
    rows = [(label, shown(getattr(report, key))) for label, key in SUMMARY_ROWS]
    shaped = {"replicas": _replicas, "canary": _canary}
    return key_value_table([(label, shaped[key](v) if key in shaped else v) for (label, v), (_, key)
                            in zip(rows, SUMMARY_ROWS) if v is not None])


def _replicas(states) -> str:
    if isinstance(states, dict):
        return ", ".join(f"{n} {state.lower()}" for state, n in states.items()) or "none"
    return str(states)
