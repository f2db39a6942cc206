"""One place that makes consoles: data goes to stdout, progress and errors to stderr."""

from __future__ import annotations

import os
from functools import lru_cache

from rich.console import Console


def _width() -> int | None:
    # Tests pin COLUMNS for stable output; rich reads it too, this just makes it explicit.
    columns = os.environ.get("COLUMNS")
    return int(columns) if columns and columns.isdigit() else None


@lru_cache(maxsize=1)
def out() -> Console:
    """Data: tables, JSON, YAML. Plain text when piped."""
    return Console(width=_width(), soft_wrap=False, highlight=False)


@lru_cache(maxsize=1)
def err() -> Console:
    """Progress, warnings and errors."""
    return Console(stderr=True, width=_width(), highlight=False)


def reset() -> None:
    """Forget the cached consoles (tests swap stdout/stderr between invocations)."""
    out.cache_clear()
    err.cache_clear()
