"""Issue 25, item 3, at the command level: every bad input given to `sentinel train` exits 2 with the
cause and the fix on stderr, no traceback and nothing on stdout, and leaves nothing behind under
$SENTINEL_HOME: no index record, no entry in the prepared cache, no MLflow run. Every case fails
before Ray or MLflow start, so the whole table runs in process, in about a second each."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sentinel_cli.app import app

runner = CliRunner()

HEADER = "user_id,item_id,rating,timestamp"


def _csv(folder: Path, name: str, *lines: str) -> str:
    path = folder / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def _parquet(folder: Path, name: str, columns: dict[str, list]) -> str:
    path = folder / name
    pq.write_table(pa.table(columns), path)
    return str(path)


def _good_rows(n: int = 60) -> list[str]:
    return [f"u{i % 7},m{i % 11},{1 + i % 5},{1_000 + i}" for i in range(n)]


def nothing_left(home: Path) -> None:
    """No index record, no prepared cache entry (nor a building directory), no MLflow run."""
    from sentinel_ml.store.index import read_records

    prepared = home / "data" / "prepared"
    assert not prepared.exists() or list(prepared.iterdir()) == [], sorted(p.name for p in prepared.iterdir())
    artifacts = home / "artifacts"
    assert not artifacts.exists() or read_records(str(artifacts), include_incomplete=True) == []
    assert not artifacts.exists() or not any(p.is_file() for p in artifacts.rglob("*"))
    assert mlflow_runs(home) == 0


def mlflow_runs(home: Path) -> int:
    """Runs in the local MLflow store (the sqlite database under $SENTINEL_HOME), 0 where it is not made."""
    database = home / "mlflow.db"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0


def _cases(folder: Path) -> dict[str, tuple[list[str], list[str], str]]:
    """name -> (train's arguments, fragments the error names, a fragment of the fix)."""
    rows = _good_rows()
    return {
        "missing user column": (
            ["--data", _csv(folder, "a.csv", "uid,item_id,rating", *[r.rsplit(",", 1)[0] for r in rows])],
            ["has no column 'user_id'", "columns found: uid, item_id, rating"], "--columns user="),
        "missing mapped column": (
            ["--data", _csv(folder, "b.csv", HEADER, *rows), "--columns", "user=who"],
            ["has no column 'who'", "columns found: user_id, item_id, rating, timestamp"], "--columns"),
        "no rating column": (
            ["--data", _csv(folder, "c.csv", "user_id,item_id", "1,2", "2,3")],
            ["has no rating column 'rating'", "columns found: user_id, item_id"], "implicit feedback"),
        "non-numeric rating": (
            ["--data", _csv(folder, "d.csv", HEADER, *rows[:5], "u1,m2,good,7", *rows[5:])],
            [f"{folder / 'd.csv'} line 7", "the rating 'good'", "is not a number"], "fix or remove that row"),
        "null rating": (
            ["--data", _csv(folder, "e.csv", HEADER, *rows[:3], "u1,m2,,7", *rows[3:])],
            [f"{folder / 'e.csv'} line 5", "the rating (column 'rating') is empty"], "remove or fill that row"),
        "null id in parquet": (
            ["--data", _parquet(folder, "f.parquet", {"user_id": ["a", "b", None, "d"], "item_id": [1, 2, 3, 4],
                                                      "rating": [1.0, 2.0, 3.0, 4.0]})],
            [f"{folder / 'f.parquet'} row 3", "the id in column 'user_id' is empty"], "remove or fill that row"),
        "NaN rating in parquet": (
            ["--data", _parquet(folder, "g.parquet", {"user_id": [1, 2, 3], "item_id": [1, 2, 3],
                                                      "rating": [1.0, float("nan"), 3.0]})],
            [f"{folder / 'g.parquet'} row 2", "is not a number"], "fix or remove that row"),
        "header only": (
            ["--data", _csv(folder, "h.csv", HEADER)], [f"{folder / 'h.csv'} has no rows"], "at least one rating"),
        "zero-byte file": (
            ["--data", _csv(folder, "i.csv")], [f"{folder / 'i.csv'} is empty"], "first line names its columns"),
        "empty parquet": (
            ["--data", _parquet(folder, "j.parquet", {"user_id": pa.array([], pa.int64()),
                                                      "item_id": pa.array([], pa.int64()),
                                                      "rating": pa.array([], pa.float32())})],
            [f"{folder / 'j.parquet'} has no rows"], "at least one rating"),
        "rating outside the scale": (
            ["--data", _csv(folder, "k.csv", HEADER, *rows[:9], "u1,m2,6,7", *rows[9:]), "--rating-scale", "1:5"],
            [f"{folder / 'k.csv'} line 11", "the rating 6 is outside the declared scale 1:5"], "--rating-scale"),
        "missing file": (
            ["--data", str(folder / "nowhere.csv")], [f"{folder / 'nowhere.csv'} does not exist"], "--data"),
        "not parquet": (
            ["--data", _csv(folder, "l.parquet", HEADER, *rows)], [f"cannot read {folder / 'l.parquet'} as Parquet"],
            "Parquet"),
        "ragged csv": (
            ["--data", _csv(folder, "m.csv", HEADER, *rows[:4], "u1,m2,3,4,5,6", *rows[4:])],
            [f"cannot read {folder / 'm.csv'} as CSV"], "header's columns"),
        "u1 on a table": (
            ["--data", _csv(folder, "n.csv", HEADER, *rows), "--split", "u1"],
            ["has no u1 split", "ml-100k's own split"], "--split random or temporal"),
        "u1 on ml-1m": (
            ["--dataset", "ml-1m", "--data", str(folder / "never-read"), "--split", "u1"],
            ["ml-1m has no u1 split"], "--split random or temporal"),
        "temporal without timestamps": (  # refused while preparing: the building directory goes too
            ["--data", _csv(folder, "o.csv", "user_id,item_id,rating", *[r.rsplit(",", 1)[0] for r in rows]),
             "--split", "temporal"],
            ["has no timestamps"], "--split random"),
        "items without titles": (
            ["--data", _csv(folder, "p.csv", HEADER, *rows), "--items", _csv(folder, "items.csv", "item_id,name",
                                                                               "m1,One")],
            [f"{folder / 'items.csv'} needs an id column", "'title'", "columns found: item_id, name"], "--items"),
    }


CASES = ("missing user column", "missing mapped column", "no rating column", "non-numeric rating", "null rating",
         "null id in parquet", "NaN rating in parquet", "header only", "zero-byte file", "empty parquet",
         "rating outside the scale", "missing file", "not parquet", "ragged csv", "u1 on a table", "u1 on ml-1m",
         "temporal without timestamps", "items without titles")


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_the_fix_and_leaves_nothing(case, tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("SENTINEL_HOME", str(home))
    for name in ("SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI", "SENTINEL_TARGET", "SENTINEL_DATA", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "tables"
    folder.mkdir()
    cases = _cases(folder)
    assert sorted(cases) == sorted(CASES)
    args, causes, fix = cases[case]
    result = runner.invoke(app, ["train", "--epochs", "1", *args], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    error = " ".join(result.stderr.split())  # rich wraps long lines
    for cause in causes:
        assert cause in error, f"{cause!r} not in {error!r}"
    assert "next:" in error and fix in error.split("next:", 1)[1], error
    assert "Traceback" not in result.output and result.stdout == ""
    nothing_left(home)


def test_autorec_refuses_data_over_its_size_limit_before_any_run(tmp_path, monkeypatch) -> None:
    """22,000 users x 22,000 items (one rating each: 22,000 rows, a fraction of a second to prepare) is
    2.2 GiB of AutoRec's dense matrix, over its 2 GiB limit: exit 2 naming the limit and --model mf,
    before any MLflow run or index record. The preparation it made stays: complete, and it is what the
    suggested `--model mf` reads next (the same cache key)."""
    home = tmp_path / "home"
    monkeypatch.setenv("SENTINEL_HOME", str(home))
    for name in ("SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI", "SENTINEL_TARGET", "SENTINEL_DATA", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    n = 22_000
    table = _parquet(tmp_path, "wide.parquet", {"user_id": list(range(n)), "item_id": list(range(n)),
                                                "rating": [float(1 + i % 5) for i in range(n)]})
    result = runner.invoke(app, ["train", "--model", "autorec", "--epochs", "1", "--data", table],
                           catch_exceptions=False)
    assert result.exit_code == 2, result.output
    error = " ".join(result.stderr.split())
    assert "autorec holds a dense items x users matrix" in error and "over its limit of 2 GiB" in error
    assert "--model mf" in error.split("next:", 1)[1]
    assert "Traceback" not in result.output and result.stdout == ""
    artifacts = home / "artifacts"
    assert not artifacts.exists() or not any(p.is_file() for p in artifacts.rglob("*"))
    assert mlflow_runs(home) == 0
    entries = list((home / "data" / "prepared").iterdir())
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file(), entries  # complete, no building dir
