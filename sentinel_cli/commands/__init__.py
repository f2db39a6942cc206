"""Each module holds the commands of one noun; ``register`` adds them all to the app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from sentinel_cli.commands import (
        data,
        delete,
        logs,
        platform,
        predict,
        promote,
        render,
        schedule,
        serve,
        status,
        train,
        tune,
        verify,
    )

    app.command("train")(train.train)
    app.command("tune")(tune.tune)
    app.add_typer(serve.app, name="serve")
    app.command("predict")(predict.predict)
    app.command("recommend")(predict.recommend)
    app.command("promote")(promote.promote)
    app.command("status")(status.status)
    app.add_typer(render.app({"train": train.train, "tune": tune.tune, "serve": serve.serve}), name="render")
    app.command("logs")(logs.logs)
    app.command("delete")(delete.delete)
    platform.register(app)  # up, down, doctor, build, cluster
    app.command("verify")(verify.verify)
    app.add_typer(data.app, name="data")
    app.add_typer(schedule.app, name="schedule")
