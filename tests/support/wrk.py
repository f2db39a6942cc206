"""``wrk`` driving POST bodies at a URL: its Lua scripts, its command line, its figures, and a run in
the background (tests/serving/test_faults_serving.py and bench/serve.py, bench/faults.py). ``wrk`` is
Debian's package; nothing in the suite needs it (the tests fall back to tests/support/load.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

WRK_RECOMMEND = r"""
math.randomseed(%(seed)d)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local ids = {}
  for i = 1, %(movies)d do ids[i] = math.random(1, 1682) end
  local body = string.format('{"user_id": %%d, "movie_ids": [%%s]}', math.random(1, 943), table.concat(ids, ","))
  return wrk.format(nil, nil, nil, body)
end
"""
WRK_TFSERVING = r"""
math.randomseed(%(seed)d)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local rows = {}
  for i = 1, %(movies)d do
    rows[i] = string.format('{"user_id": %%d, "movie_id": %%d}', math.random(1, 943), math.random(1, 1682))
  end
  return wrk.format(nil, nil, nil, '{"instances": [' .. table.concat(rows, ",") .. ']}')
end
"""
WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\n', summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), e.connect, e.read, e.write,
    e.status, e.timeout))
end
"""


def wrk_script(path: Path, protocol: str = "recommend", movies: int = 10, seed: int = 42) -> Path:
    """Write wrk's Lua script for ``protocol`` (random valid POST bodies, a RESULT line at the end)."""
    script = {"recommend": WRK_RECOMMEND, "tfserving": WRK_TFSERVING}[protocol]
    path.write_text((script + WRK_DONE) % {"seed": seed, "movies": movies})
    return path


def wrk_command(url: str, script: Path, connections: int, duration_s: float) -> list[str]:
    return ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "10s", "-s",
            str(script), url]


def wrk_result(stdout: str) -> dict:
    """requests/s, p50/p99 ms, requests, failed (non-2xx and socket errors) and each error count."""
    line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    raw = json.loads(line[len("RESULT "):])
    errors = {k: raw[k] for k in ("connect", "read", "write", "status", "timeout")}
    return {"rps": raw["requests"] / (raw["duration_us"] / 1e6), "p50_ms": raw["p50_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000, "requests": raw["requests"], "failed": sum(errors.values()),
            "errors": errors}


class Wrk:
    """``wrk`` driving POST /recommend (random valid bodies, ``wrk_script``) in the background,
    bounded by its duration; ``result()`` waits for it and parses its figures."""

    def __init__(self, url: str, workdir: Path, connections: int = 64, duration_s: float = 60.0) -> None:
        script = wrk_script(workdir / "recommend.lua", "recommend")
        self.duration_s = duration_s
        self.proc = subprocess.Popen(wrk_command(url, script, connections, duration_s), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)

    def result(self) -> dict:
        try:
            out, err = self.proc.communicate(timeout=self.duration_s + 60)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError("wrk did not finish in time") from None
        if self.proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({self.proc.returncode}): {err.strip()[-500:]}")
        return wrk_result(out)

    def finish_now(self) -> dict:
        """End the run early the way Ctrl-C does (SIGINT: wrk still prints its figures) and parse them."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        return self.result()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
