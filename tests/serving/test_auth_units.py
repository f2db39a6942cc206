"""The serving token's pieces without Ray: the check (constant time, Bearer parsing), the token file
(made once, 0600, refused when others may read it), ``ServeArgs`` and ``ServeRequest`` validation, the
REST guard on the replica's FastAPI app (every protocol's error body, 401 with ``WWW-Authenticate``),
the gRPC guard around every RPC but the open ones, and the client sending the token only where it
belongs. The protocols on real Ray Serve: test_serve_auth.py."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import stat
import threading
from pathlib import Path

import pytest

from sentinel_cli import api_client
from sentinel_ml.errors import ConfigError
from sentinel_ml.serving import auth
from sentinel_ml.serving.auth import TokenCheck, bearer_token

TOKEN = "t0ken-" + "a" * 37
# starlette's TestClient drives the app in-process; its httpx deprecation notice is not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


# -- the check --------------------------------------------------------------------------------------

@pytest.mark.parametrize("header, accepted", [
    (f"Bearer {TOKEN}", True),
    (f"bearer {TOKEN}", True),  # the scheme is case-insensitive
    (f"BEARER   {TOKEN}  ", True),
    (f"Bearer {TOKEN}x", False),
    (f"Bearer {TOKEN[:-1]}", False),
    ("Bearer ", False),
    ("Bearer", False),
    (TOKEN, False),  # no scheme
    (f"Basic {TOKEN}", False),
    (f"Token {TOKEN}", False),
    ("", False),
    (None, False),
])
def test_the_check_accepts_exactly_bearer_and_the_token(header, accepted):
    assert TokenCheck(TOKEN).accepts_header(header) is accepted
    assert TokenCheck(TOKEN).accepts_header(header.encode() if header else header) is accepted


def test_the_check_compares_digests_in_constant_time(monkeypatch):
    compared = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))

    assert not TokenCheck(TOKEN).accepts("short")
    assert TokenCheck(TOKEN).accepts(TOKEN)
    assert len(compared) == 2 and all(len(a) == len(b) == 32 for a, b in compared)  # SHA-256 both sides


def test_the_check_keeps_no_token_and_shows_none():
    check = TokenCheck(TOKEN)
    assert TOKEN not in repr(check) and TOKEN not in str(check)
    assert not hasattr(check, "__dict__")  # only the digest slot
    assert check._digest == hashlib.sha256(TOKEN.encode()).digest()
    with pytest.raises(ValueError):
        TokenCheck("")


def test_bearer_token_parsing():
    assert bearer_token("Bearer abc") == b"abc"
    assert bearer_token(b"bEaReR abc") == b"abc"
    assert bearer_token("Bearer") is None and bearer_token("Basic abc") is None and bearer_token(None) is None


# -- the token file ------------------------------------------------------------------------------------

def test_the_token_file_is_made_once_owner_only(tmp_path):
    path = tmp_path / "home" / auth.TOKEN_FILE_NAME
    auth.ensure_token_file(path)
    first = auth.read_token(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", first)  # secrets.token_urlsafe(32)
    auth.ensure_token_file(path)
    assert auth.read_token(path) == first


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_token_file_others_may_read_is_refused(tmp_path, mode):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    path.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 600") as raised:
        auth.ensure_token_file(path)
    assert TOKEN not in str(raised.value)


@pytest.mark.parametrize("content", ["", "  \n", "two words\n"])
def test_a_file_without_one_token_is_refused_without_showing_it(tmp_path, content):
    path = tmp_path / "token"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="holds no token") as raised:
        auth.read_token(path)
    assert "two words" not in str(raised.value)


def test_a_missing_token_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        auth.read_token(tmp_path / "nothing")


# -- the application's args ------------------------------------------------------------------------------

def test_serve_args_name_the_file_not_the_token(tmp_path):
    from sentinel_ml.serving.config import ServeArgs, serve_application, serve_args

    args = serve_args("/ckpt/best.pt", None, {"auth": "token", "token_file": "/home/u/.sentinel/serve-token"})
    assert args.model_dump()["token_file"] == "/home/u/.sentinel/serve-token"
    assert serve_application(args)["args"]["auth"] == "token"
    assert ServeArgs(checkpoint="x").auth == "none"  # the default: no token
    for bad in ({"auth": "token"}, {"token_file": "/t"}, {"auth": "bearer"}, {"token": TOKEN}):
        with pytest.raises(ConfigError):
            serve_args("/ckpt/best.pt", None, bad)


@pytest.mark.parametrize("fields, message", [
    ({"auth": "basic"}, "--auth basic"),
    ({"auth": "none", "token_file": "/t"}, "--token-file with --auth none"),
])
def test_serve_request_refuses_bad_auth(fields, message):
    from sentinel_ml.serving.config import ServeRequest

    with pytest.raises(ConfigError, match=message):
        ServeRequest(**fields).validate()


def test_the_local_default_is_a_token_off_loopback(tmp_path, monkeypatch):
    from sentinel_cli.backends.local import serving
    from sentinel_ml.serving.config import ServeRequest

    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path))
    local = ServeRequest().with_local_defaults(10)
    assert serving.auth_settings(local) == {"auth": "none", "token_file": None}
    opened = ServeRequest(host="0.0.0.0").with_local_defaults(10)
    settings = serving.auth_settings(opened)
    assert settings == {"auth": "token", "token_file": str(tmp_path / "serve-token")}
    token = auth.read_token(settings["token_file"])
    assert token not in json.dumps(settings)


def test_k8s_mounts_the_token_secret_and_names_only_its_file(tmp_path):
    import yaml

    from sentinel_cli.backends.kubernetes.plan import plan_serve
    from sentinel_cli.k8s import manifests
    from sentinel_cli.k8s.request import KubeRequest
    from sentinel_ml.serving.config import ServeRequest

    planned = plan_serve(ServeRequest(checkpoint="s3://b/runs/r-1/best.pt"), KubeRequest())  # token: the default
    assert (planned.auth, planned.token_secret, planned.token_file) == ("token", "recommender-serve-token", None)
    service = next(o for o in planned.objects if o["kind"] == "RayService")
    args = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]
    assert (args["auth"], args["token_file"]) == ("token", manifests.SERVE_TOKEN_FILE)
    cluster = service["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        spec = group["template"]["spec"]
        [token] = [v for v in spec["volumes"] if "secret" in v]  # beside the read-only root's scratch dirs
        assert token["secret"]["secretName"] == "recommender-serve-token"
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert mounts[token["name"]] == manifests.SERVE_TOKEN_DIR
    plain = yaml.safe_dump(plan_serve(ServeRequest(auth="none", checkpoint="s3://b/runs/r-1/best.pt"),
                                      KubeRequest()).objects)
    assert "secretName" not in plain and manifests.SERVE_TOKEN_DIR not in plain  # --auth none: no token
    loose = tmp_path / "token"
    loose.write_text("t0ken\n")
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="open to other users"):  # --token-file: checked before anything
        plan_serve(ServeRequest(token_file=str(loose), checkpoint="s3://b/runs/r-1/best.pt"), KubeRequest())


# -- the REST guard ------------------------------------------------------------------------------------

@pytest.fixture
def guarded_api():
    """The replica's FastAPI app (routes of every protocol) with a TokenCheck, as a replica sets it."""
    from starlette.testclient import TestClient

    import sentinel_ml.serving.app  # noqa: F401 - registers every protocol's routes
    from sentinel_ml.serving.ingress import api, use_token_check

    use_token_check(TokenCheck(TOKEN))
    try:
        yield TestClient(api)
    finally:
        for name in ("token_check", "auth_configured"):
            delattr(api.state, name)


