"""Address already in use (端口占用): why a restarted server cannot bind, and what fixes it.

Run this on the *server* machine. It plays both servers of the experiment and reads the kernel's
own socket table, so you see which socket still holds the port and in which TCP state:

    python3 loops/reuse.py old-listener --port 20019 --closer server [--reuse]
    python3 loops/reuse.py rebind --port 20019 [--reuse]
    python3 loops/reuse.py sockets --port 20019

(the client side of the experiment is ``python3 -m labnode.probes.loops close-order``).

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
import socket
import sys
from collections.abc import Callable

from labnode.__main__ import cmd_sockets, show_sockets
from labnode.kernel import CLOSING_STATES, sockets_on_port, wait_until
from labnode.report import emit_result, say

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














Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, fn: Command, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host", default="0.0.0.0")
        p.add_argument("--port", type=int, required=True)
        p.set_defaults(fn=fn)
        return p

    old = command("old-listener", cmd_old_listener, "serve one connection, then exit")
    old.add_argument("--reuse", action="store_true", help="set SO_REUSEADDR before bind()")
    old.add_argument("--closer", choices=["server", "client"], required=True, help="who closes first")
    old.add_argument("--timeout", type=float, default=30.0)
    again = command("rebind", cmd_rebind, "bind the port again and report the errno")
    again.add_argument("--reuse", action="store_true", help="set SO_REUSEADDR before bind()")
    # the same listing as `python3 -m labnode sockets`, here because students run it by hand
    look = command("sockets", cmd_sockets, "list the sockets on a port (/proc/net/tcp)")
    look.add_argument("--remote", action="store_true", help="sockets whose *remote* port is PORT")
    look.add_argument("--settle", type=float, default=2.0, help="wait this long for closing states")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
