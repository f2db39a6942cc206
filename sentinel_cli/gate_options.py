"""The quality gate's options, shared by ``sentinel promote`` and ``sentinel serve --gate``."""

from __future__ import annotations

from typing import Annotated

import typer

from sentinel_cli import options
from sentinel_cli.gate import DEFAULT_METRIC, GATE_METRICS

__all__ = ["DEFAULT_METRIC", "GateMetric", "MetricOpt", "ToleranceOpt"]

GateMetric = options.choice("GateMetric", GATE_METRICS)

MetricOpt = Annotated[GateMetric, typer.Option(  # type: ignore[valid-type]
    "--metric", help="The primary metric of the gate, on the test split: rmse (lower is better) or ndcg@10 "
    "(higher is better).")]
ToleranceOpt = Annotated[float, typer.Option(
    "--tolerance", min=0.0, help="How much worse than the serving model the candidate may be, in the metric's "
    "units (e.g. 0.005 RMSE).")]
