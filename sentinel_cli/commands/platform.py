"""The platform's own commands: ``up``, ``down``, ``doctor``, ``build`` and ``cluster render``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from sentinel_cli.commands import build, cluster, up

    app.command("up")(up.up)
    app.command("down")(up.down)
    app.command("doctor")(up.doctor)
    app.command("build")(build.build)
    app.add_typer(cluster.app, name="cluster")
