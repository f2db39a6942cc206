"""Option definitions shared by several commands, defined once."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from sentinel_cli.output import OutputFormat


class Target(str, Enum):
    local = "local"
    k8s = "k8s"


OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="Output format for the result on stdout.", case_sensitive=False),
]
TargetOpt = Annotated[
    Target | None,
    typer.Option(help="Where to run: the embedded local Ray, or Kubernetes (KubeRay). "
                 "Default: the profile's target, else local.", envvar="SENTINEL_TARGET",
                 show_default=False),
]
DataOpt = Annotated[
    str | None,
    typer.Option("--data", help="MovieLens 100k source: a zip, a directory, or a file:// / http(s):// URL. "
                 "Default: download from GroupLens once and cache.", envvar="SENTINEL_DATA",
                 show_default=False),
]
StorageOpt = Annotated[
    str | None,
    typer.Option("--storage", help="Checkpoint store: a directory or s3://bucket/prefix. "
                 "Default: $SENTINEL_HOME/artifacts.", envvar="SENTINEL_STORAGE", show_default=False),
]
MlflowOpt = Annotated[
    str | None,
    typer.Option("--mlflow-uri", help="MLflow tracking URI, or 'off'. Default: a sqlite store in $SENTINEL_HOME.",
                 envvar="SENTINEL_MLFLOW_URI", show_default=False),
]
SeedOpt = Annotated[int, typer.Option(help="Random seed for splits, initialisation and shuffling.")]
