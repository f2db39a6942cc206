"""Storage and the checkpoint index on S3, through boto3 against a real S3-compatible server
(moto in server mode on a loopback port)."""

from __future__ import annotations

import pytest

from sentinel_ml.errors import StorageError
from sentinel_ml.store import index as checkpoints
from sentinel_ml.store import uri as storage
from sentinel_ml.store.checkpoint import checkpoint_uri, load_network, save_checkpoint


def test_write_read_list_on_s3(s3_bucket) -> None:
    root = s3_bucket
    storage.write_bytes(storage.join(root, "index", "a.json"), b"{}")
    storage.write_bytes(storage.join(root, "index", "b.txt"), b"x")
    storage.write_bytes(storage.join(root, "index", "nested", "c.json"), b"{}")
    assert storage.read_bytes(f"{root}/index/a.json") == b"{}"
    assert storage.list_names(f"{root}/index", suffix=".json") == [f"{root}/index/a.json"]
    assert storage.exists(f"{root}/index/a.json") and not storage.exists(f"{root}/index/zzz.json")


def test_checkpoint_index_on_s3_resolves(s3_bucket) -> None:
    root = s3_bucket
    record = checkpoints.RunRecord(
        run_id="train-20261127-000000-abcd", kind="train", created_at="2026-11-27T00:00:00+00:00",
        config={}, metrics={"val_rmse": 0.92},
        checkpoints={"best": checkpoint_uri(root, "train-20261127-000000-abcd", "best"),
                     "last": checkpoint_uri(root, "train-20261127-000000-abcd", "last")},
    )
    checkpoints.write_record(root, record)
    uri, found = checkpoints.resolve("latest", checkpoints.read_records(root))
    assert uri == f"{root}/runs/train-20261127-000000-abcd/best.pt" and found.run_id == record.run_id


def test_missing_object_and_bucket_are_clear_errors(s3_bucket) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        storage.read_bytes(f"{s3_bucket}/nothing.json")
    with pytest.raises(StorageError, match="bucket .* does not exist") as info:
        storage.write_bytes("s3://no-such-bucket-here/x.json", b"{}")
    assert "sentinel up" in info.value.hint


def test_checkpoint_save_and_load_on_s3(s3_bucket) -> None:
    import torch

    from sentinel_ml.models.biased_mf import BiasedMF

    net = BiasedMF(5, 7, 3, 3.5)
    uri = checkpoint_uri(s3_bucket, "train-x", "best")
    config = {"num_users": 5, "num_items": 7, "global_mean": 3.5, "embedding_dim": 3,
              "lr": 0.01, "regularization": 0.0, "lr_decay": 1.0}
    save_checkpoint(uri, net.state_dict(), config, {"val_rmse": 1.0})
    loaded, saved = load_network(uri)
    users, items = torch.tensor([1, 2]), torch.tensor([3, 4])
    assert torch.equal(loaded.predict(users, items), net.predict(users, items))
    assert saved["metrics"] == {"val_rmse": 1.0}


def test_sizes_and_remove_tree_on_s3(s3_bucket) -> None:
    """What the resolver checks a record against (one listing), and how a run's resume state is removed."""
    root = s3_bucket
    storage.write_bytes(f"{root}/ray/run-a/checkpoint_1/resume.pt", b"x" * 10)
    storage.write_bytes(f"{root}/ray/run-a/state.json", b"{}")
    storage.write_bytes(f"{root}/ray/run-b/state.json", b"{}")
    assert storage.size(f"{root}/ray/run-a/checkpoint_1/resume.pt") == 10
    assert storage.size(f"{root}/ray/run-a/nothing") is None
    assert storage.sizes_under(f"{root}/ray/run-a") == {f"{root}/ray/run-a/checkpoint_1/resume.pt": 10,
                                                        f"{root}/ray/run-a/state.json": 2}
    storage.remove_tree(f"{root}/ray/run-a")
    assert storage.sizes_under(f"{root}/ray") == {f"{root}/ray/run-b/state.json": 2}
    storage.remove_tree(f"{root}/ray/run-a")  # nothing there: fine


def test_a_record_whose_checkpoint_is_partial_on_s3_is_skipped(s3_bucket) -> None:
    root = s3_bucket
    for run_id, created, size in (("train-20261201-000000-good", "2026-12-01T00:00:00+00:00", 5),
                                  ("train-20261202-000000-hurt", "2026-12-02T00:00:00+00:00", 500)):
        uri = checkpoint_uri(root, run_id, "best")
        storage.write_bytes(uri, b"model")  # 5 bytes: whole for "good", partial for "hurt"
        checkpoints.write_record(root, checkpoints.RunRecord(
            run_id=run_id, kind="train", created_at=created, config={}, metrics={"val_rmse": 0.9},
            checkpoints={"best": uri}, sizes={"best": size}))
    assert [r.run_id for r in checkpoints.read_records(root)] == ["train-20261201-000000-good"]
    assert checkpoints.resolve_checkpoint("latest", root)[1] == "train-20261201-000000-good"
