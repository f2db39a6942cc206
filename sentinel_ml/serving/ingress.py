"""The replica's one FastAPI app, shared by every REST protocol (``/recommend``, TF-Serving's ``/v1``,
the Open Inference Protocol's ``/v2``): its bearer-token guard, its body limit, its error answers and
its OpenAPI spec. The routes themselves live with their protocol under
``sentinel_ml.serving.protocols``; ``app.py`` puts the deployment in front of this app with
``serve.ingress`` and hands the guard the replica's ``TokenCheck`` (``use_token_check``)."""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path, get_route_path

from sentinel_ml.serving import canary
from sentinel_ml.serving.api import MAX_BODY_BYTES, ApiError, validation_message
from sentinel_ml.serving.auth import CHALLENGE, TokenCheck
from sentinel_ml.serving.config import RECOMMEND_PATH

api = FastAPI(
    title="Sentinel MovieRecommender",
    version="1",
    description="Rating predictions and top-k recommendations from a model trained on a ratings "
                "dataset. Ids are the dataset's own (integers or strings). The same model answers "
                "`/recommend`, TensorFlow Serving's REST API (`/v1`) and the Open Inference Protocol "
                "(`/v2`; its gRPC service on Serve's gRPC port).",
    openapi_url=f"{RECOMMEND_PATH}/openapi.json",
    docs_url=f"{RECOMMEND_PATH}/docs",
    redoc_url=None,
)

PROTOCOL_PREFIXES = ("/v1/", "/v2/")  # paths whose errors are {"error": …} and 400 for bad input
# What a protocol adds to the generated spec (e.g. a request body FastAPI cannot see), applied once.
SPEC_PATCHES: list[Callable[[dict[str, Any]], None]] = []


def _speaks_a_protocol(path: str) -> bool:
    return path.startswith(PROTOCOL_PREFIXES) or path == "/v2"


def app_path(scope: dict[str, Any]) -> str:
    """The request's path within this app: without the route prefix Serve mounts the app under (its
    ``root_path``), so that an application on a prefix answers each protocol in its own body."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def error_response(request_path: str, status_code: int, message: str) -> JSONResponse:
    """A client error in the body of the protocol the path belongs to."""
    if _speaks_a_protocol(request_path):
        return JSONResponse({"error": message}, status_code=400 if status_code == 422 else status_code)
    return JSONResponse({"detail": message}, status_code=status_code)


# GET routes that answer without a token when the replica requires one (path templates): liveness
# and readiness for probes and load balancers, and the API's own description. Each protocol adds its
# own with `open_to_probes` where it declares the route; every other route needs the token.
OPEN_ROUTES: set[str] = set()
_OPEN_PATTERNS: list = []  # OPEN_ROUTES compiled as Starlette compiles route paths
OPEN_METHODS = ("GET", "HEAD")


def open_to_probes(path: str) -> str:
    """Declare the GET route ``path`` open (no token needed); returns ``path`` for the decorator."""
    if path not in OPEN_ROUTES:
        OPEN_ROUTES.add(path)
        _OPEN_PATTERNS.append(compile_path(path)[0])
    return path


open_to_probes(api.openapi_url)
open_to_probes(api.docs_url)


def use_token_check(check: TokenCheck | None) -> None:
    """What the guard asks: this replica's ``TokenCheck``, or None when it serves without a token.
    Called once per replica process (``MovieRecommender.__init__``) before Serve routes a request."""
    api.state.token_check = check
    api.state.auth_configured = True


async def _drain(receive) -> None:
    """Read the request body to its end (and drop it) so the client sees the answer, not a reset."""
    while (await receive()).get("more_body"):
        pass


def _is_open(scope) -> bool:
    """A GET of a path that one of OPEN_ROUTES matches, as Starlette matches route paths (a path
    parameter is one segment, so no open template matches a path of a closed route). Anything else,
    including a path no route has, is closed: 404 for whoever has the token, 401 for everyone else."""
    if scope.get("method") not in OPEN_METHODS:
        return False
    path = get_route_path(scope)
    return any(pattern.match(path) for pattern in _OPEN_PATTERNS)


def _authorization(scope) -> bytes | None:
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            return value
    return None


class _RequireToken:
    """ASGI middleware, outermost: with a TokenCheck, a request to any route but OPEN_ROUTES needs
    ``Authorization: Bearer <token>``; without it or with another token the answer is 401 with
    ``WWW-Authenticate: Bearer``, in the protocol's error body, naming nothing of the token. Until the
    replica has said whether it needs a token, nothing but the open routes is answered (503)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            configured = getattr(api.state, "auth_configured", False)
            check: TokenCheck | None = getattr(api.state, "token_check", None)
            # Without auth nothing is matched here: the guard costs two lookups per request.
            if (not configured or check is not None) and not _is_open(scope):
                if not configured:
                    await _refuse(scope, receive, send, 503, "the replica is starting", {})
                    return
                authorization = _authorization(scope)
                if not check.accepts_header(authorization):
                    message = ("the bearer token is not valid" if authorization is not None else
                               "this API needs a bearer token: send 'Authorization: Bearer <token>'")
                    await _refuse(scope, receive, send, 401, message, {"WWW-Authenticate": CHALLENGE})
                    return
        await self.app(scope, receive, send)


async def _refuse(scope, receive, send, status: int, message: str, headers: dict[str, str]) -> None:
    await _drain(receive)
    response = error_response(scope["path"], status, message)
    response.headers.update(headers)
    await response(scope, receive, send)


class _BodyLimit:
    """ASGI middleware: a body declared larger than MAX_BODY_BYTES gets 413 before anything parses it.
    The body is read to its end first, so the client sees the answer and not a reset connection."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or ()).get(b"content-length", b"0")
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                await _drain(receive)
                response = error_response(app_path(scope), 413, f"request body of {int(length)} bytes: at "
                                                              f"most {MAX_BODY_BYTES}")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _AnsweringVersion:
    """ASGI middleware: the model version that answered (``Replica.answer``) in the response's
    ``canary.VERSION_HEADER``; routes that no model answers (health, metadata) carry none."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answered: dict[str, str] = {}
        token = canary.ANSWERED.set(answered)

        async def send_with_version(message) -> None:
            if message["type"] == "http.response.start" and "version" in answered:
                headers = [*message.get("headers", ()), (canary.VERSION_HEADER.encode(), answered["version"].encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_version)
        finally:
            canary.ANSWERED.reset(token)


api.add_middleware(_AnsweringVersion)
api.add_middleware(_BodyLimit)
api.add_middleware(_RequireToken)  # added last: outermost, so a 401 comes before any other answer


@api.exception_handler(ApiError)
async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return error_response(app_path(request.scope), error.status_code, error.message)


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    return error_response(app_path(request.scope), 422, validation_message(list(error.errors())))


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    response = error_response(app_path(request.scope), error.status_code, str(error.detail))
    response.headers.update(error.headers or {})
    return response


def _openapi() -> dict[str, Any]:
    """FastAPI's spec with each protocol's patches; the protocols that answer bad input with 400
    document no 422."""
    if api.openapi_schema:
        return api.openapi_schema
    spec = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
    for patch in SPEC_PATCHES:
        patch(spec)
    for path, operations in spec["paths"].items():
        if _speaks_a_protocol(path):
            for operation in operations.values():
                operation["responses"].pop("422", None)  # these protocols answer 400 instead
    api.openapi_schema = spec
    return spec


api.openapi = _openapi
