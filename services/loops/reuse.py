"""Address already in use (端口占用): why a restarted server cannot bind, and what fixes it.

Run this on the *server* machine. It plays both servers of the experiment and reads the kernel's
own socket table, so you see which socket still holds the port and in which TCP state:

    python3 loops/reuse.py old-listener --port 20019 --closer server [--reuse]
    python3 loops/reuse.py rebind --port 20019 [--reuse]
    python3 loops/reuse.py sockets --port 20019

(the client side of the experiment is ``python3 -m loops.probes close-order``).

What you will find on Linux::

    who closes first   old listener SO_REUSEADDR   new listener SO_REUSEADDR   bind() again
    client             any                         any                         OK
    server             no                          no                          EADDRINUSE (errno 98)
    server             no                          yes                         EADDRINUSE (errno 98)
    server             yes                         no                          EADDRINUSE (errno 98)
    server             yes                         yes                         OK

Why:

* Whoever calls ``close()`` first sends the first FIN and ends in TIME_WAIT, for 60 seconds
  (``TCP_TIMEWAIT_LEN``, a constant compiled into the kernel; no sysctl shortens it).
* When that is the server, the TIME_WAIT socket is bound to the server's port, so a new
  ``bind()`` to that port collides with it.
* ``SO_REUSEADDR`` lets the two coexist only if *both* sockets carry the flag. The connection
  socket that ``accept()`` returned inherits the flag from the listener, so the flag must have
  been set on the old listener before its first ``bind()``, not only on the restarted one.

Every command prints what it sees and then one ``RESULT {json}`` line, like the probes do.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import struct
import sys
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


def process_alive(pid: int) -> bool:
    try:
        return process_state(pid) not in ("Z", "X")
    except OSError:
        return False


# --- binding: the experiment itself -----------------------------------------------------------

def make_listener(host: str, port: int, reuse: bool, backlog: int = 5) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if reuse:
        # Must come before bind(): bind() is where the kernel looks for a conflict.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(backlog)
    return listener


def try_bind(port: int, host: str = "0.0.0.0", reuse: bool = False) -> tuple[int, str]:
    """Try to bind a fresh socket to the port. Returns (errno, message); errno 0 means it worked."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return 0, "bind() succeeded"
    except OSError as e:
        return e.errno or -1, f"{type(e).__name__}: {e}"
    finally:
        sock.close()


# --- output ----------------------------------------------------------------------------------

def say(line: str) -> None:
    print(line, flush=True)


def emit_result(ok: bool, observed: dict) -> int:
    """The one machine-readable line every probe ends with; returns the exit status."""
    print("RESULT " + json.dumps({"ok": bool(ok), "observed": observed}, sort_keys=True), flush=True)
    return 0 if ok else 1


def show_sockets(port: int, sockets: list[TcpSocket]) -> None:
    if not sockets:
        say(f"  /proc/net/tcp: no socket on port {port}")
    for s in sockets:
        say(f"  /proc/net/tcp: {s.describe()}")


# --- commands --------------------------------------------------------------------------------

def cmd_old_listener(args: argparse.Namespace) -> int:
    """Serve exactly one connection, close in the order asked for, then exit."""
    listener = make_listener(args.host, args.port, args.reuse, backlog=1)
    flag = listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    say(f"listening on {args.host}:{args.port} (SO_REUSEADDR={flag} on the listener)")
    listener.settimeout(args.timeout)
    try:
        conn, peer = listener.accept()
    except TimeoutError:
        say(f"no client came within {args.timeout} s")
        return emit_result(False, {"error": "no client"})
    finally:
        listener.close()   # a listening socket never enters TIME_WAIT: only connections do
    inherited = conn.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    say(f"accepted {peer[0]}:{peer[1]}; the connection socket inherited SO_REUSEADDR={inherited}")
    conn.settimeout(args.timeout)
    with conn:
        request = conn.recv(1024)
        conn.sendall(b"hello from the old server")
        if args.closer == "server":
            say("server calls close() first: its FIN goes out first, so TIME_WAIT will be on THIS side")
        else:
            # Wait for the client's FIN: recv() returns b'' when the peer has closed.
            eof = conn.recv(1024)
            say(f"client closed first (recv -> {eof!r}); now the server closes: TIME_WAIT is on the client")
    return emit_result(True, {"port": args.port, "reuse": bool(flag), "inherited_reuse": bool(inherited),
                              "closer": args.closer, "request": request.decode("utf-8", "replace"),
                              "peer": f"{peer[0]}:{peer[1]}"})


def cmd_rebind(args: argparse.Namespace) -> int:
    """Bind the port again, as a restarted server would, and report the errno."""
    # A closing connection passes through FIN_WAIT/LAST_ACK within milliseconds; wait for the
    # kernel to settle so we test TIME_WAIT, not a race.
    wait_until(lambda: not any(s.state in CLOSING_STATES for s in sockets_on_port(args.port)), 3.0)
    holders = sockets_on_port(args.port)
    say(f"who holds port {args.port} on this machine before the new bind():")
    show_sockets(args.port, holders)
    code, message = try_bind(args.port, args.host, args.reuse)
    label = "with SO_REUSEADDR" if args.reuse else "without SO_REUSEADDR"
    if code == 0:
        say(f"bind(('{args.host}', {args.port})) {label} -> OK")
    else:
        say(f"bind(('{args.host}', {args.port})) {label} -> {message} "
            f"(errno {code} = {errno.errorcode.get(code, '?')}; Windows calls it WinError 10048)")
    return emit_result(True, {"port": args.port, "reuse": args.reuse, "errno": code,
                              "error": errno.errorcode.get(code) if code else None, "message": message,
                              "sockets": [s.as_dict() for s in holders],
                              "states": sorted({s.state for s in holders})})


