"""The platform's images for the real node (MinIO, mc, MLflow: tests/testenv/images.py), without a
node: they carry the names the manifests use, the Go builds pin the releases those names tag, the
Dockerfiles pass hadolint and run as uid 1000. `python -m tests.testenv.images build` runs each
image's program as uid 1000 after building it; tests/node/test_platform_images.py runs them as pods."""

from __future__ import annotations

import json
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from sentinel_cli.k8s import platform_objects
from tests.test_images import hadolint_path
from tests.testenv import build, images
from tools import lock

DOCKERFILES = sorted(images.PLATFORM_DIR.glob("*.Dockerfile"))


def test_the_platform_images_carry_the_names_the_manifests_use() -> None:
    found = images.images()
    expected = {"minio": platform_objects.MINIO_IMAGE, "mc": platform_objects.MC_IMAGE,
                "mlflow": platform_objects.MLFLOW_IMAGE}
    assert {name: found[name].reference for name in expected} == expected
    # Already in full: containerd lists them under exactly these names.
    assert {found[name].normalized for name in expected} == set(expected.values())
    assert {found[name].dockerfile for name in expected} == set(DOCKERFILES)
    archives = [found[name].archive for name in expected]
    assert len(set(archives)) == 3 and all(a.parent == images.cache_dir() for a in archives)
    assert found["train"].reference == "sentinel-train:latest"  # the node's first images stay


@pytest.mark.parametrize(("component", "image"), [(build.MINIO, platform_objects.MINIO_IMAGE),
                                                  (build.MC, platform_objects.MC_IMAGE)],
                         ids=["minio", "mc"])
def test_the_go_builds_pin_the_releases_the_images_name(component: build.Component, image: str) -> None:
    release = image.rsplit(":", 1)[1]
    commit = component.stamps[f"{component.module}/cmd.CommitID"]
    # The pseudo-version of the release tag's commit: the tag's time and the commit's hash.
    stamp = re.sub(r"\D", "", release)
    assert component.version == f"v0.0.0-{stamp}-{commit[:12]}"
    assert component.stamps[f"{component.module}/cmd.ReleaseTag"] == release
    assert component.stamps[f"{component.module}/cmd.Version"] == (
        f"{release[8:18]}T{release[19:27].replace('-', ':')}Z")
    gomod = component.wrapper_dir / "go.mod"
    assert build.wrapper_requirement(gomod, component.module) == component.version
    assert f"\ntool {component.module}\n" in gomod.read_text()
    assert "replace" not in gomod.read_text().split("\nmodule ", 1)[1]
    assert (gomod.parent / "go.sum").is_file(), "go.sum pins every hash: commit it"
    assert component.tags == ("kqueue",) and component in build.PLATFORM_COMPONENTS


def test_mlflow_image_installs_the_lock_s_versions_the_tests_run_with() -> None:
    names = lock.requirement_names(images.MLFLOW_REQUIREMENTS)
    assert names == ["mlflow", "boto3"]
    text = (images.PLATFORM_DIR / "mlflow.Dockerfile").read_text()
    assert "--requirement /opt/requirements-mlflow.txt --constraint /opt/images.txt" in text
    locked = lock.locked_versions()
    assert {name: locked[name] for name in names} == {name: version(name) for name in names}
    assert platform_objects.MLFLOW_IMAGE.endswith(f":v{locked['mlflow']}-full")


def test_each_input_changes_its_image_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {name: images.platform_key(name) for name in images.PLATFORM}
    assert len(set(before.values())) == 3
    copy = tmp_path / "requirements-mlflow.txt"
    copy.write_text(images.MLFLOW_REQUIREMENTS.read_text() + "\n# changed\n")
    monkeypatch.setattr(images, "MLFLOW_REQUIREMENTS", copy)
    after = {name: images.platform_key(name) for name in images.PLATFORM}
    assert [name for name in before if before[name] != after[name]] == ["mlflow"]
    constraints = tmp_path / "images.txt"  # a new lock rebuilds MLflow's image (and the apps')
    constraints.write_text(images.CONSTRAINTS.read_text() + "\n# changed\n")
    monkeypatch.setattr(images, "CONSTRAINTS", constraints)
    relocked = {name: images.platform_key(name) for name in images.PLATFORM}
    assert [name for name in before if after[name] != relocked[name]] == ["mlflow"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_platform_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    result = subprocess.run([hadolint_path(), "--no-color", str(dockerfile)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _instruction(text: str, name: str) -> list[str]:
    return re.findall(rf"^{name} (.+)$", text, flags=re.MULTILINE)


@pytest.mark.parametrize("name", ["minio", "mc", "mlflow"])
def test_the_images_run_as_uid_1000_on_the_rootfs(name: str) -> None:
    text = (images.PLATFORM_DIR / f"{name}.Dockerfile").read_text()
    assert _instruction(text, "FROM") == ["scratch"] and _instruction(text, "ADD") == ["rootfs.tar /"]
    assert _instruction(text, "USER")[-1] == "1000:1000"
    if name == "mlflow":
        assert "useradd --uid 1000" in text and "--requirement /opt/requirements-mlflow.txt" in text
        return
    assert f"--chmod=755 {name} /usr/bin/{name}" in _instruction(text, "COPY")[0]
    # mc's configuration (the bucket Job's alias) and MinIO's certificates go under a writable
    # directory for a uid with no home.
    assert "MC_CONFIG_DIR=/tmp/.mc" in text and "ENV HOME=/tmp" in text
    entrypoint = json.loads(_instruction(text, "ENTRYPOINT")[0])
    assert entrypoint == [name]  # minio: the Deployment's args are `server /data ...`


def test_the_checks_after_a_build_run_each_program() -> None:
    assert images.platform_checks("minio") == [["minio", "--version"]]
    assert images.platform_checks("mc")[0] == ["mc", "--version"]
    assert "mc alias set store" in images.platform_checks("mc")[1][-1]
    mlflow = images.platform_checks("mlflow")
    assert mlflow[0] == ["mlflow", "--version"] and "import boto3" in mlflow[1][-1]


def test_an_image_that_differs_from_the_lock_is_named() -> None:
    """Each image's `pip list` is checked against the lock after its build (images.py)."""
    locked = lock.locked_versions(images.CONSTRAINTS.read_text(), images.IMAGE_ENVIRONMENT)
    agreeing = {"torch": f"{locked['torch']}+notriton", "boto3": locked["boto3"], "pip": "23.0.1",
                "not-in-the-lock": "1.0"}
    assert images.lock_mismatches(agreeing) == []
    assert images.lock_mismatches({**agreeing, "boto3": "0.0.1"}) == [f"boto3 0.0.1 (locked {locked['boto3']})"]
