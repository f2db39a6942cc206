"""``sentinel data fetch``: download (or copy), verify and cache MovieLens 100k now, not at first use."""

from __future__ import annotations

import typer

from sentinel_cli import options
from sentinel_cli.output import OutputFormat, emit, key_value_table

app = typer.Typer(help="The MovieLens 100k dataset: fetch it into the cache ahead of time.",
                  no_args_is_help=True)


@app.command("fetch")
def fetch(data: options.DataOpt = None, output: options.OutputOpt = OutputFormat.table) -> None:
    """Fetch, verify (SHA-256) and cache the dataset; print where it is. A warm cache is reused."""
    from sentinel_ml.data.download import ensure_dataset

    path = ensure_dataset(data)
    emit({"dataset": str(path)}, output, lambda r: key_value_table(list(r.items())))
