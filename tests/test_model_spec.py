"""One model spec, one table of hyperparameters: a toy model registered here reaches the CLI's options,
the jobs' command line, the search space, validation, training and serving, with nothing else edited."""

from __future__ import annotations

import shlex

import pytest
import typer
from typer.testing import CliRunner

from sentinel_cli import options, progress
from sentinel_ml.compute import Compute
from sentinel_ml.errors import ConfigError
from sentinel_ml.models import registry
from sentinel_ml.models.hyperparameters import HYPERPARAMETERS, SEARCH_ORDER, TUNABLE
from sentinel_ml.models.spec import ModelSpec, StudyDefaults
from sentinel_ml.training.config import Hyperparameters, TrainConfig

runner = CliRunner()


def _toy_network(config, train=None):
    """A global mean plus a bias per movie: small enough to train in a second."""
    import torch
    from torch import nn

    class ToyNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item_bias = nn.Embedding(config.num_items, 1)
            nn.init.zeros_(self.item_bias.weight)
            self.register_buffer("mean", torch.tensor(float(config.global_mean)))

        def forward(self, users, items):
            return self.mean + self.item_bias(items).squeeze(1)

        @torch.no_grad()
        def predict(self, users, items):
            return self(users, items).clamp(*config.scale)

        @torch.no_grad()
        def score_all(self, users):  # every item for each user: the ranking metrics (spec.Scorer)
            return (self.mean + self.item_bias.weight.squeeze(1)).expand(len(users), -1)

        def training_loss(self, batch, regularization):
            users, items, ratings = batch
            loss = nn.functional.mse_loss(self(users, items), ratings)
            return loss + regularization * self.item_bias.weight.pow(2).mean(), loss.detach()

        def serving_state_dict(self):
            return {k: v.detach().clone() for k, v in self.state_dict().items()}

    return ToyNet()


def _toy_batches(split, batch_size, **sharding):
    from sentinel_ml.data.batching import TensorBatches

    return TensorBatches(split.train, batch_size, **sharding)


TOY = ModelSpec(
    name="toy",
    summary="a bias per movie (tests only)",
    defaults={"epochs": 7, "batch_size": 2048, "embedding_dim": 4, "regularization": 0.5, "lr_decay": 0.9},
    meanings={"batch_size": "ratings again"},
    space={"lr": [0.05, 0.1]},
    study=StudyDefaults(max_epochs=3, grace_period=1, reduction_factor=2),
    network=_toy_network,
    batches=_toy_batches,
    scorer=_toy_network,
)


@pytest.fixture
def toy(monkeypatch) -> ModelSpec:
    """``TOY`` registered beside mf and autorec for one test."""
    monkeypatch.setattr(registry, "SPECS", dict(registry.SPECS))
    return registry.register(TOY)


def _command_app(received: dict) -> typer.Typer:
    """A command whose hyperparameter options are generated now, from the table and the registered specs."""
    app = typer.Typer()

    @app.command()
    @options.hyperparameter_options(per_run_after="model", tunable_after="model")
    def train(model: str = "mf", hyperparameters: dict | None = None) -> None:
        received.update(Hyperparameters.for_model(model, **hyperparameters).__dict__)

    @app.command()
    def other() -> None:  # two commands: Typer keeps `train` a subcommand
        pass

    return app


def test_the_options_are_generated_from_the_table_and_each_models_defaults(toy) -> None:
    received: dict = {}
    app = _command_app(received)
    help_text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "400"}).stdout
    assert "Training epochs. Default: mf 5, autorec 30, toy 7." in help_text
    assert ("Global batch size (split across workers): ratings (mf, default 512), movies (autorec, default 128) "
            "or ratings again (toy, default 2048).") in help_text
    assert "Adam learning rate. Default: 0.01." in help_text  # one default for every model
    assert all(h.flag in help_text for h in HYPERPARAMETERS)

    result = runner.invoke(app, ["train", "--model", "toy", "--lr", "0.5"])
    assert result.exit_code == 0, result.output
    assert (received["model"], received["lr"], received["epochs"], received["embedding_dim"]) == ("toy", 0.5, 7, 4)
    bad = runner.invoke(app, ["train", "--epochs", "0"])  # the table's inclusive bound, checked by Typer
    assert bad.exit_code == 2 and "--epochs" in bad.output


def test_the_jobs_command_line_carries_every_hyperparameter_and_reads_back(toy) -> None:
    from sentinel_ml import train, tune
    from sentinel_ml.tuning.config import StudyConfig

    config = TrainConfig(hp=Hyperparameters.for_model("toy", lr=0.2), workers=2)
    argv = train.job_argv(config)
    line = shlex.join(argv)
    assert "--model toy --epochs 7 --workers 2 --max-failures 3 --batch-size 2048 --lr 0.2 --embedding-dim 4" in line
    assert all(h.flag in argv for h in HYPERPARAMETERS)
    assert train.config_from_args(train.build_parser().parse_args(argv[3:])).hp == config.hp

    study = StudyConfig(model="toy", samples=2)
    assert (study.max_epochs, study.grace_period, study.reduction_factor) == (3, 1, 2)
    argv = tune.job_argv(study)
    parsed = tune.config_from_args(tune.build_parser().parse_args(argv[3:]))
    assert (parsed.model, parsed.space, parsed.max_epochs) == ("toy", study.space, 3)


