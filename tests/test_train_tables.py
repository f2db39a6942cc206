"""Issue 25 end to end through `sentinel` (in process, as tests/test_cli.py runs it): a ratings table
on S3 with duplicate pairs, and a dataset by name (ml-1m's layout) over real loopback HTTP, then from
its extracted folder. Tiny data and one epoch in Ray Train's local mode: seconds each."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sentinel_cli.app import app
from tests.test_train_bad_data import mlflow_runs

runner = CliRunner()
from tests.support.www import serve_directory


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty $SENTINEL_HOME, and nothing from outside naming storage, tracking, a target or Ray."""
    home = tmp_path / "home"
    monkeypatch.setenv("SENTINEL_HOME", str(home))
    for name in ("SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI", "SENTINEL_TARGET", "SENTINEL_DATA", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return home


def ratings(n_users: int, n_items: int, per_user: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    """Distinct (user, item, whole-star rating, timestamp) rows: ``per_user`` items for every user."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        for item in rng.choice(np.arange(1, n_items + 1), size=per_user, replace=False):
            rows.append((user, int(item), int(rng.integers(1, 6)), 978_300_000 + len(rows)))
    return rows


@pytest.mark.slow
def test_an_s3_parquet_directory_with_duplicates_trains_and_counts_them(home, s3_bucket) -> None:
    """A Parquet directory on the S3 server (two parts; AWS_* from the fixture) with 37 pairs rated
    twice (10 within a part, 27 across the parts) trains on a random split, and `-o json` says how
    many were dropped and what was kept."""
    import boto3

    bucket = s3_bucket.removeprefix("s3://").split("/")[0]
    rows = ratings(40, 60, 15)
    repeats = [(u, i, 6 - r, t + 10_000_000) for u, i, r, t in rows[:37]]  # later: these are kept
    parts = {"part-0.parquet": rows[:300] + repeats[:10], "part-1.parquet": rows[300:] + repeats[10:]}
    s3 = boto3.client("s3")
    for name, part in parts.items():
        users, items, stars, stamps = zip(*part)
        buffer = io.BytesIO()
        pq.write_table(pa.table({"uid": [f"u{u}" for u in users], "movie": list(items),
                                 "stars": [float(s) for s in stars], "ts": list(stamps)}), buffer)
        s3.put_object(Bucket=bucket, Key=f"tables/ratings/{name}", Body=buffer.getvalue())
    s3.put_object(Bucket=bucket, Key="tables/ratings/_SUCCESS", Body=b"")  # not data: skipped
    location = f"s3://{bucket}/tables/ratings"

    result = invoke("train", "--data", location, "--columns", "user=uid,item=movie,rating=stars,timestamp=ts",
                    "--epochs", "1", "-o", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    data = summary["data"]
    assert data["duplicates_dropped"] == 37 and data["ratings"] == len(rows)
    assert (data["origin"], data["split"], data["users"], data["items"]) == (location, "random", 40, len(
        {i for _, i, _, _ in rows}))
    assert data["train"] + data["val"] + data["test"] == len(rows) and data["scale"] == [1.0, 5.0]
    assert "37 duplicate ratings dropped" in " ".join(result.stderr.split())
    assert 0.0 < summary["metrics"]["test_rmse"] < 2.5 and mlflow_runs(home) == 1

    (prepared,) = (home / "data" / "prepared").iterdir()  # of each repeated pair, the later rating was kept
    kept = {}
    users = dict(zip(*pq.read_table(prepared / "users.parquet").select(["index", "id"]).to_pydict().values()))
    items = dict(zip(*pq.read_table(prepared / "items.parquet").select(["index", "id"]).to_pydict().values()))
    for part in ("train", "val", "test"):
        for row in pq.read_table(prepared / f"{part}.parquet").to_pylist():
            kept[(users[row["user"]], items[row["item"]])] = row["rating"]
    assert len(kept) == len(rows)
    assert all(kept[(f"u{u}", i)] == r for u, i, r, _ in repeats)

    from sentinel_ml.store.index import read_records

    (record,) = read_records(str(home / "artifacts"))
    assert record.extra["data"]["duplicates_dropped"] == 37 and record.extra["data"]["split"] == "random"


# --- a dataset by name: ml-1m's layout over loopback HTTP, then its extracted folder -------------------------


@pytest.fixture
def www(tmp_path: Path) -> Iterator[tuple[Path, str, list[str]]]:
    """A directory served over HTTP on 127.0.0.1: (directory, base URL, the paths asked for)."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_directory(root) as (url, asked):
        yield root, url, asked


def ml1m_archive(tmp_path: Path, dest: Path) -> tuple[Path, list[tuple[int, int, int, int]]]:
    """An archive in ml-1m's layout (``ml-1m/ratings.dat`` with ``::``, ``movies.dat``): 30 users,
    600 ratings; and that folder extracted."""
    rows = ratings(30, 50, 20, seed=1)
    folder = tmp_path / "extracted" / "ml-1m"
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("".join("::".join(map(str, r)) + "\n" for r in rows), encoding="ascii")
    (folder / "movies.dat").write_text("".join(f"{i}::Movie {i} (1999)::Drama\n" for i in range(1, 51)),
                                       encoding="latin-1")
    (folder / "users.dat").write_text("".join(f"{u}::F::1::10::48067\n" for u in range(1, 31)))
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"ml-1m/{path.name}")
    return folder, rows


def test_ml1m_by_name_over_http_refuses_a_repack_naming_both_checksums(home, www, tmp_path) -> None:
    """`data fetch --dataset ml-1m` downloads over real HTTP and checks GroupLens' published SHA-256,
    which a synthetic archive cannot match: exit 2 naming both checksums and the `--data <directory>`
    way around, nothing left in the cache; `train` refuses the same way before any run."""
    from sentinel_ml.data import catalog

    root, base, asked = www
    ml1m_archive(tmp_path, root / "ml-1m.zip")
    actual = hashlib.sha256((root / "ml-1m.zip").read_bytes()).hexdigest()
    for command in (["data", "fetch"], ["train", "--epochs", "1"]):
        result = invoke(*command, "--dataset", "ml-1m", "--data", f"{base}/ml-1m.zip")
        assert result.exit_code == 2, result.output
        error = " ".join(result.stderr.split())
        assert "checksum mismatch" in error and actual in error and catalog.ML_1M.sha256 in error
        assert "--data <directory>" in error.split("next:", 1)[1]
        assert "Traceback" not in result.output and result.stdout == ""
        assert not (home / "data").exists() or [p.name for p in (home / "data").rglob("*")] in ([], ["prepared"])
        assert mlflow_runs(home) == 0
    assert asked == ["/ml-1m.zip", "/ml-1m.zip"]  # a real download each time, never cached


@pytest.mark.slow
def test_ml1m_from_its_extracted_folder_trains_on_a_random_split(home, tmp_path) -> None:
    """`--data <the extracted folder>` (the way around the checksum): ml-1m's layout parsed, split
    random by default (u1 is ml-100k's: refused), and the summary names the dataset and the split."""
    folder, rows = ml1m_archive(tmp_path, tmp_path / "ml-1m.zip")
    refused = invoke("train", "--dataset", "ml-1m", "--data", str(folder.parent), "--split", "u1", "--epochs", "1")
    assert refused.exit_code == 2 and "ml-1m has no u1 split" in refused.stderr, refused.output
    result = invoke("train", "--dataset", "ml-1m", "--data", str(folder.parent), "--epochs", "1", "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert (data["dataset"], data["split"], data["ratings"], data["users"]) == ("ml-1m", "random", len(rows), 30)
    assert data["duplicates_dropped"] == 0 and data["test"] > 0
    assert "split random (train" in " ".join(result.stderr.split())  # the progress names it too
