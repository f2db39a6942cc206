"""Serving on the real node, in a namespace of its own (the lifecycle's setup, minus training): ``up``,
two checkpoints put into the platform's MinIO (``aws s3 cp``: one model, two files), ``serve`` with
Kubernetes' default, ``--auth token``. Then:

- ``verify``'s own path (a port-forward through the API server to a serve pod, the token read from the
  RayService's Secret) answers; the same request without the token gets 401;
- a canary's start, its promotion, a canary again and its rollback, under load at c=64 against the
  Service (``tests/support/canary_load.py``, which the lifecycle can call after its serve step): 0
  failed requests, both versions in the answers' ``x-sentinel-model-version``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.node.test_lifecycle import (
    BUCKET,
    Lifecycle,
    _platform_credentials,
    _profile,
    _s3,
    _unroutable,
    platform_namespace,
    step,
)
from tests.support.canary_load import canary_cycle_under_load
from tests.support.node import TIMINGS
from tests.testenv import node
from tests.testenv.process import wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.node]

SERVICE = "recommender"
CHECKPOINTS = [f"s3://{BUCKET}/models/mf-{name}.pt" for name in ("a", "b")]


def _checkpoint(dataset_dir: Path, path: Path) -> None:
    """An untrained biased MF with ml-100k's serving artifact: serving needs a model, not a good one."""
    from sentinel_ml.models.biased_mf import BiasedMF
    from sentinel_ml.store.checkpoint import save_checkpoint
    from tests.support.artifact import movielens_artifact

    config = {"model": "mf", "num_users": 943, "num_items": 1682, "global_mean": 3.5, "embedding_dim": 8,
              "lr": 0.01, "regularization": 0.0, "lr_decay": 1.0}
    save_checkpoint(str(path), BiasedMF(943, 1682, 8, 3.5).state_dict(), config, {},
                    data=movielens_artifact(dataset_dir))


@pytest.fixture(scope="module")
def served(real_node: node.RealNode, k8s_api: client.ApiClient, tmp_path_factory, dataset_dir) -> Iterator[Lifecycle]:
    root = tmp_path_factory.mktemp("serving-node")
    with platform_namespace(real_node, k8s_api, root, "t-serve", _profile) as life:
        with step(life, "serving: up"):
            life.ok("up", "--target", "k8s", "--no-operator", "-o", "json", timeout_s=600)
            _platform_credentials(life)
            local = root / "mf.pt"
            _checkpoint(dataset_dir, local)
            for uri in CHECKPOINTS:
                _s3(life).put_object(Bucket=BUCKET, Key=uri.removeprefix(f"s3://{BUCKET}/"), Body=local.read_bytes())
        with step(life, "serving: serve (auth token, the k8s default)"):
            out, _ = life.ok("serve", "--target", "k8s", "--checkpoint", CHECKPOINTS[0], "-o", "json")
            report = json.loads(out)
            assert report["auth"] == "token" and report["token_secret"] == f"{SERVICE}-serve-token", report
            life.found["url"] = f"http://{life.service_address(f'{SERVICE}-serve-svc')}:8000"
            wait_for("kube-proxy to route the Service", lambda: _unroutable(life.found["url"]), 90)
        yield life


def _token(life: Lifecycle) -> str:
    from sentinel_cli.k8s import manifests

    secret = client.CoreV1Api(life.api).read_namespaced_secret(manifests.serve_token_secret(SERVICE), life.namespace)
    return base64.b64decode(secret.data[manifests.SERVE_TOKEN_KEY]).decode()


def test_verifys_path_carries_the_default_token_and_a_call_without_it_gets_401(served: Lifecycle) -> None:
    from sentinel_cli import smoke
    from sentinel_cli.k8s import service_call
    from sentinel_cli.k8s.client import connect

    body = {"user_id": 1, "movie_ids": [1, 2, 3]}
    with step(served, "serving: verify's port-forward with the Secret's token, and 401 without"), \
            connect(str(served.real_node.env.kubeconfig), None, served.namespace) as kube:
        answer = smoke._call_serving(kube, SERVICE, 8000, "/recommend", body)  # verify's own call
        assert len(answer["predictions"]) == 3, answer
        bare = service_call.call(kube, f"{SERVICE}-serve-svc", 8000, "POST", "/recommend", body)
        assert bare.status == 401 and _token(served) not in bare.body.decode(errors="replace"), bare
        wrong = service_call.call(kube, f"{SERVICE}-serve-svc", 8000, "POST", "/recommend", body,
                                  {"Authorization": "Bearer not-the-token"})
        assert wrong.status == 401, wrong


def test_a_canary_promotion_and_rollback_under_load_lose_no_request(served: Lifecycle) -> None:
    started = time.monotonic()
    cycle = canary_cycle_under_load(lambda *args: served.ok(*args, timeout_s=600), served.found["url"],
                                    _token(served), CHECKPOINTS[1], CHECKPOINTS[0], percent=50, concurrency=64)
    TIMINGS.append(("serving: canary cycle under load (total)", time.monotonic() - started))
    TIMINGS.extend((f"serving: {name} (answers show it)", seen) for name, _, seen in cycle.phases)
    print("\n".join(cycle.lines()))
    assert cycle.failed == 0, cycle.lines() + [str(cycle.details)]
    versions = cycle.versions  # each canary brought a version of its own into the answers
    assert versions["candidate"] != versions["incumbent"] and versions["second"] != versions["candidate"], versions
