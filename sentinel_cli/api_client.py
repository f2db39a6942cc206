"""Calls to the serving API (``/recommend``) over HTTP: one funnel that turns failures into
SentinelErrors. Standard library only, so the CLI stays light."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from sentinel_ml.errors import ConfigError, JobFailed
from sentinel_ml.serving.config import ROUTE_PREFIX

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def endpoint(base_url: str, path: str = "") -> str:
    """``http://127.0.0.1:8000`` + ``/42/top`` → ``http://127.0.0.1:8000/recommend/42/top``."""
    base = base_url.rstrip("/")
    if not base.endswith(ROUTE_PREFIX):
        base += ROUTE_PREFIX
    return base + path


def call(method: str, url: str, body: Any = None, timeout_s: float = 30.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with _opener(url).open(request, timeout=timeout_s) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        detail = _detail(e)
        if e.code < 500:
            raise ConfigError(f"the API refused the request ({e.code}): {detail}",
                              hint="check the ids: users and movies are MovieLens ids") from None
        raise JobFailed(f"the API failed ({e.code}) at {url}: {detail}",
                        hint="see `sentinel status` and the Serve logs") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ConfigError(f"nothing answers at {url} ({reason})",
                          hint="start it with `sentinel serve --checkpoint latest`, or pass --url") from None
    except ValueError:
        raise JobFailed(f"{url} did not answer with JSON", hint="is --url the Sentinel serving API?") from None


def is_healthy(base_url: str, timeout_s: float = 2.0) -> bool:
    try:
        return call("GET", endpoint(base_url, "/healthz"), timeout_s=timeout_s).get("status") == "ok"
    except (ConfigError, JobFailed):
        return False


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        return error.reason or "no details"
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else json.dumps(detail) if detail else str(error.reason)


def _opener(url: str) -> urllib.request.OpenerDirector:
    """No proxy for loopback: a proxy from the environment must not swallow local calls."""
    if urllib.parse.urlparse(url).hostname in _LOOPBACK:
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()
