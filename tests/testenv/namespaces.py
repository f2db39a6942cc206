"""The real node's own namespaces: one network namespace and one mount namespace for all of it.

Three small programs, each started as a process of the environment (see node.py):

    python -m tests.testenv.namespaces hold --cgroup C --bind SRC:DST ... --tmpfs DIR ...
        Joins cgroup C (in the pids hierarchy, where the node's processes are counted), creates a
        new network namespace and a new, private mount namespace, mounts a tmpfs on each DIR
        (/run, /var/lib, /var/log: where kubelet, containerd and the CNI plugins keep state at
        fixed paths), bind-mounts each SRC on DST, brings up lo, prints READY and sleeps until
        SIGTERM. Every mount lives only in that namespace: when the node's last process ends, the
        kernel removes them, the network namespace, its bridge, its iptables rules and its veth.

    python -m tests.testenv.namespaces exec --holder PID --cgroup C -- PROGRAM ARGS...
        Joins cgroup C and the holder's network and mount namespaces, then becomes PROGRAM (same
        pid, so the environment stops it by pid like any other process).

    python -m tests.testenv.namespaces forward [--holder PID] --listen HOST:PORT --to HOST:PORT
        Listens on HOST:PORT inside the holder's network namespace (without --holder: in this one)
        and relays each connection to HOST:PORT in this one: the node reaches the API server on
        127.0.0.1 with the environment's own kubeconfig, and the node's pods reach it on the host's
        end of the node's link (node.HOST_ADDRESS), where the `kubernetes` Service points.

Linux only, as root; the ``setns``/``unshare``/``mount`` calls go through libc (Python 3.11 has no
``os.setns``).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_NOSUID = 0x2
MS_NODEV = 0x4
CGROUP_ROOT = Path("/sys/fs/cgroup")
TRACKING_HIERARCHY = "pids"  # the node's processes, containers included, are counted here
READY = "READY"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def setns(path: str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, nstype), f"setns {path}")
    finally:
        os.close(fd)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None),
           f"mount {source} on {target}")


def join_cgroup(cgroup: str, pid: int = 0) -> None:
    """Move ``pid`` (0: this process) into ``cgroup`` of the tracking hierarchy."""
    procs = CGROUP_ROOT / TRACKING_HIERARCHY / cgroup.strip("/") / "cgroup.procs"
    procs.write_text(f"{pid or os.getpid()}\n")


def _hold(args: argparse.Namespace) -> int:
    join_cgroup(args.cgroup)
    unshare(CLONE_NEWNET | CLONE_NEWNS)
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    for folder in args.tmpfs:
        mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    for pair in args.bind:
        source, target = pair.split(":", 1)
        Path(target).mkdir(parents=True, exist_ok=True)
        mount(source, target, None, MS_BIND | MS_REC)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(READY, flush=True)
    while not stop.wait(3600):
        pass
    return 0


def _exec(args: argparse.Namespace) -> int:
    join_cgroup(args.cgroup)
    setns(f"/proc/{args.holder}/ns/net", CLONE_NEWNET)
    setns(f"/proc/{args.holder}/ns/mnt", CLONE_NEWNS)
    os.chdir("/")
    program = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    os.execv(program[0], program)
    return 127  # not reached


def _listen_in(holder: int, host: str, port: int) -> socket.socket:
    """A listening socket in the holder's network namespace (a socket keeps the namespace it was
    created in; this thread goes back to ours right after)."""
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        setns(f"/proc/{holder}/ns/net", CLONE_NEWNET)
        try:
            server = socket.create_server((host, port), backlog=64)
        finally:
            _check(_libc.setns(own, CLONE_NEWNET), "setns back")
    finally:
        os.close(own)
    return server


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def _relay(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=10)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _forward(args: argparse.Namespace) -> int:
    host, port = args.listen.rsplit(":", 1)
    to_host, to_port = args.to.rsplit(":", 1)
    server = (_listen_in(args.holder, host, int(port)) if args.holder
              else socket.create_server((host, int(port)), backlog=64))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(READY, flush=True)
    while True:
        client, _ = server.accept()
        threading.Thread(target=_relay, args=(client, (to_host, int(to_port))), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testenv.namespaces", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    hold = commands.add_parser("hold")
    hold.add_argument("--cgroup", required=True)
    hold.add_argument("--tmpfs", action="append", default=[])
    hold.add_argument("--bind", action="append", default=[], help="SRC:DST")
    hold.set_defaults(run=_hold)
    exec_ = commands.add_parser("exec")
    exec_.add_argument("--holder", type=int, required=True)
    exec_.add_argument("--cgroup", required=True)
    exec_.add_argument("argv", nargs=argparse.REMAINDER)
    exec_.set_defaults(run=_exec)
    forward = commands.add_parser("forward")
    forward.add_argument("--holder", type=int, default=0, help="listen in this network namespace")
    forward.add_argument("--listen", required=True)
    forward.add_argument("--to", required=True)
    forward.set_defaults(run=_forward)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
