"""AutoRec: its loss, its export as the served factorization, and real training runs (local, DDP, CLI,
a tuning study) whose checkpoints load and score like any other."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_ml.data.batching import ItemBatches
from sentinel_ml.data.source import DataSource
from sentinel_ml.data.splits import Ratings
from sentinel_ml.models.autorec import ItemAutoRec
from sentinel_ml.models.biased_mf import BiasedMF
from sentinel_ml.store import index as checkpoints
from sentinel_ml.store.checkpoint import load_network
from sentinel_ml.training.config import Hyperparameters, TrainConfig

runner = CliRunner()
from tests.support.movielens_ref import u1_test


def tiny() -> Ratings:
    # users 1-3, items 1-4; row/column 0 unused as everywhere
    users = np.array([1, 1, 2, 3, 3, 3])
    items = np.array([1, 2, 2, 1, 3, 4])
    return Ratings(users, items, np.array([5, 3, 4, 1, 2, 5], dtype=np.float32))


def test_export_is_the_same_model_as_a_biased_mf() -> None:
    torch.manual_seed(0)
    net = ItemAutoRec(tiny(), num_users=4, num_items=5, hidden=6)
    users = torch.tensor([1, 2, 3, 3, 1, 2])
    items = torch.tensor([4, 4, 1, 2, 3, 0])  # includes movies a user never rated and the unused row
    exported = net.export()
    assert isinstance(exported, BiasedMF) and exported.user_factors.weight.shape == (4, 6)
    assert torch.allclose(net(users, items), exported(users, items), atol=1e-5)
    assert torch.equal(net.predict(users, items), exported.predict(users, items))
    restored = BiasedMF(4, 5, 6, global_mean=3.0)  # what load_network builds from a checkpoint
    restored.load_state_dict(net.serving_state_dict())
    assert torch.allclose(restored(users, items), net(users, items), atol=1e-5)


def test_the_loss_counts_observed_ratings_only_and_charges_the_penalty_by_share() -> None:
    torch.manual_seed(0)
    net = ItemAutoRec(tiny(), num_users=4, num_items=5, hidden=3)
    with torch.no_grad():
        net.decoder.weight.zero_()
        net.decoder.bias.fill_(3.0)  # predicts 3 for everyone
    objective, mse = net.training_loss((torch.tensor([1, 2]),), regularization=0.0)
    # item 1: users 1 (5) and 3 (1); item 2: users 1 (3) and 2 (4); unrated entries don't count
    assert objective.item() == pytest.approx(4 + 4 + 0 + 1)
    assert mse.item() == pytest.approx(9 / 4)
    with_penalty, _ = net.training_loss((torch.tensor([1, 2]),), regularization=10.0)
    penalty = net.encoder.weight.pow(2).sum().item()  # the decoder weights are zero
    assert with_penalty.item() == pytest.approx(9 + 2 / 5 * 10 / 2 * penalty, rel=1e-5)


def test_item_batches_cover_every_movie_once_per_epoch_and_shard_across_ranks() -> None:
    batches = ItemBatches(10, batch_size=4, shuffle=True, seed=1)
    first = torch.cat([b[0] for b in batches])
    assert sorted(first.tolist()) == list(range(10)) and len(batches) == 3
    assert not torch.equal(first, torch.cat([b[0] for b in batches]))
    shards = [torch.cat([b[0] for b in ItemBatches(10, 2, shuffle=True, seed=1, rank=r, world_size=2)])
              for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5 and not set(shards[0].tolist()) & set(shards[1].tolist())


def test_model_defaults_and_unknown_models() -> None:
    hp = Hyperparameters.for_model("autorec", epochs=3, lr=None)
    assert (hp.model, hp.epochs, hp.lr, hp.embedding_dim, hp.batch_size) == ("autorec", 3, 1e-2, 500, 128)
    assert Hyperparameters.for_model("mf") == Hyperparameters()
    from sentinel_ml.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown model 'svd'"):
        TrainConfig(hp=Hyperparameters(model="svd")).validate()


@pytest.mark.slow
def test_autorec_training_learns_and_serves_as_a_factorization(dataset_dir, tmp_path) -> None:
    from sentinel_ml.models.evaluation import rmse
    from sentinel_ml.serving.recommender import Recommender
    from sentinel_ml.training.run import train

    hp = Hyperparameters.for_model("autorec", epochs=4, embedding_dim=64)
    config = TrainConfig(hp=hp, source=DataSource(data=str(dataset_dir)), storage=str(tmp_path / "artifacts"), mlflow_uri="off")
    result = train(config)
    scores = [row["val_rmse"] for row in result.history]
    assert len(scores) == 4 and scores[-1] < scores[0] and result.metrics["test_rmse"] < 1.1
    assert result.model == "autorec"
    record = checkpoints.read_records(str(tmp_path / "artifacts"))[0]
    assert record.config["model"] == "autorec" and record.config["embedding_dim"] == 64

    net, saved = load_network(result.checkpoints["best"])
    assert saved["model_config"]["model"] == "autorec" and net.user_factors.weight.shape[1] == 64
    assert rmse(net, u1_test(dataset_dir)) == pytest.approx(result.metrics["test_rmse"], abs=1e-6)
    recommender = Recommender.load(result.checkpoints["best"])
    top = recommender.top_k(1, 5)
    seen = set(recommender.catalogue.seen(recommender.catalogue.user_index(1)).tolist())
    assert len(top) == 5 and all(recommender.catalogue.item_index(movie) not in seen for movie, _, _ in top)


@pytest.mark.slow
def test_autorec_trains_on_a_ddp_worker_group(ray_session, dataset_dir, tmp_path) -> None:
    from sentinel_ml.training.run import train

    hp = Hyperparameters.for_model("autorec", epochs=2, embedding_dim=32)
    result = train(TrainConfig(hp=hp, workers=2, source=DataSource(data=str(dataset_dir)), storage=str(tmp_path / "a"),
                               mlflow_uri="off"))
    assert [row["epoch"] for row in result.history] == [1, 2] and result.metrics["val_rmse"] < 1.2
    net, _ = load_network(result.checkpoints["last"])
    assert net.user_factors.weight.shape == (943, 32)


@pytest.mark.slow
def test_cli_trains_autorec_and_rejects_an_unknown_model(sentinel_home) -> None:
    result = runner.invoke(app, ["train", "--model", "autorec", "--epochs", "2", "--embedding-dim", "32",
                                 "-o", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["model"] == "autorec" and len(summary["history"]) == 2
    bad = runner.invoke(app, ["train", "--model", "svd"])
    assert bad.exit_code == 2 and "svd" in bad.output


@pytest.mark.slow
def test_a_tuning_study_of_autorec_indexes_its_best_factorization(ray_session, dataset_dir, tmp_path) -> None:
    from sentinel_ml.tuning.config import StudyConfig
    from sentinel_ml.tuning.search_space import from_mapping
    from sentinel_ml.tuning.study import tune

    space = from_mapping({"embedding_dim": 32, "lr": [0.01, 0.02]}, "test", model="autorec")
    config = StudyConfig(model="autorec", space=space, samples=2, max_epochs=3, scheduler="fifo", concurrency=2,
                         source=DataSource(data=str(dataset_dir)), storage=str(tmp_path / "artifacts"), mlflow_uri="off")
    result = tune(config)
    assert result.model == "autorec" and result.counts["completed"] == 2
    uri, record = checkpoints.resolve("best", checkpoints.read_records(str(tmp_path / "artifacts")))
    assert uri == result.checkpoints["best"] and record.config["model"] == "autorec"
    assert record.extra["model"] == "autorec"
    net, _ = load_network(uri)
    assert net.item_factors.weight.shape == (1682, 32)
