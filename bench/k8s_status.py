"""`sentinel status --target k8s` against the real test environment (tests/testenv): one LIST per kind
versus the obvious alternative, reading each RayJob on its own (one GET per object), both measured
in this run on the same 200 queued RayJobs (the status side includes its own kubeconfig load and
connection, as the command pays them). Also times a first apply against a no-op re-apply.

    python -m bench.k8s_status [N]      # N RayJobs, default 200; needs `python -m tests.testenv.env build`

Prints one line per measurement (medians) and the ratios, with the machine's load average.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from kubernetes.client import rest


def _median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class _Counter:
    """Counts the HTTP requests the kubernetes client sends (passes them through unchanged)."""

    def __init__(self) -> None:
        self.count = 0
        self._original = rest.RESTClientObject.request
        counter = self

        def request(client, method, url, *args, **kwargs):
            counter.count += 1
            return counter._original(client, method, url, *args, **kwargs)

        rest.RESTClientObject.request = request

    def measure(self, fn) -> int:
        before = self.count
        fn()
        return self.count - before


def main(n: int) -> None:
    from tests.testenv import build
    from tests.testenv.env import up

    env = up(build.locate())
    try:
        os.environ.update(KUBECONFIG=str(env.kubeconfig), SENTINEL_NAMESPACE="bench",
                          SENTINEL_STORAGE="s3://bench/artifacts")
        _run(env, n)
    finally:
        env.stop()


def _run(env, n: int) -> None:
    from kubernetes import client

    from sentinel_cli.backends.kubernetes import inspect
    from sentinel_cli.k8s import client as kube
    from sentinel_cli.k8s import manifests, render, settings
    from sentinel_cli.k8s.request import KubeRequest
    from sentinel_ml.training.config import TrainConfig

    with env.api_client() as api:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "bench"}})
    kube_settings = settings.load()
    jobs = []
    for i in range(n):
        job = render.render("train", manifests.train_values(kube_settings, TrainConfig(), f"queued-{i:03d}"))[1]
        job["spec"]["suspend"] = True  # queued: the operator makes no cluster for it
        jobs.append(job)
    counter = _Counter()
    with kube.connect(namespace="bench") as api:
        started = time.perf_counter()
        for job in jobs:
            api.apply(job)
        first_apply_s = (time.perf_counter() - started) / n
        reapply_s = _median_s(lambda: api.apply(jobs[0]), 20)

        def per_object() -> None:
            names = [j["metadata"]["name"] for j in api.list(kube.RAYJOB, manifests.SELECTOR)]
            for name in names:
                api.get(kube.RAYJOB, name)

        deploy = KubeRequest()
        listed = counter.measure(lambda: inspect.status(None, n, deploy))
        got = counter.measure(per_object)
        status_s = _median_s(lambda: inspect.status(None, n, deploy), 5)
        baseline_s = _median_s(per_object, 3)
    load = os.getloadavg()
    print(f"status of {n} RayJobs, one LIST per kind: {status_s:.3f} s median of 5, {listed} requests")
    print(f"baseline, one GET per RayJob:             {baseline_s:.3f} s median of 3, {got} requests")
    print(f"ratio baseline/status: {baseline_s / status_s:.1f}x the time, {got / listed:.1f}x the requests")
    print(f"server-side apply: first {first_apply_s * 1000:.1f} ms per RayJob, no-op re-apply "
          f"{reapply_s * 1000:.1f} ms (median of 20)")
    print(f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
