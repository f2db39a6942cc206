"""The models Sentinel trains, and each one's training defaults. Pure data: cheap for the CLI to import.

- ``mf``: biased matrix factorization trained on (user, movie, rating) mini-batches. Fast to
  converge (5 epochs), u1 test RMSE about 0.927 with these defaults.
- ``autorec``: item-based AutoRec (``sentinel_ml.models.autorec``) trained on mini-batches of movies and
  exported as a factorization; slower to converge (30 epochs, about as long in wall time), u1 test
  RMSE about 0.90 with these defaults.

Both are served as the same ``BiasedMF`` checkpoint.
"""

from __future__ import annotations

from typing import Any

from sentinel_ml.errors import ConfigError

MF, AUTOREC = "mf", "autorec"
MODELS = (MF, AUTOREC)

# What each hyperparameter means per model: embedding_dim is the factor count (mf) or the hidden
# units, which become the factors (autorec); batch_size counts ratings (mf) or movies (autorec);
# regularization weighs the squared factors (mf) or the squared network weights (autorec).
TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    MF: {"epochs": 5, "batch_size": 512, "lr": 1e-2, "embedding_dim": 32, "regularization": 0.08,
         "lr_decay": 0.6},
    AUTOREC: {"epochs": 30, "batch_size": 128, "lr": 1e-2, "embedding_dim": 500, "regularization": 100.0,
              "lr_decay": 0.85},
}


# Study defaults: the epochs of a trial that is never stopped (enough for the model to converge) and
# ASHA's rungs. AutoRec's val RMSE after one epoch already ranks its configurations well enough (a
# replay of a 20-trial study's learning curves through Ray's ASHA: same best trial, 172 trial-epochs
# with grace 1 / factor 4 against 244 with 2 / 3); MF's small learning rates look worst at epoch 1.
STUDY_DEFAULTS: dict[str, dict[str, int]] = {
    MF: {"max_epochs": 20, "grace_period": 2, "reduction_factor": 3},
    AUTOREC: {"max_epochs": 30, "grace_period": 1, "reduction_factor": 4},
}


def check_model(model: str) -> str:
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}", hint=f"choose one of: {', '.join(MODELS)}")
    return model


def training_defaults(model: str) -> dict[str, Any]:
    return dict(TRAINING_DEFAULTS[check_model(model)])