@pytest.mark.parametrize("method, path, error_key", [
    ("POST", "/recommend", "detail"),
    ("POST", "/recommend/", "detail"),
    ("GET", "/recommend/1/top", "detail"),
    ("GET", "/recommend/model", "detail"),
    ("POST", "/v1/models/recommender:predict", "error"),
    ("POST", "/v1/models/recommender/versions/3:predict", "error"),
    ("GET", "/v1/models/recommender/metadata", "error"),
    ("POST", "/v2/models/recommender/infer", "error"),
    ("POST", "/v2/models/recommender/versions/3/infer", "error"),
    ("GET", "/v2/models/recommender", "error"),
    ("GET", "/v2", "error"),
    ("GET", "/no/such/route", "detail"),
])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}"])
def test_rest_guard_answers_401_in_each_protocols_body(guarded_api, method, path, error_key, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = guarded_api.request(method, path, content=b"{not json", headers=headers)

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert list(response.json()) == [error_key] and TOKEN not in response.text


def test_rest_guard_answers_401_before_the_body_limit(guarded_api):
    response = guarded_api.post("/recommend", content=b"1" * (2 << 20))
    assert response.status_code == 401


def test_open_routes_pass_the_guard(guarded_api):
    from sentinel_ml.serving.ingress import OPEN_ROUTES

    assert guarded_api.get("/recommend/openapi.json").status_code == 200
    assert OPEN_ROUTES == {"/recommend/openapi.json", "/recommend/docs", "/recommend/healthz",
                           "/v1/models/{model}", "/v1/models/{model}/versions/{version}",
                           "/v2/health/live", "/v2/health/ready", "/v2/models/{model}/ready",
                           "/v2/models/{model}/versions/{version}/ready"}


def test_before_the_replica_says_the_guard_answers_nothing_but_open_routes():
    from starlette.testclient import TestClient

    import sentinel_ml.serving.app  # noqa: F401
    from sentinel_ml.serving.ingress import api

    client = TestClient(api)
    assert client.post("/recommend", json={"user_id": 1, "movie_ids": [1]}).status_code == 503
    assert client.get("/recommend/openapi.json").status_code == 200


# -- the gRPC guard ------------------------------------------------------------------------------------

def test_every_rpc_of_the_service_is_guarded_but_liveness_and_readiness():
    from sentinel_ml.serving.protocols import oip_grpc

    proto = (Path(oip_grpc.__file__).parents[1] / "grpc_predict_v2.proto").read_text()
    assert sorted(oip_grpc.rpc_names()) == sorted(re.findall(r"rpc (\w+)\(", proto))
    for name in oip_grpc.rpc_names():
        method = getattr(oip_grpc.OIPGrpcServicer, name)
        assert hasattr(method, "__wrapped__") is (name not in oip_grpc.OPEN_RPCS), name
    assert oip_grpc.OPEN_RPCS == {"ServerLive", "ServerReady", "ModelReady"}


# -- the client ----------------------------------------------------------------------------------------

class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        _Recorder.seen.append(self.headers.get("Authorization"))
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.seen = []
    yield server
    server.shutdown()
    server.server_close()


def _local_state(home: Path, port: int, token_file: Path | None) -> None:
    (home / "ray").mkdir(parents=True, exist_ok=True)
    state = {"port": port, "grpc_port": port + 1, "auth": "token" if token_file else "none",
             "token_file": str(token_file) if token_file else None}
    (home / "ray" / "serving.json").write_text(json.dumps(state))


def test_the_client_sends_the_local_token_to_the_local_application_only(recorder, tmp_path, monkeypatch):
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path))
    monkeypatch.delenv(api_client.TOKEN_FILE_ENV, raising=False)
    token_file = auth.ensure_token_file(tmp_path / "serve-token")
    token = auth.read_token(token_file)
    port = recorder.server_address[1]
    url = f"http://127.0.0.1:{port}/recommend/model"

    api_client.call("GET", url)  # nothing serves locally: no token
    _local_state(tmp_path, port, token_file)
    api_client.call("GET", url)  # its own port: the token
    api_client.call("GET", url, token=None)  # asked not to send one
    assert _Recorder.seen == [None, f"Bearer {token}", None]
    assert api_client.token_for(f"127.0.0.1:{port + 1}") == token  # its gRPC port
    assert api_client.token_for(f"http://127.0.0.1:{port + 2}") is None  # another port
    assert api_client.token_for(f"http://example.org:{port}") is None  # another host
    _local_state(tmp_path, port, None)
    assert api_client.token_for(url) is None  # serving without auth


