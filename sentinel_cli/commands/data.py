"""``sentinel data``: fetch a MovieLens dataset into the cache (``fetch``), describe any ratings source
(``stats``), and generate a MovieLens-like table of any size with a known noise floor (``synth``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from sentinel_cli import options
from sentinel_cli.output import OutputFormat, emit, key_value_table
from sentinel_ml.data.source import DataSource

app = typer.Typer(help="Ratings data: fetch MovieLens datasets (100k to 32M) into the cache, describe any "
                  "ratings table, and generate synthetic ones at any scale.", no_args_is_help=True)

@app.command("fetch")
@options.data_options("dataset", "data")
def fetch(source: DataSource = DataSource(), output: options.OutputOpt = OutputFormat.table) -> None:
    """Fetch, verify (SHA-256) and cache a MovieLens dataset; print where it is. A warm cache is reused."""
    from sentinel_ml.data import catalog
    from sentinel_ml.data.download import ensure_dataset
    from sentinel_ml.data.sources import is_table
    from sentinel_ml.errors import ConfigError

    if is_table(source.data):
        raise ConfigError(f"{source.data} is a ratings table, not a {source.dataset} archive: a table needs no fetch",
                          hint=f"train on it as it is: sentinel train --data {source.data}")
    with progress_bar(source.dataset, transfer=True) as progress:
        path = ensure_dataset(source.data, spec=catalog.spec(source.dataset), progress=progress)
    emit({"dataset": source.dataset, "path": str(path)}, output, lambda r: key_value_table(list(r.items())))


@app.command("stats")
@options.data_options("dataset", "data", "columns", "rating_scale")
def stats(source: DataSource = DataSource(), output: options.OutputOpt = OutputFormat.table) -> None:
    """Users, items, ratings, sparsity, rating scale and mean, ratings per user and item, and the time
    range of a MovieLens dataset or a ratings table (--data: CSV, TSV, Parquet file or directory,
    local or s3://)."""
    from sentinel_ml.data.sources import read_source
    from sentinel_ml.data.stats import describe

    emit(describe(read_source(source)), output, lambda s: key_value_table(s.rows()))


@app.command("synth")
def synth(
    ratings: Annotated[int, typer.Option("--ratings", min=1, help="Ratings in all.")],
    users: Annotated[int, typer.Option("--users", min=1, help="Users; each rates at least 5 items.")],
    items: Annotated[int, typer.Option("--items", min=1, help="Items; a user rates at most half of them.")],
    out: Annotated[str, typer.Option("--out", help="Where: a directory or s3://bucket/prefix (AWS_* settings, "
                                     "AWS_ENDPOINT_URL for MinIO).")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed writes the same table.")] = 0,
    dim: Annotated[int, typer.Option("--dim", min=1, help="Rank of the planted model.")] = 8,
    noise: Annotated[float, typer.Option("--noise", help="Standard deviation of the Gaussian noise on the "
                                         "planted scores, before clipping and rounding.")] = 0.8,
    part_rows: Annotated[int, typer.Option("--part-rows", min=1, help="About this many ratings per Parquet "
                                           "part file (users are not split across parts).")] = 1_000_000,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds.")] = False,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """Write a MovieLens-like ratings table (Parquet parts: user_id, item_id, rating on 0.5-5 in half
    stars, timestamp) from a planted low-rank model with Zipf-like item popularity and heavy-tailed user
    activity, streamed part by part. Prints the noise floor (the best RMSE any model can expect) and
    writes it with the parameters to _synth.json beside the parts."""
    from sentinel_ml.data.synth import SynthSpec, synthesize

    spec = SynthSpec(ratings=ratings, users=users, items=items, seed=seed, dim=dim, noise=noise,
                     part_rows=part_rows)
    spec.validate()
    with progress_bar("synth", transfer=False) as progress:
        result = synthesize(spec, out, overwrite=overwrite, progress=progress)
    shown = {
        "out": result.out, "ratings": result.ratings, "users": result.users, "items": result.items,
        "items_rated": result.items_rated, "parts": result.parts, "noise_floor": result.noise_floor,
        "noise_floor_expected": result.noise_floor_expected, "planted_rmse": result.planted_rmse,
        "rating_mean": result.rating_mean, "rating_sd": result.rating_sd, "seconds": result.seconds,
        "ratings_per_s": round(result.ratings / max(result.seconds, 1e-9)),
    }
    emit(shown, output, lambda r: key_value_table(list(r.items())))


@contextmanager
def progress_bar(description: str, *, transfer: bool) -> Iterator[Callable[[int, int | None], None]]:
    """A ``progress(done, total)`` callback that draws a transient bar on stderr (bytes when
    ``transfer``, else ratings); nothing appears until the first call, so a warm cache shows none."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from sentinel_cli import console

    counts = (DownloadColumn(), TransferSpeedColumn()) if transfer else (MofNCompleteColumn(),)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), *counts, TimeRemainingColumn(),
                   console=console.err(), transient=True)
    task = None

    def progress(done: int, total: int | None) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(description, total=total or None)
        bar.update(task, completed=done, total=total or None)

    try:
        yield progress
    finally:
        if task is not None:
            bar.stop()