def test_the_search_space_takes_the_models_space_and_the_tables_rules(toy) -> None:
    from sentinel_ml.tuning.search_space import CHOICE, FIXED, RULES, default_space, from_mapping
    from sentinel_ml.tuning.trial import Study, hyperparameters

    space = default_space("toy")
    assert [d.name for d in space.dimensions] == [h.name for h in SEARCH_ORDER] == list(RULES)
    assert space["lr"].kind == CHOICE and space["lr"].values == (0.05, 0.1)
    assert space["embedding_dim"].kind == FIXED and space["embedding_dim"].values == (4,)  # the toy's default
    with pytest.raises(ConfigError, match="lr_decay: 1.5 is out of range"):
        from_mapping({"lr_decay": 1.5}, "space.yaml", model="toy")

    study = Study("toy", 3, 42, "u1", 1, "/scratch", (3,), compute=Compute(cpus=1.0))
    sampled = {d.name: d.values[0] for d in space.dimensions}
    hp = hyperparameters(study, sampled)
    assert (hp.model, hp.epochs, hp.lr, hp.embedding_dim) == ("toy", 3, 0.05, 4)


def test_validation_follows_the_table_and_the_registry_checks_a_spec(toy) -> None:
    with pytest.raises(ConfigError, match="--lr must be positive"):
        TrainConfig(hp=Hyperparameters.for_model("toy", lr=0.0)).validate()
    with pytest.raises(ConfigError, match=r"--lr-decay must be in \(0, 1\]"):
        TrainConfig(hp=Hyperparameters.for_model("toy", lr_decay=1.5)).validate()
    with pytest.raises(ConfigError, match="choose one of: mf, autorec, toy"):
        Hyperparameters.for_model("svd")
    with pytest.raises(ValueError, match="unknown hyperparameters in its space: dropout"):
        registry.register(ModelSpec(**{**TOY.__dict__, "name": "toy2", "space": {"dropout": 0.1}}))
    with pytest.raises(ValueError, match="needs a default for epochs"):
        registry.register(ModelSpec(**{**TOY.__dict__, "name": "toy3", "defaults": {}}))


def test_every_hyperparameter_reaches_every_place_that_names_it() -> None:
    """The real commands: `sentinel train`'s options, the training job's flags, the search space's rules
    and the progress lines' labels all come from the one table."""
    from sentinel_cli.app import app
    from sentinel_ml import train
    from sentinel_ml.tuning.search_space import RULES

    command = typer.main.get_command(app).commands["train"]
    flags = {flag for param in command.params for flag in param.opts}
    assert {h.flag for h in HYPERPARAMETERS} <= flags
    assert {h.flag for h in HYPERPARAMETERS} <= set(train.job_argv(TrainConfig()))
    assert set(RULES) == {h.name for h in TUNABLE}
    assert progress._SHORT == {"epochs": "epochs", "batch_size": "batch", "lr": "lr", "embedding_dim": "dim",
                               "regularization": "reg", "lr_decay": "decay"}


def test_a_checkpoint_loads_as_the_model_it_names(toy, tmp_path) -> None:
    import torch

    from sentinel_ml.models.biased_mf import BiasedMF
    from sentinel_ml.models.config import ModelConfig
    from sentinel_ml.store.checkpoint import load_network, save_checkpoint

    config = ModelConfig.for_data(Hyperparameters.for_model("toy"), num_users=4, num_items=6, global_mean=3.0)
    net = _toy_network(config)
    with torch.no_grad():
        net.item_bias.weight[2] = 1.5
    save_checkpoint(str(tmp_path / "toy.pt"), net.serving_state_dict(), config.as_dict(), {})
    loaded, saved = load_network(str(tmp_path / "toy.pt"))
    assert type(loaded).__name__ == "ToyNet" and saved["model_config"]["model"] == "toy"
    assert loaded.predict(torch.tensor([1, 1]), torch.tensor([2, 3])).tolist() == [4.5, 3.0]

    # A checkpoint written before checkpoints named their model is mf's.
    old = {"num_users": 4, "num_items": 6, "global_mean": 3.0, "embedding_dim": 2, "lr": 0.01,
           "regularization": 0.0, "lr_decay": 1.0}
    save_checkpoint(str(tmp_path / "old.pt"), BiasedMF(4, 6, 2, 3.0).state_dict(), old, {})
    assert isinstance(load_network(str(tmp_path / "old.pt"))[0], BiasedMF)

    save_checkpoint(str(tmp_path / "svd.pt"), {}, {**old, "model": "svd"}, {})
    with pytest.raises(ConfigError, match="unknown model 'svd'"):
        load_network(str(tmp_path / "svd.pt"))


@pytest.mark.slow
def test_the_toy_trains_through_its_spec_and_serves(toy, dataset_dir, tmp_path) -> None:
    """The shared Lightning loop (no Ray) builds, batches and exports the toy through its spec; serving
    loads the checkpoint as a toy."""
    from sentinel_ml.data.prepared import prepare
    from sentinel_ml.data.source import DataSource
    from sentinel_ml.serving.recommender import Recommender
    from sentinel_ml.store.checkpoint import save_checkpoint
    from sentinel_ml.training.loop import run_loop

    data = prepare(DataSource(data=str(dataset_dir)), "u1", 42, cache_dir=tmp_path / "prepared")
    result = run_loop(Hyperparameters.for_model("toy", epochs=2, lr=0.05), data)
    assert [row["epoch"] for row in result.history] == [1, 2] and result.metrics["test_rmse"] < 1.1
    assert result.model_config.model == "toy"
    uri = str(tmp_path / "best.pt")
    save_checkpoint(uri, result.best["state_dict"], result.model_config.as_dict(), result.metrics,
                    data=data.serving_artifact())
    recommender = Recommender.load(uri)
    assert type(recommender.network).__name__ == "ToyNet"
    assert (recommender.num_users, recommender.num_items) == (943, 1682)
    assert len(recommender.top_k(1, 3)) == 3
