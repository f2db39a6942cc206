"""Build the test environment's binaries from Go modules, or find them already built.

Each component is built from a small wrapper module under ``tests/testenv/go/<component>/`` whose
go.mod pins the version and whose go.sum pins every hash. The result lands in one cache
directory per component and version, created atomically (built in a temporary directory beside
it, then renamed), so an interrupted build never leaves a half-filled directory behind:

    ~/.cache/sentinel/testenv/
        kubernetes-v1.34.12/  kube-apiserver kube-controller-manager kube-scheduler
        etcd-v3.5.35/         etcd
        kwok-v0.7.0/          kwok
        kuberay-v1.5.2/       ray-operator crds/ray.io_*.yaml
        kubernetes-node-v1.34.12/  kubelet kube-proxy          (the real node: node.py)
        coredns-v1.12.4/      coredns
        pause-<hash>/         pause                            (the sandbox image's program)
        kube-router-v2.1.0/   kube-router                      (its NetworkPolicy controller)
        minio-v0.0.0-20250422221226-0d7408fc9969/  minio       (the platform's images: images.py)
        mc-v0.0.0-20250416181326-b00526b153a3/     mc
    ~/.cache/sentinel/gomod/      Go's module cache (GOMODCACHE)
    ~/.cache/sentinel/go-build/   Go's build cache (GOCACHE)

The control plane's binaries (``locate``) and the real node's (``locate_node``) are found separately,
so the kwok tests need only the former; ``build`` builds both. MinIO's server and client
(``PLATFORM_COMPONENTS``) go only into the platform's images for the real node: ``build_platform``
builds them, called by ``python -m tests.testenv.images build``. MinIO is AGPL-3.0: it is built and
run here as a test fixture only, never shipped with or linked into Sentinel.

``python -m tests.testenv.build`` builds all of them (platform's included) with the standard library
only, so .ci/run starts it, CPU-bound for many minutes on a cold machine, before the virtualenv
exists and beside the downloads that make the venv and the images.

envtest's convention is honoured: when ``KUBEBUILDER_ASSETS`` names a directory holding ``etcd``
and ``kube-apiserver``, those two (and any other of our binaries found there) are used instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.testenv import versions

log = logging.getLogger(__name__)

WRAPPERS = Path(__file__).parent / "go"
CRD_NAMES = ("rayclusters", "rayjobs", "rayservices")
KUBERAY_MODULE = "github.com/ray-project/kuberay/ray-operator"
_HEARTBEAT_S = 30.0


class AssetsMissing(RuntimeError):
    """Some binaries are neither in the cache nor in KUBEBUILDER_ASSETS."""


class BuildFailed(RuntimeError):
    """A Go build failed; the message holds the command and the end of its output."""


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    module: str  # the module the wrapper requires, checked against its go.mod
    packages: dict[str, str]  # binary name -> main package, built in the wrapper module
    stamps: dict[str, str] = field(default_factory=dict)  # `-X` link-time variable settings
    wrapper: str = ""  # the wrapper module's directory under go/, when not ``name``
    tags: tuple[str, ...] = ()  # build tags (`go build -tags`)

    @property
    def binaries(self) -> tuple[str, ...]:
        return tuple(self.packages)

    @property
    def dirname(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def wrapper_dir(self) -> Path:
        return WRAPPERS / (self.wrapper or self.name)


def _kubernetes_stamps(version: str) -> dict[str, str]:
    """What Kubernetes' own build stamps, so /version and --version report the real release."""
    major, minor = version.removeprefix("v").split(".")[:2]
    values = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    return {
        f"{package}.{name}": value
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in values.items()
    }


KUBERNETES = Component(
    "kubernetes",
    versions.KUBERNETES,
    "k8s.io/kubernetes",
    {
        name: f"k8s.io/kubernetes/cmd/{name}"
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    },
    _kubernetes_stamps(versions.KUBERNETES),
)
ETCD = Component("etcd", versions.ETCD, "go.etcd.io/etcd/server/v3",
                 {"etcd": "go.etcd.io/etcd/server/v3"})
KWOK = Component("kwok", versions.KWOK, "sigs.k8s.io/kwok", {"kwok": "sigs.k8s.io/kwok/cmd/kwok"})
KUBERAY = Component("kuberay", versions.KUBERAY, KUBERAY_MODULE, {"ray-operator": KUBERAY_MODULE})
COMPONENTS = (KUBERNETES, ETCD, KWOK, KUBERAY)


