"""One place that makes consoles: data goes to stdout, progress and errors to stderr."""

from __future__ import annotations

import os
import sys
from functools import lru_cache

from rich.console import Console


def _width(stream) -> int | None:
    """$COLUMNS when set (tests pin it); wide when piped, so URIs are never folded mid-path."""
    columns = os.environ.get("COLUMNS")
    if columns and columns.isdigit():
        return int(columns)
    return None if stream.isatty() else 200


@lru_cache(maxsize=1)
def out() -> Console:
    """Data: tables, JSON, YAML. Plain text when piped."""
    return Console(width=_width(sys.stdout), soft_wrap=False, highlight=False)


@lru_cache(maxsize=1)
def err() -> Console:
    """Progress, warnings and errors."""
    return Console(stderr=True, width=_width(sys.stderr), highlight=False)
