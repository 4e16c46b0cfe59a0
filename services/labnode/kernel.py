"""The kernel's view of this machine's sockets and processes (/proc), for probes and checks.

Everything here reads kernel state instead of talking to the network, so a check can look at a
server without becoming one of its clients (an iterative server would see a stray connection).
"""
from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# The state column of /proc/net/tcp is the kernel's enum tcp_state, in hex.
TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
    "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
    "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING", "0C": "NEW_SYN_RECV",
}
# States a closing connection passes through on its way to TIME_WAIT or to nothing.
CLOSING_STATES = {"FIN_WAIT1", "FIN_WAIT2", "LAST_ACK", "CLOSING"}


# --- the kernel's view: /proc/net/tcp --------------------------------------------------------

@dataclass(frozen=True)
class TcpSocket:
    """One row of /proc/net/tcp (or tcp6): a socket as the kernel sees it."""

    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    state: str          # "TIME_WAIT", "LISTEN", ...
    tx_queue: int       # bytes sent but not yet acknowledged by the peer
    rx_queue: int       # bytes received but not yet read by the program
    inode: int          # 0 once no program owns the socket any more (TIME_WAIT, orphans)

    def describe(self) -> str:
        owner = "no owner (kernel only)" if self.inode == 0 else f"inode {self.inode}"
        return (f"{self.local_ip}:{self.local_port} -> {self.remote_ip}:{self.remote_port} "
                f"{self.state} ({owner})")

    def as_dict(self) -> dict:
        return {"local": f"{self.local_ip}:{self.local_port}",
                "remote": f"{self.remote_ip}:{self.remote_port}",
                "state": self.state, "rx_queue": self.rx_queue, "tx_queue": self.tx_queue}


def _decode_address(field: str) -> tuple[str, int]:
    """'0100007F:4E20' -> ('127.0.0.1', 20000). The kernel prints the address in host order."""
    hex_ip, hex_port = field.split(":")
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, struct.pack("<I", struct.unpack(">I", raw)[0]))
    else:   # IPv6: four 32-bit words, each in host (little-endian) order
        words = struct.unpack(">4I", raw)
        ip = socket.inet_ntop(socket.AF_INET6, struct.pack("<4I", *words))
    return ip, int(hex_port, 16)


def read_tcp_table(paths: Iterable[str] = ("/proc/net/tcp", "/proc/net/tcp6")) -> list[TcpSocket]:
    """Every TCP socket of this network namespace (this container), as the kernel lists it."""
    rows = []
    for path in paths:
        try:
            with open(path) as table:
                lines = table.read().splitlines()[1:]      # skip the header line
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local_ip, local_port = _decode_address(f[1])
            remote_ip, remote_port = _decode_address(f[2])
            tx, rx = (int(q, 16) for q in f[4].split(":"))
            rows.append(TcpSocket(local_ip, local_port, remote_ip, remote_port,
                                  TCP_STATES.get(f[3], f[3]), tx, rx, int(f[9])))
    return rows


def sockets_on_port(port: int) -> list[TcpSocket]:
    """Sockets bound to this local port: the ones that can make bind() fail."""
    return [s for s in read_tcp_table() if s.local_port == port]


def sockets_to_port(port: int) -> list[TcpSocket]:
    """Sockets on this machine talking *to* this remote port (the client's side)."""
    return [s for s in read_tcp_table() if s.remote_port == port]


def connection_state(local: tuple[str, int], remote: tuple[str, int]) -> str | None:
    """State of the connection with exactly these two ends, or None when the kernel forgot it."""
    remote_ips = {remote[0], "::ffff:" + remote[0]}     # an IPv4 peer as tcp6 shows it
    for s in read_tcp_table():
        if (s.local_port, s.remote_port) == (local[1], remote[1]) and s.remote_ip in remote_ips:
            return s.state
    return None


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll a condition on kernel state until it holds or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --- processes: who owns a port, how much CPU it burns ----------------------------------------

def pid_listening_on(port: int) -> int | None:
    """The process whose listening socket is bound to this port (found through its open fds)."""
    inodes = {f"socket:[{s.inode}]" for s in sockets_on_port(port) if s.state == "LISTEN"}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            for fd in fds:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return int(pid)
        except OSError:          # not ours to look at, or it just exited
            continue
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()    # the name in (...) may contain spaces
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_state(pid: int) -> str:
    """R = running (on a CPU or ready to run), S = sleeping (blocked in accept/recv), ..."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def busiest_thread_state(pid: int) -> str:
    """R when any thread of the process is running or ready to run, else the main thread's state.
    (A server that spins in a worker thread looks asleep in its main thread.)"""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return process_state(pid)
    states = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            continue
    return "R" if "R" in states else process_state(pid)


def process_alive(pid: int) -> bool:
    try:
        return process_state(pid) not in ("Z", "X")
    except OSError:
        return False


UDP_UNCONNECTED = "07"


def listening_sockets(proto: str = "tcp") -> list[TcpSocket]:
    """TCP sockets in LISTEN, or UDP sockets bound and not connected (a UDP server's socket)."""
    if proto == "tcp":
        return [s for s in read_tcp_table() if s.state == "LISTEN"]
    table = read_tcp_table(("/proc/net/udp", "/proc/net/udp6"))   # same columns as tcp
    return [s for s in table if s.state == "CLOSE"]               # 07: unconnected
