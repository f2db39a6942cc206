"""Rendering is pure: checked-in expected outputs, injection attempts, names, schemas.

The expected files in ``expected/`` are the templates' exact output for ``assets/profile.yaml``;
after a deliberate template change, regenerate them with ``SENTINEL_REGENERATE=1 pytest <this file>``
and review the diff.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sentinel_cli.app import app
from sentinel_cli.k8s import manifests, render, settings
from sentinel_cli.k8s.request import Overrides
from sentinel_ml.errors import ConfigError
from sentinel_ml.training.config import DEFAULT_MAX_FAILURES, Hyperparameters, TrainConfig
from sentinel_ml.tuning.config import StudyConfig
from tests.k8s.conftest import EXPECTED, PROFILE

RUN_ID = "train-20260101-000000-abcd"
TUNE_ID = "tune-20260101-000000-abcd"
CHECKPOINT = f"s3://sentinel-test/artifacts/runs/{RUN_ID}/best.pt"


def _settings(**values: Any) -> settings.KubeSettings:
    """The test profile, with ``values`` (dotted keys, or mappings of them) as ``--set`` would give them."""
    return settings.load(Overrides(profile=str(PROFILE), sets=tuple(_sets(values))), environ={})


def _sets(values: dict[str, Any], prefix: str = "") -> list[str]:
    return [item for key, value in values.items()
            for item in (_sets(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}={value}"])]


def _values(what: str, kube: settings.KubeSettings | None = None) -> dict[str, Any]:
    kube = kube or _settings()
    if what == "train":
        return manifests.train_values(kube, TrainConfig(hp=Hyperparameters(epochs=3)), RUN_ID)
    if what == "tune":
        return manifests.tune_values(kube, StudyConfig(samples=8), TUNE_ID)
    if what == "serve":
        return manifests.serve_values(kube, CHECKPOINT, RUN_ID)
    return manifests.cluster_values(kube, "sentinel")


@pytest.mark.parametrize("what", ["train", "tune", "serve", "cluster"])
def test_templates_render_the_checked_in_expected_output(kube_env, what: str) -> None:
    text = render.render_text(what, _values(what))
    expected = EXPECTED / f"{what}.yaml"
    if os.environ.get("SENTINEL_REGENERATE"):
        expected.write_text(text)
    assert text == expected.read_text(), f"{what}: regenerate with SENTINEL_REGENERATE=1 and review"
    objects = render.render(what, _values(what))
    policies = ["NetworkPolicy"] * (2 if what == "serve" else 1)  # security.py: Ray's ports, Serve's
    assert [o["kind"] for o in objects] == ["ServiceAccount", *policies, _KINDS[what]] + (
        ["Service"] if what == "serve" else [])


def _rendered(what: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The rendered objects but the NetworkPolicies (tests/k8s/test_security.py checks those)."""
    return [o for o in render.render(what, values) if o["kind"] != "NetworkPolicy"]


_KINDS = {"train": "RayJob", "tune": "RayJob", "serve": "RayService", "cluster": "RayCluster"}


def test_serve_exposes_grpc_through_its_own_service(kube_env) -> None:
    """KubeRay 1.5's serve Service carries only the port named serve: the gRPC port gets a Service
    that selects this RayService's pods whose Serve proxy is ready, whichever RayCluster they are in."""
    from sentinel_ml.serving import config as serve_config

    kube = _settings(**{"serve.grpc_port": 9100})
    _, service, grpc = _rendered("serve", manifests.serve_values(kube, CHECKPOINT, RUN_ID))
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert config["grpc_options"] == {"port": 9100, "grpc_servicer_functions": [serve_config.GRPC_SERVICER]}
    cluster = service["spec"]["rayClusterConfig"]
    for template in [cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]]:
        assert template["metadata"]["labels"]["sentinel.io/rayservice"] == "recommender"
        ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
        assert (ports["serve"], ports["grpc"]) == (8000, 9100)
    assert grpc["metadata"]["name"] == "recommender-grpc"
    assert grpc["spec"]["selector"] == {"sentinel.io/rayservice": "recommender", "ray.io/serve": "true"}
    assert grpc["spec"]["ports"] == [{"name": "grpc", "port": 9100, "targetPort": "grpc", "protocol": "TCP",
                                      "appProtocol": "kubernetes.io/h2c"}]
    with pytest.raises(Exception, match="grpc_port must differ"):
        _settings(**{"serve.grpc_port": 8000})


