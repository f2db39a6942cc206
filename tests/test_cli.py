"""The CLI as a user runs it: exit codes, JSON on stdout, errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sentinel_cli.app import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("sentinel ")


def test_help_does_not_import_the_ml_stack() -> None:
    code = (
        "import sys; sys.argv = ['sentinel', '--help']\n"
        "from sentinel_cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'ray', 'lightning', 'mlflow', 'kubernetes') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--workers", "zero"], "--workers"),
        (["train", "--split", "u9"], "--split"),
        (["train", "--lr", "-1"], "--lr must be positive"),
        (["status", "-o", "xml"], "--output"),
    ],
)
def test_bad_flags_exit_2_with_one_clear_message(sentinel_home, args, message) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_data_exits_2_and_names_the_next_step(sentinel_home, tmp_path) -> None:
    result = invoke("train", "--data", str(tmp_path / "nowhere.zip"))
    assert result.exit_code == 2
    assert "dataset not found" in result.stderr and "--data" in result.stderr
    assert result.stdout == ""


def test_status_with_no_runs(sentinel_home) -> None:
    result = invoke("status", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"] == []
    assert "no runs yet" in invoke("status").stdout


@pytest.mark.slow
def test_train_json_then_status_json(sentinel_home) -> None:
    result = invoke("train", "--epochs", "1", "-o", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds only the JSON summary
    assert summary["run_id"].startswith("train-")
    assert summary["checkpoints"]["best"].startswith(str(sentinel_home / "artifacts"))
    assert summary["mlflow_run_id"]
    assert "epoch   1/1" in result.stderr  # live progress went to stderr

    status = json.loads(invoke("status", "-o", "json").stdout)
    assert [run["run_id"] for run in status["runs"]] == [summary["run_id"]]
    assert status["runs"][0]["metrics"]["val_rmse"] == pytest.approx(summary["metrics"]["val_rmse"])
    table = invoke("status").stdout
    assert summary["run_id"] in table


def _complete(words: str, current: int) -> list[str]:
    """What bash completion offers, through the hook `sentinel --install-completion` installs."""
    env = {**os.environ, "_SENTINEL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(current)}
    sentinel = Path(sys.executable).parent / "sentinel"  # the installed command, as a shell calls it
    proc = subprocess.run([str(sentinel)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_shell_completion_offers_commands_options_and_choices() -> None:
    assert invoke("--help").stdout.count("--install-completion") == 1
    sentinel = Path(sys.executable).parent / "sentinel"
    # As a user types it in bash: typer detects the shell from the parent process (the `; exit` keeps
    # bash from exec-ing the command, which would leave make's sh as the parent).
    script = subprocess.run(["bash", "-c", f"'{sentinel}' --show-completion; exit $?"], capture_output=True, text=True,
                            timeout=60)
    assert script.returncode == 0 and "complete -o default -F _sentinel_completion sentinel" in script.stdout
    assert "train" in _complete("sentinel tr", 1) and "tune" in _complete("sentinel tu", 1)
    assert _complete("sentinel train --mo", 2) == ["--model"]
    assert _complete("sentinel train --model ", 3) == ["mf", "autorec"]
    assert set(_complete("sentinel tune --scheduler ", 3)) == {"asha", "fifo"}
