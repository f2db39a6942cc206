"""MovieLens 100k: download and cache (``download``), parse and split (``movielens``), batch (``batching``).

The names of the splits live here, cheap to import (the CLI builds its ``--split`` choice from them):
``u1`` is the canonical ``u1.base`` / ``u1.test``; ``random`` a seeded 80/20 split of ``u.data``.
"""

SPLITS = ("u1", "random")
