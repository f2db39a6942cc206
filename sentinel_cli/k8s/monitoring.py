"""Monitoring as data (pure): Prometheus scrape configuration for a local Ray, Prometheus operator
monitors for Ray in a cluster, and Grafana dashboards for training and serving.

Ray exports Prometheus metrics from every node's metrics agent (``--metrics-export-port``; KubeRay
names the container port ``metrics``, 8080). Ray Serve's HTTP proxy counts requests per route in
``ray_serve_num_http_requests_total{route="/recommend"}``; training and tuning progress shows in
Ray's own node and task metrics.
"""

from __future__ import annotations

import json
from typing import Any

from sentinel_cli.k8s import client as kinds
from sentinel_ml.serving.config import NAMES

METRICS_PORT_NAME = "metrics"  # the KubeRay head and worker containers' metrics port
DASHBOARD_LABEL = {"grafana_dashboard": "1"}  # what Grafana's dashboard sidecar watches for
MANAGED = {"app.kubernetes.io/managed-by": "sentinel", "app.kubernetes.io/part-of": "sentinel"}


def prometheus_config(targets: list[str], interval_s: int = 15) -> dict[str, Any]:
    """A prometheus.yml scraping Ray metrics agents at ``targets`` (host:port)."""
    return {
        "global": {"scrape_interval": f"{interval_s}s", "evaluation_interval": f"{interval_s}s"},
        "scrape_configs": [{"job_name": "ray", "static_configs": [{"targets": list(targets)}]}],
    }


def monitors(namespace: str) -> list[dict[str, Any]]:
    """PodMonitors (Prometheus operator) for Ray heads and workers; Serve's proxy runs in them too."""
    objects = []
    for role, node_type in (("head", "head"), ("workers", "worker")):
        objects.append({
            **kinds.PODMONITOR.type_meta(),
            "metadata": {"name": f"sentinel-ray-{role}", "namespace": namespace,
                         "labels": {**MANAGED, "release": "prometheus"}},
            "spec": {
                "jobLabel": f"ray-{role}",
                "namespaceSelector": {"matchNames": [namespace]},
                "selector": {"matchLabels": {"ray.io/node-type": node_type}},
                "podMetricsEndpoints": [{
                    "port": METRICS_PORT_NAME, "interval": "15s",
                    # Ray's own dashboards filter on this label (ray.io/cluster -> ray_io_cluster).
                    "relabelings": [{"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"],
                                     "targetLabel": "ray_io_cluster"}],
                }],
            },
        })
    return objects


def _panel(panel_id: int, title: str, expr: str, unit: str, x: int, y: int) -> dict[str, Any]:
    return {"id": panel_id, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
            "targets": [{"expr": expr, "refId": "A", "legendFormat": "__auto"}]}


# Every protocol's routes: /recommend, TF-Serving's /v1 and the Open Inference Protocol's /v2 (HTTP),
# and the OIP gRPC service's methods.
_ROUTES = 'route=~"/recommend.*|/v1/.*|/v2/.*"'
_GRPC = 'method=~"/inference.GRPCInferenceService/.*"'
SERVING_PANELS = [
    ("HTTP requests per second by route", f'sum(rate(ray_serve_num_http_requests_total{{{_ROUTES}}}[1m])) by (route, code)', "reqps"),
    ("gRPC requests per second by method", f'sum(rate(ray_serve_num_grpc_requests_total{{{_GRPC}}}[1m])) by (method)', "reqps"),
    ("P95 latency (ms)", f'histogram_quantile(0.95, sum(rate(ray_serve_http_request_latency_ms_bucket{{{_ROUTES}}}[5m])) by (le))', "ms"),
    ("gRPC P95 latency (ms)", f'histogram_quantile(0.95, sum(rate(ray_serve_grpc_request_latency_ms_bucket{{{_GRPC}}}[5m])) by (le))', "ms"),
    ("HTTP errors per second", f'sum(rate(ray_serve_num_http_error_requests_total{{{_ROUTES}}}[1m])) by (error_code)', "reqps"),
    ("gRPC errors per second", f'sum(rate(ray_serve_num_grpc_error_requests_total{{{_GRPC}}}[1m])) by (error_code)', "reqps"),
    ("Replicas", f'sum(ray_serve_deployment_replica_healthy{{deployment="{NAMES.deployment}"}})', "short"),
    ("Ongoing requests per replica", f'avg(ray_serve_replica_processing_queries{{deployment="{NAMES.deployment}"}})', "short"),
    ("Queued requests", f'sum(ray_serve_deployment_queued_queries{{deployment="{NAMES.deployment}"}})', "short"),
]
TRAINING_PANELS = [
    ("CPU utilisation by node", 'avg(ray_node_cpu_utilization) by (instance)', "percent"),
    ("Memory used by node", 'sum(ray_node_mem_used) by (instance)', "bytes"),
    ("Running tasks and actors", 'sum(ray_tasks{State="RUNNING"}) + sum(ray_actors{State="ALIVE"})', "short"),
    ("Object store memory", 'sum(ray_object_store_memory) by (instance)', "bytes"),
    ("Network received", 'sum(rate(ray_node_network_received[1m])) by (instance)', "Bps"),
    ("Disk used", 'sum(ray_node_disk_usage) by (instance)', "bytes"),
]


def dashboard(uid: str, title: str, panels: list[tuple[str, str, str]]) -> dict[str, Any]:
    """A Grafana dashboard (JSON model) of timeseries panels on a Prometheus data source variable."""
    return {
        "uid": uid, "title": title, "tags": ["sentinel", "ray"], "timezone": "browser",
        "schemaVersion": 39, "version": 1, "refresh": "30s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Data source"}]},
        "panels": [_panel(i + 1, title_, expr, unit, 12 * (i % 2), 8 * (i // 2))
                   for i, (title_, expr, unit) in enumerate(panels)],
    }


def dashboards() -> dict[str, dict[str, Any]]:
    return {"sentinel-training": dashboard("sentinel-training", "Sentinel / Training", TRAINING_PANELS),
            "sentinel-serving": dashboard("sentinel-serving", "Sentinel / Serving", SERVING_PANELS)}


def dashboard_configmaps(namespace: str) -> list[dict[str, Any]]:
    """One ConfigMap per dashboard, labelled for Grafana's dashboard sidecar."""
    return [{**kinds.CONFIGMAP.type_meta(),
             "metadata": {"name": f"{name}-dashboard", "namespace": namespace, "labels": {**MANAGED, **DASHBOARD_LABEL}},
             "data": {f"{name}.json": json.dumps(board, indent=1, sort_keys=True)}}
            for name, board in dashboards().items()]
