"""The pinned versions of every component of the test environment, in one place.

The wrapper modules under ``tests/testenv/go/`` pin the same Kubernetes and etcd versions;
``test_versions.py`` checks that they agree.
"""

KUBERNETES = "v1.34.12"
ETCD = "v3.5.35"
KWOK = "v0.7.0"
KUBERAY = "v1.5.2"
COREDNS = "v1.12.4"  # the real node's cluster DNS (tests/testenv/go/coredns)
KUBE_ROUTER = "v2.1.0"  # the real node's NetworkPolicy controller (tests/testenv/go/kube-router)
