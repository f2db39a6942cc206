"""The suite's one pytest plugin (tests/conftest.py registers it): the shared fixtures, the tiers'
markers, and ``--fast``.

Fixtures: data.py (``movielens_zip``, ``dataset_dir``, ``sentinel_home``), local_ray.py
(``ray_session``, ``trained_run``), s3.py (``s3_server``, ``s3_bucket``), k8s.py (``k8s_env``,
``k8s_api``, ``k8s_namespace`` and the hooks that attach the environment's logs to a failing test).
A directory's own fixtures stay in its conftest.py (tests/k8s, tests/node, tests/serving).

Tiers: a test carries a tier's marker (registered in pyproject.toml) when it uses a fixture listed in
``FIXTURE_MARKERS``, directly or through another fixture, or when it is marked by hand (a module's
``pytestmark``). ``--fast`` keeps the tests with none of ``HEAVY``: no Ray, no server process, no Go
build, no Kubernetes; each of them must also leave no process of its own running when it returns
(checked where /proc shows the process tree).
"""

from __future__ import annotations

import os

import pytest

from tests.support.processes import running_descendants

pytest_plugins = ["tests.support.data", "tests.support.local_ray", "tests.support.s3", "tests.support.k8s"]

os.environ.setdefault("COLUMNS", "120")  # stable rich output
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

HEAVY = ("slow", "k8s", "node", "lifecycle", "s3", "server", "go")

# The fixtures that start something heavy, and the markers a test that uses one gets. A fixture of
# one module is named here too (the name is all a collection hook sees); keep such names distinct.
FIXTURE_MARKERS: dict[str, tuple[str, ...]] = {
    "ray_session": ("slow",),  # a real local Ray
    "trained_run": ("slow",),  # a real training run
    "k8s_env": ("k8s",),  # the Kubernetes test environment
    "bare_apiserver": ("k8s",),  # tests/k8s/test_cluster.py: an API server without KubeRay
    "real_node": ("k8s", "node"),  # tests/node/conftest.py: kubelet + containerd running our images
    "s3_server": ("s3",),  # moto on loopback
    "aws_server": ("s3",),  # tests/test_images.py: moto as ECR and STS
    "refusing_s3": ("s3", "server"),  # tests/k8s/test_checkpoints_s3.py: a moto server process
    "mlflow_server": ("server",),  # tests/test_tracking_server.py: MLflow's tracking server
    "prometheus": ("server",),  # tests/platform/test_monitoring.py: Debian's Prometheus
    "served_ray": ("slow", "server"),  # tests/platform/test_monitoring.py: Ray Serve in a child process
    "actionlint": ("go",),  # tests/test_workflow.py: `go install` of actionlint
}

_BEFORE = pytest.StashKey[set[int]]()
_PROCESSES_VISIBLE = os.path.isdir("/proc")  # Linux: the guard of --fast reads the process tree there


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fast", action="store_true",
                     help=f"the fast tier: leave out the tests marked {', '.join(HEAVY)} (see docs/testing.md), "
                          "and fail a test that leaves a process of its own running")


@pytest.hookimpl(tryfirst=True)  # before -m selects by the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            for marker in FIXTURE_MARKERS.get(fixture, ()):
                item.add_marker(marker)
    if not config.getoption("fast"):
        return
    fast, heavy = [], []
    for item in items:
        (heavy if any(item.get_closest_marker(name) for name in HEAVY) else fast).append(item)
    if heavy:
        config.hook.pytest_deselected(items=heavy)
        items[:] = fast


def _guarded(item: pytest.Item) -> bool:
    return _PROCESSES_VISIBLE and item.config.getoption("fast")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _guarded(item):
        item.stash[_BEFORE] = set(running_descendants(os.getpid()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    result = yield
    if _guarded(item):
        before = item.stash.get(_BEFORE, set())
        started = {pid: line for pid, line in running_descendants(os.getpid()).items() if pid not in before}
        if started:
            listed = "\n".join(f"  {pid}: {line[:200]}" for pid, line in sorted(started.items()))
            pytest.fail(f"a test of the fast tier left processes running (a server? Ray?):\n{listed}\n"
                        "mark it with its tier, or add the fixture that starts them to "
                        "FIXTURE_MARKERS in tests/support/plugin.py", pytrace=False)
    return result
