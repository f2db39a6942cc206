"""Monitoring for real: Debian's Prometheus scrapes a local Ray running our Serve application, and
Serve's HTTP request counter for /recommend rises after requests. Plus the monitoring objects:
PodMonitors and Grafana dashboards as ConfigMaps for the dashboard sidecar."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from sentinel_cli.k8s import monitoring
from tests.support.ports import free_port, free_ports
from tests.testenv.process import wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").is_file() else None)
    if found is None:
        message = "prometheus is not installed: apt-get install -y --no-install-recommends prometheus"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def served_ray(trained_run, tmp_path):
    """Our Serve app in its own local Ray whose metrics agent listens on a known port."""
    http_port, metrics_port = free_ports(2)
    checkpoint = trained_run.checkpoints["best"]
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-m", "tests.platform.serve_child", checkpoint,
                              str(http_port), str(metrics_port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=open(tmp_path / "serve-child.log", "w"), text=True, cwd=REPO, env=env)
    try:
        line = child.stdout.readline()  # blocks until ready, or EOF if it died
        assert line.strip() == "ready", (tmp_path / "serve-child.log").read_text()[-3000:]
        yield f"http://127.0.0.1:{http_port}", f"127.0.0.1:{metrics_port}"
    finally:
        child.stdin.close()
        _stop(child)


@pytest.fixture
def prometheus(prometheus_bin, served_ray, tmp_path):
    _, target = served_ray
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(monitoring.prometheus_config([target], interval_s=2)))
    log = open(tmp_path / "prometheus.log", "w")
    process = subprocess.Popen([prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> str | None:
        if process.poll() is not None:
            return f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()[-2000:]}"
        try:
            return None if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200 else "prometheus not ready"
        except httpx.HTTPError as e:
            return f"prometheus not answering: {e}"

    wait_for("prometheus ready", ready, timeout_s=60, interval_s=0.5)
    yield url
    _stop(process)


def _requests_counted(prometheus_url: str) -> float | None:
    """sum(ray_serve_num_http_requests_total{route="/recommend"}) through Prometheus's HTTP API."""
    response = httpx.get(f"{prometheus_url}/api/v1/query", timeout=10,
                         params={"query": 'sum(ray_serve_num_http_requests_total{route="/recommend"})'})
    response.raise_for_status()
    result = response.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.mark.slow
def test_prometheus_sees_serve_requests_to_recommend_rise(served_ray, prometheus) -> None:
    base_url, target = served_ray

    def scraped() -> str | None:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        healthy = [t for t in targets if t["labels"]["instance"] == target and t["health"] == "up"]
        return None if healthy else f"Ray's metrics agent at {target} not scraped yet: {targets}"

    wait_for("Prometheus scraping Ray", scraped, timeout_s=120, interval_s=1)

    def send(count: int) -> None:
        for user in range(1, count + 1):
            response = httpx.post(f"{base_url}/recommend", json={"user_id": user, "movie_ids": [1, 2, 3]}, timeout=30)
            assert response.status_code == 200, response.text
            assert len(response.json()["predictions"]) == 3

    send(5)
    first: list[float] = []

    def counted(at_least: float) -> str | None:
        value = _requests_counted(prometheus)
        if value is not None and value >= at_least:
            first.append(value)
            return None
        return f"ray_serve_num_http_requests_total{{route=\"/recommend\"}} is {value}, waiting for >= {at_least}"

    wait_for("the first requests counted", lambda: counted(5), timeout_s=180, interval_s=1)
    before = first[-1]
    send(7)
    wait_for("the counter to rise", lambda: counted(before + 7), timeout_s=180, interval_s=1)
    assert first[-1] >= before + 7


def test_pod_monitors_select_ray_heads_and_workers_by_metrics_port() -> None:
    head, workers = monitoring.monitors("ml")
    assert head["kind"] == workers["kind"] == "PodMonitor"
    assert head["spec"]["selector"] == {"matchLabels": {"ray.io/node-type": "head"}}
    assert workers["spec"]["selector"] == {"matchLabels": {"ray.io/node-type": "worker"}}
    assert head["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert head["spec"]["namespaceSelector"] == {"matchNames": ["ml"]}


def test_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    maps = monitoring.dashboard_configmaps("ml")
    assert [m["metadata"]["name"] for m in maps] == ["sentinel-training-dashboard", "sentinel-serving-dashboard"]
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        (board,) = [json.loads(text) for text in config_map["data"].values()]
        assert board["panels"] and all(p["targets"][0]["expr"] for p in board["panels"])
    serving = json.loads(maps[1]["data"]["sentinel-serving.json"])
    assert any("ray_serve_num_http_requests_total" in p["targets"][0]["expr"] for p in serving["panels"])
