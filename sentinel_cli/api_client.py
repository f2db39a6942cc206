"""Calls to the serving API: HTTP (``/recommend``, TF-Serving's ``/v1``, OIP's ``/v2``) through one funnel
that turns failures into SentinelErrors (standard library only, so the CLI stays light), and the OIP
gRPC service through Sentinel's generated stubs (grpcio, imported only when asked for).

Every call sends the serving token when it knows one (``token``): by default (``AUTO``) the file
``$SENTINEL_SERVE_TOKEN_FILE`` names, else the local application's own token when the call goes to
its loopback port, or a RayService's own, read from its Secret, when the call goes to its Service's
DNS name (``<name>-serve-svc.<ns>.svc…``, ``<name>-grpc.<ns>.svc…``). A token is sent in the
``Authorization`` header (gRPC: the ``authorization`` metadata) and appears in no message this module
raises."""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Final

from sentinel_ml.errors import ConfigError, JobFailed
from sentinel_ml.serving.names import LOOPBACK_HOSTS, RECOMMEND_PATH

TOKEN_FILE_ENV = "SENTINEL_SERVE_TOKEN_FILE"
AUTO: Final[Any] = object()  # token=AUTO: find the token as the module's docstring says
_TOKEN_HINT = (f"the local target's token is sent by itself; for another server put its token in a file "
               f"and pass --token-file (or set ${TOKEN_FILE_ENV})")


def token_for(url_or_address: str) -> str | None:
    """The token a call to ``url_or_address`` (a URL, or gRPC's host:port) sends, or None."""
    import os

    from sentinel_ml.serving.auth import read_token

    if os.environ.get(TOKEN_FILE_ENV):
        return read_token(os.environ[TOKEN_FILE_ENV])
    parsed = urllib.parse.urlparse(url_or_address if "://" in url_or_address else f"//{url_or_address}")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return None
    service = kube_service(parsed.hostname or "")
    if service is not None:
        return _kube_token(*service)
    from sentinel_cli.backends.local import serving

    return serving.token_for(parsed.hostname, port)


_KUBE_HOST = re.compile(r"^(?P<service>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
                        r"\.svc(\.|$)")
_SERVE_SERVICES = ("-serve-svc", "-grpc")  # KubeRay's HTTP Service of a RayService, Sentinel's gRPC one


def kube_service(host: str) -> tuple[str, str] | None:
    """(RayService, namespace) for a RayService's Service DNS name (``<name>-serve-svc.<ns>.svc…``,
    ``<name>-grpc.<ns>.svc…``), else None."""
    match = _KUBE_HOST.match(host.lower())
    if not match:
        return None
    service = match["service"]
    suffix = next((s for s in _SERVE_SERVICES if service.endswith(s)), None)
    return (service.removesuffix(suffix), match["namespace"]) if suffix else None


def _kube_token(rayservice: str, namespace: str) -> str | None:
    """The RayService's serving token from its Secret (the profile's kubeconfig); None when it has none
    (served with --auth none) or the API cannot tell (no kubeconfig, RBAC): then a guarded API answers
    401, whose message says to pass --token-file."""
    from sentinel_cli.k8s import serve_token, settings
    from sentinel_cli.k8s.client import connect
    from sentinel_cli.k8s.request import Overrides
    from sentinel_ml.errors import SentinelError

    try:
        config = settings.load(Overrides(namespace=namespace))
        with connect(config.kubeconfig, config.context, namespace) as kube:
            return serve_token.token_for(kube, rayservice)
    except SentinelError:
        return None


def _resolve(token: str | None, url_or_address: str) -> str | None:
    return token_for(url_or_address) if token is AUTO else token


def endpoint(base_url: str, path: str = "") -> str:
    """``http://127.0.0.1:8000`` + ``/42/top`` → ``http://127.0.0.1:8000/recommend/42/top``."""
    return http_base(base_url) + RECOMMEND_PATH + path


def http_base(url: str) -> str:
    """The server's HTTP base: ``http://h:8000/recommend/`` → ``http://h:8000``."""
    base = url.rstrip("/")
    return base.removesuffix(RECOMMEND_PATH) if base.endswith(RECOMMEND_PATH) else base


