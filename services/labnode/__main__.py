"""Tools a check runs on a lab node (container or lab machine), beside the program under test.

    python3 -m labnode listeners --port 20000            who listens on the port, on which address
    python3 -m labnode wait-listen --port 20000 [--proto udp] [--pid-file F] [--timeout S]
    python3 -m labnode wait-exit --pid-file F            wait until a background process ended
    python3 -m labnode wait-text --file F --text READY   wait until a log says a line
    python3 -m labnode sockets --port 20010 [--remote]   the kernel's sockets on a port
    python3 -m labnode free-port --first 20011 --last 20019 [--count N]
    python3 -m labnode tree --dir /srv/ftp | sha256 --file F | make-file --file F --seed S --size N

Each prints what it sees and one RESULT line (labnode.report).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
from collections.abc import Callable

from labnode.kernel import (
    CLOSING_STATES,
    TcpSocket,
    listening_sockets,
    pid_listening_on,
    process_alive,
    read_tcp_table,
    sockets_on_port,
    sockets_to_port,
    wait_until,
)
from labnode.report import emit_result, say


def show_sockets(port: int, sockets: list[TcpSocket]) -> None:
    if not sockets:
        say(f"  /proc/net/tcp: no socket on port {port}")
    for s in sockets:
        say(f"  /proc/net/tcp: {s.describe()}")


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


def _listening(port: int, proto: str) -> list[TcpSocket]:
    return [s for s in listening_sockets(proto) if s.local_port == port]


def cmd_wait_listen(args: argparse.Namespace) -> int:
    """Wait until some process listens on the port, or until the process in --pid-file died."""
    def pid_from_file() -> int | None:
        try:
            with open(args.pid_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError, TypeError):
            return None

    def settled() -> bool:
        if _listening(args.port, args.proto):
            return True
        pid = pid_from_file()
        return pid is not None and not process_alive(pid)

    wait_until(settled, args.timeout)
    listening = bool(_listening(args.port, args.proto))
    pid = pid_listening_on(args.port) if listening and args.proto == "tcp" else pid_from_file()
    say(f"port {args.port}: " + ("LISTEN" if listening else "nobody listening") + f" (pid {pid})")
    return emit_result(listening, {"port": args.port, "listening": listening, "pid": pid})


def cmd_listeners(args: argparse.Namespace) -> int:
    """Who listens on this machine, and on which address: what a check says when nobody answers."""
    everything = listening_sockets(args.proto)
    on_port = [s for s in everything if s.local_port == args.port]
    for s in on_port:
        say(f"{args.proto} {s.local_ip}:{s.local_port} is listening")
    if not on_port:
        say(f"nothing listens on {args.proto} port {args.port} on this machine")
    others = sorted({s.local_port for s in everything} - {args.port})
    if others:
        say(f"listening on other ports: {others}")
    return emit_result(True, {"port": args.port, "proto": args.proto,
                              "addresses": sorted({s.local_ip for s in on_port}), "other_ports": others})


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


def cmd_tree(args: argparse.Namespace) -> int:
    """Every entry under a directory (hidden ones too): type, and size and sha256 of files."""
    tree: dict[str, dict] = {}
    for folder, dirs, files in os.walk(args.dir):
        for name in sorted(dirs + files):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, args.dir)
            if os.path.islink(path):
                tree[rel] = {"type": "link", "to": os.readlink(path)}
            elif os.path.isdir(path):
                tree[rel] = {"type": "dir"}
            else:
                tree[rel] = {"type": "file", "size": os.path.getsize(path), "sha256": file_sha256(path)}
    say(f"{len(tree)} entries under {args.dir}")
    return emit_result(True, {"dir": args.dir, "tree": tree})


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cmd_sha256(args: argparse.Namespace) -> int:
    try:
        digest = file_sha256(args.file)
    except OSError as exc:
        say(f"{args.file}: {exc}")
        return emit_result(False, {"file": args.file, "sha256": None, "error": str(exc)})
    say(f"sha256({args.file}) = {digest}")
    return emit_result(True, {"file": args.file, "sha256": digest})


def cmd_make_file(args: argparse.Namespace) -> int:
    """A file of seeded random bytes (the same seed gives the same file on every machine)."""
    data = random.Random(args.seed).randbytes(args.size)
    with open(args.file, "wb") as f:
        f.write(data)
    digest = hashlib.sha256(data).hexdigest()
    say(f"wrote {args.size} bytes to {args.file}, sha256 {digest}")
    return emit_result(True, {"file": args.file, "size": args.size, "sha256": digest})


Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m labnode", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, fn: Command, help_text: str, port: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--port", type=int, required=port)
        p.set_defaults(fn=fn)
        return p

    look = command("sockets", cmd_sockets, "list the sockets on a port (/proc/net/tcp)")
    look.add_argument("--remote", action="store_true", help="sockets whose *remote* port is PORT")
    look.add_argument("--settle", type=float, default=2.0, help="wait this long for closing states")
    free = command("free-port", cmd_free_port, "find a port nothing is bound to", port=False)
    free.add_argument("--first", type=int, default=20011)
    free.add_argument("--last", type=int, default=20019)
    free.add_argument("--count", type=int, default=1)
    listeners = command("listeners", cmd_listeners, "who listens on the port, on which address")
    listeners.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    wait = command("wait-listen", cmd_wait_listen, "wait until something listens on the port")
    wait.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    wait.add_argument("--timeout", type=float, default=5.0)
    wait.add_argument("--pid-file", help="stop waiting if this process has exited")
    done = command("wait-exit", cmd_wait_exit, "wait until a background process has exited", port=False)
    done.add_argument("--pid-file", required=True)
    done.add_argument("--timeout", type=float, default=5.0)
    text = command("wait-text", cmd_wait_text, "wait until a file contains a given line", port=False)
    text.add_argument("--file", required=True)
    text.add_argument("--text", required=True)
    text.add_argument("--timeout", type=float, default=5.0)
    tree = command("tree", cmd_tree, "every entry under a directory, with sizes and sha256", port=False)
    tree.add_argument("--dir", required=True)
    digest = command("sha256", cmd_sha256, "the sha256 of a file", port=False)
    digest.add_argument("--file", required=True)
    make = command("make-file", cmd_make_file, "a file of seeded random bytes", port=False)
    make.add_argument("--file", required=True)
    make.add_argument("--seed", type=int, required=True)
    make.add_argument("--size", type=int, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
