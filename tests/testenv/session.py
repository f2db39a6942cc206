"""The test environment of a pytest session: started once for the session (``environment``), and
found by hooks while it runs (``running``), so that a failing test's report can carry its logs."""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from tests.testenv.build import Assets
from tests.testenv.env import Environment, up
from tests.testenv.process import sigterm_as_interrupt

_RUNNING: list[Environment] = []  # the environment while ``environment()`` holds it


def running() -> Environment | None:
    """The session's environment while it runs, else None."""
    return _RUNNING[0] if _RUNNING else None


@contextmanager
def environment(assets: Assets) -> Iterator[Environment]:
    """Start the environment for the length of the block, then stop it. While it runs, SIGTERM acts
    as Ctrl-C (so pytest tears down), and an exit that skips the block's end still stops it."""
    if _RUNNING:
        raise RuntimeError("the session's test environment is already running")
    with ExitStack() as stack:
        stack.enter_context(sigterm_as_interrupt())
        env = up(assets)
        stack.callback(env.stop)
        atexit.register(env.stop)
        stack.callback(atexit.unregister, env.stop)
        _RUNNING.append(env)
        stack.callback(_RUNNING.clear)
        yield env