def test_the_client_sends_the_token_file_it_is_given(recorder, tmp_path, monkeypatch):
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path))
    path = tmp_path / "other-token"
    path.write_text("given-token\n")
    monkeypatch.setenv(api_client.TOKEN_FILE_ENV, str(path))

    api_client.call("GET", f"http://127.0.0.1:{recorder.server_address[1]}/x")
    assert _Recorder.seen == ["Bearer given-token"]


def test_a_401_is_an_error_that_names_no_token(tmp_path, monkeypatch):
    class Refuse(_Recorder):
        def do_GET(self):  # noqa: N802
            body = b'{"detail": "this API needs a bearer token"}'
            self.send_response(401)
            self.send_header("WWW-Authenticate", "Bearer")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ConfigError, match="needs a valid bearer token") as raised:
            api_client.call("GET", f"http://127.0.0.1:{server.server_address[1]}/x", token="sekret-value")
        assert "sekret-value" not in str(raised.value) and "--token-file" in str(raised.value)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("method, path, is_open", [
    ("GET", "/recommend/healthz", True),
    ("HEAD", "/recommend/healthz", True),
    ("POST", "/recommend/healthz", False),
    ("GET", "/v1/models/other", True),
    ("GET", "/v1/models/recommender:predict", True),  # Starlette routes it to the status of that model
    ("GET", "/v1/models/recommender/versions/7", True),
    ("GET", "/v1/models/recommender/metadata", False),
    ("GET", "/v1/models/recommender/versions/7/metadata", False),
    ("POST", "/v1/models/recommender:predict", False),
    ("GET", "/v2/health/live", True),
    ("GET", "/v2/health/ready", True),
    ("GET", "/v2/models/recommender/ready", True),
    ("GET", "/v2/models/recommender/versions/3/ready", True),
    ("GET", "/v2/models/recommender", False),
    ("GET", "/v2/models/recommender/versions/3", False),
    ("GET", "/v2", False),
    ("GET", "/recommend/model", False),
    ("GET", "/recommend/1/top", False),
    ("GET", "/recommend/healthz/x", False),
    ("GET", "/nothing", False),
])
def test_which_requests_are_open(method, path, is_open):
    import sentinel_ml.serving.app  # noqa: F401 - registers every protocol's routes
    from sentinel_ml.serving.ingress import _is_open

    assert _is_open({"type": "http", "method": method, "path": path, "root_path": "", "headers": []}) is is_open
