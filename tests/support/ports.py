"""Free loopback ports: the one definition the tests, the test environment and bench/ use.

They come from the product's own picker (``sentinel_cli.backends.local.ray_cluster.free_ports``):
between Ray's worker ports and the kernel's ephemeral range, so a port handed to a server that starts
later is not taken meanwhile by an outgoing connection (the race that once took HAProxy's port).
"""

from __future__ import annotations

from sentinel_cli.backends.local.ray_cluster import free_ports

__all__ = ["free_port", "free_ports"]


def free_port() -> int:
    """One TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]
