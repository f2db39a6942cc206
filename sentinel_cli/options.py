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


class Split(str, Enum):
    u1 = "u1"
    random = "random"


SplitOpt = Annotated[
    Split,
    typer.Option(help="u1 (canonical u1.base/u1.test) or random (seeded 80/20 of u.data).", case_sensitive=False),
]

class Model(str, Enum):
    """sentinel_ml.models.registry: both are served as the same factorization checkpoint."""

    mf = "mf"
    autorec = "autorec"


MODEL_HELP = ("mf: biased matrix factorization (fast, u1 test RMSE ~0.927 at its defaults); autorec: "
              "item-based AutoRec exported as a factorization (~0.90). Each has its own defaults.")

# Kubernetes target options (--target k8s). No envvar= here: sentinel_cli.k8s.settings reads the
# environment itself, so a set variable never counts as a flag given on the command line.
KUBE_PANEL = "Kubernetes (--target k8s)"
ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", help="Profile file (YAML). Default: $SENTINEL_PROFILE, else "
                 "$SENTINEL_HOME/config.yaml if it exists.", show_default=False, rich_help_panel=KUBE_PANEL),
]
NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Kubernetes namespace. Default: $SENTINEL_NAMESPACE, else the "
                 "profile's, else default.", show_default=False, rich_help_panel=KUBE_PANEL),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="Override a Kubernetes setting by its dotted key, e.g. "
                 "workers=8, images.train=repo/train:1, rayjob.backoff_limit=1 (repeatable).",
                 show_default=False, rich_help_panel=KUBE_PANEL),
]
NameOpt = Annotated[
    str | None,
    typer.Option("--name", help="Name of the RayJob / RayService / RayCluster. Default: the run id for "
                 "jobs, the profile's serve.name for serving.", show_default=False, rich_help_panel=KUBE_PANEL),
]
WaitOpt = Annotated[
    bool,
    typer.Option("--wait/--no-wait", help="Follow to the end (exit 0 done, 1 failed, 3 no progress "
                 "within --timeout), or return once applied.", rich_help_panel=KUBE_PANEL),
]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Send the objects to the API server as a server-side dry run; "
                 "nothing changes.", rich_help_panel=KUBE_PANEL),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", min=1, help="Give up (exit 3) after this many seconds without progress. "
                 "Default: the profile's wait_timeout_s (600).", show_default=False, rich_help_panel=KUBE_PANEL),
]
UrlOpt = Annotated[
    str,
    typer.Option("--url", help="Base URL of the serving API (the /recommend prefix is added).",
                 envvar="SENTINEL_URL"),
]
