"""Sentinel's images for the real node: built from our own Dockerfiles with no Docker engine.

    python -m tests.testenv.images build    build (or reuse) every image archive
    python -m tests.testenv.images build minio mc mlflow    only those (names as `list` shows)
    python -m tests.testenv.images list     print each image, its archive and whether it is built

The steps, each cached under ``~/.cache/sentinel/images/`` by a hash of its inputs:

1. ``rootfs``: a Debian 12 root filesystem (mmdebstrap, minbase, Python 3.11, bash, wget).
2. ``base``: docker/base/Dockerfile on that rootfs, a stand-in for the official
   ``rayproject/ray:<version>-py311-cpu`` (user ray 1000:100, a Python environment with Ray).
3. ``torch``: a wheelhouse with PyPI's torch minus its requirement on triton (the compiler of
   ``torch.compile``, about 1 GB installed, which nothing of ours uses), as a local package
   index: the CPU index (download.pytorch.org), whose torch has no CUDA at all, is not reachable
   here. Its version carries the local label ``+notriton`` so that pip prefers it to PyPI's, as it
   prefers ``+cpu`` from the CPU index. The CUDA wheels (nvidia-*, about 4 GB) stay: PyPI's torch
   is linked against them and does not import without them (measured: ``import torch`` fails
   with "libcublasLt.so.*[0-9] not found").
4. ``train``, ``serve``, ``cli``: Dockerfile.train, Dockerfile.serve and Dockerfile.cli, built exactly
   as users build them (the repository as the context, its .dockerignore), with ``BASE_IMAGE``
   pointing at the base and (train, serve) ``TORCH_INDEX_URL`` at the wheelhouse.
5. ``minio``, ``mc``, ``mlflow``: the platform that ``sentinel up --target k8s`` applies, under the
   very names sentinel_cli/k8s/platform_objects.py gives them (``quay.io/minio/minio:RELEASE...``,
   ``quay.io/minio/mc:RELEASE...``, ``ghcr.io/mlflow/mlflow:v...-full``), from
   docker/platform/*.Dockerfile on the rootfs: MinIO's server and client are built from their
   release's Go module on the host (build.py, cached apart) and copied in; MLflow and boto3 come
   from PyPI at the lock's versions (requirements/images.txt, as every image here). Each is checked after its build: its
   program runs as uid 1000, as the platform's pods run it. MinIO is AGPL-3.0: built and run here
   as a test fixture only, never shipped with or linked into Sentinel.

The builder is buildah (Debian's package), rootful, with the overlay storage driver, run in a
private mount namespace so that none of its mounts outlive it; its storage stays in the cache so
that its layer cache makes a rebuild after a source change quick. Each image ends as a
OCI archive with zstd-compressed layers (``<name>-<hash>.oci.tar``, its image named as containerd
names what the rendered objects use: ``docker.io/library/sentinel-train:latest``), which the node
imports into containerd's ``k8s.io`` namespace.

A build container reaches PyPI with the host's network and the host's CA bundle (``/etc/pip.conf``
mounted for the build only, naming it): both stay out of the images.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sentinel_cli.k8s import platform_objects
from tests.testenv import build

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BASE_DOCKERFILE = REPO / "docker" / "base" / "Dockerfile"
PLATFORM_DIR = REPO / "docker" / "platform"
MLFLOW_REQUIREMENTS = PLATFORM_DIR / "requirements-mlflow.txt"
# The lock's versions (tools/lock.py): every image installs with them as pip constraints.
CONSTRAINTS = REPO / "requirements" / "images.txt"
APPS = ("train", "serve", "cli")
TORCH_APPS = ("train", "serve")  # the CLI image (the runs of `sentinel schedule`) has no torch
# The platform's images (those of platform_objects.py) and the Go build each one copies in.
PLATFORM = {"minio": platform_objects.MINIO_IMAGE, "mc": platform_objects.MC_IMAGE,
            "mlflow": platform_objects.MLFLOW_IMAGE}
PLATFORM_BINARIES = {"minio": build.MINIO, "mc": build.MC}
RAY_VERSION = importlib.metadata.version("ray")
TORCH_VERSION = importlib.metadata.version("torch").split("+")[0]
PYTHON = "3.11"
# The images' platform, for evaluating the lock's markers (tools/lock.py): Linux, x86_64, CPython PYTHON.
IMAGE_ENVIRONMENT = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                     "python_version": PYTHON, "python_full_version": f"{PYTHON}.0",
                     "implementation_name": "cpython", "platform_python_implementation": "CPython"}
DEBIAN = "bookworm"
# What the base image's root filesystem holds besides Debian's minbase: Python, bash (KubeRay runs
# `bash -c "ray start ..."`), wget and grep (KubeRay's probes), ps (Ray's tooling), CA certificates.
DEBIAN_PACKAGES = ("python3.11", "python3.11-venv", "bash", "ca-certificates", "wget", "grep",
                   "procps", "libgomp1")
LOCAL_LABEL = "notriton"
# torch's requirements that a CPU image can do without (torch imports and trains without them).
DROPPED_REQUIREMENTS = ("triton",)
# torch imports and takes an optimizer step (the check after each build).
TORCH_SMOKE = ("import torch; m = torch.nn.Linear(4, 1); o = torch.optim.SGD(m.parameters(), lr=0.1); "
               "loss = m(torch.randn(8, 4)).pow(2).mean(); loss.backward(); o.step(); print('torch ok')")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
WHEELS_MOUNT = "/sentinel-wheels"
TOOLS = ("buildah", "mmdebstrap")


class ImagesMissing(RuntimeError):
    """An image archive is not built yet."""


class ImageBuildFailed(RuntimeError):
    """A build step failed; the message holds the command and the end of its output."""


@dataclass(frozen=True)
class Image:
    name: str  # train, serve, minio, mc, mlflow
    reference: str  # what the rendered objects use, e.g. sentinel-train:latest
    dockerfile: Path
    archive: Path

    @property
    def normalized(self) -> str:
        """The reference as containerd's CRI names it."""
        return normalize(self.reference)


