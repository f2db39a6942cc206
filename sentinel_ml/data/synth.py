"""``sentinel data synth``: a MovieLens-like ratings table of any size, with a known best achievable RMSE.

The model (every constant below is written into ``_synth.json``):

- **Who rates how much.** Each user rates ``MIN_PER_USER`` items plus a share of the rest drawn from
  a multinomial over log-normal activity weights (heavy-tailed: a few users rate thousands of items),
  capped at half the catalogue.
- **Which items.** Items have Zipf-like popularity, ``(rank + ZIPF_OFFSET) ** -ZIPF_EXPONENT``, over a
  random permutation of the ids. A user's items are drawn by popularity *without replacement*: draws
  with replacement whose repeats are dropped, which is exactly successive sampling from the remaining
  weights. A heavy user who still lacks items after ``_POPULAR_ROUNDS`` rounds gets the rest uniformly
  from the items not yet chosen (rare: only users who rate a large share of the catalogue). So no
  (user, item) pair repeats.
- **What rating.** A planted low-rank model gives each pair a score
  ``s = GLOBAL_MEAN + b_u + b_i + p_u · q_i`` (biases and factors Gaussian, ``--dim`` factors whose
  product has standard deviation ``INTERACTION_SD``); the rating is ``s + N(0, noise²)``, clipped to
  0.5–5 and rounded to half stars.
- **When.** Each user has a start time (2000–2020) and a log-normal active span; their ratings fall
  uniformly in it. Rows are sorted by user, then timestamp (as ML-25M's ratings.csv).

**The noise floor.** Given the planted score ``s``, the rating is a known discrete variable, so the
predictor with the least expected squared error is its mean ``E[y | s]`` (the Bayes-optimal
predictor), which has a closed form over the half-star bins:
``E[y | s] = 0.5 + 0.5 · Σ_t Φ((s - t) / σ)`` for the nine bin edges ``t = 0.75, 1.25, …, 4.75``.
``noise_floor`` is that predictor's RMSE on the generated ratings: no model, however trained, can
expect to do better on these ratings. ``noise_floor_expected`` is its expectation
(``sqrt(mean Var(y | s))``, free of sampling noise), and ``planted_rmse`` the RMSE of the planted score
itself clipped to the scale (what an exact recovery of the low-rank model would score, without
modelling the rounding and the clipping): the two differ only where clipping matters.

Generation streams by parts of about ``part_rows`` ratings (users never straddle parts): memory holds
the parameters (users × dim and items × dim) and one part, never the whole table.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from sentinel_ml.errors import ConfigError, StorageError

MANIFEST = "_synth.json"  # "_": Parquet readers of the directory (pyarrow, Spark, Ray) skip it
FORMAT = "sentinel-synth/1"
SCALE = (0.5, 5.0)
COLUMNS = ("user_id", "item_id", "rating", "timestamp")
MIN_PER_USER = 5  # so every user has ratings for training, validation and test in any split
DEFAULT_PART_ROWS = 1_000_000
DEFAULT_DIM = 8
DEFAULT_NOISE = 0.8

# The planted model and the shape of the data; MovieLens-like: mean about 3.5, standard deviation
# about 1.1 at the default noise.
GLOBAL_MEAN = 3.5
USER_BIAS_SD = 0.35
ITEM_BIAS_SD = 0.45
INTERACTION_SD = 0.45  # of p_u · q_i
ZIPF_EXPONENT = 1.0
ZIPF_OFFSET = 5.0
ACTIVITY_SIGMA = 1.0  # of the log-normal user activity weights
MAX_SHARE_PER_USER = 0.5  # of the catalogue
TIME_START = 946_684_800  # 2000-01-01
TIME_END = 1_577_836_800  # 2020-01-01
SPAN_MEDIAN_S = 30 * 86_400
SPAN_SIGMA = 2.0

_POPULAR_ROUNDS = 6
_EDGES = np.arange(0.75, 4.76, 0.5)  # half-star bin edges
_VALUES = np.arange(0.5, 5.01, 0.5)  # half-star ratings
_BLOCK = 1 << 18  # rows per factor product: bounds the gathered (rows × dim) arrays

Progress = Callable[[int, int], None]  # (ratings written, ratings in all)


@dataclass(frozen=True)
class SynthSpec:
    ratings: int
    users: int
    items: int
    seed: int = 0
    dim: int = DEFAULT_DIM
    noise: float = DEFAULT_NOISE
    part_rows: int = DEFAULT_PART_ROWS

    @property
    def max_per_user(self) -> int:
        return max(MIN_PER_USER, int(self.items * MAX_SHARE_PER_USER))

    def validate(self) -> None:
        """Flags that cannot make a table raise ``ConfigError`` (exit 2), naming the flag and the fix."""
        for flag, value in (("--ratings", self.ratings), ("--users", self.users), ("--items", self.items),
                            ("--dim", self.dim), ("--part-rows", self.part_rows)):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1 (got {value})")
        if not self.noise > 0:
            raise ConfigError(f"--noise must be positive (got {self.noise})",
                              hint="ratings need noise around the planted scores; e.g. --noise 0.8")
        if self.items < 2 * MIN_PER_USER:
            raise ConfigError(f"--items must be at least {2 * MIN_PER_USER} (got {self.items})",
                              hint=f"each user rates at least {MIN_PER_USER} items, at most half the catalogue")
        if self.ratings < MIN_PER_USER * self.users:
            raise ConfigError(
                f"--ratings {self.ratings:,} is too few for --users {self.users:,}: every user rates at least "
                f"{MIN_PER_USER} items", hint=f"give --ratings at least {MIN_PER_USER * self.users:,}, or fewer --users")
        most = self.max_per_user * self.users
        if self.ratings > most:
            raise ConfigError(
                f"--ratings {self.ratings:,} is too many for --users {self.users:,} × --items {self.items:,}: "
                f"a user rates at most {self.max_per_user:,} items (half the catalogue), {most:,} in all",
                hint="give more --items or --users, or fewer --ratings")


@dataclass(frozen=True)
class SynthResult:
    out: str
    ratings: int
    users: int
    items: int
    items_rated: int
    parts: int
    noise_floor: float  # RMSE of E[rating | planted score] on the generated ratings
    noise_floor_expected: float
    planted_rmse: float
    rating_mean: float
    rating_sd: float
    seconds: float
    files: list[str] = field(default_factory=list)


def synthesize(spec: SynthSpec, out: str, *, overwrite: bool = False,
               progress: Progress | None = None) -> SynthResult:
    """Write ``spec``'s table under ``out`` (a directory or ``s3://bucket/prefix``): ``part-NNNNN.parquet``
    files and ``_synth.json``. Deterministic for a spec (its seed and part size included).

    A local table appears whole or not at all (written beside ``out``, then renamed); on S3 the parts
    go first and ``_synth.json`` last, and a failure removes what was written. An ``out`` that already
    holds files is refused unless ``overwrite``.
    """
    from sentinel_ml.store import uri as storage

    spec.validate()
    started = time.perf_counter()
    s3 = storage.is_s3(out)
    if s3:
        storage.split_s3(out)  # a bad URI fails before any work
        if storage.sizes_under(out):
            if not overwrite:
                raise ConfigError(f"{out} already holds objects", hint="pass --overwrite, or another --out")
            storage.remove_tree(out)
        stage = out
    else:
        target = storage.local_path(out).absolute()
        if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
            raise ConfigError(f"{target} already exists and is not empty", hint="pass --overwrite, or another --out")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            stage = tempfile.mkdtemp(prefix=f".{target.name}.synth-", dir=target.parent)
        except OSError as e:
            raise StorageError(f"cannot write under {target.parent}: {e.strerror or e}") from None
    try:
        result = _generate(spec, stage, progress)
        if not s3:
            if target.is_dir() and overwrite:
                shutil.rmtree(target)
            elif target.exists():
                target.unlink() if not target.is_dir() else target.rmdir()
            os.replace(stage, target)
    except BaseException:
        storage.remove_tree(stage)
        raise
    return SynthResult(**{**asdict(result), "out": out if s3 else str(target),
                          "seconds": round(time.perf_counter() - started, 3)})


class _Model:
    """The parameters: users' counts, biases, factors and time spans; items' popularity, biases and
    factors. Sized by users and items, never by ratings."""

    def __init__(self, spec: SynthSpec) -> None:
        rng = np.random.default_rng([spec.seed, 0])
        u, i, d = spec.users, spec.items, spec.dim
        self.counts = _activity(spec, rng)
        ranks = np.arange(1, i + 1, dtype=np.float64)
        weights = (ranks + ZIPF_OFFSET) ** -ZIPF_EXPONENT
        self.cum_popularity = np.cumsum(weights / weights.sum())
        self.cum_popularity[-1] = 1.0
        self.rank_to_id = rng.permutation(i).astype(np.int64) + 1  # MovieLens ids start at 1
        factor_sd = np.sqrt(INTERACTION_SD / np.sqrt(d))
        self.user_bias = rng.normal(0.0, USER_BIAS_SD, u).astype(np.float32)
        self.item_bias = rng.normal(0.0, ITEM_BIAS_SD, i).astype(np.float32)  # by rank
        self.user_factors = rng.normal(0.0, factor_sd, (u, d)).astype(np.float32)
        self.item_factors = rng.normal(0.0, factor_sd, (i, d)).astype(np.float32)
        self.user_start = rng.integers(TIME_START, TIME_END, u)
        span = np.exp(rng.normal(np.log(SPAN_MEDIAN_S), SPAN_SIGMA, u))
        self.user_span = np.minimum(span, TIME_END - self.user_start).astype(np.int64) + 1

    def score(self, users: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """The planted score of each (user, item rank) pair, float64."""
        out = np.empty(len(users), dtype=np.float64)
        for lo in range(0, len(users), _BLOCK):
            u, r = users[lo:lo + _BLOCK], ranks[lo:lo + _BLOCK]
            dot = np.einsum("ij,ij->i", self.user_factors[u], self.item_factors[r])
            out[lo:lo + _BLOCK] = GLOBAL_MEAN + self.user_bias[u] + self.item_bias[r] + dot
        return out


def _activity(spec: SynthSpec, rng: np.random.Generator) -> np.ndarray:
    """Ratings per user: ``MIN_PER_USER`` each, the rest by heavy-tailed weights, none above the cap;
    they sum to ``spec.ratings`` exactly."""
    weights = rng.lognormal(0.0, ACTIVITY_SIGMA, spec.users)
    counts = np.full(spec.users, MIN_PER_USER, dtype=np.int64)
    cap = spec.max_per_user
    left = spec.ratings - counts.sum()
    while left > 0:
        room = cap - counts
        open_ = room > 0
        p = np.where(open_, weights, 0.0)
        counts += np.minimum(rng.multinomial(left, p / p.sum()), room)
        left = spec.ratings - counts.sum()
    return counts


def _sample_items(model: _Model, need: np.ndarray, items: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct item ranks for each of ``len(need)`` users (local indices), ``need[u]`` each.
    Returns keys ``user * items + rank``, sorted by user, each user's in draw order."""
    n = len(need)
    accepted = np.empty(0, dtype=np.int64)
    short = need.copy()
    rounds = 0
    while short.any():
        popular = rounds < _POPULAR_ROUNDS
        extra = np.ceil(short * (0.25 if rounds == 0 else 1.0)).astype(np.int64) + 4
        draws = np.where(short > 0, short + extra, 0)
        who = np.repeat(np.arange(n, dtype=np.int64), draws)
        if popular:
            ranks = np.searchsorted(model.cum_popularity, rng.random(len(who)), side="right")
        else:  # the rest of a heavy user's catalogue: uniform over items (repeats dropped as before)
            ranks = rng.integers(0, items, len(who))
        keys = np.concatenate([accepted, who * items + np.minimum(ranks, items - 1)])
        unique, first = np.unique(keys, return_index=True)
        user = unique // items
        order = np.lexsort((first, user))  # by user, then draw order (accepted keys come first)
        unique, user = unique[order], user[order]
        starts = np.searchsorted(user, np.arange(n))
        rank_in_user = np.arange(len(unique)) - starts[user]
        accepted = unique[rank_in_user < need[user]]
        short = need - np.bincount(accepted // items, minlength=n)
        rounds += 1
    return accepted


def bayes_rating(score: np.ndarray, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the half-star rating given the planted score: the rating is
    ``round_half(clip(score + N(0, noise²), 0.5, 5))``, so ``P(y ≥ v) = Φ((score - (v - 0.25)) / noise)``
    for each half star ``v`` above 0.5."""
    from scipy.special import ndtr

    mean = np.full(score.shape, _VALUES[0])
    second = np.full(score.shape, _VALUES[0] ** 2)
    steps = np.diff(_VALUES ** 2)
    for edge, step in zip(_EDGES, steps, strict=True):
        above = ndtr((score - edge) / noise)
        mean += 0.5 * above
        second += step * above
    return mean, np.maximum(second - mean ** 2, 0.0)


def _part_table(model: _Model, spec: SynthSpec, part: int, lo: int, hi: int):
    """Part ``part``: the ratings of users ``lo``..``hi`` (0-based), and its error sums."""
    import pyarrow as pa

    rng = np.random.default_rng([spec.seed, 1, part])
    keys = _sample_items(model, model.counts[lo:hi], spec.items, rng)
    users = keys // spec.items + lo
    ranks = keys % spec.items
    score = model.score(users, ranks)
    observed = np.clip(score + rng.normal(0.0, spec.noise, len(score)), *SCALE)
    rating = np.round(observed * 2.0) / 2.0
    best, variance = bayes_rating(score, spec.noise)
    sums = {"bayes": float(np.sum((rating - best) ** 2)), "variance": float(variance.sum()),
            "planted": float(np.sum((rating - np.clip(score, *SCALE)) ** 2)),
            "rating": float(rating.sum()), "rating2": float(np.sum(rating ** 2))}
    timestamp = model.user_start[users] + (rng.random(len(users)) * model.user_span[users]).astype(np.int64)
    order = np.lexsort((timestamp, users))
    table = pa.table({
        "user_id": pa.array(users[order] + 1, pa.int64()),
        "item_id": pa.array(model.rank_to_id[ranks[order]], pa.int64()),
        "rating": pa.array(rating[order].astype(np.float32), pa.float32()),
        "timestamp": pa.array(timestamp[order], pa.int64()),
    })
    return table, ranks, sums


def _parts(counts: np.ndarray, part_rows: int) -> list[tuple[int, int]]:
    """User ranges [lo, hi) of about ``part_rows`` ratings each (a user is never split)."""
    ends = np.cumsum(counts)
    bounds = np.searchsorted(ends, np.arange(part_rows, int(ends[-1]), part_rows), side="left") + 1
    cuts = [0, *sorted({int(b) for b in bounds if 0 < b < len(counts)}), len(counts)]
    return list(itertools.pairwise(cuts))


def _generate(spec: SynthSpec, out: str, progress: Progress | None) -> SynthResult:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sentinel_ml.store import uri as storage

    model = _Model(spec)
    ranges = _parts(model.counts, spec.part_rows)
    rated = np.zeros(spec.items, dtype=np.int64)
    totals = dict.fromkeys(("bayes", "variance", "planted", "rating", "rating2"), 0.0)
    files, done = [], 0
    for part, (lo, hi) in enumerate(ranges):
        table, ranks, sums = _part_table(model, spec, part, lo, hi)
        rated += np.bincount(ranks, minlength=spec.items)
        for key, value in sums.items():
            totals[key] += value
        name = f"part-{part:05d}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        storage.write_bytes(storage.join(out, name), sink.getvalue().to_pybytes())
        files.append(name)
        done += table.num_rows
        del table, sink
        if progress:
            progress(done, spec.ratings)
    n = spec.ratings
    mean = totals["rating"] / n
    result = SynthResult(
        out=out, ratings=n, users=spec.users, items=spec.items, items_rated=int((rated > 0).sum()),
        parts=len(files), noise_floor=round(float(np.sqrt(totals["bayes"] / n)), 6),
        noise_floor_expected=round(float(np.sqrt(totals["variance"] / n)), 6),
        planted_rmse=round(float(np.sqrt(totals["planted"] / n)), 6), rating_mean=round(mean, 6),
        rating_sd=round(float(np.sqrt(max(totals["rating2"] / n - mean ** 2, 0.0))), 6), seconds=0.0, files=files)
    storage.write_bytes(storage.join(out, MANIFEST), json.dumps(manifest(spec, result), indent=2).encode())
    return result


def manifest(spec: SynthSpec, result: SynthResult) -> dict:
    """``_synth.json``: what made the table (enough to make it again) and what it holds."""
    return {
        "format": FORMAT,
        "parameters": {**asdict(spec), "min_per_user": MIN_PER_USER, "global_mean": GLOBAL_MEAN,
                       "user_bias_sd": USER_BIAS_SD, "item_bias_sd": ITEM_BIAS_SD,
                       "interaction_sd": INTERACTION_SD, "zipf_exponent": ZIPF_EXPONENT,
                       "zipf_offset": ZIPF_OFFSET, "activity_sigma": ACTIVITY_SIGMA,
                       "max_share_per_user": MAX_SHARE_PER_USER},
        "seed": spec.seed,
        "columns": list(COLUMNS),
        "scale": list(SCALE),
        "counts": {"ratings": result.ratings, "users": result.users, "items": result.items,
                   "items_rated": result.items_rated, "parts": result.parts},
        "noise_floor": result.noise_floor,
        "noise_floor_expected": result.noise_floor_expected,
        "planted_rmse": result.planted_rmse,
        "noise_floor_predictor": "E[rating | planted score]: the Bayes-optimal predictor of the half-star "
                                 "rating given the planted low-rank score (its RMSE on these ratings)",
        "rating_mean": result.rating_mean,
        "rating_sd": result.rating_sd,
        "files": result.files,
    }


def read_manifest(out: str) -> dict:
    """The ``_synth.json`` beside a generated table."""
    from sentinel_ml.store import uri as storage

    return json.loads(storage.read_bytes(storage.join(out, MANIFEST)))

