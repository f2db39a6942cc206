"""The serving API's HTTP funnel against a real loopback server that misbehaves on purpose: an answer
cut short (a replica killed mid-answer) is sent once more, as HTTP allows for an idempotent read; a
second cut, a refused connection and a broken answer each end in their own error, never a traceback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from sentinel_cli import api_client
from sentinel_ml.errors import ConfigError, JobFailed

OK_BODY = json.dumps({"user_id": 42, "predictions": [4.0]}).encode()


class Misbehaving:
    """Answers each connection's one request by the next step of ``script``: ``ok`` (a whole JSON
    answer), ``nothing`` (close before a byte), ``half`` (headers and part of the body, then close),
    ``junk`` (not HTTP)."""

    def __init__(self, script: list[str]) -> None:
        self.script, self.requests = list(script), 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/recommend"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.script:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                step = self.script.pop(0)
                if step == "ok":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(OK_BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + OK_BODY)
                elif step == "half":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(OK_BODY)).encode() + b"\r\n\r\n" + OK_BODY[:10])
                elif step == "junk":
                    conn.sendall(b"this is not HTTP\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(request) -> Iterator[Misbehaving]:
    s = Misbehaving(request.param)
    yield s
    s.close()


@pytest.mark.parametrize("server", [["half", "ok"], ["nothing", "ok"]], indirect=True, ids=["half", "nothing"])
def test_an_answer_cut_short_is_asked_again_once(server: Misbehaving) -> None:
    assert api_client.call("POST", server.url, {"user_id": 42, "movie_ids": [1]}) == json.loads(OK_BODY)
    assert server.requests == 2


@pytest.mark.parametrize("server", [["half", "half", "ok"]], indirect=True)
def test_cut_short_twice_is_an_error_naming_it(server: Misbehaving) -> None:
    with pytest.raises(JobFailed, match="closed the connection before a whole answer, twice") as info:
        api_client.call("POST", server.url, {"user_id": 42, "movie_ids": [1]})
    assert "sentinel status" in info.value.hint
    assert server.requests == 2  # never a third time


@pytest.mark.parametrize("server", [["junk"]], indirect=True)
def test_a_broken_answer_is_an_error_not_a_traceback(server: Misbehaving) -> None:
    with pytest.raises(JobFailed, match="broken HTTP response"):
        api_client.call("GET", server.url + "/model")
    assert server.requests == 1


def test_nothing_listening_is_not_resent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ConfigError, match="nothing answers"):
            api_client.call("GET", f"http://127.0.0.1:{port}/recommend/model", timeout_s=5)
