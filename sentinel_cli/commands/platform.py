"""The platform's own commands: ``up``, ``down``, ``doctor``, ``build`` and ``cluster render``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from sentinel_cli.commands import build

    app.command("build")(build.build)
