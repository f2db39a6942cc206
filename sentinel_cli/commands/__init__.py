"""Each module holds the commands of one noun; ``register`` adds them all to the app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from sentinel_cli.commands import status, train, tune

    app.command("train")(train.train)
    app.command("status")(status.status)
    app.command("tune")(tune.tune)
    from sentinel_cli.commands import delete, logs, render, serve  # the Kubernetes target

    app.add_typer(render.app({"train": train.train, "tune": tune.tune, "serve": serve.serve}), name="render")
    app.command("logs")(logs.logs)
    app.command("delete")(delete.delete)
    from sentinel_cli.commands import platform  # up, down, doctor, build, cluster

    platform.register(app)
    from sentinel_cli.commands import predict, serve  # the serving API

    app.add_typer(serve.app, name="serve")
    app.command("predict")(predict.predict)
    app.command("recommend")(predict.recommend)
