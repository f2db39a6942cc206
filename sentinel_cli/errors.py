"""Turn expected failures into one line on stderr and a distinct exit code; no traceback.

Exit codes: 0 success, 1 job failed, 2 usage or configuration error, 3 timeout, 130 interrupted.
"""

from __future__ import annotations

from sentinel_ml.errors import ConfigError, SentinelError

__all__ = ["SentinelError", "ConfigError", "report"]


def report(error: SentinelError) -> int:
    from sentinel_cli import console

    stderr = console.err()
    stderr.print(f"[bold red]error:[/] {error.message}", markup=True, highlight=False, soft_wrap=True)
    if error.hint:
        stderr.print(f"[dim]next:[/] {error.hint}", markup=True, highlight=False, soft_wrap=True)
    return error.exit_code