def test_rayjob_carries_the_profile_defaults_and_policy(kube_env) -> None:
    account, job = _rendered("train", _values("train"))
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/sentinel-checkpoints"}
    meta, spec = job["metadata"], job["spec"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "sentinel"
    assert meta["labels"]["sentinel.io/run-id"] == RUN_ID
    assert (spec["shutdownAfterJobFinishes"], spec["ttlSecondsAfterFinished"],
            spec["activeDeadlineSeconds"], spec["backoffLimit"]) == (True, 300, 7200, 0)
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    workers = cluster["workerGroupSpecs"][0]
    worker = workers["template"]["spec"]
    assert cluster["rayVersion"] == "2.60.0"
    assert head["nodeSelector"] == {"lifecycle": "OnDemand"}
    assert head["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "4Gi"}
    assert worker["nodeSelector"] == {"intention": "training", "lifecycle": "Ec2Spot"}
    assert worker["tolerations"] == [{"key": "lifecycle", "operator": "Equal", "value": "Ec2Spot",
                                      "effect": "NoSchedule"}]
    assert worker["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 2
    assert head["serviceAccountName"] == worker["serviceAccountName"] == "sentinel"
    assert worker["containers"][0]["env"] == [{"name": "AWS_REGION", "value": "us-east-1"}]


def test_the_submitter_pod_goes_beside_the_head_with_small_requests(kube_env) -> None:
    """KubeRay's default submitter has no node selector (it may land anywhere) and asks for 500m."""
    spec = _rendered("train", _values("train"))[1]["spec"]
    pod = spec["submitterPodTemplate"]["spec"]
    (container,) = pod["containers"]
    assert pod["nodeSelector"] == {"lifecycle": "OnDemand"} and pod["restartPolicy"] == "Never"
    assert container["name"] == manifests.SUBMITTER_CONTAINER  # what `logs` reads
    assert container["image"] == spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert container["resources"]["requests"] == container["resources"]["limits"] == {"cpu": "200m",
                                                                                      "memory": "512Mi"}
    assert "command" not in container  # KubeRay fills in `ray job submit …`


def test_an_s3_compatible_store_reaches_the_ray_pods_but_not_the_submitter(kube_env) -> None:
    kube = _settings(s3={"endpoint": "http://sentinel-minio.ml.svc:9000", "credentials_secret": "sentinel-minio"})
    for what in ("train", "serve"):
        objects = _rendered(what, _values(what, kube))
        spec = next(o for o in objects if o["kind"] in ("RayJob", "RayService"))["spec"]
        cluster = spec.get("rayClusterSpec") or spec["rayClusterConfig"]
        pods = [cluster["headGroupSpec"]["template"]["spec"],
                *(g["template"]["spec"] for g in cluster["workerGroupSpecs"])]
        for pod in pods:
            env = {e["name"]: e for e in pod["containers"][0]["env"]}
            assert env["AWS_ENDPOINT_URL"]["value"] == "http://sentinel-minio.ml.svc:9000"
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert env[key]["valueFrom"] == {"secretKeyRef": {"name": "sentinel-minio", "key": key}}
            assert env["AWS_REGION"]["value"] == "us-east-1"  # the profile's env stays
        if what == "train":
            submitter = spec["submitterPodTemplate"]["spec"]["containers"][0]
            assert [e["name"] for e in submitter["env"]] == ["AWS_REGION"]


def test_serve_workers_follow_their_own_node_selector(kube_env) -> None:
    default = _rendered("serve", _values("serve"))[1]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert "nodeSelector" not in default["template"]["spec"]  # any node, as before
    kube = _settings(serve={"node_selector": {"lifecycle": "OnDemand"}})
    group = _rendered("serve", _values("serve", kube))[1]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert group["template"]["spec"]["nodeSelector"] == {"lifecycle": "OnDemand"}


def test_s3_settings_are_checked(kube_env) -> None:
    with pytest.raises(ConfigError, match=r"kubernetes.s3.endpoint .*not an http\(s\):// endpoint"):
        _settings(s3={"endpoint": "minio:9000"})
    with pytest.raises(ConfigError, match="kubernetes.s3.credentials_secret"):
        _settings(s3={"credentials_secret": "Bad_Name"})


def test_entrypoint_is_what_the_training_module_parses(kube_env) -> None:
    from sentinel_ml.train import build_parser, config_from_args

    job = _rendered("train", _values("train"))[1]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "sentinel_ml.train"]
    config = config_from_args(build_parser().parse_args(argv[3:]))
    assert config.hp == Hyperparameters(epochs=3)
    assert (config.workers, config.storage, config.run_id) == (2, "s3://sentinel-test/artifacts", RUN_ID)
    assert config.mlflow_uri == "http://mlflow.ml.svc.cluster.local:5000"
    assert config.max_failures == DEFAULT_MAX_FAILURES


@pytest.mark.parametrize("what", ["train", "tune"])
def test_max_failures_travels_in_the_entrypoint(kube_env, what: str) -> None:
    """`--max-failures` reaches the job: Ray Train restarts a group whose worker pod was lost (spot)."""
    import importlib

    module = importlib.import_module(f"sentinel_ml.{what}")
    if what == "train":
        values = manifests.train_values(_settings(), TrainConfig(hp=Hyperparameters(epochs=3), max_failures=0), RUN_ID)
    else:
        values = manifests.tune_values(_settings(), StudyConfig(samples=8, max_failures=5), TUNE_ID)
    argv = shlex.split(_rendered(what, values)[1]["spec"]["entrypoint"])
    parsed = module.config_from_args(module.build_parser().parse_args(argv[3:]))
    assert parsed.max_failures == (0 if what == "train" else 5)


def test_tune_entrypoint_is_what_the_tuning_module_parses(kube_env) -> None:
    from sentinel_ml.tune import build_parser, config_from_args

    job = _rendered("tune", _values("tune"))[1]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "sentinel_ml.tune"]
    config = config_from_args(build_parser().parse_args(argv[3:]))
    assert (config.samples, config.scheduler, config.run_id) == (8, "asha", TUNE_ID)
    assert (config.model, config.max_epochs, config.space) == ("autorec", 30, StudyConfig().space)
    assert "--space-json" not in argv  # the default space needs no shipping
    assert config.max_failures == DEFAULT_MAX_FAILURES


def test_a_custom_space_file_travels_inline_with_the_tuning_job(kube_env, tmp_path: Path) -> None:
    from sentinel_ml.tune import build_parser, config_from_args
    from sentinel_ml.tuning.search_space import load_space

    file = tmp_path / "space.yaml"
    file.write_text("lr: {lower: 2e-3, upper: 0.01}\nembedding_dim: [64, 128]\nbatch_size: 256\n")
    study = StudyConfig(model="mf", space=load_space(file, "mf"), samples=4)
    job = _rendered("tune", manifests.tune_values(_settings(), study, TUNE_ID))[1]
    argv = shlex.split(job["spec"]["entrypoint"])
    parsed = config_from_args(build_parser().parse_args(argv[3:]))
    assert (parsed.model, parsed.space, parsed.max_epochs) == ("mf", study.space, 20)


def test_train_entrypoint_carries_the_model_and_its_defaults(kube_env) -> None:
    from sentinel_ml.train import build_parser, config_from_args

    hp = Hyperparameters.for_model("autorec", epochs=4)
    job = _rendered("train", manifests.train_values(_settings(), TrainConfig(hp=hp), RUN_ID))[1]
    parsed = config_from_args(build_parser().parse_args(shlex.split(job["spec"]["entrypoint"])[3:]))
    assert parsed.hp == hp and (hp.embedding_dim, hp.regularization) == (500, 100.0)


def test_serve_config_is_a_valid_serve_application_with_the_checkpoint(kube_env) -> None:
    from ray.serve.schema import ServeDeploySchema

    from sentinel_ml.serving import config as serve_config
    from sentinel_ml.serving.config import ServeArgs

    service = _rendered("serve", _values("serve"))[1]
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(config)  # Ray 2.60's own schema of a Serve config file
    assert config["grpc_options"]["grpc_servicer_functions"] == [serve_config.GRPC_SERVICER]
    assert config["grpc_options"]["port"] == serve_config.DEFAULT_GRPC_PORT
    app_config = config["applications"][0]
    assert app_config["import_path"] == serve_config.IMPORT_PATH == "sentinel_ml.serve:app_builder"
    names = serve_config.NAMES
    assert (app_config["name"], app_config["route_prefix"]) == (names.application, serve_config.ROUTE_PREFIX)
    args = ServeArgs.model_validate(app_config["args"])  # the builder's typed args accept them
    assert (args.checkpoint, args.run_id) == (CHECKPOINT, RUN_ID)
    assert args.autoscaling is None  # sent once: the deployment's autoscaling_config, which Serve applies
    deployment = app_config["deployments"][0]
    assert deployment["name"] == names.deployment
    assert deployment["autoscaling_config"] == {
        "min_replicas": 1, "max_replicas": 5, "target_ongoing_requests": 5.0,
        "upscale_delay_s": 1.0, "downscale_delay_s": 30.0, "initial_replicas": 1}
    assert service["metadata"]["name"] == names.service
    assert service["metadata"]["annotations"]["sentinel.io/checkpoint"] == CHECKPOINT
    workers = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert workers["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "500m"


def test_serve_args_are_validated_when_rendered(kube_env) -> None:
    """The application's own typed args check what the RayService would pass, before anything is
    applied: a value the profile accepts but the application would refuse (a replica takes 32
    requests at once, so it cannot aim at 40) is a ConfigError with a hint here, not a failed
    deployment in the cluster later."""
    kube = _settings(**{"serve.target_ongoing_requests": 40})
    with pytest.raises(ConfigError, match="max_ongoing_requests must be >= target_ongoing_requests") as refused:
        manifests.serve_values(kube, CHECKPOINT, RUN_ID)
    assert refused.value.hint and "docs/serving.md" in refused.value.hint


def test_another_checkpoint_changes_only_the_serve_config(kube_env) -> None:
    """So that KubeRay upgrades the Serve application in place instead of building a new cluster."""
    kube = _settings()
    one = _rendered("serve", manifests.serve_values(kube, CHECKPOINT, RUN_ID))[1]
    two = _rendered("serve", manifests.serve_values(kube, "s3://b/other/best.pt", "train-other"))[1]
    assert one["spec"]["rayClusterConfig"] == two["spec"]["rayClusterConfig"]
    assert one["spec"]["serveConfigV2"] != two["spec"]["serveConfigV2"]


HOSTILE = [
    'quote " and \\ backslash',
    "line one\nline two: injected\n- item",
    "{{ 7 * 7 }} {% if true %}x{% endif %}",
    "key: value",
    "# not a comment",
    "- leading dash",
    "* leading star",
    "&anchor *alias",
    "!!python/object/apply:os.system ['true']",
    "'single' quotes",
    "tab\there",
    "null",
    "true",
    "1e-05",
    "",
    "~",
    "é 😀 \u2028 \x85 \x00",
    "$(touch /tmp/pwned); `id` && echo",
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_values_never_inject_yaml_or_shell(kube_env, value: str) -> None:
    kube = _settings(**{"env.HOSTILE": value, "mlflow_uri": value, "service_account.role_arn": "arn:" + value})
    objects = _rendered("train", manifests.train_values(kube, TrainConfig(), RUN_ID))
    assert [o["kind"] for o in objects] == ["ServiceAccount", "RayJob"]
    assert objects[0]["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:" + value}
    job = objects[1]
    assert set(job) == {"apiVersion", "kind", "metadata", "spec"}
    worker = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["env"] == [{"name": "AWS_REGION", "value": "us-east-1"}, {"name": "HOSTILE", "value": value}]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[argv.index("--mlflow-uri") + 1] == (value or "off")  # empty: tracking off

    service = _rendered("serve", manifests.serve_values(kube, f"s3://b/{value}", RUN_ID))[1]
    args = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]
    assert args["checkpoint"] == f"s3://b/{value}"
    assert service["metadata"]["annotations"]["sentinel.io/checkpoint"] == f"s3://b/{value}"


def test_non_plain_values_are_refused(kube_env) -> None:
    from markupsafe import Markup

    values = _values("cluster")
    values["name"] = Markup("looks-trusted\nkind: Secret")
    with pytest.raises(TypeError, match="not a plain string|not plain data"):
        render.render("cluster", values)


def test_yaml_value_round_trips() -> None:
    for value in [None, True, False, 0, -3, 0.5, 1e-05, 1e20, 2.0, "x", "", [1, "a", None],
                  {"a": {"b": [1.5, "c: d"]}}, "é😀\u2028"]:
        assert yaml.safe_load(render.yaml_value(value)) == value, value


@pytest.mark.parametrize(("name", "message"), [
    ("Train-1", "RFC 1123"),
    ("train_1", "RFC 1123"),
    ("train-", "RFC 1123"),
    ("1train", "start with a letter"),
    ("t" * 48, "at most 47"),
    ("", "RFC 1123"),
])
def test_bad_job_names_are_refused_with_a_clear_message(kube_env, name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        manifests.train_values(_settings(), TrainConfig(), name)
    assert "RayJob name" in raised.value.message and raised.value.hint


def test_a_cluster_name_may_be_longer_than_a_job_name(kube_env) -> None:
    manifests.cluster_values(_settings(), "c" * 53)
    with pytest.raises(ConfigError, match="at most 53"):
        manifests.cluster_values(_settings(), "c" * 54)


def test_templates_are_found_through_the_environment(kube_env, tmp_path: Path, monkeypatch) -> None:
    import shutil

    copy = tmp_path / "templates"
    shutil.copytree(render.templates_dir(), copy)
    (copy / "raycluster.yaml.j2").write_text((copy / "raycluster.yaml.j2").read_text().replace(
        "kind: RayCluster", "kind: RayCluster\n# from the copy"))
    monkeypatch.setenv(render.TEMPLATES_ENV, str(copy))
    render._environment.cache_clear()
    assert "# from the copy" in render.render_text("cluster", _values("cluster"))
    monkeypatch.setenv(render.TEMPLATES_ENV, str(tmp_path / "nowhere"))
    render._environment.cache_clear()
    # an explicit folder without templates falls back to the source tree's
    assert render.templates_dir() == Path(render.__file__).resolve().parents[2] / "templates"


@pytest.fixture(scope="module")
def crd_schemas() -> dict[str, dict[str, Any]]:
    """The v1 openAPIV3Schema of each KubeRay CRD the test environment's operator installs."""
    from tests.testenv import build

    try:
        crds = build.locate().crds
    except build.AssetsMissing as error:
        pytest.skip(f"KubeRay CRDs not built: {error}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are about 1 MB each
    schemas = {}
    for path in crds:
        crd = yaml.load(Path(path).read_text(), Loader=loader)
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schemas[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


def _unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the structural schema does not declare (what fieldValidation=Strict rejects)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(obj, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        found = []
        for key, value in obj.items():
            if properties is not None and key in properties:
                found += _unknown_fields(value, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += _unknown_fields(value, extra, f"{path}.{key}")
            elif properties is not None and key not in ("apiVersion", "kind", "metadata"):
                found.append(f"{path}.{key}")
        return found
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [f for i, item in enumerate(obj) for f in _unknown_fields(item, schema["items"], f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("what", ["train", "tune", "serve", "cluster"])
def test_rendered_objects_match_the_kuberay_crd_schemas(kube_env, crd_schemas, what: str) -> None:
    import jsonschema

    for obj in _rendered(what, _values(what)):
        if obj["kind"] not in crd_schemas:  # ServiceAccount, Service: the API server's own kinds
            continue
        schema = crd_schemas[obj["kind"]]
        jsonschema.Draft7Validator(schema).validate(obj)
        assert _unknown_fields(obj, schema) == []
    typo = _rendered(what, _values(what))[1]
    typo["spec"]["rayStartParam"] = {}  # the check itself finds what Strict validation rejects
    assert _unknown_fields(typo, crd_schemas[typo["kind"]]) == [".spec.rayStartParam"]


def test_cli_render_prints_a_list_kubectl_takes(kube_env) -> None:
    result = CliRunner().invoke(app, ["render", "train", "--profile", str(PROFILE), "--name", RUN_ID,
                                      "--epochs", "3", "-o", "json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert listing["kind"] == "List"
    assert listing["items"] == render.render("train", _values("train"))


def test_cli_render_serve_and_cluster(kube_env) -> None:
    runner = CliRunner()
    serve = runner.invoke(app, ["render", "serve", "--profile", str(PROFILE), "--checkpoint", CHECKPOINT,
                                "--max-replicas", "3"])  # the options of `sentinel serve`
    assert serve.exit_code == 0, serve.output
    assert "    serveConfigV2: |\n      grpc_options: {" in serve.stdout  # readable: a literal block
    items = [o for o in yaml.safe_load(serve.stdout)["items"] if o["kind"] != "NetworkPolicy"]
    assert [item["kind"] for item in items] == ["ServiceAccount", "RayService", "Service"]
    serve_config = yaml.safe_load(items[1]["spec"]["serveConfigV2"])["applications"][0]
    assert serve_config["args"]["checkpoint"] == CHECKPOINT and "max_replicas" not in serve_config["args"]
    assert serve_config["deployments"][0]["autoscaling_config"]["max_replicas"] == 3
    cluster = runner.invoke(app, ["render", "cluster", "--profile", str(PROFILE), "--set", "workers=3",
                                  "-n", "team-a"])
    assert cluster.exit_code == 0, cluster.output
    ray = [o for o in yaml.safe_load(cluster.stdout)["items"] if o["kind"] == "RayCluster"][0]
    assert ray["metadata"]["namespace"] == "team-a"
    assert ray["spec"]["workerGroupSpecs"][0]["replicas"] == 3


def test_cli_render_without_storage_says_what_to_set(kube_env) -> None:
    result = CliRunner().invoke(app, ["render", "train"])
    assert result.exit_code == 2
    assert "no checkpoint storage" in result.output and "--storage s3://" in result.output


@pytest.mark.parametrize("what", ["train", "tune"])
def test_a_users_table_travels_in_the_entrypoint(kube_env, what: str) -> None:
    """--data s3://…, --columns, --items, --rating-scale and --split reach the job as given: the pods read
    the table from S3 with the user's column names and the split the summary reports."""
    import importlib

    from sentinel_ml.data.source import DataSource

    source = DataSource.from_args(data="s3://b/ratings/", columns="user=member,item=film,rating=stars,timestamp=ts",
                                  items="s3://b/items.csv", rating_scale="0.5:5")
    module = importlib.import_module(f"sentinel_ml.{what}")
    kube = _settings(data="s3://b/data/ml-100k.zip")  # the profile's copy of the default dataset: not used here
    if what == "train":
        values = manifests.train_values(kube, TrainConfig(hp=Hyperparameters(epochs=3, split="temporal"),
                                                          source=source), RUN_ID)
    else:
        values = manifests.tune_values(kube, StudyConfig(samples=8, split="temporal", source=source), TUNE_ID)
    argv = shlex.split(_rendered(what, values)[1]["spec"]["entrypoint"])
    parsed = module.config_from_args(module.build_parser().parse_args(argv[3:]))
    assert parsed.source == source
    assert (parsed.hp.split if what == "train" else parsed.split) == "temporal"


def test_the_default_dataset_reads_the_profiles_copy_and_a_local_table_is_refused(kube_env) -> None:
    from sentinel_ml.data.source import DataSource

    kube = _settings(data="s3://b/data/ml-100k.zip")
    assert manifests.in_cluster_source(kube, DataSource()).data == "s3://b/data/ml-100k.zip"
    assert manifests.in_cluster_source(kube, DataSource(dataset="ml-1m")).data is None  # GroupLens' own URL
    for source, flag in ((DataSource(data="/home/me/ratings.csv"), "--data"),
                         (DataSource(data="s3://b/r/", items="file:///home/me/items.csv"), "--items")):
        with pytest.raises(ConfigError, match=f"{flag} .* is a path on this machine"):
            manifests.train_values(kube, TrainConfig(source=source), RUN_ID)


GPU_SELECTOR = "gpu.node_selector.k8s.amazonaws.com/accelerator=nvidia-h100"  # kubernetes.gpu.node_selector
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}  # EKS's GPU taint


@pytest.mark.parametrize(("what", "flags", "pod_gpus", "argv"), [
    ("train", ["--gpus", "0.5", "--precision", "bf16-mixed", "--device", "gpu"], "1",
     ["--device", "gpu", "--gpus", "0.5", "--precision", "bf16-mixed"]),
    ("tune", ["--gpus-per-trial", "2", "--precision", "16-mixed"], "2", ["--gpus-per-trial", "2", "--precision", "16-mixed"]),
    ("serve", ["--gpus", "0.25", "--checkpoint", CHECKPOINT], "1", None),
    ("cluster", ["--set", "worker.gpu=4"], "4", None),
])
def test_every_compute_flag_shows_in_the_objects_and_they_match_the_crd_schemas(
        kube_env, crd_schemas, what: str, flags: list[str], pod_gpus: str, argv: list[str] | None) -> None:
    """The worker pods ask for whole nvidia.com/gpu (requests = limits), tolerate EKS's GPU taint, go where
    kubernetes.gpu.node_selector says besides their own selector, and tell Ray its GPUs (num-gpus, as
    KubeRay would derive from the limit); the job's command line carries the flags; the head stays as it was."""
    import jsonschema

    result = CliRunner().invoke(app, ["render", what, "--profile", str(PROFILE), *flags, "--set", GPU_SELECTOR,
                                      "-o", "json"])
    assert result.exit_code == 0, result.output
    obj = next(o for o in json.loads(result.stdout)["items"] if o["kind"] in ("RayJob", "RayService", "RayCluster"))
    jsonschema.Draft7Validator(crd_schemas[obj["kind"]]).validate(obj)
    assert _unknown_fields(obj, crd_schemas[obj["kind"]]) == []
    spec = {"RayJob": lambda s: s["rayClusterSpec"], "RayService": lambda s: s["rayClusterConfig"],
            "RayCluster": lambda s: s}[obj["kind"]](obj["spec"])
    group = spec["workerGroupSpecs"][0]
    pod = group["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == pod_gpus
    assert group["rayStartParams"] == {"num-gpus": pod_gpus}
    assert GPU_TOLERATION in pod["tolerations"]
    assert pod["nodeSelector"]["k8s.amazonaws.com/accelerator"] == "nvidia-h100"
    if what != "serve":  # training workers stay on spot nodes, with that toleration too
        assert pod["nodeSelector"]["lifecycle"] == "Ec2Spot" and len(pod["tolerations"]) == 2
    head = spec["headGroupSpec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in head["containers"][0]["resources"]["limits"]
    assert "tolerations" not in head and "k8s.amazonaws.com/accelerator" not in head["nodeSelector"]
    if argv is not None:
        words = shlex.split(obj["spec"]["entrypoint"])
        assert all(word in words for word in argv) and words.index(argv[0]) + len(argv) - 1 == words.index(argv[-1])
    if what == "serve":  # Serve places each replica with its share of a GPU
        args = yaml.safe_load(obj["spec"]["serveConfigV2"])["applications"][0]["args"]
        assert args["num_gpus"] == 0.25


def _policies(what: str, kube: settings.KubeSettings) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o["spec"] for o in render.render(what, _values(what, kube))
            if o["kind"] == "NetworkPolicy"}


def test_network_policies_follow_the_profile_and_never_open_a_port_to_everyone(kube_env) -> None:
    """A rule whose peers the profile removes is left out: an empty `from` admits everyone."""
    base = _settings().model_dump()
    strict = settings.KubeSettings.model_validate(
        {**base, "network_policy": {"operator": [], "prometheus": [], "serve_from": []}})
    assert _policies("serve", strict) == {"recommender-ray": {
        "podSelector": {"matchLabels": {"sentinel.io/ray-cluster": "recommender"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"sentinel.io/ray-cluster": "recommender"}}}]}]}}
    train = _policies("train", strict)[f"{RUN_ID}-ray"]["ingress"]  # the submitter still reaches the dashboard
    assert train[1] == {"from": [{"podSelector": {"matchLabels": {"sentinel.io/ray-submitter": RUN_ID}}}],
                        "ports": [{"protocol": "TCP", "port": 8265}]}
    wide = settings.KubeSettings.model_validate({**base, "network_policy": {"serve_from": [
        {"namespaces": {"team": "web"}, "pods": {"app": "frontend"}}, {"namespaces": {}}, {"cidr": "10.1.2.3/16"}]}})
    (serve, _operator), = [_policies("serve", wide)["recommender-serve"]["ingress"]]
    assert serve["from"] == [
        {"namespaceSelector": {"matchLabels": {"team": "web"}}, "podSelector": {"matchLabels": {"app": "frontend"}}},
        {"namespaceSelector": {}}, {"ipBlock": {"cidr": "10.1.0.0/16"}}]
    off = settings.KubeSettings.model_validate({**base, "network_policy": {"enabled": False}})
    assert all(not _policies(what, off) for what in _KINDS)
    for bad, message in (({"cidr": "10.0.0.0/8", "pods": {}}, "either a cidr"), ({}, "needs pods"),
                         ({"cidr": "nowhere"}, "not an address range"), ({"pods": {"a b": "c"}}, "label key")):
        with pytest.raises(ValueError, match=message):  # pydantic's ValidationError; a ConfigError from `load`
            settings.KubeSettings.model_validate({**base, "network_policy": {"serve_from": [bad]}})


def test_every_pod_and_container_sentinel_renders_is_least_privileged(kube_env) -> None:
    """Pod Security `restricted`: non-root, seccomp RuntimeDefault, no privilege escalation, no
    capabilities; the autoscaler sidecar KubeRay adds to a serving head too (tests/k8s/test_security.py
    checks the API server's admission)."""
    from sentinel_cli.k8s import security

    for what in _KINDS:
        ray = _rendered(what, _values(what))[1]["spec"]
        cluster = ray.get("rayClusterSpec") or ray.get("rayClusterConfig") or ray
        pods = [cluster["headGroupSpec"]["template"]["spec"],
                *(g["template"]["spec"] for g in cluster["workerGroupSpecs"])]
        if "submitterPodTemplate" in ray:
            pods.append(ray["submitterPodTemplate"]["spec"])
        for pod in pods:
            assert pod["securityContext"] == security.pod_security()
            assert [c["securityContext"] for c in pod["containers"]] == [security.container_security()]
        if cluster.get("enableInTreeAutoscaling"):
            assert cluster["autoscalerOptions"]["securityContext"] == security.container_security()


def test_the_rayservice_carries_the_canary_in_its_serve_config_and_reads_it_back() -> None:
    """k8s: the canary's start and end are the live serveConfigV2 args changed (the rules of ServeArgs),
    rendered into the RayService and read back from it unchanged."""
    from sentinel_cli.backends.kubernetes import canary

    kube = _settings()
    incumbent = "s3://b/runs/train-20260101-000000-aaaa/best.pt"
    candidate = "s3://b/runs/train-20260102-000000-bbbb/best.pt"

    def rayservice(checkpoint, run_id, args=None):
        values = manifests.serve_values(kube, checkpoint, run_id, "recommender", app_args=args)
        return next(o for o in render.render("serve", values) if o["kind"] == "RayService")

    live = canary.live_args(rayservice(incumbent, "train-20260101-000000-aaaa"))
    assert live.checkpoint == incumbent and live.canary is None
    started = canary.start_args(live, "here", candidate, "train-20260102-000000-bbbb", 10)
    service = rayservice(started.checkpoint, started.run_id, canary.app_args(started))
    assert service["metadata"]["annotations"][manifests.CHECKPOINT] == incumbent
    back = canary.live_args(service)
    assert back.canary == {"checkpoint": candidate, "run_id": "train-20260102-000000-bbbb", "percent": 10,
                           "model_version": 20260102000000}
    assert "autoscaling_config" in service["spec"]["serveConfigV2"]
    with pytest.raises(ConfigError, match="a canary is already running"):
        canary.start_args(back, "here", candidate, None, 20)
    with pytest.raises(ConfigError, match="a canary is running in here"):
        canary.refuse_replacing(back, "here")
    with pytest.raises(ConfigError, match="nothing is serving in here"):
        canary.start_args(None, "here", candidate, None, 10)
    promoted, rolled_back = canary.end_args(back, "here", "promote"), canary.end_args(back, "here", "rollback")
    assert (promoted.checkpoint, promoted.model_version, promoted.canary) == (candidate, 20260102000000, None)
    assert (rolled_back.checkpoint, rolled_back.canary) == (incumbent, None)
    with pytest.raises(ConfigError, match="no canary is running in here"):
        canary.end_args(live, "here", "rollback")


@pytest.mark.parametrize(("what", "flags", "pod_cpu", "ray_cpus", "argv"), [
    # one Ray Train worker a pod: the pod requests exactly its CPUs, Ray's num-cpus is them rounded up
    ("train", ["--cpus-per-worker", "0.5"], "500m", "1", ["--cpus-per-worker", "0.5"]),
    ("train", ["--cpus-per-worker", "3"], "3", "3", ["--cpus-per-worker", "3"]),
    # trials share the worker pods: those stay sized by the profile, the job shares them out
    ("tune", ["--cpus-per-trial", "0.5"], "1", None, ["--cpus-per-trial", "0.5"]),
    # a replica's CPUs: the serve worker pods request at least them (here above the profile's 500m)
    ("serve", ["--cpus", "2", "--checkpoint", CHECKPOINT], "2", None, None),
])
def test_every_cpu_flag_shows_in_the_objects_and_they_match_the_crd_schemas(
        kube_env, crd_schemas, what: str, flags: list[str], pod_cpu: str, ray_cpus: str | None,
        argv: list[str] | None) -> None:
    import jsonschema

    result = CliRunner().invoke(app, ["render", what, "--profile", str(PROFILE), *flags, "-o", "json"])
    assert result.exit_code == 0, result.output
    obj = next(o for o in json.loads(result.stdout)["items"] if o["kind"] in ("RayJob", "RayService"))
    jsonschema.Draft7Validator(crd_schemas[obj["kind"]]).validate(obj)
    assert _unknown_fields(obj, crd_schemas[obj["kind"]]) == []
    spec = obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]["rayClusterConfig"]
    group = spec["workerGroupSpecs"][0]
    resources = group["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == pod_cpu
    assert group["rayStartParams"].get("num-cpus") == ray_cpus  # None: KubeRay derives it from the request
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # the head still schedules nothing
    if argv is not None:
        words = shlex.split(obj["spec"]["entrypoint"])
        assert words[words.index(argv[0]) + 1] == argv[1]
    if what == "serve":  # Serve reserves the replica's CPUs
        args = yaml.safe_load(obj["spec"]["serveConfigV2"])["applications"][0]["args"]
        assert args["num_cpus"] == 2
