"""Paths are made absolute before they cross into another process, and text from other systems is
printed as it is (never read as rich markup)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_ml.paths import absolute, storage_root
from sentinel_ml.store.index import resolve_checkpoint

runner = CliRunner()


def test_absolute_keeps_uris_and_resolves_paths(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute("data/ml-100k.zip") == str(tmp_path / "data" / "ml-100k.zip")
    assert absolute("~/x") == str(Path.home() / "x")
    for uri in ("s3://bucket/prefix", "https://host/ml-100k.zip", "file:///tmp/ml-100k.zip"):
        assert absolute(uri) == uri
    monkeypatch.setenv("SENTINEL_STORAGE", "relative/store")
    assert storage_root() == str(tmp_path / "relative" / "store")


def test_a_relative_checkpoint_path_resolves_to_an_absolute_one(tmp_path, monkeypatch) -> None:
    (tmp_path / "runs" / "train-x").mkdir(parents=True)
    (tmp_path / "runs" / "train-x" / "best.pt").write_bytes(b"model")
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("runs/train-x/best.pt", None) == (str(tmp_path / "runs/train-x/best.pt"), "train-x")


def test_errors_from_other_systems_print_literally(sentinel_home, tmp_path) -> None:
    """A gloo error names its source as '[/__w/pytorch/.../pair.cc:545]': rich must not parse that."""
    strange = tmp_path / "[/__w/pytorch/pytorch/third_party/gloo/pair.cc:545]" / "ml-100k.zip"
    result = runner.invoke(app, ["train", "--data", str(strange)])
    assert result.exit_code == 2, result.output
    assert str(strange) in " ".join(result.stderr.split()) or "[/__w/pytorch" in result.stderr
    assert "Traceback" not in result.output and "MarkupError" not in result.output


@pytest.mark.slow
def test_two_workers_train_from_relative_data_and_storage_paths(ray_session, dataset_dir, tmp_path,
                                                                 monkeypatch, sentinel_home) -> None:
    """`sentinel train --workers 2 --data <relative>` once failed inside the Ray workers, which run in
    another directory ("dataset not found at ../…"); the CLI now hands them absolute paths."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    relative_data = os.path.relpath(dataset_dir, work)
    monkeypatch.delenv("SENTINEL_DATA", raising=False)
    result = runner.invoke(app, ["train", "--workers", "2", "--epochs", "1", "--data", relative_data,
                                 "--storage", "store", "--mlflow-uri", "off", "-o", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["checkpoints"]["best"].startswith(str(work / "store"))
    assert Path(summary["index_uri"]).is_file()
