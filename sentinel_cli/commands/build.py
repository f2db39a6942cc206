"""``sentinel build [--push]``: build the training and serving images with the docker CLI."""

from __future__ import annotations

from typing import Annotated

import typer

from sentinel_cli import __version__, options
from sentinel_cli.output import OutputFormat, emit, key_value_table


def build(
    push: Annotated[bool, typer.Option("--push", help="Push the images after building (logs in to "
                                       "Amazon ECR through boto3 when the registry is ECR).")] = False,
    registry: Annotated[str | None, typer.Option(
        help="Registry to tag for, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/sentinel: images "
             "become <registry>/sentinel-train:<tag>, sentinel-serve:<tag> and sentinel-cli:<tag>. Default: "
             "the profile's images.train, images.serve and images.cli.", show_default=False)] = None,
    tag: Annotated[str, typer.Option(help="Image tag, with --registry.")] = __version__,
    platform: Annotated[str | None, typer.Option(help="docker build --platform, e.g. linux/amd64.",
                                                 show_default=False)] = None,
    variant: Annotated[str | None, typer.Option(
        help="cpu, or gpu: Ray's GPU base image and torch's CUDA build (tags <tag>-gpu with --registry). "
             "Default: the profile's images.variant (cpu).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the docker commands; run nothing.")] = False,
    profile: options.ProfileOpt = None,
    output: options.OutputOpt = OutputFormat.table,
) -> None:
    """Build Dockerfile.train, Dockerfile.serve and Dockerfile.cli (FROM the official Ray image of our Ray
    version; for train and serve, its GPU image and torch's CUDA build with --variant gpu)."""
    from sentinel_cli import console, images
    from sentinel_cli.k8s import settings
    from sentinel_cli.k8s.request import Overrides

    config = settings.load(Overrides(profile=profile))
    chosen = variant or config.images.variant
    refs = images.image_refs(registry, tag, {"train": config.images.train, "serve": config.images.serve,
                                             "cli": config.images.cli}, chosen)
    build_plan = images.plan(refs, images.source_tree(), config.ray_version, push=push, platform=platform,
                             variant=chosen)
    if not dry_run:
        images.execute(build_plan, say=lambda line: console.err().print(line, markup=False, highlight=False))
    emit({**build_plan.summary(), "dry_run": dry_run}, output,
         lambda r: key_value_table([*r["images"].items(), *((f"step {i}", c) for i, c in
                                                           enumerate(r["commands"], 1))],
                                   title="would run" if dry_run else "built"))