def grpc_infer(address: str, model: str, users: list[int | str], movies: list[int | str], timeout_s: float = 30.0,
               token: str | None = AUTO) -> dict:
    """OIP ``ModelInfer`` over gRPC: ``{"model_name", "model_version", "predictions"}``."""
    import grpc
    import numpy as np

    from sentinel_ml.serving import grpc_predict_v2_pb2 as pb
    from sentinel_ml.serving import grpc_predict_v2_pb2_grpc as pb_grpc

    request = pb.ModelInferRequest(model_name=model)
    for name, values in (("user_id", users), ("movie_id", movies)):
        if all(isinstance(v, int) for v in values):
            request.inputs.add(name=name, datatype="INT64", shape=[len(values)])
            request.raw_input_contents.append(np.asarray(values, dtype="<i8").tobytes())
        else:  # string ids: a BYTES tensor, each element length-prefixed (4 bytes, little-endian)
            request.inputs.add(name=name, datatype="BYTES", shape=[len(values)])
            encoded = [str(v).encode() for v in values]
            request.raw_input_contents.append(b"".join(len(e).to_bytes(4, "little") + e for e in encoded))
    token = _resolve(token, address)
    metadata = [("authorization", f"Bearer {token}")] if token else None
    try:
        with grpc.insecure_channel(address) as channel:
            response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=timeout_s,
                                                                             metadata=metadata)
    except grpc.RpcError as e:
        code, details = e.code(), e.details() or ""
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise ConfigError(f"the gRPC service at {address} needs a valid bearer token "
                              f"({'a token was sent' if token else 'none was sent'})", hint=_TOKEN_HINT) from None
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.RESOURCE_EXHAUSTED):
            raise ConfigError(f"the gRPC service refused the request ({code.name}): {details}",
                              hint="check the ids: users and items are the served data's own ids") from None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise ConfigError(f"nothing answers gRPC at {address} ({code.name}: {details})",
                              hint="start it with `sentinel serve --checkpoint latest`, or pass --grpc") from None
        raise JobFailed(f"the gRPC service failed ({code.name}) at {address}: {details}",
                        hint="see `sentinel status` and the Serve logs") from None
    predictions = np.frombuffer(response.raw_output_contents[0], dtype="<f4").tolist()
    return {"model_name": response.model_name, "model_version": response.model_version,
            "predictions": predictions}


def call(method: str, url: str, body: Any = None, timeout_s: float = 30.0, token: str | None = AUTO) -> dict:
    """One call of the API. A connection closed before a whole answer (a replica that died while it
    answered: nothing, or headers without the whole body) is sent once more on a new connection, as
    HTTP allows for an idempotent request (RFC 9112 §9.3.1): every call of this API is a read."""
    token = _resolve(token, url)
    try:
        return _request(method, url, body, timeout_s, token)
    except _Aborted:
        pass  # sent once more below, on a new connection
    try:
        return _request(method, url, body, timeout_s, token)
    except _Aborted as e:
        raise JobFailed(f"{url} closed the connection before a whole answer, twice ({e})",
                        hint="see `sentinel status` and the Serve logs") from None


class _Aborted(Exception):
    """The connection closed before a whole answer arrived."""


def _is_aborted(error: BaseException) -> bool:
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        error = error.reason
    return isinstance(error, (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionResetError))


def _request(method: str, url: str, body: Any, timeout_s: float, token: str | None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    if token:  # unredirected: a redirect to another server does not carry the token along
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    try:
        with _opener(url).open(request, timeout=timeout_s) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        detail = _detail(e)
        if e.code == 401:
            raise ConfigError(f"{url} needs a valid bearer token ({'a token was sent' if token else 'none was sent'})",
                              hint=_TOKEN_HINT) from None
        if e.code < 500:
            raise ConfigError(f"the API refused the request ({e.code}): {detail}",
                              hint="check the ids: users and items are the served data's own ids") from None
        raise JobFailed(f"the API failed ({e.code}) at {url}: {detail}",
                        hint="see `sentinel status` and the Serve logs") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        if _is_aborted(e):
            raise _Aborted(str(e)) from None
        if isinstance(e, http.client.HTTPException):
            raise JobFailed(f"{url} answered with a broken HTTP response ({type(e).__name__}: {e})",
                            hint="is --url the Sentinel serving API?") from None
        reason = getattr(e, "reason", e)
        raise ConfigError(f"nothing answers at {url} ({reason})",
                          hint="start it with `sentinel serve --checkpoint latest`, or pass --url") from None
    except ValueError:
        raise JobFailed(f"{url} did not answer with JSON", hint="is --url the Sentinel serving API?") from None


def is_healthy(base_url: str, timeout_s: float = 2.0) -> bool:
    try:  # open to probes: no token
        return call("GET", endpoint(base_url, "/healthz"), timeout_s=timeout_s, token=None).get("status") == "ok"
    except (ConfigError, JobFailed):
        return False


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        return error.reason or "no details"
    detail = (body.get("detail") or body.get("error")) if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else json.dumps(detail) if detail else str(error.reason)


def _opener(url: str) -> urllib.request.OpenerDirector:
    """No proxy for loopback: a proxy from the environment must not swallow local calls."""
    if urllib.parse.urlparse(url).hostname in LOOPBACK_HOSTS:
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()
