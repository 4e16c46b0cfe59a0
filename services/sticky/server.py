"""Lesson sticky, the server: a *safe* fake remote shell that makes sticky packets (粘包) visible.

The seed (§2.5) builds a "remote cmd" (远程执行命令) server: it runs whatever text arrives with
``subprocess.Popen(cmd, shell=True)`` and sends the output back with two plain ``send()`` calls.
Big outputs (``ipconfig -all``) then "stick": the client's ``recv(1024)`` gets part of a reply,
and the *next* command shows the rest of the *previous* one.

This server keeps the phenomenon and drops the danger. It runs no program at all: a handful of
whitelisted commands compute their output in Python.

    big N            N bytes of 64-byte lines, each naming its own offset: "big@00001024 KKKK...\\n"
    lines N          "line 1 of N\\n" ... "line N of N\\n"
    echo TEXT        TEXT and a newline
    sends A B ...    each word with its OWN sendall() call, no newline (sends hello world)
    paced-sends A B  the same, with a 0.2 s pause between the sends
    nodelay on|off   set TCP_NODELAY on this connection (turns off Nagle's algorithm)
    frame COMMAND    the same reply, preceded by its length as 4 bytes: struct.pack("!I", n)
    help             this list

Requests are one command per line: the client ends each command with "\\n", so the server
always knows where a command ends (that is framing by a delimiter). Replies are sent raw, with
nothing that marks where they end: that is the bug this lesson is about. ``frame`` is the fix.

Why the seed's server is dangerous or broken, and what this file does instead:
  * ``shell=True`` on bytes from the network lets anyone run any program as the server's user
    (remote code execution). Here: a dict of Python functions; nothing is ever executed.
  * ``stdin=PIPE`` is never closed: a command that reads stdin (``cat``) hangs the server.
  * reading ``stderr`` to the end before ``stdout`` deadlocks once the child fills the stdout
    pipe (about 64 KiB) while we wait on stderr. (If you must run programs: subprocess.run(
    argv_list, capture_output=True, timeout=5), never a shell.)
  * ``tcp_socket_server`` and ``act_res`` are undefined names: the seed's server never ran.

    $ python3 server.py --port 20020
    listening on 0.0.0.0:20020
"""
import argparse
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

MAX_LINE = 4096                 # a command line longer than this is refused
MAX_BIG = 8 * 1024 * 1024       # big N: at most 8 MiB (the container has 256 MiB)
MAX_LINES = 100_000
MAX_SENDS = 16
PACED_GAP = 0.2                 # seconds between the sends of paced-sends
MAX_CLIENTS = 64
IDLE_TIMEOUT = 300              # seconds a client may stay silent before we hang up
LINE = 64                       # big N is made of 64-byte lines


class CommandError(ValueError):
    """A bad command: the message goes back to the client, the connection stays open."""


@dataclass
class Reply:
    parts: list[bytes]                      # each part is handed to its own sendall() call
    gap: float = 0.0                        # pause between parts (paced-sends)
    note: str = ""                          # for the server's log
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(len(p) for p in self.parts)


# --- the whitelisted commands: plain functions, text in, bytes out ------------------------------

