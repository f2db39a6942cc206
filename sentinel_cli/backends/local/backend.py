"""The embedded local target: Ray on this machine, checkpoints on local disk or S3."""

from __future__ import annotations

from typing import Any

from sentinel_cli.k8s.request import KubeRequest, check_local


class LocalBackend:
    name = "local"

    def train(self, config, deploy: KubeRequest) -> dict[str, Any]:
        from sentinel_cli.progress import train_progress
        from sentinel_ml.training.run import train

        check_local(deploy)
        return train(config, on_progress=train_progress).summary()

    def tune(self, config, deploy: KubeRequest) -> dict[str, Any]:
        from sentinel_cli.progress import tune_progress
        from sentinel_ml.tuning.study import tune

        check_local(deploy)
        return tune(config, on_progress=tune_progress).summary()

    def serve(self, request, deploy: KubeRequest) -> dict[str, Any]:
        from sentinel_cli.backends.local import serving
        from sentinel_cli.progress import serve_progress

        check_local(deploy)
        return serving.start(request, on_progress=serve_progress)

    def serve_stop(self, deploy: KubeRequest) -> dict[str, Any]:
        from sentinel_cli.backends.local import serving

        check_local(deploy)
        return serving.stop()

    def status(self, storage: str | None, limit: int, deploy: KubeRequest) -> dict[str, Any]:
        from dataclasses import asdict

        from sentinel_cli.backends.local import serving
        from sentinel_ml.paths import storage_root
        from sentinel_ml.store.index import read_records

        check_local(deploy)
        root = storage_root(storage)
        records = read_records(root)
        return {"target": self.name, "storage": root, "runs": [asdict(r) for r in records[:limit]],
                "serving": serving.describe()}
