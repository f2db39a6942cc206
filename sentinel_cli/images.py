"""Build and push the images (``Dockerfile.train``, ``Dockerfile.serve``, ``Dockerfile.cli``: the runs of
``sentinel schedule``) with the docker CLI.

``plan(...)`` is pure: the exact docker commands, in order. ``execute(...)`` runs them; when the
registry is Amazon ECR and the plan pushes, it first logs in with a token from boto3
(``ecr.get_authorization_token``), handing the password to ``docker login --password-stdin`` so it
never appears in an argument list or in any output.
"""

from __future__ import annotations

import base64
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from sentinel_ml.errors import ConfigError, JobFailed

DOCKERFILES = {"train": "Dockerfile.train", "serve": "Dockerfile.serve", "cli": "Dockerfile.cli"}
# The images a GPU variant changes (the CLI image runs no model: it stays on the CPU base).
GPU_VARIANT_IMAGES = ("train", "serve")
VARIANTS = ("cpu", "gpu")
# The GPU variant of both Dockerfiles: Ray's GPU image (CUDA, same layout as -cpu) and torch's CUDA
# build of the lock's version from PyTorch's index for the CUDA of that build (torch 2.15.0: cu132, as
# PyPI's Linux wheel, torch.version.cuda 13.2). The CPU variant is the Dockerfiles' defaults.
GPU_BASE_IMAGE = "rayproject/ray:{ray_version}-py311-gpu"
GPU_TORCH_INDEX_URL = "https://download.pytorch.org/whl/cu132"
# 123456789012.dkr.ecr.eu-west-1.amazonaws.com (also -fips and the .cn partition)
_ECR = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


@dataclass(frozen=True)
class Ecr:
    account: str
    region: str
    host: str


@dataclass(frozen=True)
class BuildPlan:
    images: dict[str, str]  # "train"/"serve"/"cli" -> image reference
    commands: list[list[str]]  # docker build / push, in order
    ecr: list[Ecr] = field(default_factory=list)  # registries to log in to before pushing

    def login_commands(self) -> list[list[str]]:
        """What ``execute`` runs for each ECR registry (the password goes on stdin)."""
        return [["docker", "login", "--username", "AWS", "--password-stdin", e.host] for e in self.ecr]

    def summary(self) -> dict:
        return {"images": self.images,
                "commands": [shlex.join(c) for c in self.login_commands() + self.commands]}


def registry_of(image: str) -> str | None:
    """The registry host of an image reference, or None for Docker Hub (``name:tag``, ``org/name``)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def ecr_registry(host: str | None) -> Ecr | None:
    match = _ECR.match(host or "")
    return Ecr(match["account"], match["region"], host) if match else None


def image_refs(registry: str | None, tag: str, defaults: dict[str, str], variant: str = "cpu") -> dict[str, str]:
    """``<registry>/sentinel-<what>:<tag>`` (``<tag>-gpu`` for the GPU variant) with a registry, else
    the profile's images."""
    if registry:
        registry = registry.rstrip("/")
        suffix = "" if variant == "cpu" else f"-{variant}"
        return {what: f"{registry}/sentinel-{what}:{tag}{suffix if what in GPU_VARIANT_IMAGES else ''}"
                for what in DOCKERFILES}
    return dict(defaults)


