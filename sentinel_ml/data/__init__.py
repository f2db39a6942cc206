"""The data path: a source (a MovieLens archive by name, or the user's own ratings table), read into
one raw table (``raw``), prepared once (ids mapped to dense indices, split, written as Parquet and
cached: ``prepared``), then fed to training in memory or as Ray Data shards.

The names here are cheap to import: the CLI builds its ``--dataset`` and ``--split`` choices from them.
``u1`` is ml-100k's canonical u1.base / u1.test; ``random`` a seeded 90/10 split of every rating;
``temporal`` holds out each user's latest ratings.
"""

SPLITS = ("u1", "random", "temporal")
DATASETS = ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m")
DEFAULT_DATASET = "ml-100k"
