"""A separate Ray (own process, own ports) running our Serve application, for the monitoring test.

    python -m tests.platform.serve_child CHECKPOINT HTTP_PORT METRICS_PORT

Prints ``ready`` once the application answers, then runs until stdin closes.
"""

from __future__ import annotations

import logging
import sys


def main() -> None:
    checkpoint, http_port, metrics_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    import ray
    from ray import serve

    from sentinel_ml.serving.app import app_builder
    from sentinel_ml.serving.config import NAMES, ROUTE_PREFIX, serve_args

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, _metrics_export_port=metrics_port)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        args = serve_args(checkpoint, None, {"min_replicas": 1, "max_replicas": 1, "num_cpus": 0.5})
        serve.run(app_builder(args), name=NAMES.application, route_prefix=ROUTE_PREFIX)
        print("ready", flush=True)
        sys.stdin.read()
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
