"""The platform tests reuse the Kubernetes test environment's fixtures (one environment per session)."""

from tests.testenv.conftest import (  # noqa: F401
    k8s_api,
    k8s_env,
    k8s_namespace,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_runtest_setup,
)
