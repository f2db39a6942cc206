"""The tuning search space: its defaults, overrides from a small YAML or TOML file, and validation.

Everything here is pure and cheap to import, so the CLI rejects a bad file before Ray or torch load.
The dimensions are the hyperparameters with a search rule (``sentinel_ml.models.hyperparameters``),
each checked against its bounds. Each model has its own default space (its spec's ``space``), since the
same name means a different scale to each. A file overrides any of its dimensions; the others keep their
defaults::

    lr: {lower: 0.001, upper: 0.05}   # a log-uniform range (lr, regularization)
    embedding_dim: [64, 128, 256]     # a choice (any dimension)
    batch_size: 512                   # a fixed value (any dimension)

TOML takes the same keys: ``lr = {lower = 0.001, upper = 0.05}``, ``embedding_dim = [64, 128]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentinel_ml.errors import ConfigError
from sentinel_ml.models.hyperparameters import SEARCH_ORDER, Hyperparameter
from sentinel_ml.models.registry import AUTOREC, SPECS, get, training_defaults

LOGUNIFORM, CHOICE, FIXED = "loguniform", "choice", "fixed"
FORMAT_HINT = "see docs/tuning.md: e.g. `lr: {lower: 0.001, upper: 0.05}` or `embedding_dim: [64, 128]`"
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class _Rule:
    """What one dimension accepts: its type, its smallest legal value, and whether it takes ranges."""

    type: type
    minimum: float
    strict: bool  # minimum itself is excluded
    ranged: bool  # accepts {lower, upper} (sampled log-uniformly)
    maximum: float = math.inf

    def check(self, name: str, value: Any, source: str) -> int | float:
        if isinstance(value, str) and self.type is float and _NUMBER.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            self.type is int and not isinstance(value, int)
        ):
            expected = "an integer" if self.type is int else "a number"
            raise _error(source, name, f"expected {expected}, got {value!r} ({type(value).__name__})")
        value = self.type(value)
        low_ok = value > self.minimum if self.strict else value >= self.minimum
        if not low_ok or value > self.maximum or not math.isfinite(value):
            raise _error(source, name, f"{value!r} is out of range ({self.describe()})")
        return value

    def describe(self) -> str:
        low = f"{'>' if self.strict else '>='} {self.minimum:g}"
        return low if math.isinf(self.maximum) else f"{low} and <= {self.maximum:g}"


def _rule(h: Hyperparameter) -> _Rule:
    return _Rule(h.type, h.bounds.minimum, strict=h.bounds.strict, ranged=h.search.ranged,
                 maximum=min(h.bounds.maximum, h.search.maximum))


RULES: dict[str, _Rule] = {h.name: _rule(h) for h in SEARCH_ORDER}  # in the order Tune draws them


@dataclass(frozen=True)
class Dimension:
    name: str
    kind: str  # LOGUNIFORM (values = lower, upper), CHOICE (the options) or FIXED (one value)
    values: tuple

    def describe(self) -> str:
        if self.kind == LOGUNIFORM:
            return f"log-uniform [{self.values[0]:g}, {self.values[1]:g}]"
        if self.kind == CHOICE:
            return "choice " + ", ".join(f"{v:g}" for v in self.values)
        return f"fixed {self.values[0]:g}"

    def as_dict(self) -> dict[str, Any]:
        if self.kind == LOGUNIFORM:
            return {"lower": self.values[0], "upper": self.values[1]}
        return list(self.values) if self.kind == CHOICE else self.values[0]


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]

    def __getitem__(self, name: str) -> Dimension:
        return next(d for d in self.dimensions if d.name == name)

    def as_dict(self) -> dict[str, Any]:
        """The same shape a space file takes: feeding it back gives the same space."""
        return {d.name: d.as_dict() for d in self.dimensions}

    def to_tune(self) -> dict[str, Any]:
        """Ray Tune's ``param_space``: sampling objects for ranges and choices, plain fixed values."""
        from ray import tune

        space: dict[str, Any] = {}
        for d in self.dimensions:
            if d.kind == LOGUNIFORM and d.values[0] < d.values[1]:
                space[d.name] = tune.loguniform(*d.values)
            elif d.kind == CHOICE and len(d.values) > 1:
                space[d.name] = tune.choice(list(d.values))
            else:
                space[d.name] = d.values[0]
        return space