def variant_args(variant: str, ray_version: str) -> list[str]:
    """The build arguments of a variant: none for cpu (the Dockerfiles' defaults); Ray's GPU base and
    torch's CUDA index for gpu."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown image variant {variant!r}", hint=f"choose one of {', '.join(VARIANTS)}")
    if variant == "cpu":
        return []
    return ["--build-arg", f"BASE_IMAGE={GPU_BASE_IMAGE.format(ray_version=ray_version)}",
            "--build-arg", f"TORCH_INDEX_URL={GPU_TORCH_INDEX_URL}"]


def plan(images: dict[str, str], context: Path, ray_version: str, *, push: bool,
         platform: str | None = None, variant: str = "cpu") -> BuildPlan:
    """The docker commands that build (and push) the images from ``context`` (the source tree)."""
    commands: list[list[str]] = []
    for what, dockerfile in DOCKERFILES.items():
        command = ["docker", "build", "--file", str(context / dockerfile),
                   "--build-arg", f"RAY_VERSION={ray_version}", *(variant_args(variant, ray_version) if what in GPU_VARIANT_IMAGES else []),
                   "--tag", images[what]]
        if platform:
            command += ["--platform", platform]
        commands.append(command + [str(context)])
    ecr: list[Ecr] = []
    if push:
        commands += [["docker", "push", images[what]] for what in DOCKERFILES]
        for reference in images.values():
            registry = ecr_registry(registry_of(reference))
            if registry and registry not in ecr:
                ecr.append(registry)
    return BuildPlan(images=images, commands=commands, ecr=ecr)


def source_tree() -> Path:
    """The checkout that holds the Dockerfiles (the build context)."""
    root = Path(__file__).resolve().parents[1]
    if not all((root / f).is_file() for f in DOCKERFILES.values()):
        raise ConfigError(f"{', '.join(DOCKERFILES.values())} not found in {root}",
                          hint="run `sentinel build` from a source checkout of sentinel")
    return root


def ecr_password(registry: Ecr) -> tuple[str, str]:
    """(user, password) for ``docker login`` from ``ecr.get_authorization_token``."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = boto3.client("ecr", region_name=registry.region)
        token = client.get_authorization_token(registryIds=[registry.account])["authorizationData"][0]
    except (BotoCoreError, ClientError) as e:
        raise ConfigError(f"cannot get an ECR login token for {registry.host}: {e}",
                          hint="check the AWS credentials (aws sts get-caller-identity) and that they "
                               "allow ecr:GetAuthorizationToken") from None
    user, _, password = base64.b64decode(token["authorizationToken"]).decode().partition(":")
    return user, password


def ensure_ecr_repositories(registry: Ecr, references) -> list[str]:
    """Create the ECR repositories the images push to (ECR does not create them on push)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("ecr", region_name=registry.region)
    created = []
    for reference in references:
        if registry_of(reference) != registry.host:
            continue
        repository = reference.split("/", 1)[1].rsplit("@", 1)[0].rsplit(":", 1)[0]
        try:
            client.create_repository(repositoryName=repository, registryId=registry.account,
                                     imageScanningConfiguration={"scanOnPush": True})
            created.append(repository)
        except client.exceptions.RepositoryAlreadyExistsException:
            pass
        except (BotoCoreError, ClientError) as e:
            raise ConfigError(f"cannot create the ECR repository {repository}: {e}",
                              hint="create it (aws ecr create-repository) or allow "
                                   "ecr:CreateRepository") from None
    return created


def execute(build: BuildPlan, say=print) -> None:
    """Log in to ECR when pushing there, then run every command; a failure stops with JobFailed."""
    docker = shutil.which("docker")
    if docker is None:
        raise ConfigError("the docker CLI is not installed", hint="install Docker, or use --dry-run to "
                                                                   "print the commands")
    for registry, command in zip(build.ecr, build.login_commands()):
        user, password = ecr_password(registry)
        for repository in ensure_ecr_repositories(registry, build.images.values()):
            say(f"created ECR repository {repository}")
        command = [*command[:3], user, *command[4:]]
        say(f"$ {shlex.join(command)}")
        _run(command, stdin=password)
    for command in build.commands:
        say(f"$ {shlex.join(command)}")
        _run(command)


def _run(command: list[str], stdin: str | None = None) -> None:
    result = subprocess.run(command, input=stdin, text=True, stdout=subprocess.DEVNULL if stdin else None,
                            stderr=subprocess.PIPE if stdin else None)
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-1:] if stdin else []
        raise JobFailed(f"`{shlex.join(command)}` failed with exit code {result.returncode}"
                        + (f": {detail[0]}" if detail else ""),
                        hint="read docker's output above; is the Docker engine running (docker info)?")
