"""Option definitions shared by several commands, defined once, and ``kube_options``: the one
decorator that gives a command the Kubernetes target's options as a single ``deploy`` argument."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer

from sentinel_cli.backends import TARGETS
from sentinel_cli.output import OutputFormat
from sentinel_ml.compute import DEVICES, PRECISIONS
from sentinel_ml.data import DATASETS, DEFAULT_DATASET, SPLITS
from sentinel_ml.models import registry
from sentinel_ml.models.hyperparameters import HYPERPARAMETERS, PER_RUN, SEARCH_ORDER, TUNABLE, Hyperparameter


def choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A click choice whose values come from the one place that defines them."""
    return Enum(name, {value: value for value in values}, type=str)  # type: ignore[return-value]


Target = choice("Target", TARGETS)
Split = choice("Split", SPLITS)
Dataset = choice("Dataset", DATASETS)
Model = choice("Model", registry.MODELS)

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


def _absolute(location: str | None) -> str | None:
    """Path options become absolute as they are parsed: Ray workers, Serve replicas and jobs run in
    other working directories (URIs pass as they are)."""
    from sentinel_ml.paths import absolute

    return absolute(location) if location else location


DATA_PANEL = "Data"
DataOpt = Annotated[
    str | None,
    typer.Option("--data", help="Where the ratings come from: your own table (CSV, TSV, a Parquet file or "
                 "directory; local or s3://), or the --dataset archive (a zip or its folder, or a file://, "
                 "http(s):// or s3:// URL). Default: the --dataset archive from GroupLens, cached "
                 "($SENTINEL_DATA stands in for ml-100k's).", show_default=False, callback=_absolute, rich_help_panel=DATA_PANEL),
]
TokenFileOpt = Annotated[
    str | None,
    typer.Option("--token-file", help="A file holding the serving API's bearer token (one line, owner-only). "
                 "Default: the local target's $SENTINEL_HOME/serve-token, sent only to its own ports.",
                 envvar="SENTINEL_SERVE_TOKEN_FILE", show_default=False, callback=_absolute),
]
StorageOpt = Annotated[
    str | None,
    typer.Option("--storage", help="Checkpoint store: a directory or s3://bucket/prefix. "
                 "Default: $SENTINEL_HOME/artifacts.", envvar="SENTINEL_STORAGE", show_default=False,
                 callback=_absolute),
]
MlflowOpt = Annotated[
    str | None,
    typer.Option("--mlflow-uri", help="MLflow tracking URI, or 'off'. Default: a sqlite store in $SENTINEL_HOME.",
                 envvar="SENTINEL_MLFLOW_URI", show_default=False),
]
SeedOpt = Annotated[int, typer.Option(help="Random seed for splits, initialisation and shuffling.")]



SplitOpt = Annotated[
    Split | None,
    typer.Option(help="u1 (ml-100k's own u1.base/u1.test), random (a seeded 90/10 of all ratings) or temporal "
                 "(each user's latest ratings held out). Default: u1 for ml-100k, else random.",
                 case_sensitive=False, show_default=False),
]

_DATA_OPTIONS: dict[str, tuple[Any, Any]] = {
    "dataset": (Annotated[Dataset, typer.Option(
        "--dataset", help="MovieLens by name (GroupLens' archive, checksum-verified, cached). Not used when "
        "--data is your own ratings table.", case_sensitive=False, rich_help_panel=DATA_PANEL)],
        Dataset(DEFAULT_DATASET)),
    "data": (DataOpt, None),
    "columns": (Annotated[str | None, typer.Option(
        "--columns", metavar="user=…,item=…,rating=…[,timestamp=…]", show_default=False,
        help="Your table's column names. Default: user_id, item_id, rating, timestamp (optional).",
        rich_help_panel=DATA_PANEL)], None),
    "items": (Annotated[str | None, typer.Option(
        "--items", show_default=False, callback=_absolute, rich_help_panel=DATA_PANEL,
        help="Your item table (CSV, TSV or Parquet; item id and title): names for recommendations.")], None),
    "rating_scale": (Annotated[str | None, typer.Option(
        "--rating-scale", metavar="LOW:HIGH", show_default=False, rich_help_panel=DATA_PANEL,
        help="Your ratings' scale, e.g. 1:5; a rating outside it is refused. Default: read from the data.")], None),
}


