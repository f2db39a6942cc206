"""The training RayJob's entry point: ``python -m sentinel_ml.train …`` runs one training run
(``sentinel_ml.training.run.train``) with progress as JSON lines on stderr and the summary as JSON on
stdout. ``job_argv`` writes the command line that ``build_parser`` reads back: the RayJob's
entrypoint, rendered by the CLI."""

from __future__ import annotations

import argparse
import sys

from sentinel_ml.compute import Compute
from sentinel_ml.data.shards import AUTO, INGESTIONS
from sentinel_ml.entrypoint import add_job_args, job_tail, run_job, source_from_args
from sentinel_ml.models.hyperparameters import HYPERPARAMETERS, PER_RUN, TUNABLE, Hyperparameter
from sentinel_ml.models.registry import names
from sentinel_ml.training.config import (
    DEFAULT_MAX_FAILURES,
    Hyperparameters,
    TrainConfig,
)


def build_parser() -> argparse.ArgumentParser:
    defaults = Hyperparameters()
    p = argparse.ArgumentParser(prog="python -m sentinel_ml.train", description="Train the recommender with Ray Train + Lightning.",
                                epilog="Hyperparameters left out take the model's defaults (sentinel_ml.models.specs).")
    p.add_argument("--model", choices=names(), default=defaults.model)
    _add_hyperparameters(p, PER_RUN)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--ingestion", choices=INGESTIONS, default=AUTO)
    p.add_argument("--max-failures", type=int, default=DEFAULT_MAX_FAILURES,
                   help="restarts of the worker group after a lost worker, from the last epoch's checkpoint")
    Compute.add_args(p, "--gpus")  # --cpus-per-worker, --device, --gpus (per worker), --precision
    _add_hyperparameters(p, TUNABLE)
    add_job_args(p, seed=defaults.seed, split=defaults.split)
    return p


def job_argv(config: TrainConfig) -> list[str]:
    """``python -m sentinel_ml.train`` with every flag of ``config``, as ``build_parser`` reads them, in
    the order they have always had: the run's length, the workers, the tunable hyperparameters."""
    hp = config.hp
    words = ["python", "-m", "sentinel_ml.train", "--model", hp.model, *_hyperparameter_words(hp, PER_RUN),
             "--workers", config.workers, "--max-failures", config.max_failures,
             *(["--ingestion", config.ingestion] if config.ingestion != AUTO else []),
             *config.compute.job_args("--gpus"),
             *_hyperparameter_words(hp, TUNABLE), "--seed", hp.seed, "--split", hp.split,
             *job_tail(config)]
    return [str(word) for word in words]


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    given = {h.name: getattr(args, h.name) for h in HYPERPARAMETERS}
    hp = Hyperparameters.for_model(args.model, **given, seed=args.seed, split=args.split)
    return TrainConfig(hp=hp, workers=args.workers, max_failures=args.max_failures, ingestion=args.ingestion,
                       compute=Compute.from_args(args), source=source_from_args(args),
                       storage=args.storage,
                       mlflow_uri=args.mlflow_uri, run_id=args.run_id)


def _add_hyperparameters(parser: argparse.ArgumentParser, rows: tuple[Hyperparameter, ...]) -> None:
    for h in rows:
        parser.add_argument(h.flag, type=h.type)  # left out: the model's default


def _hyperparameter_words(hp: Hyperparameters, rows: tuple[Hyperparameter, ...]) -> list:
    return [word for h in rows for word in (h.flag, getattr(hp, h.name))]


def main(argv: list[str] | None = None) -> int:
    """The container entrypoint: progress as JSON lines on stderr, the summary as JSON on stdout."""
    from sentinel_ml.training.run import train

    return run_job(train, lambda: config_from_args(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