def normalize(reference: str) -> str:
    """Docker's short names in full: ``sentinel-train:latest`` -> ``docker.io/library/...``."""
    name = reference
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


def cache_dir() -> Path:
    return build.sentinel_cache() / "images"


def base_reference() -> str:
    return f"localhost/sentinel-ray-base:{RAY_VERSION}-py{PYTHON.replace('.', '')}-cpu"


# -- hashes of inputs ----------------------------------------------------------------------------


def _digest(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def rootfs_key() -> str:
    return _digest("rootfs", DEBIAN, *DEBIAN_PACKAGES, "v1")


def base_key() -> str:
    return _digest("base", rootfs_key(), BASE_DOCKERFILE.read_bytes(), RAY_VERSION, CONSTRAINTS.read_bytes())


def torch_key() -> str:
    return _digest("torch", TORCH_VERSION, PYTHON, LOCAL_LABEL, *DROPPED_REQUIREMENTS, "v1")


def context_files() -> list[Path]:
    """The files Dockerfile.train and Dockerfile.serve may copy: what .dockerignore lets through."""
    files = [REPO / "pyproject.toml", REPO / "README.md", CONSTRAINTS,
             *sorted((REPO / "docker").glob("requirements-*.txt"))]
    for package in ("sentinel_ml", "sentinel_cli", "templates"):
        files += sorted(p for p in (REPO / package).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return files


def app_key(name: str) -> str:
    parts: list[bytes | str] = ["app", name, base_key(), torch_key(),
                                (REPO / f"Dockerfile.{name}").read_bytes(),
                                (REPO / ".dockerignore").read_bytes()]
    for path in context_files():
        parts += [str(path.relative_to(REPO)), path.read_bytes()]
    return _digest(*parts)


def platform_key(name: str) -> str:
    """A platform image's inputs: the rootfs, its Dockerfile and name, and what it copies in (the
    Go component's version and link-time settings, or MLflow's requirements)."""
    parts: list[bytes | str] = ["platform", name, PLATFORM[name], rootfs_key(),
                                (PLATFORM_DIR / f"{name}.Dockerfile").read_bytes()]
    if name in PLATFORM_BINARIES:
        component = PLATFORM_BINARIES[name]
        parts += [component.dirname, *component.tags,
                  *(f"{k}={v}" for k, v in sorted(component.stamps.items()))]
    else:
        parts += [MLFLOW_REQUIREMENTS.read_bytes(), CONSTRAINTS.read_bytes()]
    return _digest(*parts)


def images() -> dict[str, Image]:
    """Every image of the real node (train and serve, then the platform's), with the archives
    their current inputs build to."""
    found = {
        name: Image(name, f"sentinel-{name}:latest", REPO / f"Dockerfile.{name}",
                    cache_dir() / f"{name}-{app_key(name)}.oci.tar")
        for name in APPS
    }
    found.update({
        name: Image(name, reference, PLATFORM_DIR / f"{name}.Dockerfile",
                    cache_dir() / f"{name}-{platform_key(name)}.oci.tar")
        for name, reference in PLATFORM.items()
    })
    return found


def locate() -> dict[str, Image]:
    """The images whose archives are built; raises ImagesMissing naming the command otherwise.

    With ``SENTINEL_IMAGES_ANY=1`` (not under CI), the newest archive of each image stands in when
    the sources changed since it was built: for working on the environment while the code moves.
    """
    found = images()
    if os.environ.get("SENTINEL_IMAGES_ANY") == "1" and os.environ.get("CI", "").lower() != "true":
        for name, image in found.items():
            built = sorted(cache_dir().glob(f"{name}-*.oci.tar"), key=lambda p: p.stat().st_mtime)
            if not image.archive.is_file() and built:
                log.warning("%s: using %s, built from older sources (SENTINEL_IMAGES_ANY=1)",
                            name, built[-1].name)
                found[name] = Image(name, image.reference, image.dockerfile, built[-1])
    missing = [str(image.archive) for image in found.values() if not image.archive.is_file()]
    if missing:
        raise ImagesMissing(
            "images for the real node not built (or their inputs changed):\n  "
            + "\n  ".join(missing) + "\nbuild them with: python -m tests.testenv.images build")
    return found


# -- the steps ----------------------------------------------------------------------------------


def build_all(names: Iterable[str] = ()) -> dict[str, Image]:
    """Build whatever is missing (of ``names`` only, when given), in a private mount namespace
    (see module doc); returns the images built or present."""
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        raise ImageBuildFailed(
            f"{', '.join(absent)} not installed: apt-get install buildah mmdebstrap "
            "(what .ci/run installs)")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    wanted = images()
    if names:
        unknown = sorted(set(names) - set(wanted))
        if unknown:
            raise ImageBuildFailed(f"no image named {', '.join(unknown)} (there are {', '.join(wanted)})")
        wanted = {name: image for name, image in wanted.items() if name in names}
    if all(image.archive.is_file() for image in wanted.values()):
        log.info("images: present (%s)", ", ".join(i.archive.name for i in wanted.values()))
        return wanted
    with build._locked(cache / ".lock"), _buildah_session() as buildah:
        started = time.monotonic()
        for image in wanted.values():
            if image.archive.is_file():
                log.info("%s: present in %s", image.name, image.archive)
        apps = [i for i in wanted.values() if i.name in APPS and not i.archive.is_file()]
        if apps:
            base = _base(buildah)
            wheels = _torch_wheelhouse()
            for image in apps:
                _app(buildah, image, base, wheels)
        for image in wanted.values():
            if image.name in PLATFORM and not image.archive.is_file():
                _platform(buildah, image)
        _prune(wanted.values())
        _prune_storage(buildah)
        log.info("images built in %.0f s", time.monotonic() - started)
    return wanted


def _rootfs() -> Path:
    target = cache_dir() / f"rootfs-{rootfs_key()}.tar"
    if target.is_file():
        return target
    log.info("rootfs: mmdebstrap %s (%s)", DEBIAN, ", ".join(DEBIAN_PACKAGES))
    partial = target.with_suffix(".part")
    excludes = [f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "info", "locale")]
    _run(["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
          f"--include={','.join(DEBIAN_PACKAGES)}", *excludes,
          "--dpkgopt=path-include=/usr/share/doc/*/copyright",
          '--aptopt=Acquire::Retries "3"', DEBIAN, str(partial)], "rootfs")
    partial.rename(target)
    return target


class _Buildah:
    """buildah with our storage and the build-only mounts (pip.conf naming the host's CAs)."""

    def __init__(self, root: Path, runroot: Path, pip_conf: Path, conf: Path) -> None:
        self.root, self.runroot, self.pip_conf = root, runroot, pip_conf
        # Our containers.conf: buildah would otherwise create /etc/cni/net.d on the host.
        self.environ = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def __call__(self, *args: str, label: str) -> str:
        return _run(["buildah", f"--root={self.root}", f"--runroot={self.runroot}",
                     "--storage-driver=overlay", *args], label, self.environ)

    def exists(self, reference: str) -> bool:
        try:
            self("inspect", "--type=image", reference, label=f"inspect {reference}")
        except ImageBuildFailed:
            return False
        return True

    def bud(self, dockerfile: Path, context: Path, tag: str, args: dict[str, str],
            volumes: Iterable[str] = ()) -> None:
        mounts = [f"--volume={self.pip_conf}:/etc/pip.conf:ro"]
        if HOST_CA_BUNDLE.is_file():
            mounts.append(f"--volume={HOST_CA_BUNDLE}:/etc/sentinel-build-ca.crt:ro")
        mounts += [f"--volume={v}" for v in volumes]
        self("bud", "--format=docker", "--layers", "--network=host", "--pull=false",
             *mounts, *(f"--build-arg={k}={v}" for k, v in args.items()),
             f"--file={dockerfile}", f"--tag={tag}", str(context), label=f"build {tag}")

    def save(self, reference: str, archive: Path, name: str) -> None:
        """An OCI archive, its layers zstd-compressed (a third of their size, and containerd keeps
        them so), its one image named ``name`` in full (``docker.io/library/...``)."""
        partial = archive.with_name(archive.name + ".part")
        partial.unlink(missing_ok=True)
        self("push", "--quiet", "--compression-format=zstd", reference,
             f"oci-archive:{partial}:{normalize(name)}", label=f"save {reference}")
        partial.rename(archive)

    def load(self, archive: Path, reference: str) -> None:
        image_id = self("pull", "--quiet", f"oci-archive:{archive}",
                        label=f"load {archive.name}").split()[-1]
        self("tag", image_id, reference, label=f"tag {reference}")


@contextmanager
def _buildah_session() -> Iterator[_Buildah]:
    storage = cache_dir() / "buildah"
    storage.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sentinel-buildah-") as tmp:
        pip_conf = Path(tmp) / "pip.conf"
        lines = ["[global]", "disable-pip-version-check = true"]
        if HOST_CA_BUNDLE.is_file():
            lines.append("cert = /etc/sentinel-build-ca.crt")
        pip_conf.write_text("\n".join(lines) + "\n")
        conf = Path(tmp) / "containers.conf"
        conf.write_text(f'[network]\nnetwork_config_dir = "{Path(tmp) / "cni"}"\n')
        buildah = _Buildah(storage, Path(tmp) / "runroot", pip_conf, conf)
        buildah("rm", "--all", label="remove leftover build containers")
        yield buildah


def _base(buildah: _Buildah) -> str:
    """The base image, in buildah's storage under base_reference(); from its archive if built."""
    reference = base_reference()
    archive = cache_dir() / f"base-{base_key()}.oci.tar"
    if archive.is_file():
        if not buildah.exists(f"{reference}-{base_key()}"):
            buildah.load(archive, f"{reference}-{base_key()}")
        buildah("tag", f"{reference}-{base_key()}", reference, label="tag base")
        return reference
    rootfs = _rootfs()
    with tempfile.TemporaryDirectory(prefix="sentinel-base-", dir=cache_dir()) as context:
        os.link(rootfs, Path(context) / "rootfs.tar")
        shutil.copyfile(BASE_DOCKERFILE, Path(context) / "Dockerfile")
        shutil.copyfile(CONSTRAINTS, Path(context) / "constraints.txt")
        started = time.monotonic()
        buildah.bud(Path(context) / "Dockerfile", Path(context), f"{reference}-{base_key()}",
                    {"RAY_VERSION": RAY_VERSION})
        log.info("base: built in %.0f s", time.monotonic() - started)
    buildah("tag", f"{reference}-{base_key()}", reference, label="tag base")
    buildah.save(reference, archive, reference)
    return reference


def _app(buildah: _Buildah, image: Image, base: str, wheels: Path) -> None:
    tag = f"localhost/sentinel-{image.name}:{image.archive.name.split('.')[0].rsplit('-', 1)[-1]}"
    started = time.monotonic()
    log.info("%s: building %s FROM %s", image.name, image.dockerfile.name, base)
    # The mount point names the wheelhouse's key: the URL is a build argument, so buildah's layer
    # cache reuses a pip step only for the same wheelhouse.
    mount = f"{WHEELS_MOUNT}-{torch_key()}"
    if image.name in TORCH_APPS:
        buildah.bud(image.dockerfile, REPO, tag,
                    {"BASE_IMAGE": base, "TORCH_INDEX_URL": f"file://{mount}/simple"},
                    volumes=[f"{wheels}:{mount}:ro"])
        _check_cpu_only(buildah, tag)
    else:
        buildah.bud(image.dockerfile, REPO, tag, {"BASE_IMAGE": base})
    buildah.save(tag, image.archive, image.reference)
    log.info("%s: built in %.0f s; %s (%.0f MB)", image.name, time.monotonic() - started,
             image.archive, image.archive.stat().st_size / 1e6)


def _platform(buildah: _Buildah, image: Image) -> None:
    """A platform image: its Dockerfile with the rootfs and what it copies in as the context."""
    rootfs = _rootfs()
    binaries = build.build_platform() if image.name in PLATFORM_BINARIES else {}
    tag = f"localhost/sentinel-platform-{image.name}:{platform_key(image.name)}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"sentinel-{image.name}-", dir=cache_dir()) as tmp:
        context = Path(tmp)
        os.link(rootfs, context / "rootfs.tar")
        if image.name in PLATFORM_BINARIES:
            shutil.copyfile(binaries[image.name], context / image.name)
        else:
            shutil.copyfile(MLFLOW_REQUIREMENTS, context / MLFLOW_REQUIREMENTS.name)
            shutil.copyfile(CONSTRAINTS, context / CONSTRAINTS.name)
        log.info("%s: building %s", image.name, image.dockerfile.name)
        buildah.bud(image.dockerfile, context, tag, {})
    _check_platform(buildah, image, tag)
    buildah.save(tag, image.archive, image.reference)
    # The archive is its cache: a rebuild (minutes at most) does without buildah's layers.
    buildah("rmi", tag, label=f"remove {tag} from buildah's storage")
    log.info("%s: built in %.0f s; %s (%.0f MB)", image.name, time.monotonic() - started,
             image.archive, image.archive.stat().st_size / 1e6)


def platform_checks(name: str) -> list[list[str]]:
    """Commands that show a platform image works as its pods run it (uid 1000, no network):
    its program starts and names its version, and mc can write its configuration."""
    if name == "mlflow":
        return [["mlflow", "--version"],
                ["python", "-c", "import boto3, mlflow.server; print('boto3', boto3.__version__)"]]
    checks = [[name, "--version"]]
    if name == "mc":  # an alias, as the bucket Job sets one (--api: no probe of the endpoint)
        checks.append(["/bin/sh", "-c", ("mc alias set store http://127.0.0.1:9 user password "
                                          "--api S3v4 >/dev/null && mc alias list store")])
    return checks


def _check_platform(buildah: _Buildah, image: Image, tag: str) -> None:
    """Run platform_checks as uid 1000; the versions must be the ones the manifests name."""
    container = buildah("from", "--quiet", "--pull=false", tag, label=f"check {tag}").strip()
    try:
        said = [buildah("run", "--network=none", "--user=1000:1000", container, "--", *argv,
                        label=f"{argv[0]} in {image.name}") for argv in platform_checks(image.name)]
        frozen = (buildah("run", "--network=none", container, "--", "pip", "list", "--format=freeze",
                          label=f"pip list in {tag}") if image.name == "mlflow" else "")
    finally:
        buildah("rm", container, label=f"remove {container}")
    _check_lock(tag, _frozen(frozen))
    expected = image.reference.rsplit(":", 1)[1].removeprefix("v").removesuffix("-full")
    if expected not in said[0]:
        raise ImageBuildFailed(f"{tag}: `{' '.join(platform_checks(image.name)[0])}` said "
                               f"{said[0]!r}, not {expected}")
    log.info("%s: %s", image.name, " / ".join(out.strip().splitlines()[0] for out in said))


def _check_cpu_only(buildah: _Buildah, tag: str) -> None:
    """The image has our torch and none of what it dropped (pip would fall back to PyPI's torch
    if it could not read the wheelhouse), and torch imports and trains a step."""
    container = buildah("from", "--quiet", "--pull=false", tag, label=f"check {tag}").strip()
    try:
        frozen = buildah("run", "--network=none", container, "--", "pip", "list", "--format=freeze",
                         label=f"pip list in {tag}")
        buildah("run", "--network=none", container, "--", "python", "-c", TORCH_SMOKE,
                label=f"torch in {tag}")
    finally:
        buildah("rm", container, label=f"remove {container}")
    packages = _frozen(frozen)
    _check_lock(tag, packages)
    dropped = sorted(name for name in packages if name.startswith(DROPPED_REQUIREMENTS))
    torch = packages.get("torch", "")
    if dropped or not torch.endswith(f"+{LOCAL_LABEL}"):
        raise ImageBuildFailed(f"{tag} has torch {torch or '(none)'} and {', '.join(dropped) or '(none)'}: "
                               f"expected torch +{LOCAL_LABEL} without {', '.join(DROPPED_REQUIREMENTS)}")


def _frozen(text: str) -> dict[str, str]:
    """`pip list --format=freeze` as name -> version."""
    return {line.split("==")[0].lower(): line.split("==")[-1] for line in text.splitlines() if "==" in line}


# What a venv brings with it, at Python's versions rather than the lock's.
_VENV_OWN = ("pip", "setuptools", "wheel")


def lock_mismatches(installed: dict[str, str]) -> list[str]:
    """The packages of an image (name -> version, from `pip list --format=freeze`) whose version is
    not the lock's, for the images' platform; a local label (+notriton, +cpu) is ignored."""
    from tools import lock

    locked = lock.locked_versions(CONSTRAINTS.read_text(), IMAGE_ENVIRONMENT)
    differ = []
    for name, version in installed.items():
        pinned = locked.get(lock.normalize(name))
        if pinned and lock.normalize(name) not in _VENV_OWN and version.split("+")[0] != pinned:
            differ.append(f"{name} {version} (locked {pinned})")
    return sorted(differ)


def _check_lock(tag: str, installed: dict[str, str]) -> None:
    differ = lock_mismatches(installed)
    if differ:
        raise ImageBuildFailed(f"{tag} differs from the lock (requirements/images.txt): {', '.join(differ)}")


def _prune(keep: Iterable[Image]) -> None:
    """Remove the older archives of these images (the buildah layer cache keeps what a rebuild
    reuses), and of the base when one of them is train or serve."""
    keep = list(keep)
    kept = {image.archive.name for image in keep}
    names = [image.name for image in keep]
    for name in (*names, *(["base"] if set(names) & set(APPS) else [])):
        for old in cache_dir().glob(f"{name}-*.tar"):
            if old.name not in kept and old.name != f"base-{base_key()}.oci.tar":
                old.unlink()


def _prune_storage(buildah: _Buildah) -> None:
    """Drop build containers and untagged images (a failed or superseded build's layers, gigabytes
    each when the requirements change), so the cache does not fill the disk build after build."""
    buildah("rm", "--all", label="remove build containers")
    buildah("rmi", "--prune", label="remove untagged images")


# -- torch without triton ------------------------------------------------------------------------


def _torch_wheelhouse() -> Path:
    """A local package index holding torch==TORCH_VERSION+notriton: PyPI's wheel, triton dropped."""
    target = cache_dir() / f"wheels-{torch_key()}"
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(prefix=".wheels-", dir=cache_dir()))
    try:
        log.info("torch: downloading torch==%s from PyPI", TORCH_VERSION)
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
              "--only-binary=:all:", f"--python-version={PYTHON}", "--implementation=cp",
              "--platform=manylinux_2_28_x86_64", f"torch=={TORCH_VERSION}",
              f"--dest={staging / 'download'}"], "torch download")
        (wheel,) = (staging / "download").glob("torch-*.whl")
        project = staging / "simple" / "torch"
        project.mkdir(parents=True)
        started = time.monotonic()
        repacked = strip_requirements(wheel, project, LOCAL_LABEL, DROPPED_REQUIREMENTS)
        log.info("torch: %s without %s in %.0f s", repacked.name, ", ".join(DROPPED_REQUIREMENTS),
                 time.monotonic() - started)
        shutil.rmtree(staging / "download")
        (project / "index.html").write_text(
            f'<html><body><a href="{repacked.name}">{repacked.name}</a></body></html>\n')
        (staging / "simple" / "index.html").write_text(
            '<html><body><a href="torch/">torch</a></body></html>\n')
        for path in (staging, *staging.rglob("*")):  # the build runs pip as uid 1000
            path.chmod(0o755 if path.is_dir() else 0o644)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in cache_dir().glob("wheels-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def strip_requirements(wheel: Path, dest: Path, label: str, prefixes: tuple[str, ...]) -> Path:
    """A copy of ``wheel`` in ``dest`` whose version gains ``+label`` and whose requirements lose
    those starting with one of ``prefixes``; RECORD is rewritten to match. Stored uncompressed."""
    name, version, rest = wheel.name.split("-", 2)
    new_version = f"{version}+{label}"
    out = dest / f"{name}-{new_version}-{rest}"
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        infos = source.infolist()
        dist_info = next(i.filename.split("/", 1)[0] for i in infos
                         if i.filename.endswith(".dist-info/METADATA"))
        records: list[str] = []
        for info in infos:
            if info.filename == f"{dist_info}/RECORD":
                continue
            data = source.read(info)
            if info.filename == f"{dist_info}/METADATA":
                data = _metadata(data.decode(), new_version, prefixes).encode()
            target.writestr(_info_like(info), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{info.filename},sha256={digest},{len(data)}")
        records.append(f"{dist_info}/RECORD,,")
        target.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    return out


def _info_like(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    copy = zipfile.ZipInfo(info.filename, info.date_time)
    copy.external_attr = info.external_attr
    copy.compress_type = zipfile.ZIP_STORED
    return copy


def _metadata(text: str, version: str, prefixes: tuple[str, ...]) -> str:
    lines = []
    for line in text.split("\n"):
        if line.startswith("Version: "):
            line = f"Version: {version}"
        elif line.startswith("Requires-Dist: "):
            requirement = line.removeprefix("Requires-Dist: ").strip().lower()
            if requirement.startswith(prefixes):
                continue
        lines.append(line)
    return "\n".join(lines)


# -- running commands ---------------------------------------------------------------------------


def _run(argv: list[str], label: str, environ: dict[str, str] | None = None) -> str:
    """Run a build command; its progress lines (buildah's STEP and COMMIT) are logged as they come."""
    log.debug("%s: %s", label, " ".join(argv))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=environ)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        lines.append(line)
        if line.startswith(("STEP ", "COMMIT", "I: success")):
            log.info("%s: %s", label, line[:200])
    proc.wait()
    if proc.returncode != 0:
        tail = "\n".join(lines[-40:])
        raise ImageBuildFailed(f"{label}: `{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
    return "\n".join(lines)


def _in_private_mount_namespace() -> bool:
    return os.environ.get("SENTINEL_IMAGES_UNSHARED") == "1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testenv.images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("build", "list"))
    parser.add_argument("names", nargs="*", help="build only these images (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "list":
        for image in images().values():
            state = "built" if image.archive.is_file() else "missing"
            print(f"{image.reference}\t{image.archive}\t{state}")
        return 0
    if not _in_private_mount_namespace():
        # buildah's overlay storage mounts its own directory and each build container: in a
        # mount namespace of their own, all of them end with this process.
        command = ["unshare", "--mount", "--propagation", "private", sys.executable, "-m",
                   "tests.testenv.images", *(argv if argv is not None else sys.argv[1:])]
        environ = {**os.environ, "SENTINEL_IMAGES_UNSHARED": "1"}
        return subprocess.run(command, env=environ, cwd=REPO, check=False).returncode
    try:
        for image in build_all(args.names).values():
            print(f"{image.reference}: {image.archive} ({image.archive.stat().st_size / 1e6:.0f} MB)",
                  file=sys.stderr)
    except (ImageBuildFailed, build.BuildFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
