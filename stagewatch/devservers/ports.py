"""Loopback ports: is one free, is something listening, who holds it, wait until they are free."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from stagewatch.devservers.common import HOST, PortTakenError
from stagewatch.devservers.processes import cmdline


def free_ports(n: int, host: str = HOST) -> list[int]:
    """`n` distinct ports free now on host (bound to port 0 together, then released): for tests and benches
    that start their own servers (the dev servers keep their fixed, documented ports)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(port: int, host: str = HOST) -> bool:
    """True if a server could listen on host:port now (SO_REUSEADDR, like servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_listening(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True if something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str | None:
    """Best effort: 'pid 123 (java ...)' for the process listening on ``port``.

    Read from /proc (no lsof/ss needed), so that a clash names what to stop.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != "0A":  # 0A = LISTEN
                continue
            if int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    cmd = " ".join(cmdline(int(proc.name)))[:120]
                    return f"pid {proc.name} ({cmd})"
        except OSError:
            continue
    return "a process this user cannot see"


def check_port_free(port: int, what: str, option: str) -> None:
    """Raise :class:`PortTakenError` naming the owner and the option to pass instead."""
    if port_free(port):
        return
    owner = port_owner(port)
    by = f" by {owner}" if owner else ""
    raise PortTakenError(
        f"Port {port} ({what}) is already taken{by}; pass {option} or stop that process.", port
    )


def wait_ports_free(ports: list[int], timeout: float = 10.0) -> list[int]:
    """Wait until every port is free; return those still taken at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        busy = [p for p in ports if not port_free(p)]
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(0.2)

