"""``ModelConfig``: what builds a network (the data's sizes, the model and its hyperparameters), and
what a checkpoint records of it (its ``model_config``). A frozen dataclass with one field per
hyperparameter (``models.hyperparameters``), flat so that ``asdict`` gives the checkpoint's dict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, field, make_dataclass
from typing import Any

from sentinel_ml.models.hyperparameters import HYPERPARAMETERS, values_of
from sentinel_ml.models.registry import MF, training_defaults

DEFAULT_SCALE = (1.0, 5.0)


def _as_dict(self) -> dict[str, Any]:
    return asdict(self)


def _for_data(cls, hp: Any, *, num_users: int, num_items: int, global_mean: float,
              scale: tuple[float, float] = DEFAULT_SCALE):
    """The config of a run's ``hp`` (a ``Hyperparameters``) on a split of these sizes and rating scale."""
    return cls(num_users=num_users, num_items=num_items, global_mean=global_mean, **values_of(hp), model=hp.model,
               rating_min=float(scale[0]), rating_max=float(scale[1]))


def _from_saved(cls, saved: Mapping[str, Any]):
    """A checkpoint's ``model_config``. An older checkpoint may name no model (it is mf's) and lack a
    hyperparameter (the model's default); an unknown model is a ``ConfigError``."""
    model = saved.get("model", MF)
    known = {k: v for k, v in saved.items() if k in cls.__dataclass_fields__}
    return cls(**{**training_defaults(model), **known, "model": model})


ModelConfig = make_dataclass(
    "ModelConfig",
    [("num_users", int), ("num_items", int), ("global_mean", float),
     *[(h.name, h.type) for h in HYPERPARAMETERS], ("model", str, field(default=MF)),
     # The data's rating scale: predictions are clipped to it. Checkpoints older than the scale field
     # were all MovieLens 100k's, 1-5.
     ("rating_min", float, field(default=DEFAULT_SCALE[0])), ("rating_max", float, field(default=DEFAULT_SCALE[1]))],
    frozen=True,
    namespace={"as_dict": _as_dict, "scale": property(lambda self: (self.rating_min, self.rating_max)), "for_data": classmethod(_for_data), "from_saved": classmethod(_from_saved)},
)
ModelConfig.__module__ = __name__  # where pickle finds it
ModelConfig.__doc__ = "The data's sizes, one field per hyperparameter, and the model (a checkpoint's model_config)."
