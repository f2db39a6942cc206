"""Where a run's ratings come from, as plain, cheap-to-pickle values (no numpy or pyarrow here).

``DataSource`` is what the CLI's ``--dataset``, ``--data``, ``--columns``, ``--items`` and
``--rating-scale`` make: it travels to Ray workers, Tune trials and, as flags, into RayJobs
(``sentinel_ml.entrypoint``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sentinel_ml.data import DATASETS, DEFAULT_DATASET
from sentinel_ml.errors import ConfigError

COLUMN_ROLES = ("user", "item", "rating", "timestamp")


@dataclass(frozen=True)
class Columns:
    """The user's column names for each role; ``timestamp`` is optional in the data."""

    user: str = "user_id"
    item: str = "item_id"
    rating: str = "rating"
    timestamp: str = "timestamp"

    @classmethod
    def parse(cls, text: str | None) -> Columns:
        """``user=uid,item=movie,rating=stars[,timestamp=ts]``; roles left out keep their defaults."""
        if not text:
            return cls()
        given: dict[str, str] = {}
        for part in text.split(","):
            role, sep, name = part.partition("=")
            role, name = role.strip(), name.strip()
            if not sep or not name or role not in COLUMN_ROLES:
                raise ConfigError(f"--columns: cannot read {part.strip()!r}",
                                  hint="give role=column pairs, e.g. --columns user=uid,item=movie,rating=stars"
                                       f" (roles: {', '.join(COLUMN_ROLES)})")
            if role in given:
                raise ConfigError(f"--columns names {role} twice")
            given[role] = name
        return cls(**given)

    def as_text(self) -> str:
        return ",".join(f"{role}={getattr(self, role)}" for role in COLUMN_ROLES)


def parse_scale(text: str | None) -> tuple[float, float] | None:
    """``--rating-scale 1:5`` → (1.0, 5.0)."""
    if not text:
        return None
    low, sep, high = text.partition(":")
    try:
        scale = (float(low), float(high))
    except ValueError:
        scale = None
    if not sep or scale is None or not scale[0] < scale[1]:
        raise ConfigError(f"--rating-scale: cannot read {text!r}", hint="give LOW:HIGH, e.g. --rating-scale 1:5")
    return scale


@dataclass(frozen=True)
class DataSource:
    """A run's ratings: a MovieLens dataset by name (``data`` overrides where its archive comes from),
    or, when ``data`` is a ratings table (CSV, TSV, Parquet file or directory; local or ``s3://``),
    the user's own ratings. ``sentinel_ml.data.sources.is_table`` tells the two apart."""

    dataset: str = DEFAULT_DATASET
    data: str | None = None
    columns: Columns = field(default_factory=Columns)
    items: str | None = None  # the user's item table (id, title): names for recommendations
    rating_scale: tuple[float, float] | None = None

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}", hint=f"choose one of: {', '.join(DATASETS)}")

    @property
    def default_split(self) -> str:
        """``u1`` where the data is ml-100k's own archive (its canonical split), else ``random``."""
        from sentinel_ml.data.sources import is_table

        return "u1" if self.dataset == DEFAULT_DATASET and not is_table(self.data) else "random"

    def job_args(self) -> list[str]:
        """The flags that carry this source into a job (``sentinel_ml.entrypoint.add_job_args``)."""
        words = ["--dataset", self.dataset]
        if self.data:
            words += ["--data", self.data]
        if self.columns != Columns():
            words += ["--columns", self.columns.as_text()]
        if self.items:
            words += ["--items", self.items]
        if self.rating_scale:
            words += ["--rating-scale", f"{self.rating_scale[0]:g}:{self.rating_scale[1]:g}"]
        return words

    @classmethod
    def from_args(cls, *, dataset: str = DEFAULT_DATASET, data: str | None = None, columns: str | None = None,
                  items: str | None = None, rating_scale: str | None = None) -> DataSource:
        """From the flags' text, as the CLI and the jobs read them (each checked here)."""
        source = cls(dataset=dataset, data=data or None, columns=Columns.parse(columns), items=items or None,
                     rating_scale=parse_scale(rating_scale))
        source.validate()
        return source
