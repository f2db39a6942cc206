"""The tuning search space: defaults, YAML and TOML overrides, and every way a file can be wrong."""

from __future__ import annotations

import pytest

from sentinel_ml.entrypoint import exit_code
from sentinel_ml.errors import ConfigError
from sentinel_ml.models.registry import AUTOREC, MF, MODELS
from sentinel_ml.tuning.search_space import (
    CHOICE,
    DEFAULTS,
    FIXED,
    LOGUNIFORM,
    default_space,
    from_mapping,
    load_space,
)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("model", MODELS)
def test_default_space_covers_the_issue_dimensions(model: str) -> None:
    space = default_space(model)
    assert space["lr"].kind == LOGUNIFORM and space["regularization"].kind == LOGUNIFORM
    assert space["embedding_dim"].kind == CHOICE and space["batch_size"].kind == CHOICE
    assert space.as_dict() == DEFAULTS[model]  # the defaults read back in the file's own shape


def test_each_model_has_its_own_scale_and_autorec_is_the_default() -> None:
    assert default_space() == default_space(AUTOREC)
    assert default_space(MF)["regularization"].values[1] < 1 < default_space(AUTOREC)["regularization"].values[0]
    mf_space = from_mapping({"lr": 0.003}, "test", model=MF)
    assert mf_space["lr"].values == (0.003,) and mf_space["embedding_dim"] == default_space(MF)["embedding_dim"]
    with pytest.raises(ConfigError, match="unknown model 'svd'"):
        default_space("svd")


def test_yaml_overrides_some_dimensions_and_keeps_the_rest(tmp_path) -> None:
    path = write(tmp_path, "space.yaml", "lr: {lower: 1e-3, upper: 0.02}\nembedding_dim: [64, 128]\n"
                                         "batch_size: 512\n")
    space = load_space(path)
    assert space["lr"].values == (1e-3, 0.02)  # YAML reads 1e-3 as a string: accepted as a number
    assert space["embedding_dim"].values == (64, 128)
    assert space["batch_size"].kind == FIXED and space["batch_size"].values == (512,)
    assert space["regularization"] == default_space()["regularization"]


def test_toml_takes_the_same_keys(tmp_path) -> None:
    path = write(tmp_path, "space.toml", 'regularization = {lower = 0.05, upper = 0.2}\n'
                                         'lr = [0.005, 0.01]\nlr_decay = 0.8\n')
    space = load_space(path)
    assert space["regularization"].values == (0.05, 0.2)
    assert space["lr"].kind == CHOICE and space["lr"].values == (0.005, 0.01)
    assert space["lr_decay"].values == (0.8,)


def test_space_becomes_ray_tune_sampling_objects() -> None:
    from ray.tune.search.sample import Categorical, Float

    params = from_mapping({"batch_size": 256, "embedding_dim": [32]}, "test").to_tune()
    assert isinstance(params["lr"], Float) and isinstance(params["lr"].get_sampler(), Float._LogUniform)
    assert params["batch_size"] == 256 and params["embedding_dim"] == 32  # fixed: not sampled
    assert isinstance(from_mapping({}, "test").to_tune()["embedding_dim"], Categorical)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"learning_rate": 0.01}, "unknown key 'learning_rate'"),
        ({"embedding_dim": "big"}, "embedding_dim: expected an integer, got 'big'"),
        ({"embedding_dim": [32, 64.5]}, "embedding_dim: expected an integer, got 64.5"),
        ({"batch_size": True}, "batch_size: expected an integer"),
        ({"lr": "fast"}, "lr: expected a number, got 'fast'"),
        ({"embedding_dim": []}, "embedding_dim: the list of choices is empty"),
        ({"lr": {"lower": 0.1, "upper": 0.01}}, "lr: lower 0.1 is greater than upper 0.01"),
        ({"lr": {"lower": 0.01}}, "lr: a range needs exactly the keys lower and upper"),
        ({"lr": {"lower": 0.01, "upper": 0.1, "log": True}}, "exactly the keys lower and upper"),
        ({"regularization": {"lower": 0, "upper": 0.1}}, "needs lower > 0"),
        ({"embedding_dim": {"lower": 16, "upper": 64}}, "embedding_dim: takes a list of choices"),
        ({"lr": 0}, "lr: 0.0 is out of range (> 0)"),
        ({"batch_size": [0, 256]}, "batch_size: 0 is out of range (>= 1)"),
        ({"lr_decay": 1.5}, "lr_decay: 1.5 is out of range"),
        (["lr", 0.01], "expected a mapping of dimension names, got a list"),
        (None, "got an empty file"),
    ],
)
def test_bad_overrides_are_rejected_with_the_reason(raw, message) -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw, "space.yaml")
    assert message in caught.value.message
    assert caught.value.message.startswith("search space space.yaml")
    assert exit_code(caught.value) == 2 and caught.value.hint


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("space.yaml", "lr: {lower: 0.01, upper: [\n", "is not valid YAML"),
        ("space.toml", "lr = {lower = }\n", "is not valid TOML"),
        ("space.json", "{}", "unknown file type '.json'"),
        ("space.yaml", "", "got an empty file"),
    ],
)
def test_bad_files_are_rejected(tmp_path, name, text, message) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_space(write(tmp_path, name, text))


def test_missing_file_names_the_flag(tmp_path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_space(tmp_path / "nowhere.yaml")
    assert "cannot read search space" in caught.value.message and "--space" in caught.value.hint