def data_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the data options ``names`` (all of them by default), placed where it declares
    ``source: DataSource``; they arrive folded into that one ``source`` (checked as it is made)."""
    chosen = names or tuple(_DATA_OPTIONS)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        placed: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name == "source":
                placed += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=_DATA_OPTIONS[n][1],
                                             annotation=_DATA_OPTIONS[n][0]) for n in chosen]
            else:
                placed.append(parameter)

        @functools.wraps(command)
        def with_source(**kwargs: Any) -> Any:
            from sentinel_ml.data.source import DataSource

            given = {n: kwargs.pop(n) for n in chosen}
            if "dataset" in given:
                given["dataset"] = given["dataset"].value
            return command(**kwargs, source=DataSource.from_args(**given))

        return with_options(with_source, signature, placed)

    return decorate

COMPUTE_PANEL = "Compute"
Device = choice("Device", DEVICES)
Precision = choice("Precision", PRECISIONS)


def compute_options(gpus_flag: str, gpus_help: str, cpus_flag: str,
                    cpus_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command ``cpus_flag`` (CPUs per unit: ``--cpus-per-worker``, ``--cpus-per-trial``),
    ``--device``, ``gpus_flag`` (GPUs per unit: ``--gpus``, ``--gpus-per-trial``) and ``--precision``,
    placed where it declares ``compute: Compute``; they arrive folded into that one ``compute``
    (``sentinel_ml.compute``), checked as it is made."""
    added = [
        inspect.Parameter("cpus", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            float | None, typer.Option(cpus_flag, show_default=False, rich_help_panel=COMPUTE_PANEL,
                                       help=cpus_help)]),
        inspect.Parameter("device", inspect.Parameter.KEYWORD_ONLY, default=Device.auto, annotation=Annotated[
            Device, typer.Option(case_sensitive=False, rich_help_panel=COMPUTE_PANEL, help=(
                "auto: GPUs when asked for, else when Ray has some (in-process: when torch sees CUDA), "
                "and says which it chose; cpu: never a GPU; gpu: always (one per unit unless "
                f"{gpus_flag} says otherwise)."))]),
        inspect.Parameter("gpus", inspect.Parameter.KEYWORD_ONLY, default=0.0, annotation=Annotated[
            float, typer.Option(gpus_flag, min=0, rich_help_panel=COMPUTE_PANEL, help=gpus_help)]),
        inspect.Parameter("precision", inspect.Parameter.KEYWORD_ONLY, default=Precision("32"), annotation=Annotated[
            Precision, typer.Option(rich_help_panel=COMPUTE_PANEL, help=(
                "Lightning's training precision; 16-mixed needs a GPU."))]),
    ]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        placed = [q for p in signature.parameters.values() for q in (added if p.name == "compute" else [p])]

        @functools.wraps(command)
        def with_compute(**kwargs: Any) -> Any:
            from sentinel_ml.compute import Compute

            compute = Compute(device=kwargs.pop("device").value, gpus=kwargs.pop("gpus"),
                              precision=kwargs.pop("precision").value, cpus=kwargs.pop("cpus"))
            compute.validate(gpus_flag, cpus_flag)
            return command(**kwargs, compute=compute)

        return with_options(with_compute, signature, placed)

    return decorate


MODEL_HELP = "; ".join(f"{spec.name}: {spec.summary}" for spec in registry.SPECS.values()) + \
    ". Each has its own defaults."
SPACE_DIMENSIONS = ", ".join(h.name for h in SEARCH_ORDER)  # what a --space file may set

# Kubernetes target options (--target k8s). No envvar= here: sentinel_cli.k8s.settings reads the
# environment itself, so a set variable never counts as a flag given on the command line.
KUBE_PANEL = "Kubernetes (--target k8s)"
# `status` and `schedule list`: every namespace, not the profile's.
AllNamespacesOpt = Annotated[bool, typer.Option("--all-namespaces", "-A", help="Every namespace.",
                                                rich_help_panel=KUBE_PANEL)]
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
PreflightOpt = Annotated[
    bool,
    typer.Option("--preflight/--no-preflight", help="Before applying, check that every pod fits a node that "
                 "admits it (one LIST of nodes, one of pods); exit 2 if one never can.",
                 rich_help_panel=KUBE_PANEL),
]
UrlOpt = Annotated[
    str,
    typer.Option("--url", help="Base URL of the serving API (the /recommend prefix is added).",
                 envvar="SENTINEL_URL"),
]


InsecureRayOpt = Annotated[
    bool,
    typer.Option("--insecure-ray", help="Run the Ray cluster without token authentication (for a KubeRay "
                 "operator older than 1.5.1): anyone who reaches its dashboard, client or GCS port can run "
                 "code in it. Says so on stderr.", rich_help_panel=KUBE_PANEL),
]


