"""A user's own table end to end through the CLI, as a user runs it (separate processes): a Parquet
table with string ids and an --items CSV of titles → `sentinel train` → `sentinel serve --checkpoint
latest` (a detached local Ray under its own $SENTINEL_HOME) → `predict` and `recommend` with the
table's own ids, on every protocol; an unknown id is exit 2 with the server's 404 naming it; then
`serve stop`. One test: serving costs about a minute."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.ports import free_ports
from tests.support.serving import check_stopped

pytestmark = pytest.mark.slow

USERS = [f"u-{i}" for i in range(1, 40)] + ["007"]  # "007" is a string id, not the integer 7
ITEMS = [f"m-{i}" for i in range(1, 51)]


def test_a_string_id_table_trains_serves_and_answers_with_its_own_ids(tmp_path) -> None:
    home = tmp_path / "home"
    table, titles = tmp_path / "ratings.parquet", tmp_path / "items.csv"
    rows = [(user, ITEMS[(u * 7 + k * 3) % len(ITEMS)], float(1 + (u + k) % 5))
            for u, user in enumerate(USERS) for k in range(15)]
    pq.write_table(pa.table({"uid": [r[0] for r in rows], "movie": [r[1] for r in rows],
                             "stars": [r[2] for r in rows]}), table)
    titles.write_text("movie,title\n" + "".join(f"{item},The Film {item.upper()}\n" for item in ITEMS))
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "SENTINEL_TARGET", "SENTINEL_STORAGE", "SENTINEL_MLFLOW_URI", "SENTINEL_DATA",
                        "SENTINEL_GRPC", "SENTINEL_URL")}
    env.update(SENTINEL_HOME=str(home), COLUMNS="160")
    port, grpc_port = free_ports(2)
    url, grpc_address = f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}"

    def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sentinel_cli", *args], env=env, capture_output=True,
                              text=True, timeout=timeout)

    trained = cli("train", "--data", str(table), "--columns", "user=uid,item=movie,rating=stars",
                  "--items", str(titles), "--epochs", "1", "-o", "json", timeout=300)
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    data = summary["data"]
    assert (data["dataset"], data["origin"], data["split"]) == ("table", str(table), "random")
    assert (data["users"], data["ratings"], data["duplicates_dropped"]) == (len(USERS), len(rows), 0)

    leader = None
    try:
        served = cli("serve", "--checkpoint", "latest", "--port", str(port), "--grpc-port", str(grpc_port),
                     "--timeout", "240", "-o", "json", timeout=300)
        assert served.returncode == 0, served.stderr
        assert json.loads(served.stdout)["checkpoint"] == summary["checkpoints"]["best"]
        leader = json.loads((home / "ray" / "cluster.json").read_text())["pid"]

        rated = {item for user, item, _ in rows if user == "u-3"}
        movies = [ITEMS[0], ITEMS[1], ITEMS[2]]
        asked = cli("predict", "--user", "u-3", "--movies", ",".join(movies), "--url", url, "-o", "json")
        assert asked.returncode == 0, asked.stderr
        body = json.loads(asked.stdout)
        assert body["user_id"] == "u-3" and len(body["predictions"]) == 3
        assert all(1.0 <= p <= 5.0 for p in body["predictions"])  # clipped to the table's scale
        for protocol in ("tfserving", "v2", "grpc"):  # strings as strings on every protocol
            other = cli("predict", "--user", "u-3", "--movies", ",".join(movies), "--url", url, "--grpc",
                        grpc_address, "--protocol", protocol, "-o", "json")
            assert other.returncode == 0, (protocol, other.stderr)
            assert json.loads(other.stdout)["predictions"] == pytest.approx(body["predictions"], abs=1e-6)
        zeros = cli("predict", "--user", "007", "--movies", ITEMS[4], "--url", url, "-o", "json")
        assert zeros.returncode == 0, zeros.stderr  # the string id "007", not the integer 7
        assert json.loads(zeros.stdout)["user_id"] == "007"

        top = cli("recommend", "--user", "u-3", "-k", "5", "--min-ratings", "0", "--url", url, "-o", "json")
        assert top.returncode == 0, top.stderr
        shown = json.loads(top.stdout)
        assert shown["user_id"] == "u-3" and len(shown["movies"]) == 5
        for movie in shown["movies"]:
            assert movie["movie_id"] in ITEMS and movie["movie_id"] not in rated  # unseen, the table's own ids
            assert movie["title"] == f"The Film {movie['movie_id'].upper()}"  # from --items
        assert "The Film M-" in cli("recommend", "--user", "u-3", "-k", "2", "--min-ratings", "0", "--url",
                                    url).stdout

        for args, named in ((["--user", "u-999", "--movies", ITEMS[0]], "unknown user 'u-999'"),
                            (["--user", "u-3", "--movies", f"{ITEMS[0]},m-999"], "unknown item 'm-999'"),
                            (["--user", "7", "--movies", ITEMS[0]], "unknown user 7")):  # as sent: "7", not "007"
            refused = cli("predict", *args, "--url", url)
            assert refused.returncode == 2, refused.stderr
            assert named in refused.stderr and "404" in refused.stderr and "Traceback" not in refused.stderr
            assert "the served data's own ids" in refused.stderr and "MovieLens" not in refused.stderr
        unknown_top = cli("recommend", "--user", "u-999", "--url", url)
        assert unknown_top.returncode == 2 and "unknown user 'u-999'" in unknown_top.stderr
    finally:
        stopped = cli("serve", "stop", "-o", "json", timeout=120)
    check_stopped(stopped, leader)
