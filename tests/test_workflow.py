"""The CI/CD workflow Sentinel ships for its users (examples/github-actions/sentinel.yml) passes
actionlint, with actionlint's shellcheck integration, and does what docs/platform.md says it does."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "examples" / "github-actions" / "sentinel.yml"
ACTIONLINT = ("github.com/rhysd/actionlint/cmd/actionlint", "v1.7.12")
CACHE = Path.home() / ".cache" / "sentinel"


@pytest.fixture(scope="session")
def actionlint() -> Path:
    """actionlint built from the Go module proxy once, cached under ~/.cache/sentinel/bin."""
    module, version = ACTIONLINT
    binary = CACHE / "bin" / f"actionlint-{version}" / "actionlint"
    if binary.is_file():
        return binary
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None)
    if go is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and no Go toolchain to build actionlint", pytrace=False)
        pytest.skip(f"no Go toolchain: build it with `GOBIN={binary.parent} go install {module}@{version}`")
    env = {**os.environ, "GOBIN": str(binary.parent), "GOMODCACHE": str(CACHE / "gomod"),
           "GOCACHE": str(CACHE / "go-build"), "GOFLAGS": "-mod=mod"}
    built = subprocess.run([go, "install", f"{module}@{version}"], env=env, capture_output=True, text=True,
                           timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    return binary


def _lint(actionlint: Path, workflow: Path) -> subprocess.CompletedProcess:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None and os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true and shellcheck is missing (apt-get install shellcheck)", pytrace=False)
    args = [str(actionlint), f"-shellcheck={shellcheck or ''}", str(workflow)]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_the_users_workflow_passes_actionlint_and_shellcheck(actionlint) -> None:
    result = _lint(actionlint, WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_a_broken_workflow(actionlint, tmp_path) -> None:
    """The check can fail: an unquoted expansion and an undefined job output are both reported."""
    broken = WORKFLOW.read_text().replace('docker push "$TRAIN_IMAGE"', "docker push $TRAIN_IMAGE") \
        .replace("needs.images.outputs.serve", "needs.images.outputs.nope")
    (tmp_path / "broken.yml").write_text(broken)
    result = _lint(actionlint, tmp_path / "broken.yml")
    assert result.returncode != 0
    assert "nope" in result.stdout
    if shutil.which("shellcheck"):
        assert "SC2086" in result.stdout


def test_the_pipeline_builds_scans_pushes_verifies_staging_then_promotes() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    steps = {name: [s.get("uses", "") + " " + s.get("run", "") for s in job["steps"]] for name, job in jobs.items()}
    images = " ".join(steps["images"])
    assert "Dockerfile.train" in WORKFLOW.read_text() and "Dockerfile.serve" in WORKFLOW.read_text()
    assert "aquasecurity/trivy-action" in images and "amazon-ecr-login" in images and "docker push" in images
    assert jobs["staging"]["needs"] == "images" and jobs["staging"]["environment"] == "staging"
    assert any("sentinel verify" in s for s in steps["staging"])
    assert jobs["production"]["needs"] == ["images", "staging"]
    assert jobs["production"]["environment"] == "production"
    assert any("sentinel serve --checkpoint best" in s for s in steps["production"])