_KUBE_OPTIONS: dict[str, tuple[Any, Any]] = {  # parameter -> (annotation, default), in --help order
    "profile": (ProfileOpt, None), "namespace": (NamespaceOpt, None), "name": (NameOpt, None),
    "sets": (SetOpt, None), "wait": (WaitOpt, True), "dry_run": (DryRunOpt, False),
    "timeout": (TimeoutOpt, None), "preflight": (PreflightOpt, True),
    "insecure_ray": (InsecureRayOpt, False),
}


def kube_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the Kubernetes options ``names`` (all of them by default).

    The command declares ``deploy: KubeRequest`` instead; the options are added to its signature
    after its own and arrive folded into that one request.
    """
    chosen = names or tuple(_KUBE_OPTIONS)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for n, p in signature.parameters.items() if n != "deploy"]
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=_KUBE_OPTIONS[n][1],
                                   annotation=_KUBE_OPTIONS[n][0]) for n in chosen]

        @functools.wraps(command)
        def with_deploy(**kwargs: Any) -> Any:
            from sentinel_cli.k8s.request import kube_request

            given = {n: kwargs.pop(n, _KUBE_OPTIONS[n][1]) for n in chosen}
            return command(**kwargs, deploy=kube_request(**given))

        return with_options(with_deploy, signature, own + added)

    return decorate


def with_options(wrapper: Callable[..., Any], signature: inspect.Signature,
                 parameters: list[inspect.Parameter]) -> Callable[..., Any]:
    """``wrapper`` (a ``functools.wraps`` of a command) with ``parameters`` as the options Typer reads."""
    keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters]
    wrapper.__signature__ = signature.replace(parameters=keyword)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in keyword}
    del wrapper.__wrapped__  # Typer must read the signature above, not the command's
    return wrapper


def hyperparameter_options(*, per_run_after: str,
                           tunable_after: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command one option per hyperparameter (``sentinel_ml.models.hyperparameters``), each left
    out by default (the model's default then), with help that gives each model's default.

    The command declares ``hyperparameters: dict`` instead; the options arrive folded into it, by name.
    The run's length follows the parameter ``per_run_after``, the tunable ones follow ``tunable_after``.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        placed: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name != "hyperparameters":
                placed.append(parameter)
            placed += [_hyperparameter_option(h) for h in
                       (PER_RUN if parameter.name == per_run_after else ()) +
                       (TUNABLE if parameter.name == tunable_after else ())]

        @functools.wraps(command)
        def with_hyperparameters(**kwargs: Any) -> Any:
            given = {h.name: kwargs.pop(h.name) for h in HYPERPARAMETERS}
            return command(**kwargs, hyperparameters=given)

        return with_options(with_hyperparameters, signature, placed)

    return decorate


def _hyperparameter_option(h: Hyperparameter) -> inspect.Parameter:
    # Typer checks inclusive lower bounds as it parses; the others are TrainConfig.validate's (same words
    # as the jobs' own command line).
    low = None if h.bounds.strict else h.type(h.bounds.minimum)
    option = typer.Option(h.flag, min=low, show_default=False, help=hyperparameter_help(h))
    return inspect.Parameter(h.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[h.type | None, option])


def hyperparameter_help(h: Hyperparameter) -> str:
    """``h``'s help with each registered model's default, and its meaning to each model that has one:
    ``L2 weight: on the factors (mf, default 0.08) or on the network weights (autorec, default 100).``"""
    specs = registry.SPECS.values()
    defaults = {spec.name: registry.training_defaults(spec.name)[h.name] for spec in specs}
    meanings = {spec.name: spec.meanings[h.name] for spec in specs if h.name in spec.meanings}
    if meanings.keys() == defaults.keys():
        each = [f"{meanings[m]} ({m}, default {registry.show(value)})" for m, value in defaults.items()]
        return f"{h.help}: {_or(each)}."
    glosses = "".join(f" ({model}: {meaning})" for model, meaning in meanings.items())
    values = set(defaults.values())
    shown = registry.show(values.pop()) if len(values) == 1 else registry.per_model(lambda s: defaults[s.name])
    return f"{h.help}{glosses}. Default: {shown}."


def study_default_help(name: str) -> str:
    """Each registered model's default of a study setting (``ModelSpec.study``): ``mf 20, autorec 30``."""
    return registry.per_model(lambda spec: getattr(spec.study, name))


def _or(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"
