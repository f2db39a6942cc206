"""The lock (requirements/, made by tools/lock.py) against pyproject.toml and this venv: offline, so a
release on the registry never turns it red; a dependency change without `make lock` always does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from tools import lock

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of pyproject.toml and requirements/ that the check reads instead of the repository's."""
    shutil.copyfile(lock.PYPROJECT, tmp_path / "pyproject.toml")
    shutil.copytree(lock.DIR, tmp_path / "requirements")
    monkeypatch.setattr(lock, "PYPROJECT", tmp_path / "pyproject.toml")
    monkeypatch.setattr(lock, "DIR", tmp_path / "requirements")
    monkeypatch.setattr(lock, "LOCK", tmp_path / "requirements" / "lock.txt")
    monkeypatch.setattr(lock, "REPO", tmp_path)
    return tmp_path


def test_the_lock_matches_pyproject_and_every_file_it_gives() -> None:
    problems = lock.check()
    assert problems == [], "\n".join(problems)


def test_the_check_needs_no_network() -> None:
    """It resolves nothing: in a network namespace with no route anywhere it passes the same."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.decode().strip()}")
    result = subprocess.run(["unshare", "--net", sys.executable, "tools/lock.py", "--check"], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_a_dependency_change_without_make_lock_fails_with_the_fix(copy: Path) -> None:
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"pyyaml>=6",', '"pyyaml>=6",\n    "some-new-dependency>=2",'))
    problems = lock.check()
    assert problems and all("run `make lock`" in p for p in problems)
    assert "pyproject.toml's dependencies changed" in problems[0]
    assert any("requires some-new-dependency, which the lock does not have" in p for p in problems)


def test_a_range_that_excludes_the_locked_version_is_named(copy: Path) -> None:
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"boto3>=1.34"', '"boto3>=99"'))
    problems = lock.check()
    assert any("boto3>=99 (the lock has " in p and "run `make lock`" in p for p in problems), problems


def test_a_hand_edited_subset_is_caught(copy: Path) -> None:
    cli = copy / "requirements" / "cli.txt"
    cli.write_text(cli.read_text().replace("\ntorch==", "\ntorch==0.0.1 ; python_version < '0'\nx==", 1))
    assert lock.check() == ["requirements/cli.txt is not what lock.txt gives; run `make lock`"]


def test_each_install_takes_its_closure_of_the_lock() -> None:
    _, entries = lock.parse(lock.LOCK.read_text())
    locked = {(e.name, e.version) for e in entries}
    subsets = {name: {(e.name, e.version) for e in lock.parse((lock.DIR / name).read_text())[1]}
               for name in ("cli.txt", "dev.txt", "build.txt")}
    assert all(subset <= locked for subset in subsets.values())  # the lock's pins, never others
    names = {name: {n for n, _ in subset} for name, subset in subsets.items()}
    assert {"torch", "ray", "lightning", "mlflow", "grpcio", "typer"} <= names["cli.txt"]
    assert not {"pytest", "moto", "uv", "pip", "hatchling"} & names["cli.txt"]
    assert names["cli.txt"] < names["dev.txt"] and {"pytest", "moto", "uv"} <= names["dev.txt"]
    assert {"pip", "hatchling"} <= names["build.txt"] and "torch" not in names["build.txt"]
    images = lock.parse((lock.DIR / "images.txt").read_text())[1]
    assert {(e.name, e.version) for e in images} == locked
    assert not any("--hash" in line for e in images for line in e.lines)  # constraints: versions only


def test_this_venv_was_installed_from_the_lock() -> None:
    """What the tests run with is what the lock says (else: make setup-dev, or the CI venv is stale)."""
    locked = lock.locked_versions(lock.DIR.joinpath("dev.txt").read_text())
    wrong = []
    for name, pinned in sorted(locked.items()):
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "(not installed)"
        if installed.split("+")[0] != pinned:
            wrong.append(f"{name} {installed} (locked {pinned})")
    assert not wrong, "the venv differs from requirements/dev.txt: " + ", ".join(wrong) + "; run make setup-dev"
