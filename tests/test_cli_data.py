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


def test_stats_of_a_synthetic_table(tmp_path) -> None:
    pytest.importorskip("sentinel_ml.data.sources", reason="sources.read_source lands with the tables branch")
    out = tmp_path / "t"
    assert invoke("data", "synth", *SMALL, "--out", str(out)).exit_code == 0
    result = invoke("data", "stats", "--data", str(out), "-o", "json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert (stats["users"], stats["ratings"], stats["scale"]) == (200, 3000, [0.5, 5.0])
    assert stats["ratings_per_user"]["min"] >= 5 and stats["items"] <= 120
    assert stats["sparsity"] == pytest.approx(1 - 3000 / (200 * stats["items"]), abs=1e-6)


def test_fetch_names_the_dataset_and_its_folder(tmp_path, monkeypatch) -> None:
    pytest.importorskip("sentinel_ml.data.catalog", reason="the catalog lands with the archives branch")
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path / "home"))
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::10::5::978300760\n1::11::3::978300761\n2::10::4::978300762\n")
    (folder / "movies.dat").write_text("10::Toy Story (1995)::Animation\n11::Heat (1995)::Action\n")
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    result = invoke("data", "fetch", "--dataset", "ml-1m", "--data", str(folder), "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"dataset": "ml-1m", "path": str(folder)}
