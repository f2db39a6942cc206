"""The training hyperparameters, defined once: each one's type, bounds, help, search-space rule and
progress label. Pure data, cheap for the CLI to import.

Everything that names a hyperparameter is derived from ``HYPERPARAMETERS``: the ``sentinel train``
options (``sentinel_cli.options``), the jobs' command line (``sentinel_ml.train``), the typed
``Hyperparameters`` and ``ModelConfig`` (``training.config``, ``models.config``), their validation, the
search space's rules (``tuning.search_space``), a trial's sampled values (``tuning.trial``) and the
tuning progress lines (``sentinel_cli.progress``). Each model's defaults, default search space and
meaning of a hyperparameter live in its spec (``sentinel_ml.models.specs``). A new hyperparameter is
one row here, plus the model code that reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bounds:
    """The legal values: at least ``minimum`` (above it when ``strict``), at most ``maximum``."""

    minimum: float
    strict: bool = False
    maximum: float = math.inf

    def admits(self, value: float) -> bool:
        low_ok = value > self.minimum if self.strict else value >= self.minimum
        return low_ok and value <= self.maximum

    def requirement(self, kind: type) -> str:
        """What a value must be, in words: ``at least 1``, ``positive``, ``>= 0``, ``in (0, 1]``."""
        if not math.isinf(self.maximum):
            return f"in {'(' if self.strict else '['}{self.minimum:g}, {self.maximum:g}]"
        if self.strict:
            return "positive" if self.minimum == 0 else f"> {self.minimum:g}"
        return f"at least {self.minimum:g}" if kind is int else f">= {self.minimum:g}"


@dataclass(frozen=True)
class Search:
    """How a hyperparameter is tuned: the shapes a search-space file may give it."""

    draw: int  # Tune draws the dimensions in this order: a study's seed samples the same trials as before
    ranged: bool  # accepts {lower, upper}, sampled log-uniformly; else a list of choices or one value
    maximum: float = math.inf  # a cap in search spaces only, on top of the value's own bounds


@dataclass(frozen=True)
class Hyperparameter:
    name: str  # the attribute, the JSON key, the search-space key; the flag is ``--`` + it with dashes
    type: type  # int or float
    bounds: Bounds
    help: str  # the option's help, without the defaults (sentinel_cli.options adds each model's)
    label: str = ""  # the short name in tuning progress lines; empty: the name
    default: Any = None  # the value for a model whose spec names none (None: every spec must)
    search: Search | None = None  # None: a study does not sample it (epochs: a study's own max_epochs)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def short(self) -> str:
        return self.label or self.name

    def problem(self, value: Any) -> str | None:
        """The message for a value out of bounds (the CLI's and the jobs' validation), else None."""
        if self.bounds.admits(value):
            return None
        return f"{self.flag} must be {self.bounds.requirement(self.type)}"


# In the order of `sentinel train --help`, the jobs' command line and a run's recorded config.
HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter("epochs", int, Bounds(1), "Training epochs"),
    Hyperparameter("batch_size", int, Bounds(1), "Global batch size (split across workers)", label="batch",
                   search=Search(draw=4, ranged=False)),
    Hyperparameter("lr", float, Bounds(0.0, strict=True), "Adam learning rate", default=1e-2,
                   search=Search(draw=1, ranged=True)),
    Hyperparameter("embedding_dim", int, Bounds(1), "Latent factors per user and movie", label="dim",
                   search=Search(draw=3, ranged=False, maximum=4096)),
    Hyperparameter("regularization", float, Bounds(0.0), "L2 weight", label="reg",
                   search=Search(draw=2, ranged=True)),
    Hyperparameter("lr_decay", float, Bounds(0.0, strict=True, maximum=1.0), "Learning-rate decay per epoch",
                   label="decay", search=Search(draw=5, ranged=False)),
)

BY_NAME: dict[str, Hyperparameter] = {h.name: h for h in HYPERPARAMETERS}
# What a study fixes for every trial (the run's length), what it samples, and the order Tune draws those in.
PER_RUN: tuple[Hyperparameter, ...] = tuple(h for h in HYPERPARAMETERS if h.search is None)
TUNABLE: tuple[Hyperparameter, ...] = tuple(h for h in HYPERPARAMETERS if h.search is not None)
SEARCH_ORDER: tuple[Hyperparameter, ...] = tuple(sorted(TUNABLE, key=lambda h: h.search.draw))


def problems(values: Any) -> list[str]:
    """The validation messages of ``values`` (an object with one attribute per hyperparameter), in order."""
    found = (h.problem(getattr(values, h.name)) for h in HYPERPARAMETERS)
    return [message for message in found if message]


def values_of(values: Any) -> dict[str, Any]:
    """Each hyperparameter's value from an object with one attribute per hyperparameter, by name."""
    return {h.name: getattr(values, h.name) for h in HYPERPARAMETERS}
