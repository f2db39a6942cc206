"""The tuning RayJob's entry point: ``python -m sentinel_ml.tune …`` runs one study
(``sentinel_ml.tuning.study.tune``) with progress as JSON lines on stderr and the summary as JSON on
stdout. ``job_argv`` writes the command line that ``build_parser`` reads back: the RayJob's
entrypoint, rendered by the CLI."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from typing import Any

from sentinel_ml.compute import TUNE_CPUS_FLAG, Compute
from sentinel_ml.entrypoint import add_job_args, job_tail, run_job, source_from_args
from sentinel_ml.errors import ConfigError
from sentinel_ml.models.registry import names, per_model
from sentinel_ml.models.spec import StudyDefaults
from sentinel_ml.tuning import SCHEDULERS
from sentinel_ml.tuning.config import StudyConfig


def build_parser() -> argparse.ArgumentParser:
    defaults = StudyConfig()
    p = argparse.ArgumentParser(prog="python -m sentinel_ml.tune", description="Tune the recommender's hyperparameters with Ray Tune.")
    p.add_argument("--model", choices=names(), default=defaults.model)
    p.add_argument("--samples", type=int, default=defaults.samples)
    for study_field in fields(StudyDefaults):  # --max-epochs, --grace-period, --reduction-factor
        name = study_field.name
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                       help=f"default: the model's ({per_model(lambda spec: getattr(spec.study, name))})")
    p.add_argument("--scheduler", choices=SCHEDULERS, default=defaults.scheduler)
    p.add_argument("--concurrency", type=int, default=None, help="default: one trial per CPU, at most 4")
    p.add_argument("--workers-per-trial", type=int, default=defaults.workers_per_trial)
    p.add_argument("--max-failures", type=int, default=defaults.max_failures,
                   help="restarts of a trial after a lost worker, from its last checkpoint")
    Compute.add_args(p, "--gpus-per-trial", TUNE_CPUS_FLAG)  # --cpus-per-trial, --device, --gpus-per-trial, --precision
    space = p.add_mutually_exclusive_group()
    space.add_argument("--space", default=None, help="YAML or TOML file overriding search-space dimensions")
    space.add_argument("--space-json", default=None,
                       help="the same overrides as JSON (how `sentinel tune --target k8s --space` ships a file)")
    add_job_args(p, seed=defaults.seed, split=defaults.split)
    return p


def job_argv(config: StudyConfig) -> list[str]:
    """``python -m sentinel_ml.tune`` with every flag of ``config``, as ``build_parser`` reads them.
    A space other than the model's default travels inline as JSON (its file is on this machine)."""
    from sentinel_ml.tuning.search_space import default_space

    words: list[Any] = [
        "python", "-m", "sentinel_ml.tune", "--model", config.model, "--samples", config.samples,
        "--max-epochs", config.max_epochs, "--grace-period", config.grace_period,
        "--reduction-factor", config.reduction_factor, "--scheduler", config.scheduler,
        "--workers-per-trial", config.workers_per_trial, "--max-failures", config.max_failures,
        "--seed", config.seed, "--split", config.split,
    ]
    if config.concurrency is not None:
        words += ["--concurrency", config.concurrency]
    words += config.compute.job_args("--gpus-per-trial", TUNE_CPUS_FLAG)
    if config.space != default_space(config.model):
        words += ["--space-json", json.dumps(config.space.as_dict(), sort_keys=True)]
    return [str(word) for word in [*words, *job_tail(config)]]


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    from sentinel_ml.tuning.search_space import from_mapping, load_space

    source_flags = ("dataset", "data", "columns", "items", "rating_scale")
    compute_flags = ("device", "gpus", "precision", "cpus")
    values = {k: v for k, v in vars(args).items() if k not in ("space", "space_json", *source_flags, *compute_flags)}
    if args.space_json is not None:
        try:
            raw = json.loads(args.space_json)
        except ValueError as e:
            raise ConfigError(f"--space-json is not valid JSON: {e}") from None
        space = from_mapping(raw, "--space-json", model=args.model)
    else:
        space = load_space(args.space, model=args.model)
    return StudyConfig(space=space, source=source_from_args(args), compute=Compute.from_args(args), **values)


def main(argv: list[str] | None = None) -> int:
    """The container entrypoint: progress as JSON lines on stderr, the summary as JSON on stdout."""
    from sentinel_ml.tuning.study import tune

    return run_job(tune, lambda: config_from_args(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
