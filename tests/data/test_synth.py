"""``synth.synthesize``: small tables (20k ratings) checked for what the benchmark relies on: the
asked counts, half stars on 0.5-5, no repeated pairs, every user with a few ratings, heavy-tailed
popularity, several parts, the same table for the same seed, and a noise floor that makes sense."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sentinel_ml.data import synth
from sentinel_ml.data.synth import (
    MIN_PER_USER,
    SynthSpec,
    bayes_rating,
    read_manifest,
    synthesize,
)
from sentinel_ml.errors import ConfigError

SPEC = SynthSpec(ratings=20_000, users=1_000, items=500, seed=7, part_rows=6_000)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "t"
    result = synthesize(SPEC, str(out))
    return out, result, pq.read_table(out)  # a directory read as a dataset: _synth.json is skipped


def test_the_asked_shape(table) -> None:
    out, result, t = table
    assert t.schema == pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("rating", pa.float32()),
                                  ("timestamp", pa.int64())])
    assert t.num_rows == result.ratings == 20_000
    users, items = t["user_id"].to_numpy(), t["item_id"].to_numpy()
    assert set(np.unique(users)) == set(range(1, 1_001))
    assert items.min() >= 1 and items.max() <= 500 and result.items_rated == len(np.unique(items))
    assert np.bincount(users).min(initial=10**9) == 0 and np.bincount(users)[1:].min() >= MIN_PER_USER
    assert len(np.unique(users * 1_000 + items)) == t.num_rows  # no repeated (user, item)
    ratings = t["rating"].to_numpy()
    assert ratings.min() >= 0.5 and ratings.max() <= 5.0 and np.all(ratings * 2 == np.round(ratings * 2))
    assert 3.0 < ratings.mean() < 4.0 and 0.8 < ratings.std() < 1.3  # MovieLens-like
    assert sorted(p.name for p in out.glob("part-*.parquet")) == [f"part-{i:05d}.parquet" for i in range(result.parts)]
    assert result.parts >= 3


def test_heavy_tails(table) -> None:
    _, _, t = table
    per_item = np.sort(np.bincount(t["item_id"].to_numpy()))[::-1]
    assert per_item[:50].sum() / per_item.sum() > 0.4  # the top 10% of items
    per_user = np.bincount(t["user_id"].to_numpy())[1:]
    assert per_user.max() > 5 * np.median(per_user)


def test_the_same_seed_writes_the_same_table(table, tmp_path) -> None:
    _, _, t = table
    again = synthesize(SPEC, str(tmp_path / "again"))
    assert pq.read_table(tmp_path / "again").equals(t) and again.noise_floor == table[1].noise_floor
    other = synthesize(SynthSpec(**{**SPEC.__dict__, "seed": 8}), str(tmp_path / "other"))
    assert not pq.read_table(tmp_path / "other").equals(t) and other.ratings == t.num_rows


def test_manifest_and_noise_floor(table) -> None:
    out, result, _ = table
    manifest = read_manifest(str(out))
    assert manifest["seed"] == 7 and manifest["scale"] == [0.5, 5.0]
    assert manifest["counts"] == {"ratings": 20_000, "users": 1_000, "items": 500,
                                  "items_rated": result.items_rated, "parts": result.parts}
    assert manifest["parameters"]["noise"] == 0.8 and manifest["noise_floor"] == result.noise_floor
    # Rounding adds about 1/48 of variance and clipping takes some away: close to sigma, never far.
    assert abs(result.noise_floor - 0.8) < 0.06 and abs(result.noise_floor_expected - 0.8) < 0.06
    assert abs(result.noise_floor - result.noise_floor_expected) < 0.02
    assert result.noise_floor <= result.planted_rmse + 1e-3  # the Bayes predictor beats the clipped score
    json.dumps(manifest)


def test_bayes_rating_matches_simulation() -> None:
    rng = np.random.default_rng(0)
    for score in (0.2, 2.3, 4.9):
        x = np.round(np.clip(score + rng.normal(0, 0.8, 400_000), 0.5, 5.0) * 2) / 2
        mean, var = bayes_rating(np.array([score]), 0.8)
        assert abs(mean[0] - x.mean()) < 0.01 and abs(var[0] - x.var()) < 0.01


def test_streams_in_parts_of_about_part_rows() -> None:
    counts = np.array([3, 3, 3, 10, 1, 1, 1])  # ends 3 6 9 19 20 21 22: a cut after each user reaching 5k
    assert synth._parts(counts, 5) == [(0, 2), (2, 4), (4, 5), (5, 7)]
    assert synth._parts(counts, 100) == [(0, 7)]


@pytest.mark.parametrize("change, message", [
    ({"ratings": 4_999, "users": 1_000}, "too few for --users"),
    ({"ratings": 300_000}, "too many"),
    ({"items": 3}, "--items must be at least"),
    ({"noise": 0.0}, "--noise must be positive"),
    ({"dim": 0}, "--dim must be at least 1"),
])
def test_bad_specs(change, message) -> None:
    with pytest.raises(ConfigError, match=message):
        SynthSpec(**{**SPEC.__dict__, **change}).validate()


def test_refuses_a_full_directory_and_replaces_it_when_asked(tmp_path) -> None:
    small = SynthSpec(ratings=600, users=100, items=40, seed=1, part_rows=200)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not empty"):
        synthesize(small, str(tmp_path / "full"))
    assert [p.name for p in tmp_path.iterdir()] == ["full"]  # nothing staged left behind
    synthesize(small, str(tmp_path / "full"), overwrite=True)
    assert not (tmp_path / "full" / "mine.txt").exists() and pq.read_table(tmp_path / "full").num_rows == 600


def test_writes_to_s3(s3_bucket) -> None:
    import pyarrow.fs as pafs

    from sentinel_ml.store import uri as storage

    small = SynthSpec(ratings=3_000, users=200, items=100, seed=3, part_rows=1_000)
    out = f"{s3_bucket}/synth"
    result = synthesize(small, out)
    names = sorted(uri.rsplit("/", 1)[1] for uri in storage.sizes_under(out))
    assert names == ["_synth.json", *(f"part-{i:05d}.parquet" for i in range(result.parts))]
    assert read_manifest(out)["noise_floor"] == result.noise_floor
    import os

    fs = pafs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], access_key="testing",
                           secret_key="testing", region="us-east-1")
    bucket_path = out.removeprefix("s3://")
    assert pq.read_table(bucket_path, filesystem=fs).num_rows == 3_000
    with pytest.raises(ConfigError, match="already holds"):
        synthesize(small, out)