def big_pattern(size: int) -> bytes:
    """``size`` bytes of 64-byte lines; every line starts with its own byte offset.

    So any piece of the reply tells you where it came from: a chunk that starts with
    ``big@00001024`` is the reply's bytes 1024 onwards.
    """
    lines = []
    for offset in range(0, size, LINE):
        label = f"big@{offset:08d} ".encode("ascii")
        letter = bytes([ord("A") + (offset // LINE) % 26])
        lines.append(label + letter * (LINE - len(label) - 1) + b"\n")
    return b"".join(lines)[:size]


def count_argument(args: list[str], limit: int) -> int:
    if len(args) != 1 or not args[0].isdigit():
        raise CommandError("expected one whole number, e.g. big 5120")
    n = int(args[0])
    if n > limit:
        raise CommandError(f"{n} is too large (at most {limit})")
    return n


def cmd_big(args: list[str]) -> Reply:
    n = count_argument(args, MAX_BIG)
    return Reply([big_pattern(n)], note=f"{n} bytes in 1 sendall")


def cmd_lines(args: list[str]) -> Reply:
    n = count_argument(args, MAX_LINES)
    text = "".join(f"line {i} of {n}\n" for i in range(1, n + 1))
    return Reply([text.encode("utf-8")], note=f"{n} lines in 1 sendall")


def cmd_echo(args: list[str]) -> Reply:
    return Reply([(" ".join(args) + "\n").encode("utf-8")])


def cmd_sends(args: list[str], gap: float = 0.0) -> Reply:
    if not 1 <= len(args) <= MAX_SENDS:
        raise CommandError(f"give 1 to {MAX_SENDS} words, e.g. sends hello world")
    return Reply([a.encode("utf-8") for a in args], gap=gap, note=f"{len(args)} separate sendall calls")


def cmd_paced_sends(args: list[str]) -> Reply:
    return cmd_sends(args, gap=PACED_GAP)


def cmd_help(args: list[str]) -> Reply:
    return Reply([HELP.encode("utf-8")])


COMMANDS = {"big": cmd_big, "lines": cmd_lines, "echo": cmd_echo, "sends": cmd_sends,
            "paced-sends": cmd_paced_sends, "help": cmd_help}
HELP = ("commands: big N | lines N | echo TEXT | sends A B ... | paced-sends A B ... | "
        "nodelay on|off | frame COMMAND | help\n")


def run_command(line: str) -> Reply:
    """Look the command up in the whitelist and compute its reply. Never runs a program."""
    words = line.split()
    if not words:
        raise CommandError("empty command (try: help)")
    name, args = words[0], words[1:]
    if name not in COMMANDS:
        raise CommandError(f"unknown command {name!r} (try: help)")
    return COMMANDS[name](args)


def parse_frame(line: str) -> tuple[bool, str]:
    """'frame big 10' -> (True, 'big 10'); anything else -> (False, line)."""
    first, _, rest = line.strip().partition(" ")
    if first == "frame":
        return True, rest
    return False, line


# --- the connection: read command lines, send replies --------------------------------------------

def send_reply(conn: socket.socket, reply: Reply, framed: bool) -> None:
    """Send the reply's parts, each with its own sendall().

    sendall, not send: send() may take only part of the bytes and returns how many it took;
    the seed ignores that number (and claims the rest is "lost": it is not, it was never sent).
    """
    if framed:
        # '!' = network byte order (big-endian), 'I' = unsigned 4-byte int. The seed's 'i' is
        # the machine's own byte order and signed: the two ends could disagree on the number.
        conn.sendall(struct.pack("!I", reply.size))
    for i, part in enumerate(reply.parts):
        if i and reply.gap:
            time.sleep(reply.gap)
        conn.sendall(part)


def set_nodelay(conn: socket.socket, args: list[str]) -> Reply:
    if args not in (["on"], ["off"]):
        raise CommandError("nodelay on | nodelay off")
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if args == ["on"] else 0)
    value = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    return Reply([f"TCP_NODELAY is now {1 if value else 0} on the server's socket\n".encode("ascii")])


def read_lines(conn: socket.socket) -> Iterator[bytes]:
    """Yield each command line (without its newline). Ends when the client closes (recv -> b'')."""
    buffer = bytearray()
    while True:
        newline = buffer.find(b"\n")
        if newline >= 0:
            line = bytes(buffer[:newline]).rstrip(b"\r")
            del buffer[:newline + 1]
            yield line
            continue
        if len(buffer) > MAX_LINE:
            raise CommandError(f"command line longer than {MAX_LINE} bytes")
        chunk = conn.recv(4096)
        if not chunk:          # b'' is how recv() says "the other side closed": end of stream
            return
        buffer += chunk


def handle_connection(conn: socket.socket, peer: str) -> None:
    conn.settimeout(IDLE_TIMEOUT)
    try:
        for raw in read_lines(conn):
            framed = False
            try:
                text = raw.decode("utf-8")
                framed, command = parse_frame(text)
                words = command.split()
                if words[:1] == ["nodelay"]:
                    reply = set_nodelay(conn, words[1:])
                else:
                    reply = run_command(command)
            except (UnicodeDecodeError, CommandError) as exc:
                reason = "command is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
                reply = Reply([f"error: {reason}\n".encode()], note="error")
            print(f"{peer} > {raw[:60].decode('utf-8', 'replace')!r}: {reply.size} bytes"
                  f"{' framed' if framed else ' raw'}{', ' + reply.note if reply.note else ''}", flush=True)
            send_reply(conn, reply, framed)
    except CommandError as exc:                  # a line that never ends: say so, then hang up
        try:
            conn.sendall(f"error: {exc}\n".encode())
        except OSError:
            pass
    except (TimeoutError, ConnectionError, OSError) as exc:
        print(f"{peer}: {type(exc).__name__}: {exc}", flush=True)
    finally:
        conn.close()
        print(f"{peer} disconnected", flush=True)


# --- the listening socket: one thread per client -------------------------------------------------

def serve(host: str, port: int) -> None:
    slots = threading.BoundedSemaphore(MAX_CLIENTS)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen(16)
        print(f"listening on {host}:{server.getsockname()[1]}", flush=True)   # port 0: the kernel picked one
        while True:
            conn, (ip, peer_port) = server.accept()
            peer = f"{ip}:{peer_port}"
            if not slots.acquire(blocking=False):
                with conn:                      # a polite refusal, then the next client
                    conn.settimeout(1)
                    try:
                        conn.sendall(b"error: too many clients, try again later\n")
                    except OSError:
                        pass
                continue
            print(f"{peer} connected", flush=True)

            def work(conn: socket.socket = conn, peer: str = peer) -> None:
                try:
                    handle_connection(conn, peer)
                finally:
                    slots.release()

            threading.Thread(target=work, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default: every interface)")
    parser.add_argument("--port", type=int, default=20020)
    args = parser.parse_args()
    # docker stop sends SIGTERM; make it a KeyboardInterrupt so the listening socket is closed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        serve(args.host, args.port)
    except KeyboardInterrupt:
        print("server stopped", flush=True)


if __name__ == "__main__":
    main()
