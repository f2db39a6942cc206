"""The models Sentinel trains, by name: each one's ``ModelSpec`` and what follows from it. Pure data,
cheap for the CLI to import (the specs import torch only when they build a network).

Registering a model is one module under ``sentinel_ml.models.specs`` holding its ``SPEC``, plus its
name in ``REGISTERED``. ``mf`` and ``autorec`` are described in their spec modules; both are served as
the same ``BiasedMF`` factorization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from importlib import import_module
from typing import Any

from sentinel_ml.errors import ConfigError
from sentinel_ml.models.hyperparameters import BY_NAME, HYPERPARAMETERS
from sentinel_ml.models.spec import ModelSpec

MF, AUTOREC = "mf", "autorec"  # the default models of `sentinel train` and of `sentinel tune`
REGISTERED = (MF, AUTOREC)  # a module each under sentinel_ml.models.specs, in the order --model lists them

SPECS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` after checking it against the hyperparameter table (a mistake there is a bug)."""
    for what in ("defaults", "space", "meanings"):
        unknown = sorted(set(getattr(spec, what)) - set(BY_NAME))
        if unknown:
            raise ValueError(f"model {spec.name!r}: unknown hyperparameters in its {what}: {', '.join(unknown)}")
    for h in HYPERPARAMETERS:
        value = spec.defaults.get(h.name, h.default)
        if value is None:
            raise ValueError(f"model {spec.name!r} needs a default for {h.name} (the table has none)")
        if h.problem(value):
            raise ValueError(f"model {spec.name!r}: its default {h.name}={value!r}: {h.problem(value)}")
    SPECS[spec.name] = spec
    return spec


for _name in REGISTERED:
    register(import_module(f"sentinel_ml.models.specs.{_name}").SPEC)

MODELS = tuple(SPECS)  # the registered models' names, for choices built at import (names(): at call time)


def names() -> tuple[str, ...]:
    return tuple(SPECS)


def get(model: str) -> ModelSpec:
    try:
        return SPECS[model]
    except KeyError:
        raise ConfigError(f"unknown model {model!r}", hint=f"choose one of: {', '.join(SPECS)}") from None


def check_model(model: str) -> str:
    return get(model).name


def training_defaults(model: str) -> dict[str, Any]:
    """Every hyperparameter's default for ``model``, by name, in the table's order."""
    spec = get(model)
    return {h.name: spec.defaults.get(h.name, h.default) for h in HYPERPARAMETERS}


def study_defaults(model: str) -> dict[str, int]:
    return asdict(get(model).study)


def per_model(value: Callable[[ModelSpec], Any]) -> str:
    """``value`` of each model for help text: ``mf 20, autorec 30``."""
    return ", ".join(f"{spec.name} {show(value(spec))}" for spec in SPECS.values())


def show(value: Any) -> str:
    """A default as help text shows it: ``0.01``, ``100``, ``512``."""
    return f"{value:g}" if isinstance(value, float) else str(value)
