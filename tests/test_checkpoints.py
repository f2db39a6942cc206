"""Checkpoint index records and the one resolver of latest / best / run id / URI (pure, and against a
storage root on disk; tests/test_storage_s3.py and tests/k8s/test_checkpoints_s3.py do it on S3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel_ml.entrypoint import exit_code
from sentinel_ml.errors import CheckpointNotFound
from sentinel_ml.store import index as checkpoints
from sentinel_ml.store.index import RunRecord, resolve


def record(run_id: str, created: str, val_rmse: float | None, kind: str = "train") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        kind=kind,
        created_at=created,
        config={},
        metrics={} if val_rmse is None else {"val_rmse": val_rmse},
        checkpoints={"best": f"/store/runs/{run_id}/best.pt", "last": f"/store/runs/{run_id}/last.pt"},
    )


RECORDS = [
    record("train-20261101-100000-aaaa", "2026-11-01T10:00:00+00:00", 0.95),
    record("tune-20261102-100000-bbbb", "2026-11-02T10:00:00+00:00", 0.91, kind="tune"),
    record("train-20261103-100000-cccc", "2026-11-03T10:00:00+00:00", 0.93),
]


def test_latest_is_the_newest_run() -> None:
    uri, rec = resolve("latest", RECORDS)
    assert rec.run_id == "train-20261103-100000-cccc"
    assert uri == "/store/runs/train-20261103-100000-cccc/best.pt"


def test_best_is_the_lowest_val_rmse_across_train_and_tune() -> None:
    uri, rec = resolve("best", RECORDS)
    assert rec.run_id == "tune-20261102-100000-bbbb" and uri.endswith("bbbb/best.pt")


def test_run_id_and_unique_prefix_resolve() -> None:
    assert resolve("train-20261101-100000-aaaa", RECORDS)[1].run_id.endswith("aaaa")
    assert resolve("tune", RECORDS)[1].run_id.endswith("bbbb")


def test_ambiguous_prefix_lists_candidates() -> None:
    with pytest.raises(CheckpointNotFound, match="matches 2 runs") as info:
        resolve("train-", RECORDS)
    assert "aaaa" in info.value.hint and "cccc" in info.value.hint


def test_unknown_run_id_says_what_is_accepted() -> None:
    with pytest.raises(CheckpointNotFound, match="no run 'nope'") as info:
        resolve("nope", RECORDS)
    assert "sentinel status" in info.value.hint


def test_uri_passes_through_and_finds_its_record() -> None:
    uri, rec = resolve("/store/runs/train-20261101-100000-aaaa/best.pt", RECORDS)
    assert rec.run_id.endswith("aaaa")
    assert resolve("/store/runs/train-20261101-100000-aaaa/last.pt", RECORDS)[1].run_id.endswith("aaaa")
    assert resolve("s3://bucket/elsewhere/model.pt", RECORDS) == ("s3://bucket/elsewhere/model.pt", None)


def test_empty_index_says_to_train_first() -> None:
    for reference in ("latest", "best", "some-run"):
        with pytest.raises(CheckpointNotFound) as info:
            resolve(reference, [])
        assert "sentinel train" in info.value.hint
        assert exit_code(info.value) == 2


def test_best_skips_records_without_metrics() -> None:
    records = [record("train-a", "2026-11-01T00:00:00+00:00", None), *RECORDS[:1]]
    assert resolve("best", records)[1].run_id == RECORDS[0].run_id


def test_records_round_trip_on_disk_newest_first(tmp_path) -> None:
    root = str(tmp_path / "artifacts")
    for r in RECORDS:
        checkpoints.write_record(root, r)
    (tmp_path / "artifacts" / "index" / "damaged.json").write_text("{not json")
    loaded = checkpoints.read_records(root)
    assert [r.run_id for r in loaded] == [r.run_id for r in reversed(RECORDS)]
    assert loaded[0].checkpoints == RECORDS[2].checkpoints


def test_new_run_ids_are_valid_kubernetes_names() -> None:
    import re

    run_id = checkpoints.new_run_id("train")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", run_id) and len(run_id) <= 63
    assert run_id != checkpoints.new_run_id("train")


def test_run_ids_are_read_from_the_checkpoint_layout() -> None:
    assert checkpoints.run_id_from_uri("s3://b/p/runs/train-1/best.pt") == "train-1"
    assert checkpoints.run_id_from_uri("/tmp/model.pt") is None


def test_resolve_against_a_storage_root_checks_the_file_exists(tmp_path) -> None:
    root = tmp_path / "ckpt"
    for r in RECORDS:
        written = RunRecord(**{**r.__dict__, "checkpoints": {k: str(root / "runs" / r.run_id / f"{k}.pt")
                                                             for k in ("best", "last")}})
        checkpoints.write_record(str(root), written)
        for uri in written.checkpoints.values():
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            Path(uri).write_bytes(b"model")
    best = "tune-20261102-100000-bbbb"
    assert checkpoints.resolve_checkpoint("best", str(root)) == (str(root / "runs" / best / "best.pt"), best)
    uri = str(root / "runs/train-20261103-100000-cccc/last.pt")
    assert checkpoints.resolve_checkpoint(uri, str(root)) == (uri, "train-20261103-100000-cccc")
    with pytest.raises(CheckpointNotFound, match="does not exist"):
        checkpoints.resolve_checkpoint(str(root / "runs/gone/best.pt"), str(root))


def test_a_checkpoint_keeps_its_serving_data_and_loads_weights_only(tmp_path) -> None:
    """``data`` (the serving artifact: lists, strings, None and tensors) goes in and out whole, through
    torch.load(weights_only=True); a checkpoint saved without it has none."""
    import torch

    from sentinel_ml.store.checkpoint import load_checkpoint, save_checkpoint

    data = {"format": 1, "id_type": "string", "user_ids": ["u1", "u2"], "titles": ["A (1995)", None],
            "scale": [0.5, 5.0], "seen_indptr": torch.tensor([0, 1, 1]),
            "seen_indices": torch.tensor([1], dtype=torch.int32)}
    uri = str(tmp_path / "best.pt")
    size = save_checkpoint(uri, {"w": torch.ones(2)}, {"model": "mf"}, {"val_rmse": 0.9}, data=data)
    saved = load_checkpoint(uri)
    assert size == Path(uri).stat().st_size
    assert saved["data"]["user_ids"] == ["u1", "u2"] and saved["data"]["titles"] == ["A (1995)", None]
    assert saved["data"]["seen_indices"].dtype == torch.int32 and saved["data"]["seen_indptr"].tolist() == [0, 1, 1]
    save_checkpoint(uri, {"w": torch.ones(2)}, {"model": "mf"}, {})
    assert "data" not in load_checkpoint(uri)
