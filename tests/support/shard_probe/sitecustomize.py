"""A test-only probe, not product code: a process started with this folder first on PYTHONPATH and
$SENTINEL_TEST_SHARD_LOG set (tests/test_train_ray_data.py) records, for every pass a Ray Train
worker makes over its Ray Data shard (``ShardBatches``), its rank and the rows it saw, one JSON file
per pass in that folder. Python imports ``sitecustomize`` at startup in every process, Ray's workers
included (they inherit the environment), so the product's code path is the one measured."""

import os

if os.environ.get("SENTINEL_TEST_SHARD_LOG"):
    import json
    import uuid

    from sentinel_ml.data import shards

    _iterate = shards.ShardBatches.__iter__

    def _counted(self):
        rows = 0
        for batch in _iterate(self):
            rows += len(batch[0])
            yield batch
        import ray.train

        context = ray.train.get_context()
        record = {"pid": os.getpid(), "rank": context.get_world_rank(), "world": context.get_world_size(),
                  "rows": rows}
        path = os.path.join(os.environ["SENTINEL_TEST_SHARD_LOG"], f"{uuid.uuid4().hex}.json")
        with open(path, "w") as f:
            json.dump(record, f)

    shards.ShardBatches.__iter__ = _counted
