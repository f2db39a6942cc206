"""``sentinel promote CANDIDATE``: serve a checkpoint only if the quality gate passes it against what
serves now (``sentinel_cli.gate``); ``serve --checkpoint X --gate`` applies the same rule."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from sentinel_cli import backends, options
from sentinel_cli.backends.results import PromoteReport, ServeReport, ServingModel
from sentinel_cli.gate import DEFAULT_METRIC, METRICS, Evaluation, GateDecision, GateRule, decide
from sentinel_cli.gate_options import GateMetric, MetricOpt, ToleranceOpt
from sentinel_cli.k8s.request import KubeRequest
from sentinel_cli.output import OutputFormat, emit, key_value_table
from sentinel_ml.errors import GateRefused, SentinelError


@options.kube_options("profile", "namespace", "name", "wait")
def promote(
    candidate: Annotated[str, typer.Argument(help="The checkpoint to serve: latest, best, a run id (or a unique "
                                             "prefix of one), or a checkpoint URI.")],
    metric: MetricOpt = GateMetric(DEFAULT_METRIC),  # type: ignore[valid-type]
    tolerance: ToleranceOpt = 0.0,
    force: Annotated[bool, typer.Option("--force", help="Serve the candidate even if the gate refuses it "
                                        "(the result says it was forced, and why).")] = False,
    storage: options.StorageOpt = None,
    target: options.TargetOpt = None,
    output: options.OutputOpt = OutputFormat.table,
    deploy: KubeRequest = KubeRequest(),
) -> None:
    """Serve CANDIDATE if it is no worse than the model serving now (same dataset and split; exit 1 if
    not); with nothing serving, serve it."""
    from sentinel_ml.serving.config import ServeRequest

    rule = GateRule(metric=GateMetric(metric).value, tolerance=tolerance, force=force)
    gated(ServeRequest(checkpoint=candidate, storage=storage), rule, target, deploy, output)


def gated(request, rule: GateRule, target: str | None, deploy: KubeRequest, output: OutputFormat) -> None:
    """The gate, then (if it passes) the same in-place replace as ``serve --checkpoint``: one path for
    ``promote`` and ``serve --gate``. A refusal prints the result and exits 1 (``GateRefused``)."""
    from dataclasses import replace

    chosen = backends.select(target, deploy.overrides.profile)
    now = chosen.serving_model(request.storage, deploy)
    incumbent = now if now.checkpoint else None
    candidate = evaluation(request.checkpoint, now.storage)
    current = evaluation(now.checkpoint, now.storage, now.run_id) if incumbent else None
    decision = decide(candidate, current, rule)
    report = _report(decision, candidate, current, incumbent)
    if not decision.passes:
        emit(report, output, summary_table)
        raise GateRefused(f"the gate refused {candidate.run_id or candidate.checkpoint}: {decision.reason}",
                          hint="train a better model, pass --tolerance, or --force to serve it anyway")
    _say(decision, candidate, incumbent)
    if incumbent and incumbent.request:  # keep what serves now: its ports, host, auth and replicas
        request = replace(request, **{k: v for k, v in incumbent.request.items()
                                      if getattr(request, k, None) in (None, {})})
    served = chosen.serve(replace(request, checkpoint=candidate.checkpoint), deploy)
    emit(replace(report, promoted=True, serve=served), output, summary_table)


def evaluation(reference: str, root: str | None, run_id: str | None = None) -> Evaluation:
    """The gate's view of a checkpoint: its run's index record (dataset, split, seed, test metrics), or
    for a checkpoint with no record, what the file itself carries (no seed)."""
    from sentinel_ml.store.index import resolve_checkpoint

    # Not must_exist: on k8s the file is in S3 and the target checks it where it serves (the same as serve).
    uri, resolved_id = resolve_checkpoint(reference, root, must_exist=False)
    run_id = run_id or resolved_id
    record = _record(uri, run_id, root)
    if record is not None:
        data = (record.extra or {}).get("data") or {}
        config = record.config or {}
        return Evaluation(checkpoint=uri, run_id=run_id, dataset=data.get("dataset", config.get("dataset")),
                          split=data.get("split", config.get("split")), seed=data.get("seed", config.get("seed")),
                          metrics=dict(record.metrics))
    return _from_checkpoint(uri, run_id)


def _record(uri: str, run_id: str | None, root: str | None):
    """The index record of the run that wrote ``uri``: in ``root``, else in the store the URI lies in
    (``<store>/runs/<run id>/best.pt``: a checkpoint served by its URI from another store)."""
    from sentinel_ml.store.index import RUNS_DIR, read_records

    if run_id is None:
        return None
    stores = [root] if root else []
    marker = f"/{RUNS_DIR}/{run_id}/"
    if marker in uri:
        stores.append(uri.rsplit(marker, 1)[0])
    for store in dict.fromkeys(stores):
        try:
            records = read_records(store)
        except SentinelError:
            continue
        found = next((r for r in records if r.run_id == run_id and uri in r.checkpoints.values()), None)
        if found is not None:
            return found
    return None


def _from_checkpoint(uri: str, run_id: str | None) -> Evaluation:
    from sentinel_ml.store.checkpoint import load_checkpoint

    saved = load_checkpoint(uri)
    data = saved.get("data") if isinstance(saved.get("data"), dict) else {}
    return Evaluation(checkpoint=uri, run_id=run_id, dataset=data.get("dataset"), split=data.get("split"), seed=None,
                      metrics={k: v for k, v in (saved.get("metrics") or {}).items() if isinstance(v, int | float)})


def _report(decision: GateDecision, candidate: Evaluation, current: Evaluation | None,
            incumbent: ServingModel | None) -> PromoteReport:
    return PromoteReport(outcome=decision.outcome, reason=decision.reason, metric=decision.metric,
                         tolerance=decision.tolerance, higher_is_better=decision.higher_is_better,
                         candidate=_side(candidate, decision.candidate),
                         serving=_side(current, decision.serving) if current else None,
                         where=incumbent.where if incumbent else None)


def _side(model: Evaluation, value: float | None) -> dict[str, Any]:
    return {**asdict(model), "value": value}


def _say(decision: GateDecision, candidate: Evaluation, incumbent: ServingModel | None) -> None:
    from sentinel_cli.console import err

    what = candidate.run_id or candidate.checkpoint
    if incumbent is None:
        err().print(f"gate: nothing is serving; serving {what}", highlight=False, markup=False)
    elif decision.outcome == "forced":
        err().print(f"gate: FORCED (--force): {decision.reason}", highlight=False, markup=False)
    else:
        err().print(f"gate: passed: {decision.reason}; replacing {incumbent.checkpoint}", highlight=False,
                    markup=False)


def summary_table(report: PromoteReport):
    """The decision, and both numbers side by side."""
    from rich.console import Group

    from sentinel_cli.commands.serve import summary_table as serve_table
    from sentinel_cli.output import records_table

    label = METRICS[report.metric][2]
    rows = [{"model": "candidate", **report.candidate}]
    if report.serving is not None:
        rows.append({"model": "serving", **report.serving})
    table = records_table(rows, [("", "model"), (label, "value"), ("run id", "run_id"), ("dataset", "dataset"),
                                 ("split", "split"), ("seed", "seed"), ("checkpoint", "checkpoint")],
                          title=f"gate on {label} ({'higher' if report.higher_is_better else 'lower'} is better, "
                                f"tolerance {report.tolerance:g})")
    verdict = key_value_table([("gate", report.outcome), ("why", report.reason),
                               *([("serving on", report.where)] if report.where else []),
                               ("promoted", "yes" if report.promoted else "no")])
    parts: list[Any] = [table, verdict]
    if isinstance(report.serve, ServeReport):
        parts += ["", serve_table(report.serve)]
    return Group(*parts)
