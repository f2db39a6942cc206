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
