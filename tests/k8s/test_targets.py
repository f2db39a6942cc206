"""The target layer, pure: one way to reach a target, typed requests reaching the settings as typed
values, typed results whose JSON keeps each target's keys, and what a target cannot do said through
one error type."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_cli.backends import select, select_platform
from sentinel_cli.backends.base import JobTarget, PlatformTarget, Unsupported
from sentinel_cli.backends.kubernetes import plan
from sentinel_cli.backends.results import (
    ABSENT,
    CheckReport,
    DeleteReport,
    ServeReport,
    TrainReport,
    from_data,
    to_data,
)
from sentinel_cli.k8s import settings
from sentinel_cli.k8s.request import KubeRequest, Overrides, ServeOverrides, kube_request
from sentinel_ml.entrypoint import exit_code
from sentinel_ml.errors import ConfigError
from sentinel_ml.serving.config import ServeRequest
from sentinel_ml.training.config import TrainConfig
from tests.k8s.conftest import PROFILE

COMMANDS = Path(__file__).resolve().parents[2] / "sentinel_cli" / "commands"
CHECKPOINT = "s3://sentinel-test/artifacts/runs/train-20260101-000000-abcd/best.pt"


def test_no_command_imports_a_target_module() -> None:
    """Commands reach a target through ``backends.select`` / ``select_platform`` only."""
    for path in COMMANDS.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
        imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        targets = ("sentinel_cli.backends.local", "sentinel_cli.backends.kubernetes")
        reaching = [m for m in imported if m.startswith(targets)]
        assert reaching == [], f"{path.name} imports {reaching}"


def test_each_target_implements_both_interfaces(kube_env) -> None:
    for name in ("local", "k8s"):
        assert isinstance(select(name), JobTarget) and select(name).name == name
        assert isinstance(select_platform(name), PlatformTarget) and select_platform(name).name == name
    with pytest.raises(ConfigError, match="unknown target 'moon'"):
        select_platform("moon")


def test_request_fields_reach_the_settings_as_typed_values(kube_env) -> None:
    overrides = Overrides(profile=str(PROFILE), storage="s3://b/p", workers=6,
                          serve=ServeOverrides(port=8100, grpc_port=9100, max_replicas=3))
    loaded = settings.load(overrides, environ={})
    assert (loaded.storage, loaded.workers) == ("s3://b/p", 6)
    assert (loaded.serve.port, loaded.serve.grpc_port, loaded.serve.max_replicas) == (8100, 9100, 3)
    assert loaded.serve.min_replicas == 1  # what the flags leave alone stays the profile's
    # --set, as the user wrote it, still comes last
    with_set = settings.load(Overrides(profile=str(PROFILE), workers=6, sets=("workers=7",)), environ={})
    assert with_set.workers == 7
    with pytest.raises(ConfigError, match=r"kubernetes.serve.max_replicas \(from the command line\)"):
        settings.load(Overrides(serve=ServeOverrides(max_replicas=0)), environ={})


def test_plans_take_typed_requests(kube_env) -> None:
    deploy = kube_request(profile=str(PROFILE)).with_overrides(workers=3)
    train = plan.plan_train(TrainConfig(), deploy)
    job = next(o for o in train.objects if o["kind"] == "RayJob")
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == 3 and train.name.startswith("train-")
    assert train.timeout_s == train.settings.wait_timeout_s

    request = ServeRequest(checkpoint=CHECKPOINT, port=8100, timeout_s=42, app_args={"max_replicas": 3})
    serve = plan.plan_serve(request, kube_request(profile=str(PROFILE)))
    service = next(o for o in serve.objects if o["kind"] == "RayService")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert config["applications"][0]["deployments"][0]["autoscaling_config"]["max_replicas"] == 3
    assert (serve.checkpoint, serve.settings.serve.port, serve.timeout_s) == (CHECKPOINT, 8100, 42)
    assert plan.plan_serve(request, kube_request(profile=str(PROFILE), timeout=7)).timeout_s == 7
    with pytest.raises(ConfigError, match="--host only applies to the local target"):
        plan.plan_serve(ServeRequest(checkpoint=CHECKPOINT, host="0.0.0.0"), KubeRequest())

    cluster = plan.plan_cluster(kube_request(profile=str(PROFILE), name="interactive"))
    assert [o["kind"] for o in cluster.objects] == ["ServiceAccount", "NetworkPolicy", "RayCluster"]


def test_status_storage_flag_reaches_the_settings(kube_env) -> None:
    """`status --target k8s --storage …` lists the runs of that store (it was dropped before)."""
    deploy = kube_request(profile=str(PROFILE))
    assert plan.load_settings(deploy, Overrides(storage="s3://elsewhere/runs")).storage == "s3://elsewhere/runs"
    assert plan.load_settings(deploy, Overrides()).storage == "s3://sentinel-test/artifacts"  # the profile's


def test_results_keep_each_targets_keys() -> None:
    local = TrainReport(run_id="train-1", model="mf", metrics={"val_rmse": 0.9}, history=[],
                        checkpoints={"best": "b", "last": "l"}, index_uri="i", mlflow_run_id=None,
                        mlflow_error=None, wall_s=1.0, restarts=[])
    assert set(to_data(local)) == {"run_id", "model", "metrics", "history", "checkpoints", "index_uri",
                                   "mlflow_run_id", "mlflow_error", "wall_s", "restarts"}
    assert to_data(local)["mlflow_run_id"] is None  # reported as empty: null, not left out
    applied = TrainReport(run_id="train-1", target="k8s", namespace="ml", rayjob="train-1", state="applied")
    assert to_data(applied) == {"run_id": "train-1", "target": "k8s", "namespace": "ml", "rayjob": "train-1",
                                "state": "applied"}
    assert not applied.finished and local.finished and applied.metrics is ABSENT
    deleted = DeleteReport(kind="RayJob", name="x", namespace="ml", deleted=True)
    assert to_data(deleted) == {"kind": "RayJob", "name": "x", "namespace": "ml", "deleted": True}
    with pytest.raises(TypeError):
        from_data(ServeReport, {"checkpoint": "c", "run_id": None, "no_such_field": 1})
    report = from_data(CheckReport, {"target": "k8s", "ok": True, "items": [], "gone_in_s": None})
    assert json.loads(json.dumps(to_data(report))) == {"target": "k8s", "ok": True, "items": [], "gone_in_s": None}


@pytest.mark.parametrize(("args", "message"), [
    (["logs", "train-1", "--target", "local"], "`sentinel logs` works on the Kubernetes target only"),
    (["delete", "train-1", "--target", "local"], "`sentinel delete` works on the Kubernetes target only"),
    (["serve", "stop", "--target", "k8s"], "`sentinel serve stop` stops the local application"),
])
def test_what_a_target_cannot_do_is_one_error_with_a_hint(kube_env, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "next:" in result.output
    target = select(args[args.index("--target") + 1])
    with pytest.raises(Unsupported) as raised:
        target.serve_stop(KubeRequest()) if args[0] == "serve" else target.logs("train-1", False, KubeRequest())
    assert exit_code(raised.value) == 2 and raised.value.hint


def test_the_local_platform_refuses_kubernetes_flags_in_one_message(kube_env) -> None:
    result = CliRunner().invoke(app, ["down", "--target", "local", "--namespace", "ml", "--purge", "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "--namespace, --purge, --dry-run only apply to --target k8s" in " ".join(result.output.split())
