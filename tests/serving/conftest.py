"""The MovieRecommender application on the session's real local Ray, from the session's short real
training run, once for every serving test module (Serve's HTTP port is one per Ray cluster). Its
checkpoints carry their data's serving artifact, as every training run writes them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.support.ports import free_ports


@pytest.fixture(scope="package")
def served_app(ray_session, trained_run, dataset_dir):
    """The application behind Serve's own HTTP and gRPC proxies, one replica, on free loopback ports."""
    from ray import serve

    from sentinel_ml.serving.app import app_builder
    from sentinel_ml.serving.config import (
        NAMES,
        RECOMMEND_PATH,
        ROUTE_PREFIX,
        grpc_options,
        serve_args,
    )

    port, grpc_port = free_ports(2)
    checkpoint = trained_run.checkpoints["best"]
    serve.start(http_options={"host": "127.0.0.1", "port": port}, grpc_options=grpc_options(grpc_port))
    args = serve_args(checkpoint, trained_run.run_id, {"min_replicas": 1, "max_replicas": 1})
    serve.run(app_builder(args), name=NAMES.application, route_prefix=ROUTE_PREFIX)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}{RECOMMEND_PATH}", base=f"http://127.0.0.1:{port}",
                          grpc=f"127.0.0.1:{grpc_port}", checkpoint=checkpoint, run_id=trained_run.run_id,
                          dataset_dir=dataset_dir, args=args)  # dataset_dir: a reference for the tests, never served
    serve.shutdown()


@pytest.fixture(scope="package")
def model(served_app):
    """The served checkpoint loaded in the test process: the reference for every protocol's answers."""
    from sentinel_ml.serving.recommender import Recommender

    return Recommender.load(served_app.checkpoint)
