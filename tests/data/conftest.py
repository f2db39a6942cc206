"""Helpers for the data tests: small tables written as real files, and the check that reading wrote nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def write_parquet(path: Path, columns: dict[str, list]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture
def nothing_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A context manager: inside it the working directory is tmp_path and $SENTINEL_HOME an unmade
    folder in it; on leaving, tmp_path must be as it was and $SENTINEL_HOME still not made."""
    home = tmp_path / "home"
    monkeypatch.setenv("SENTINEL_HOME", str(home))
    monkeypatch.chdir(tmp_path)

    @contextmanager
    def check() -> Iterator[None]:
        before = snapshot(tmp_path)
        try:
            yield
        finally:
            assert not home.exists(), f"reading wrote under $SENTINEL_HOME: {sorted(snapshot(home))}"
            assert snapshot(tmp_path) == before, "reading changed files beside the table"

    return check
