"""Servers started by tests on 127.0.0.1: a free port, and waiting until one listens."""
from __future__ import annotations

import socket
import subprocess
import time


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Until a TCP connect to the port succeeds (bounded), or the server process has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    exited = "" if proc is None or proc.poll() is None else f" (the server exited with {proc.poll()})"
    raise AssertionError(f"nothing listens on {port}{exited}")


def udp_bound(port: int) -> bool:
    """Whether some UDP socket in this network namespace is bound to the port (/proc/net/udp)."""
    suffix = f":{port:04X}"
    with open("/proc/net/udp", encoding="ascii") as table:
        next(table)                                             # the header line
        return any(line.split()[1].endswith(suffix) for line in table)


def wait_udp_bound(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Until a UDP socket is bound to the port (bounded), or the server process has exited: a
    datagram sent before the bind is silently lost, so a fixed sleep flakes on a busy machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        if udp_bound(port):
            return
        time.sleep(0.05)
    exited = "" if proc is None or proc.poll() is None else f" (the server exited with {proc.poll()})"
    raise AssertionError(f"nothing is bound to udp port {port}{exited}")
