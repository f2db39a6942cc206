"""What the RayJob entrypoints (``python -m sentinel_ml.train``, ``python -m sentinel_ml.tune``) share:
the flags every job takes, and one ``main``: progress as JSON lines on stderr, the summary as JSON on
stdout, an expected failure as one line on stderr and its exit code."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from sentinel_ml.data.movielens import SPLITS


def add_job_args(parser: argparse.ArgumentParser, *, seed: int, split: str) -> None:
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--split", choices=SPLITS, default=split)
    parser.add_argument("--data", default=None)
    parser.add_argument("--storage", default=None)
    parser.add_argument("--mlflow-uri", default=None)
    parser.add_argument("--run-id", default=None)


def run_job(job: Callable[..., Any], make_config: Callable[[], Any]) -> int:
    """``job(make_config(), on_progress=...)``; its ``summary()`` as JSON on stdout; returns the exit code."""
    from sentinel_ml.errors import SentinelError

    logging.basicConfig(level=logging.WARNING)
    try:
        result = job(make_config(), on_progress=lambda e: print(json.dumps(e, default=str), file=sys.stderr,
                                                                flush=True))
    except SentinelError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(json.dumps(result.summary(), indent=2, default=str))
    return 0
