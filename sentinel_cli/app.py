"""The ``sentinel`` command: a Typer app whose commands are thin wrappers over backends."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from sentinel_cli import __version__
from sentinel_cli.commands import register
from sentinel_cli.errors import SentinelError, report


class _Group(TyperGroup):
    """Expected failures become one line on stderr and their exit code, for every command."""

    def invoke(self, ctx):
        from sentinel_cli.console import stdout_for_data_only

        try:
            with stdout_for_data_only():
                return super().invoke(ctx)
        except SentinelError as e:
            raise typer.Exit(report(e)) from None


app = typer.Typer(
    cls=_Group,
    rich_markup_mode=None,
    name="sentinel",
    help="Run a Ray recommender platform: train, tune, serve and watch it, locally or on Kubernetes.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"sentinel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs on stderr.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    _configure_logging(verbose)


def _configure_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    from sentinel_cli import console

    level = logging.DEBUG if verbose else logging.WARNING
    handler = RichHandler(console=console.err(), show_path=verbose, show_time=verbose)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
    if not verbose:
        _quiet_libraries()


def _quiet_libraries() -> None:
    """Lightning, Ray and MLflow print banners and tips meant for notebooks; keep stderr readable."""
    import os
    import warnings

    from sentinel_ml.logs import follow_root_level

    follow_root_level()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    warnings.filterwarnings("ignore", module=r"(lightning|torch|ray|mlflow|pydantic)(\.|$)")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        from sentinel_cli import console

        console.err().print("interrupted")
        sys.exit(130)
    except SystemExit as done:
        _exit_now(done.code)
        raise


def _exit_now(code) -> None:
    """After a command that ran the embedded Ray, stop Ray and exit without tearing the interpreter
    down: with torch, Lightning and Ray loaded that teardown takes ~1 s on 2 cores and does nothing
    for us (every file is closed, every child process waited for, output is flushed here)."""
    if "ray" not in sys.modules or not (code is None or isinstance(code, int)):
        return  # nothing heavy loaded, or a message that SystemExit itself prints
    import logging
    import os

    from sentinel_ml.ray_runtime import shutdown_ray

    shutdown_ray()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
