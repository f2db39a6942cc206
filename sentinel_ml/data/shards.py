"""The training part as Ray Data shards: what a Ray Train worker group trains on once the data is large.

The driver reads the prepared ``train.parquet`` as a Ray Dataset (``train_dataset``) and hands it to the
``TorchTrainer``; Ray Train splits it into one equal shard per worker (``streaming_split(equal=True)``),
and each worker iterates only its own (``ray.train.get_dataset_shard``), so no process holds the whole
table. Each worker pulls its shard in large chunks (one tensor conversion per ``CHUNK_ROWS`` rows, not
per mini-batch) and slices the mini-batches out of each chunk in a fresh seeded order every epoch.

Shards hold equal row counts, so every rank runs the same number of steps (DDP needs that). The order
of the chunks follows Ray Data's streaming and is not reproducible run to run; the in-memory path
(``batching.TensorBatches``) is, and small data keeps it (``ingestion``; the rule and its measurements
are in docs/data.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from sentinel_ml.data.prepared import Prepared

TRAIN = "train"  # the dataset's name in the TorchTrainer and in get_dataset_shard
CHUNK_ROWS = 1 << 16  # rows per tensor conversion: large enough that Ray Data's per-batch cost vanishes
AUTO = "auto"
IN_MEMORY = "in-memory"
RAY_DATA = "ray-data"
INGESTIONS = (AUTO, IN_MEMORY, RAY_DATA)  # --ingestion: auto picks by the rule below
# Training parts up to this many ratings stay in memory in every worker (each holds the whole part,
# ~20 bytes a rating): measured faster there (docs/data.md). Larger ones stream as shards.
IN_MEMORY_MAX_ROWS = 2_000_000
# Rows per block of the training Dataset: each row group is shuffled and cut into blocks this long, and
# the blocks of all row groups are put in a random order, so a chunk mixes rows of many row groups.
PIECE_ROWS = 1 << 13
# A worker keeps the shard it streamed in its first epoch when the shard has at most this many rows
# (~20 bytes a row: 80 MB at the 10M-rating benchmark's 4M rows a worker with 2 workers) and trains the
# later epochs on it in memory: Ray Data's streaming cost ~6 CPU-s an epoch there (docs/data.md). Larger
# shards stream every epoch, so a worker's memory stays bounded whatever the table.
KEEP_SHARD_MAX_ROWS = 5_000_000


def ingestion(data: Prepared, *, asked: str = AUTO, worker_group: bool, streams: bool) -> str:
    """How a run reads its training part. ``auto``: ``ray-data`` shards on a worker group for a large
    part and a model that trains on rating batches (``streams``: biased MF; AutoRec holds its whole
    matrix), else ``in-memory``. An explicit ``ray-data`` needs the worker group and such a model."""
    if asked == AUTO:
        large = data.meta.counts["train"] > IN_MEMORY_MAX_ROWS
        return RAY_DATA if worker_group and streams and large else IN_MEMORY
    return asked


def train_dataset(data: Prepared, seed: int = 0):
    """The training part as a Ray Dataset of blocks already in Ray's object store: the driver reads the
    Parquet file one row group at a time, shuffles its rows, cuts it into blocks of ``PIECE_ROWS`` and puts
    each (its memory holds one row group); the blocks of every row group go in one random order.

    Tables come sorted by user (MovieLens' files, ``sentinel data synth``, the prepared parts keep their
    order), and shuffling only within a worker's 64k-row chunks left each mini-batch with a few hundred
    users: at 10M ratings the val RMSE after 3 epochs was 0.867 against 0.815 in memory. Interleaved
    blocks give each chunk rows of ``CHUNK_ROWS / PIECE_ROWS`` random row groups instead.

    Not ``read_parquet``: its read tasks need CPUs, and a worker group that takes every CPU (2 workers on
    2 cores) left none, so the first epoch waited forever; and the prepared directory is on the driver's
    disk, which read tasks on another node cannot see (Ray Data's ``local://`` for that is deprecated).
    """
    import numpy as np
    import pyarrow.parquet as pq
    import ray
    import ray.data

    rng = np.random.default_rng(seed)
    parquet = pq.ParquetFile(Path(data.part("train")))
    blocks = []
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group)
        table = table.take(rng.permutation(table.num_rows))
        blocks.extend(ray.put(table.slice(start, PIECE_ROWS)) for start in range(0, table.num_rows, PIECE_ROWS))
    order = rng.permutation(len(blocks))
    return ray.data.from_arrow_refs([blocks[i] for i in order])


class ShardBatches:
    """This worker's shard as (users, items, ratings) mini-batches of ``batch_size``, reshuffled every
    epoch within each chunk (seeded by ``seed`` and the epoch). A resumed run sets ``_epoch``, as it
    does for ``TensorBatches``.

    A shard of at most ``keep_rows`` rows is kept as it streams by in the first epoch; the later epochs
    shuffle and slice the kept rows (all of them, not chunk by chunk) and read nothing from Ray Data.
    Every rank's shard holds the same rows count (``equal=True``), so all ranks stop streaming together."""

    def __init__(self, shard: Any, batch_size: int, *, seed: int = 0, chunk_rows: int = CHUNK_ROWS,
                 keep_rows: int = KEEP_SHARD_MAX_ROWS) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.shard = shard
        self.batch_size = batch_size
        self.seed = seed
        self.chunk_rows = max(chunk_rows, batch_size)
        self.keep_rows = keep_rows
        self.kept: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._epoch = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        import torch

        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self._epoch)
        self._epoch += 1
        if self.kept is not None:
            yield from self._slices(self.kept, generator)
            return
        keeping: list | None = []
        kept_rows = 0
        chunks = self.shard.iter_torch_batches(
            batch_size=self.chunk_rows, dtypes={"user": torch.int64, "item": torch.int64, "rating": torch.float32})
        for chunk in chunks:
            columns = chunk["user"], chunk["item"], chunk["rating"]
            if keeping is not None:
                kept_rows += len(columns[0])
                if kept_rows <= self.keep_rows:
                    keeping.append(columns)
                else:  # too large to keep: this shard streams every epoch
                    keeping = None
            yield from self._slices(columns, generator)
        if keeping:
            self.kept = tuple(torch.cat(parts) for parts in zip(*keeping))

    def _slices(self, columns, generator):
        import torch

        users, items, ratings = columns
        order = torch.randperm(len(users), generator=generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            yield users[index], items[index], ratings[index]


def worker_batches(batch_size: int, seed: int) -> ShardBatches:
    """This Ray Train worker's shard of the run's training dataset."""
    import ray.train

    return ShardBatches(ray.train.get_dataset_shard(TRAIN), batch_size, seed=seed)