def model_space(model: str) -> dict[str, Any]:
    """``model``'s default space in a space file's shape: its spec's, each dimension it leaves out fixed
    at the model's default."""
    spec, defaults = get(model), training_defaults(model)
    return {name: spec.space.get(name, defaults[name]) for name in RULES}


DEFAULTS: dict[str, dict[str, Any]] = {model: model_space(model) for model in SPECS}  # the registered models'


def default_space(model: str = AUTOREC) -> SearchSpace:
    return from_mapping({}, source="defaults", model=model)


def load_space(path: str | Path | None, model: str = AUTOREC) -> SearchSpace:
    """``model``'s default space with a file's overrides applied; ``None`` gives the defaults."""
    if path is None:
        return default_space(model)
    file = Path(path).expanduser()
    suffix = file.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigError(f"search space {file}: unknown file type {suffix or '(none)'!r}",
                          hint="name it .yaml, .yml or .toml")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read search space {file}: {e.strerror or e}",
                          hint="check the --space path") from None
    raw = parse_text(text, "toml" if suffix == ".toml" else "yaml", str(file))
    return from_mapping(raw, str(file), model=model)


def parse_text(text: str, fmt: str, source: str) -> Any:
    """YAML or TOML text to plain data; a syntax error names the file and where it is."""
    try:
        if fmt == "toml":
            import tomllib

            return tomllib.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - yaml.YAMLError and tomllib.TOMLDecodeError
        detail = " ".join(str(e).split())
        raise ConfigError(f"search space {source} is not valid {fmt.upper()}: {detail}",
                          hint=FORMAT_HINT) from None


def from_mapping(raw: Any, source: str, model: str = AUTOREC) -> SearchSpace:
    """Validate overrides and merge them over ``model``'s defaults."""
    if not isinstance(raw, Mapping):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise ConfigError(f"search space {source}: expected a mapping of dimension names, got {got}",
                          hint=FORMAT_HINT)
    unknown = sorted(str(k) for k in raw if k not in RULES)
    if unknown:
        raise ConfigError(f"search space {source}: unknown key {', '.join(map(repr, unknown))}",
                          hint=f"known dimensions: {', '.join(RULES)}")
    merged = {**model_space(model), **raw}
    return SearchSpace(tuple(_dimension(name, merged[name], RULES[name], source) for name in RULES))


def _dimension(name: str, value: Any, rule: _Rule, source: str) -> Dimension:
    if isinstance(value, Mapping):
        if not rule.ranged:
            raise _error(source, name, "takes a list of choices or one value, not a range")
        keys = set(value)
        if keys != {"lower", "upper"}:
            raise _error(source, name, f"a range needs exactly the keys lower and upper, got "
                         f"{', '.join(sorted(map(str, keys))) or 'none'}")
        lower, upper = (rule.check(name, value[k], source) for k in ("lower", "upper"))
        if lower > upper:
            raise _error(source, name, f"lower {lower:g} is greater than upper {upper:g}")
        if lower <= 0:
            raise _error(source, name, "a log-uniform range needs lower > 0 (use a fixed 0 instead)")
        return Dimension(name, LOGUNIFORM, (lower, upper))
    if isinstance(value, list):
        if not value:
            raise _error(source, name, "the list of choices is empty")
        options = tuple(dict.fromkeys(rule.check(name, v, source) for v in value))
        return Dimension(name, CHOICE, options)
    return Dimension(name, FIXED, (rule.check(name, value, source),))


def _error(source: str, name: str, problem: str) -> ConfigError:
    return ConfigError(f"search space {source}: {name}: {problem}", hint=FORMAT_HINT)
