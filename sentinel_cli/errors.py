"""Turn expected failures into one line on stderr and a distinct exit code; no traceback.

Exit codes (the jobs' table, ``sentinel_ml.entrypoint.EXIT_CODES``): 0 success, 1 job failed,
2 usage or configuration error, 3 timeout, 130 interrupted or detached.
"""

from __future__ import annotations

from sentinel_ml.errors import ConfigError, Detached, SentinelError

__all__ = ["SentinelError", "ConfigError", "Detached", "report"]


def report(error: SentinelError) -> int:
    """Print ``error`` (its text literally, never as markup) and return its exit code."""
    from rich.markup import escape

    from sentinel_cli import console
    from sentinel_ml.entrypoint import exit_code

    stderr = console.err()
    stderr.print(f"[bold red]error:[/] {escape(error.message)}", highlight=False, soft_wrap=True)
    if error.hint:
        stderr.print(f"[dim]next:[/] {escape(error.hint)}", highlight=False, soft_wrap=True)
    return exit_code(error)
