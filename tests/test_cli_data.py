"""``sentinel data synth`` (and the group's help) as a user runs it: exit codes, the table and
``-o json``, bad flags as one clear line with exit 2."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sentinel_cli.app import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


SMALL = ("--ratings", "3000", "--users", "200", "--items", "120", "--seed", "5", "--part-rows", "1000")


def test_synth_prints_the_noise_floor_and_json(tmp_path) -> None:
    result = invoke("data", "synth", *SMALL, "--out", str(tmp_path / "t"))
    assert result.exit_code == 0, result.output
    assert "noise_floor" in result.stdout and str(tmp_path / "t") in result.stdout
    result = invoke("data", "synth", *SMALL, "--out", str(tmp_path / "j"), "-o", "json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)  # stdout is the JSON alone: the progress bar is on stderr
    assert shown["ratings"] == 3000 and shown["parts"] >= 3 and 0.7 < shown["noise_floor"] < 0.9
    assert pq.read_table(tmp_path / "j").num_rows == 3000
    manifest = json.loads((tmp_path / "j" / "_synth.json").read_text())
    assert manifest["noise_floor"] == shown["noise_floor"] and manifest["seed"] == 5


@pytest.mark.parametrize("args, message", [
    (["--ratings", "100", "--users", "200", "--items", "50"], "too few for --users 200"),
    (["--ratings", "90000", "--users", "200", "--items", "50"], "too many"),
    (["--ratings", "3000", "--users", "200", "--items", "50", "--noise", "-1"], "--noise must be positive"),
    (["--ratings", "0", "--users", "200", "--items", "50"], "--ratings"),
    (["--ratings", "3000", "--users", "200"], "--items"),
])
def test_bad_synth_flags_exit_2_with_one_clear_message(tmp_path, args, message) -> None:
    result = invoke("data", "synth", *args, "--out", str(tmp_path / "t"))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "t").exists() and list(tmp_path.iterdir()) == []


def test_synth_refuses_to_mix_with_an_existing_table(tmp_path) -> None:
    assert invoke("data", "synth", *SMALL, "--out", str(tmp_path / "t")).exit_code == 0
    result = invoke("data", "synth", *SMALL, "--out", str(tmp_path / "t"))
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert invoke("data", "synth", *SMALL, "--out", str(tmp_path / "t"), "--overwrite").exit_code == 0


def test_the_group_lists_its_commands_and_datasets() -> None:
    result = invoke("data", "--help")
    assert result.exit_code == 0
    for command in ("fetch", "stats", "synth"):
        assert command in result.output
    assert "ml-25m" in invoke("data", "fetch", "--help").output
    assert invoke("data", "fetch", "--dataset", "ml-7m").exit_code == 2


def test_the_progress_bar_stays_off_stdout(capsys) -> None:
    from sentinel_cli.commands.data import progress_bar

    with progress_bar("ml-25m", transfer=True) as progress:
        pass  # a warm cache: no call, no bar
    with progress_bar("ml-25m", transfer=True) as progress:
        for done in range(0, 1 << 20, 1 << 16):
            progress(done, 1 << 20)
        progress(5, None)  # a server that sends no length
    assert capsys.readouterr().out == ""
