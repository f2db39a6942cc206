"""``sentinel serve``: the MovieRecommender API from a checkpoint; ``sentinel serve stop`` ends it."""

from __future__ import annotations

from typing import Annotated

import typer

from sentinel_cli import backends, options
from sentinel_cli.backends.results import ServeReport, shown
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
    ("gRPC endpoint", "grpc_endpoint"), ("state", "state"),
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
        "token when --host opens the API to a network.", show_default=False)] = None,
    token_file: options.TokenFileOpt = None,
    gate: Annotated[bool, typer.Option("--gate", help="Serve the checkpoint only if it is no worse than the "
                                       "model serving now (the rule of `sentinel promote`; exit 1 if not).")] = False,
    metric: MetricOpt = GateMetric(DEFAULT_METRIC),  # type: ignore[valid-type]
    tolerance: ToleranceOpt = 0.0,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """Serve MovieRecommender from a checkpoint (HTTP: /recommend, TF-Serving /v1, OIP /v2; gRPC: OIP);
    returns once it passes its health check."""
    if ctx.invoked_subcommand:
        return  # `sentinel serve stop`
    from sentinel_ml.serving.config import ServeRequest

    scaling = {k: v for k, v in (("min_replicas", min_replicas), ("max_replicas", max_replicas),
                                 ("num_gpus", gpus)) if v is not None}
    request = ServeRequest(checkpoint=checkpoint, storage=storage, host=host, port=port,
                           grpc_port=grpc_port, timeout_s=timeout, app_args=scaling,
                           auth=AuthMode(auth).value if auth else ("token" if token_file else None),
                           token_file=token_file)
    if gate:
        from sentinel_cli.commands.promote import gated
        from sentinel_cli.gate import GateRule

        return gated(request, GateRule(metric=GateMetric(metric).value, tolerance=tolerance), target, deploy,
                     output)
    report = backends.select(target, deploy.overrides.profile).serve(request, deploy)
    emit(report, output, summary_table)


@app.command("stop")
def stop(
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """Remove the application and stop the local Ray cluster `sentinel serve` started."""
    emit(backends.select(target).serve_stop(KubeRequest()), output, lambda r: r.message)


def summary_table(report: ServeReport):
    """The rows the target reported (the local application, or the RayService), in one order."""
    rows = [(label, shown(getattr(report, key))) for label, key in SUMMARY_ROWS]
    return key_value_table([(label, _replicas(v) if label == "replicas" else v) for label, v in rows
                            if v is not None])


def _replicas(states) -> str:
    if isinstance(states, dict):
        return ", ".join(f"{n} {state.lower()}" for state, n in states.items()) or "none"
    return str(states)
