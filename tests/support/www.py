"""A directory served over real HTTP on 127.0.0.1, for the download tests (GroupLens is not reachable
here: the tests build archives in each dataset's layout and serve them themselves)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# A path's own answer instead of the file: the handler, to misbehave on purpose (a short body, no answer).
Special = Callable[[http.server.SimpleHTTPRequestHandler], None]


@contextmanager
def serve_directory(root: Path, special: dict[str, Special] | None = None) -> Iterator[tuple[str, list[str]]]:
    """Serve ``root``; yields (base URL, the paths asked for, in order). ``special`` answers some paths
    itself."""
    asked: list[str] = []
    answers = special or {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802 - http.server's naming
            asked.append(self.path)
            if self.path in answers:
                answers[self.path](self)
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
