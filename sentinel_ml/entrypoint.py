"""The command line of the jobs (``python -m sentinel_ml.train``, ``python -m sentinel_ml.tune``, what
the RayJobs run): the flags every job takes, the exit code of each kind of failure (the ``sentinel``
CLI uses the same table), and one ``run_job``: progress as JSON lines on stderr, the summary as JSON
on stdout, an expected failure as one line on stderr and its exit code."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from sentinel_ml.data import DATASETS, DEFAULT_DATASET, SPLITS
from sentinel_ml.data.source import DataSource
from sentinel_ml.errors import (
    ConfigError,
    Detached,
    JobFailed,
    SentinelError,
    WaitTimeout,
)

# 0 success, 1 the job failed, 2 usage or configuration error, 3 a bounded wait ran out, 130 detached.
# The first entry whose type matches wins; any other SentinelError is a failure (1).
EXIT_CODES: tuple[tuple[type[SentinelError], int], ...] = (
    (ConfigError, 2), (WaitTimeout, 3), (Detached, 130), (JobFailed, 1),
)


def exit_code(error: SentinelError) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(error, kind)), 1)


def add_job_args(parser: argparse.ArgumentParser, *, seed: int, split: str) -> None:
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--split", choices=SPLITS, default=split)
    parser.add_argument("--dataset", choices=DATASETS, default=DEFAULT_DATASET)
    parser.add_argument("--data", default=None)
    parser.add_argument("--columns", default=None)
    parser.add_argument("--items", default=None)
    parser.add_argument("--rating-scale", default=None)
    parser.add_argument("--storage", default=None)
    parser.add_argument("--mlflow-uri", default=None)
    parser.add_argument("--run-id", default=None)


def job_tail(config: Any) -> list[Any]:
    """The flags ``add_job_args`` reads (but seed and split, which each job places itself)."""
    tail = ["--storage", config.storage, "--mlflow-uri", config.mlflow_uri or "off", "--run-id", config.run_id]
    return tail + config.source.job_args()


def source_from_args(args: argparse.Namespace) -> DataSource:
    """The ``DataSource`` of ``add_job_args``' flags."""
    return DataSource.from_args(dataset=args.dataset, data=args.data, columns=args.columns, items=args.items,
                                rating_scale=args.rating_scale)


def run_job(job: Callable[..., Any], make_config: Callable[[], Any]) -> int:
    """``job(make_config(), on_progress=...)``; its ``summary()`` as JSON on stdout; returns the exit code."""
    logging.basicConfig(level=logging.WARNING)
    try:
        result = job(make_config(), on_progress=lambda e: print(json.dumps(e, default=str), file=sys.stderr,
                                                                flush=True))
    except SentinelError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    print(json.dumps(result.summary(), indent=2, default=str))
    return 0
