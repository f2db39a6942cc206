"""A stand-in for the Ray dashboard of every RayCluster in the environment.

No container runs, so no Ray head answers the KubeRay operator. The operator runs with
``HTTP_PROXY`` pointing at this server, so its dashboard requests
(``http://<cluster>-head-svc.<namespace>.svc.cluster.local:8265/api/jobs/<id>``) arrive here as
proxy requests that name the host they were meant for. The stand-in answers the Ray job API:
every job it is asked about has the outcome a test set for it (SUCCEEDED unless told otherwise),
so a RayJob can reach Complete or Failed the way it would on a real cluster.

It also answers what a RayService needs: the Serve REST API (``PUT``/``GET /api/serve/applications/``:
it keeps the config the operator submitted and reports its applications with the status a test set,
RUNNING unless told otherwise) and the Serve proxy's health check (``GET http://<pod-ip>:8000/-/healthz``),
so the operator itself labels the head pod, the serve Service gets an endpoint and the RayService
becomes Ready.

With the real node (node.py), ``upstream`` says which hosts run there: requests for them are
forwarded to the real Ray dashboard (or Serve proxy) in the pod, and the stand-in answers only for
clusters on kwok nodes.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SUCCEEDED = "SUCCEEDED"
RUNNING = "RUNNING"  # a Serve application status: DEPLOYING, RUNNING, DEPLOY_FAILED, ...


@dataclass(frozen=True)
class Outcome:
    status: str = SUCCEEDED  # a Ray job status: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED
    message: str = ""
    logs: str = ""


@dataclass(frozen=True)
class Request:
    method: str
    namespace: str  # from the head service's host name; "" if the host was not one
    path: str
    forwarded_to: str = ""  # "ip:port" of the real dashboard that answered, if one did

# Headers that belong to one connection, not to the request (RFC 9110, 7.6.1).
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
               "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


class StandInDashboard:
    """Serves on 127.0.0.1:``port`` in a background thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.requests: list[Request] = []
        self._outcomes: dict[tuple[str, str | None], Outcome] = {}
        self._serve_configs: dict[str, dict] = {}  # by dashboard host: the last config submitted
        self._serve_status: dict[str, str] = {}  # by namespace
        self._lock = threading.Lock()
        # host ("name.ns.svc.cluster.local:8265" or "ip:port") -> (ip, port) of a real target
        self.upstream: Callable[[str], tuple[str, int] | None] | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="ray-dashboard-stand-in")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def set_outcome(self, namespace: str, outcome: Outcome, job_id: str | None = None) -> None:
        """What jobs in ``namespace`` report: one job, or every job when ``job_id`` is None."""
        with self._lock:
            self._outcomes[(namespace, job_id)] = outcome

    def outcome(self, namespace: str, job_id: str) -> Outcome:
        with self._lock:
            return (self._outcomes.get((namespace, job_id))
                    or self._outcomes.get((namespace, None))
                    or Outcome())

    def set_serve_status(self, namespace: str, status: str) -> None:
        """What every Serve application in ``namespace`` reports (RUNNING unless set)."""
        with self._lock:
            self._serve_status[namespace] = status

    def submit_serve_config(self, host: str, config: dict) -> None:
        with self._lock:
            self._serve_configs[host] = config

    def serve_details(self, host: str, namespace: str) -> dict[str, object]:
        """The Serve REST API's ``GET /api/serve/applications/`` answer for the config on ``host``."""
        with self._lock:
            config = self._serve_configs.get(host, {})
            status = self._serve_status.get(namespace, RUNNING)
        deployment_status = "HEALTHY" if status == RUNNING else "UPDATING"
        applications = {
            app["name"]: {
                "name": app["name"], "status": status, "message": "", "route_prefix": app.get("route_prefix"),
                "deployments": {d["name"]: {"name": d["name"], "status": deployment_status, "message": ""}
                                for d in app.get("deployments") or []},
            }
            for app in config.get("applications") or []
        }
        return {"deploy_mode": "MULTI_APP", "applications": applications}

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


def _namespace(host: str) -> str:
    """``<service>.<namespace>.svc.<domain>[:port]`` -> ``<namespace>``."""
    labels = host.split(":", 1)[0].split(".")
    return labels[1] if len(labels) > 2 and labels[2] == "svc" else ""


def _job_info(job_id: str, outcome: Outcome) -> dict[str, object]:
    now_ms = int(time.time() * 1000)
    terminal = outcome.status in ("SUCCEEDED", "FAILED", "STOPPED")
    return {
        "job_id": job_id,
        "submission_id": job_id,
        "status": outcome.status,
        "message": outcome.message,
        "entrypoint": "",
        "start_time": now_ms,
        **({"end_time": now_ms} if terminal else {}),
    }


def _handler(dashboard: StandInDashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self._answer()

        def do_POST(self) -> None:  # noqa: N802
            self._answer()

        def do_DELETE(self) -> None:  # noqa: N802
            self._answer()

        def do_PUT(self) -> None:  # noqa: N802
            self._answer()

        def _answer(self) -> None:
            url = urlsplit(self.path)
            host = url.netloc or self.headers.get("Host", "")
            namespace = _namespace(host)
            upstream = dashboard.upstream
            target = upstream(host) if upstream is not None else None
            if target is not None:
                dashboard.record(Request(self.command, namespace, url.path, f"{target[0]}:{target[1]}"))
                self._forward(target, url.path + (f"?{url.query}" if url.query else ""))
                return
            dashboard.record(Request(self.command, namespace, url.path))
            parts = [p for p in url.path.split("/") if p]
            if parts == ["-", "healthz"]:  # the Serve proxy on a pod's serving port
                self._send(200, "success")
                return
            if parts == ["api", "serve", "applications"]:
                if self.command == "PUT":
                    length = int(self.headers.get("Content-Length") or 0)
                    dashboard.submit_serve_config(host, json.loads(self.rfile.read(length) or b"{}"))
                    self._send(200, {})
                else:
                    self._send(200, dashboard.serve_details(host, namespace))
                return
            if parts[:2] != ["api", "jobs"]:
                self._send(404, {"error": f"the stand-in dashboard does not serve {url.path}"})
                return
            if self.command == "POST" and len(parts) == 2:  # submit (HTTPMode)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                job_id = body.get("submission_id") or f"raysubmit_{int(time.time() * 1000)}"
                self._send(200, {"job_id": job_id, "submission_id": job_id})
            elif len(parts) == 2:
                self._send(200, [])
            elif len(parts) == 3 and self.command == "GET":
                self._send(200, _job_info(parts[2], dashboard.outcome(namespace, parts[2])))
            elif parts[3:] == ["logs"]:
                self._send(200, {"logs": dashboard.outcome(namespace, parts[2]).logs})
            elif parts[3:] == ["stop"]:
                self._send(200, {"stopped": True})
            else:
                self._send(200, {"deleted": True})

        def _forward(self, target: tuple[str, int], path: str) -> None:
            """Relay the request to the real dashboard and its answer back (502 if unreachable)."""
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            connection = http.client.HTTPConnection(*target, timeout=30)
            try:
                connection.request(self.command, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except OSError as error:
                self._send(502, {"error": f"the real dashboard at {target[0]}:{target[1]}: {error}"})
                return
            finally:
                connection.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # requests are recorded, not printed

    return Handler