def cmd_sockets(args: argparse.Namespace) -> int:
    """List sockets bound to the port (or, with --remote, sockets talking to it)."""
    wait_until(lambda: not any(s.state in CLOSING_STATES for s in _select(args)), args.settle)
    found = _select(args)
    side = "talking to" if args.remote else "bound to"
    say(f"sockets on this machine {side} port {args.port}:")
    show_sockets(args.port, found)
    return emit_result(True, {"port": args.port, "sockets": [s.as_dict() for s in found],
                              "states": sorted({s.state for s in found})})


def _select(args: argparse.Namespace) -> list[TcpSocket]:
    return sockets_to_port(args.port) if args.remote else sockets_on_port(args.port)


def cmd_free_port(args: argparse.Namespace) -> int:
    """Pick ports with no socket at all on them (a TIME_WAIT from a recent run counts as busy)."""
    busy = {s.local_port for s in read_tcp_table()}
    wanted = [p for p in range(args.first, args.last + 1) if p not in busy][:args.count]
    if len(wanted) < args.count:
        # TIME_WAIT lasts 60 s, so re-running an experiment at once finds its ports still held.
        spare = [p for p in range(args.first + 1000, args.first + 2000) if p not in busy]
        wanted += spare[:args.count - len(wanted)]
        say(f"some of ports {args.first}-{args.last} are still held (TIME_WAIT lasts 60 s); "
            f"using {wanted}")
    return emit_result(len(wanted) == args.count, {"port": wanted[0] if wanted else None, "ports": wanted})


def cmd_wait_listen(args: argparse.Namespace) -> int:
    """Wait until some process listens on the port, or until the process in --pid-file died."""
    def pid_from_file() -> int | None:
        try:
            with open(args.pid_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError, TypeError):
            return None

    def settled() -> bool:
        if any(s.state == "LISTEN" for s in sockets_on_port(args.port)):
            return True
        pid = pid_from_file()
        return pid is not None and not process_alive(pid)

    wait_until(settled, args.timeout)
    listening = any(s.state == "LISTEN" for s in sockets_on_port(args.port))
    pid = pid_listening_on(args.port) if listening else pid_from_file()
    say(f"port {args.port}: " + ("LISTEN" if listening else "nobody listening") + f" (pid {pid})")
    return emit_result(listening, {"port": args.port, "listening": listening, "pid": pid})


def cmd_wait_exit(args: argparse.Namespace) -> int:
    """Wait until the process in --pid-file has exited (it was started in the background)."""
    with open(args.pid_file) as f:
        pid = int(f.read().strip())
    gone = wait_until(lambda: not process_alive(pid), args.timeout)
    say(f"pid {pid}: " + ("exited" if gone else f"still running after {args.timeout} s"))
    return emit_result(gone, {"pid": pid, "exited": gone})


def cmd_wait_text(args: argparse.Namespace) -> int:
    """Wait until a background process's log contains a line (a probe saying READY)."""
    def found() -> bool:
        try:
            with open(args.file, encoding="utf-8", errors="replace") as f:
                return args.text in f.read().splitlines()
        except OSError:
            return False

    seen = wait_until(found, args.timeout)
    say(f"{args.file}: " + (f"says {args.text}" if seen else f"no {args.text} within {args.timeout} s"))
    return emit_result(seen, {"file": args.file, "seen": seen})


Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, fn: Command, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host", default="0.0.0.0")
        p.add_argument("--port", type=int, required=name not in ("free-port", "wait-exit", "wait-text"))
        p.set_defaults(fn=fn)
        return p

    old = command("old-listener", cmd_old_listener, "serve one connection, then exit")
    old.add_argument("--reuse", action="store_true", help="set SO_REUSEADDR before bind()")
    old.add_argument("--closer", choices=["server", "client"], required=True, help="who closes first")
    old.add_argument("--timeout", type=float, default=30.0)
    again = command("rebind", cmd_rebind, "bind the port again and report the errno")
    again.add_argument("--reuse", action="store_true", help="set SO_REUSEADDR before bind()")
    look = command("sockets", cmd_sockets, "list the sockets on a port (/proc/net/tcp)")
    look.add_argument("--remote", action="store_true", help="sockets whose *remote* port is PORT")
    look.add_argument("--settle", type=float, default=2.0, help="wait this long for closing states")
    free = command("free-port", cmd_free_port, "find a port nothing is bound to")
    free.add_argument("--first", type=int, default=20011)
    free.add_argument("--last", type=int, default=20019)
    free.add_argument("--count", type=int, default=1)
    wait = command("wait-listen", cmd_wait_listen, "wait until something listens on the port")
    wait.add_argument("--timeout", type=float, default=5.0)
    wait.add_argument("--pid-file", help="stop waiting if this process has exited")
    done = command("wait-exit", cmd_wait_exit, "wait until a background process has exited")
    done.add_argument("--pid-file", required=True)
    done.add_argument("--timeout", type=float, default=5.0)
    text = command("wait-text", cmd_wait_text, "wait until a file contains a given line")
    text.add_argument("--file", required=True)
    text.add_argument("--text", required=True)
    text.add_argument("--timeout", type=float, default=5.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
