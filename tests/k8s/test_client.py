"""The Kubernetes client's one funnel against the real test API server: transient failures (a reset
connection, 429, 5xx) are retried with backoff and bounded; client errors, schema errors and log
streams are not. Transient failures are injected at the HTTP transport, under the client."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.k8s


class _Flaky:
    """Every API request is counted; the first ones fail as listed (an exception, or an HTTP status)."""

    def __init__(self, monkeypatch, *failures) -> None:
        from kubernetes.client import rest

        from sentinel_cli.k8s import client as kube_client

        self.failures, self.requests, self.delays = list(failures), [], []
        original = rest.RESTClientObject.request

        def request(rest_client, method, url, *args, **kwargs):
            self.requests.append((method, url.split("?")[0]))
            if not self.failures:
                return original(rest_client, method, url, *args, **kwargs)
            failure = self.failures.pop(0)
            if isinstance(failure, BaseException):
                raise failure
            return rest.RESTResponse(_response(failure))

        monkeypatch.setattr(rest.RESTClientObject, "request", request)
        monkeypatch.setattr(kube_client, "_sleep", self.delays.append)


def _response(status: int):
    import urllib3

    return urllib3.HTTPResponse(body=json.dumps({"message": "the server is busy"}).encode(), status=status,
                                reason="Busy", headers={"Retry-After": "2"} if status == 429 else {},
                                preload_content=False)


@pytest.fixture
def kube(k8s_env, k8s_namespace):
    from sentinel_cli.k8s import client as kube_client

    with kube_client.connect(str(k8s_env.kubeconfig), namespace=k8s_namespace) as api:
        yield api


def test_a_reset_connection_and_busy_answers_are_retried_with_backoff(kube, monkeypatch) -> None:
    from urllib3.exceptions import ProtocolError

    from sentinel_cli.k8s.client import SERVICEACCOUNT

    reset = ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))
    flaky = _Flaky(monkeypatch, reset, 503, 429)
    account = kube.get(SERVICEACCOUNT, "default")
    assert account is not None and account["metadata"]["name"] == "default"
    assert len(flaky.requests) == 4 and len(set(flaky.requests)) == 1, flaky.requests
    assert flaky.delays == [0.25, 0.5, 2.0]  # doubling backoff; the 429's Retry-After is longer


def test_retries_are_bounded_and_then_name_the_failure(kube, monkeypatch) -> None:
    from sentinel_cli.k8s.client import SERVICEACCOUNT
    from sentinel_ml.errors import SentinelError

    flaky = _Flaky(monkeypatch, *[502] * 10)
    with pytest.raises(SentinelError) as raised:
        kube.get(SERVICEACCOUNT, "default")
    assert raised.value.message == ("the Kubernetes API failed to read ServiceAccount default: "
                                    "HTTP 502 the server is busy")
    assert len(flaky.requests) == 4 and len(flaky.delays) == 3


def test_client_errors_and_log_streams_are_not_retried(kube, monkeypatch) -> None:
    from sentinel_cli.k8s.client import Rejected, Request
    from sentinel_ml.errors import SentinelError

    flaky = _Flaky(monkeypatch)
    assert kube.get_object({"kind": "ConfigMap", "metadata": {"name": "absent"}}) is None
    with pytest.raises(Rejected) as raised:
        kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_A_Name"}})
    assert "the API server rejected apply ConfigMap" in raised.value.message, raised.value
    assert [method for method, _ in flaky.requests] == ["GET", "PATCH"]

    flaky.failures.append(503)
    with pytest.raises(SentinelError, match="HTTP 503"):
        next(kube.log_lines("absent", None, follow=True, since_seconds=None, read_timeout=5))
    assert len(flaky.requests) == 3 and flaky.delays == []
    assert not Request("POST", "/api/v1/namespaces", "create a namespace").retryable


def test_a_field_the_schema_lacks_is_rejected_at_once(kube, monkeypatch) -> None:
    """The API server answers such a server-side apply with HTTP 500; it is the object, not the server."""
    from sentinel_cli.k8s.client import Rejected

    flaky = _Flaky(monkeypatch)
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "schema-test"},
               "spec": {"notAField": True, "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {
                   "containers": [{"name": "ray-head", "image": "busybox"}]}}}}}
    with pytest.raises(Rejected, match="notAField|typed patch|unknown field"):
        kube.apply(cluster)
    assert len(flaky.requests) == 1 and flaky.delays == []
