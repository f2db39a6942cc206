"""One place that makes consoles: data goes to stdout, progress and errors to stderr.

While a command runs, ``sys.stdout`` points at stderr (``stdout_for_data_only``): libraries that
print (Ray's driver relays its workers' errors with ``print``, Lightning and Tune their banners)
land on stderr, and only what ``out()`` and ``data()`` write reaches stdout. So ``-o json`` is
always parseable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import IO

from rich.console import Console

_DATA_STREAMS: list[IO[str]] = []  # the real stdout of each command running (nested in tests)


def _width(stream) -> int | None:
    """$COLUMNS when set (tests pin it); wide when piped, so URIs are never folded mid-path."""
    columns = os.environ.get("COLUMNS")
    if columns and columns.isdigit():
        return int(columns)
    return None if stream.isatty() else 200


@contextmanager
def stdout_for_data_only() -> Iterator[None]:
    """Send ``sys.stdout`` to stderr until the block ends; ``data()`` keeps the real stdout."""
    data_stream = sys.stdout
    _DATA_STREAMS.append(data_stream)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = data_stream
        _DATA_STREAMS.pop()


def data() -> IO[str]:
    """Where data goes: the real stdout."""
    return _DATA_STREAMS[-1] if _DATA_STREAMS else sys.stdout


def out() -> Console:
    """Data: tables, JSON, YAML. Plain text when piped."""
    return _console_for(data())


@lru_cache(maxsize=4)
def _console_for(stream: IO[str]) -> Console:
    return Console(file=stream, width=_width(stream), soft_wrap=False, highlight=False)


@lru_cache(maxsize=1)
def err() -> Console:
    """Progress, warnings and errors."""
    return Console(stderr=True, width=_width(sys.stderr), highlight=False)