def _source_version(wrapper: str) -> str:
    """A version for a wrapper with no upstream release: the hash of its sources."""
    digest = hashlib.sha256()
    for path in sorted((WRAPPERS / wrapper).iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return "src-" + digest.hexdigest()[:12]


# The real node: kubelet and kube-proxy from the control plane's wrapper module (same release),
# CoreDNS with a minimal plugin set, and the sandbox image's pause program.
KUBE_NODE = Component(
    "kubernetes-node",
    versions.KUBERNETES,
    "k8s.io/kubernetes",
    {name: f"k8s.io/kubernetes/cmd/{name}" for name in ("kubelet", "kube-proxy")},
    _kubernetes_stamps(versions.KUBERNETES),
    wrapper="kubernetes",
)
COREDNS = Component("coredns", versions.COREDNS, "github.com/coredns/coredns",
                    {"coredns": "sentinel.local/testenv/coredns"})
PAUSE = Component("pause", _source_version("pause"), "", {"pause": "sentinel.local/testenv/pause"})
# The NetworkPolicy controller of the real node (its firewall only: iptables and ipset). Not
# kube-network-policies: its nftables `queue` needs CONFIG_NFT_QUEUE, which this kernel lacks.
KUBE_ROUTER = Component("kube-router", versions.KUBE_ROUTER, "github.com/cloudnativelabs/kube-router/v2",
                        {"kube-router": "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"},
                        {"github.com/cloudnativelabs/kube-router/v2/pkg/version.Version": versions.KUBE_ROUTER})
NODE_COMPONENTS = (KUBE_NODE, COREDNS, PAUSE, KUBE_ROUTER)


def _minio_stamps(package: str, release: str, commit: str) -> dict[str, str]:
    """What MinIO's buildscripts/gen-ldflags.go stamps for a release, so that ``minio --version``
    and ``mc --version`` name it: RELEASE.2025-04-22T22-12-26Z has Version 2025-04-22T22:12:26Z."""
    date, time_ = release.removeprefix("RELEASE.").removesuffix("Z").split("T")
    return {f"{package}.Version": f"{date}T{time_.replace('-', ':')}Z",
            f"{package}.ReleaseTag": release,
            f"{package}.CommitID": commit,
            f"{package}.ShortCommitID": commit[:12],
            f"{package}.CopyrightYear": date[:4]}


# The platform's object store for the real node's images (images.py): the MinIO releases that
# sentinel_cli/k8s/platform_objects.py names, as the pseudo-versions of their tags' commits (MinIO
# publishes no semver tags). CGO off and the kqueue tag, as MinIO's Makefiles build them.
MINIO_RELEASE = "RELEASE.2025-04-22T22-12-26Z"
MINIO_COMMIT = "0d7408fc9969caf07de6a8c3a84f9fbb10a6739e"
MC_RELEASE = "RELEASE.2025-04-16T18-13-26Z"
MC_COMMIT = "b00526b153a31b36767991a4f5ce2cced435ee8e"
MINIO = Component("minio", "v0.0.0-20250422221226-0d7408fc9969", "github.com/minio/minio",
                  {"minio": "github.com/minio/minio"},
                  _minio_stamps("github.com/minio/minio/cmd", MINIO_RELEASE, MINIO_COMMIT),
                  tags=("kqueue",))
MC = Component("mc", "v0.0.0-20250416181326-b00526b153a3", "github.com/minio/mc",
               {"mc": "github.com/minio/mc"},
               _minio_stamps("github.com/minio/mc/cmd", MC_RELEASE, MC_COMMIT), tags=("kqueue",))
PLATFORM_COMPONENTS = (MINIO, MC)


@dataclass(frozen=True)
class Assets:
    """Where every binary and CRD of the environment lives."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    ray_operator: Path
    crds: tuple[Path, ...]


def sentinel_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sentinel"


@dataclass(frozen=True)
class NodeAssets:
    """The real node's binaries (containerd, runc and the CNI plugins come from Debian)."""

    kubelet: Path
    kube_proxy: Path
    coredns: Path
    pause: Path
    kube_router: Path


def cache_root() -> Path:
    return sentinel_cache() / "testenv"


def go_env() -> dict[str, str]:
    """The environment every Go command runs with: our own module and build caches."""
    cache = sentinel_cache()
    return {
        **os.environ,
        "GOMODCACHE": str(cache / "gomod"),
        "GOCACHE": str(cache / "go-build"),
        "CGO_ENABLED": "0",
    }


def _binary_dir(component: Component) -> Path:
    return cache_root() / component.dirname


def _kubebuilder_assets() -> dict[str, Path]:
    """Binaries found in KUBEBUILDER_ASSETS, if it holds at least etcd and kube-apiserver."""
    raw = os.environ.get("KUBEBUILDER_ASSETS")
    if not raw:
        return {}
    folder = Path(raw)
    found = {p.name: p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
    if "etcd" not in found or "kube-apiserver" not in found:
        log.warning("KUBEBUILDER_ASSETS=%s lacks etcd or kube-apiserver; ignoring it", raw)
        return {}
    return found


def _candidates(components: tuple[Component, ...] = COMPONENTS) -> dict[str, Path]:
    """Every binary name mapped to where it is (or would be, once built)."""
    paths = {
        binary: _binary_dir(component) / binary
        for component in components
        for binary in component.binaries
    }
    paths.update({k: v for k, v in _kubebuilder_assets().items() if k in paths})
    return paths


def _crds() -> tuple[Path, ...]:
    folder = _binary_dir(KUBERAY) / "crds"
    return tuple(folder / f"ray.io_{name}.yaml" for name in CRD_NAMES)


def _missing() -> list[Path]:
    wanted = [*_candidates().values(), *_crds(), *_candidates(NODE_COMPONENTS).values()]
    return [p for p in wanted if not p.is_file()]


def locate() -> Assets:
    """The assets, without building anything; raises AssetsMissing naming what is absent."""
    missing = [p for p in _missing() if p not in _candidates(NODE_COMPONENTS).values()]
    if missing:
        listed = "\n  ".join(str(p) for p in missing)
        raise AssetsMissing(
            f"test environment binaries missing:\n  {listed}\n"
            "build them with: python -m tests.testenv.env build"
        )
    paths = _candidates()
    return Assets(
        etcd=paths["etcd"],
        kube_apiserver=paths["kube-apiserver"],
        kube_controller_manager=paths["kube-controller-manager"],
        kube_scheduler=paths["kube-scheduler"],
        kwok=paths["kwok"],
        ray_operator=paths["ray-operator"],
        crds=_crds(),
    )


def locate_node() -> NodeAssets:
    """The real node's binaries, without building anything; raises AssetsMissing naming them."""
    paths = _candidates(NODE_COMPONENTS)
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        listed = "\n  ".join(str(p) for p in missing)
        raise AssetsMissing(
            f"real node binaries missing:\n  {listed}\n"
            "build them with: python -m tests.testenv.env build"
        )
    return NodeAssets(kubelet=paths["kubelet"], kube_proxy=paths["kube-proxy"],
                      coredns=paths["coredns"], pause=paths["pause"], kube_router=paths["kube-router"])


def build() -> Assets:
    """Build every component whose binaries are missing (the real node's too), then return the
    control plane's assets (``locate_node`` gives the node's)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    if _missing() and shutil.which("go") is None:
        raise BuildFailed("`go` is not on PATH: install Go 1.24 or newer to build the binaries")
    with _locked(root / ".lock"):
        missing = set(_missing())
        for component in (*COMPONENTS, *NODE_COMPONENTS):
            target = _binary_dir(component)
            outputs = {p for p in missing if p.is_relative_to(target)}
            if not outputs:
                log.info("%s %s: present in %s", component.name, component.version, target)
                continue
            _build_component(component, target)
    return locate()


def locate_platform() -> dict[str, Path]:
    """MinIO's binaries (name -> path), without building; raises AssetsMissing naming them."""
    paths = _candidates(PLATFORM_COMPONENTS)
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        listed = "\n  ".join(str(p) for p in missing)
        raise AssetsMissing(f"platform binaries missing:\n  {listed}\n"
                            "build them with: python -m tests.testenv.images build")
    return paths


def build_platform() -> dict[str, Path]:
    """Build MinIO's server and client when missing (a first build takes many minutes)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    paths = _candidates(PLATFORM_COMPONENTS)
    if all(p.is_file() for p in paths.values()):
        return paths
    if shutil.which("go") is None:
        raise BuildFailed("`go` is not on PATH: install Go 1.24 or newer to build MinIO's binaries")
    with _locked(root / ".lock"):
        for component in PLATFORM_COMPONENTS:
            target = _binary_dir(component)
            if all((target / binary).is_file() for binary in component.binaries):
                log.info("%s %s: present in %s", component.name, component.version, target)
                continue
            _build_component(component, target)
    return locate_platform()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        if _try_lock(handle):
            yield
            return
        log.info("another build holds %s; waiting for it", path)
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _build_component(component: Component, target: Path) -> None:
    wrapper = component.wrapper_dir
    _check_pin(component, wrapper / "go.mod")
    staging = Path(tempfile.mkdtemp(prefix=f".{component.dirname}-", dir=target.parent))
    try:
        started = time.monotonic()
        for index, (binary, package) in enumerate(component.packages.items(), start=1):
            label = f"{component.name} {component.version}: {binary}"
            log.info("%s: building (%d of %d; a first build takes minutes)",
                     label, index, len(component.packages))
            argv = ["go", "build", "-v", "-mod=readonly", "-trimpath",
                    *([f"-tags={','.join(component.tags)}"] if component.tags else []),
                    f"-ldflags={_ldflags(component)}", "-o", str(staging / binary), package]
            _go(argv, cwd=wrapper, label=label)
        if component is KUBERAY:
            _copy_crds(wrapper, staging / "crds")
        if target.exists():  # left by a build interrupted between the two renames below
            shutil.rmtree(target)
        staging.rename(target)
        log.info("%s %s: built in %.0f s", component.name, component.version,
                 time.monotonic() - started)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ldflags(component: Component) -> str:
    return " ".join(["-s", "-w", *(f"-X {k}={v}" for k, v in component.stamps.items())])


def _check_pin(component: Component, gomod: Path) -> None:
    """Refuse to build when the wrapper's go.mod and versions.py disagree."""
    if not component.module:  # our own program, no upstream module
        return
    pinned = wrapper_requirement(gomod, component.module)
    if pinned != component.version:
        raise BuildFailed(
            f"{gomod} requires {component.module} {pinned}, but tests/testenv/versions.py pins "
            f"{component.version}: update both together"
        )


def wrapper_requirement(gomod: Path, module: str) -> str | None:
    """The version a go.mod requires of ``module``, or None."""
    pattern = re.compile(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)")
    for line in gomod.read_text().splitlines():
        if match := pattern.match(line):
            return match.group(1)
    return None


def _copy_crds(wrapper: Path, dest: Path) -> None:
    info = json.loads(
        _go(["go", "mod", "download", "-json", f"{KUBERAY_MODULE}@{KUBERAY.version}"],
            cwd=wrapper, label="kuberay CRDs")
    )
    source = Path(info["Dir"]) / "config" / "crd" / "bases"
    dest.mkdir()
    for name in CRD_NAMES:
        shutil.copyfile(source / f"ray.io_{name}.yaml", dest / f"ray.io_{name}.yaml")


def _go(argv: list[str], cwd: Path, label: str) -> str:
    """Run a Go command, logging its messages and a heartbeat; returns its stdout."""
    log.debug("%s: %s (in %s)", label, " ".join(argv), cwd)
    proc = subprocess.Popen(
        argv, cwd=cwd, env=go_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    out: list[str] = []
    errors: list[str] = []
    readers = [
        threading.Thread(target=_drain, args=(proc.stdout, out.append, None), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr, errors.append, label), daemon=True),
    ]
    for reader in readers:
        reader.start()
    started = time.monotonic()
    while True:
        try:
            proc.wait(timeout=_HEARTBEAT_S)
            break
        except subprocess.TimeoutExpired:
            compiled = sum(1 for line in errors if _PACKAGE_LINE.fullmatch(line))
            log.info("%s: still building (%.0f s, %d packages compiled)",
                     label, time.monotonic() - started, compiled)
    for reader in readers:
        reader.join()
    if proc.returncode != 0:
        tail = "\n".join(line for line in errors[-40:] if not _PACKAGE_LINE.fullmatch(line))
        raise BuildFailed(f"{label}: `{' '.join(argv)}` in {cwd} exited {proc.returncode}:\n{tail}")
    return "\n".join(out)


# `go build -v` names each package it compiles on a line of its own.
_PACKAGE_LINE = re.compile(r"[\w.~+-]+(/[\w.~+-]+)*")


def _drain(stream: IO[str], keep: Callable[[str], None], label: str | None) -> None:
    """Collect a stream's lines; with a label, log Go's messages (not packages or downloads)."""
    for line in stream:
        line = line.rstrip()
        keep(line)
        if label is None:
            continue
        quiet = line.startswith("go: downloading") or _PACKAGE_LINE.fullmatch(line)
        log.log(logging.DEBUG if quiet else logging.INFO, "%s: %s", label, line)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m tests.testenv.build",
                                     description="Build (or find) every Go binary of the test environment.")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        build()
        build_platform()
    except BuildFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
