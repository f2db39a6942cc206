"""Two runs of a schedule on the real local Ray, through the real gate and the real serving
application (`sentinel schedule run`, what a CronJob or crontab line executes): a run on good data
beats the model serving and is promoted; a run on the same table with its ratings shuffled (the data
corrupted on purpose) is refused by the gate, with both numbers, and what serves stays."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.support.cli import REPO, SENTINEL, sentinel_env
from tests.support.serving import Served

pytestmark = pytest.mark.slow
TRAIN = ("--split", "temporal", "--epochs", "2")


def _sentinel(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*SENTINEL, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _tables(env: dict[str, str], root: Path) -> tuple[Path, Path]:
    """A synthetic table with a learnable structure, and the same rows with the ratings shuffled."""
    good, bad = root / "good", root / "bad"
    made = _sentinel(env, "data", "synth", "--ratings", "6000", "--users", "200", "--items", "150", "--seed", "3",
                     "--out", str(good))
    assert made.returncode == 0, made.stderr
    table = pq.read_table(good)
    ratings = table["rating"].to_numpy()
    shuffled = table.set_column(table.schema.get_field_index("rating"), "rating",
                                [np.random.default_rng(0).permutation(ratings)])
    bad.mkdir()
    pq.write_table(shuffled, bad / "part-0.parquet")
    return good, bad


def _run(env: dict[str, str], data: Path) -> dict:
    done = _sentinel(env, "schedule", "run", "--name", "nightly", "--target", "local", "--promote-if-better",
                     "--", "--data", str(data), *TRAIN)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_one_scheduled_run_is_promoted_and_one_on_corrupted_data_is_refused(tmp_path, movielens_zip) -> None:
    env = sentinel_env(tmp_path / "home", movielens_zip)
    good, bad = _tables(env, tmp_path)
    trained = _sentinel(env, "train", "--data", str(bad), *TRAIN, "-o", "json")  # what serves at first
    assert trained.returncode == 0, trained.stderr[-3000:]
    first = json.loads(trained.stdout)
    app = Served(env)
    app.serve("--checkpoint", first["checkpoints"]["best"])
    try:
        promoted = _run(env, good)
        assert (promoted["outcome"], promoted["step"], promoted["gate"]["verdict"]) == ("promoted", "promote", "passed")
        assert promoted["gate"]["candidate"] < promoted["gate"]["serving"] == pytest.approx(first["metrics"]["test_rmse"])
        assert set(app.models(8)) == {promoted["checkpoint"]}  # the promoted model answers, on the same port

        refused = _run(env, bad)
        assert (refused["outcome"], refused["step"], refused["exit_code"]) == ("refused", "promote", 1)
        gate = refused["gate"]
        assert gate["metric"] == "rmse" and gate["candidate"] > gate["serving"]
        assert gate["serving"] == pytest.approx(promoted["metrics"]["test_rmse"])
        assert refused["detail"].startswith("error: the gate refused")
        assert set(app.models(8)) == {promoted["checkpoint"]}  # what serves stays
    finally:
        app.stop()
