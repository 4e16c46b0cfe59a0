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
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

if __package__ in (None, ""):   # run as a script (python3 sticky/server.py): find the packages
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from framing.numbers import NumberError, parse_count  # noqa: E402   (the same parser as framing)

MAX_LINE = 4096                 # a command line longer than this (without its "\n") is refused
LINE_TIMEOUT = 10.0             # once a line has started, all of it must arrive within this
CHUNK = 64 * 1024               # big/lines replies are generated and sent this much at a time
MAX_BIG = 8 * 1024 * 1024       # big N: at most 8 MiB (the container has 256 MiB)
MAX_LINES = 100_000
MAX_SENDS = 16
PACED_GAP = 0.2                 # seconds between the sends of paced-sends
MAX_CLIENTS = 64
IDLE_TIMEOUT = 300              # seconds a client may stay silent before we hang up
LINE = 64                       # big N is made of 64-byte lines


class CommandError(ValueError):
    """A bad command: the message goes back to the client, the connection stays open."""


class LineError(CommandError):
    """A line too long or too slow: we answer, then hang up (we no longer know where it ends)."""

    def __init__(self, message: str, partial_line: bytes) -> None:
        super().__init__(message)
        self.framed = is_framed(partial_line)   # answer in the mode the line asked for


@dataclass
class Reply:
    parts: list[bytes]                      # each part is handed to its own sendall() call
    gap: float = 0.0                        # pause between parts (paced-sends)
    note: str = ""                          # for the server's log
    stream: Iterable[bytes] = ()            # a big reply, generated while it is sent
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(len(p) for p in self.parts)


def generated(chunks: Iterable[bytes], size: int, note: str) -> Reply:
    """A reply of ``size`` bytes made piece by piece while we send it.

    Why not build it first? ``big 8388608`` as one bytes object is 8 MiB per client (and the
    seed-style join/slice doubles that): 64 clients that never read would need more than the
    container's 256 MiB. Generated in CHUNK pieces, with sendall() waiting while the client
    does not read (backpressure), each client costs one chunk. A reply that fits in one chunk
    is simply built at once.
    """
    if size <= CHUNK:
        return Reply([b"".join(chunks)], note=note)
    reply = Reply([], note=note, stream=chunks)
    reply.size = size
    return reply


# --- the whitelisted commands: plain functions, text in, bytes out ------------------------------

def big_chunks(size: int) -> Iterator[bytes]:
    """``size`` bytes of 64-byte lines, CHUNK bytes at a time; every line starts with its offset.

    So any piece of the reply tells you where it came from: a chunk that starts with
    ``big@00001024`` is the reply's bytes 1024 onwards.
    """
    for start in range(0, size, CHUNK):
        lines = []
        for offset in range(start, min(size, start + CHUNK), LINE):
            label = f"big@{offset:08d} ".encode("ascii")
            letter = bytes([ord("A") + (offset // LINE) % 26])
            lines.append(label + letter * (LINE - len(label) - 1) + b"\n")
        yield b"".join(lines)[:size - start]


def big_pattern(size: int) -> bytes:
    return b"".join(big_chunks(size))


def lines_chunks(n: int) -> Iterator[bytes]:
    """"line 1 of N\n" ... "line N of N\n", 2000 lines (well under CHUNK) at a time."""
    for first in range(1, n + 1, 2000):
        yield "".join(f"line {i} of {n}\n" for i in range(first, min(n, first + 1999) + 1)).encode()


def count_argument(args: list[str], limit: int) -> int:
    if len(args) != 1:
        raise CommandError("expected one whole number, e.g. big 5120")
    try:
        return parse_count(args[0], limit)     # ASCII digits only: "²" or 5000 nines are refused
    except NumberError as exc:
        raise CommandError(str(exc)) from None


def cmd_big(args: list[str]) -> Reply:
    n = count_argument(args, MAX_BIG)
    return generated(big_chunks(n), n, note=f"{n} bytes")


def cmd_lines(args: list[str]) -> Reply:
    n = count_argument(args, MAX_LINES)
    size = sum(len(chunk) for chunk in lines_chunks(n))   # a first pass: the size, not the text
    return generated(lines_chunks(n), size, note=f"{n} lines")


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
    for chunk in reply.stream:      # blocks while the client does not read: one chunk in memory
        conn.sendall(chunk)


def set_nodelay(conn: socket.socket, args: list[str]) -> Reply:
    if args not in (["on"], ["off"]):
        raise CommandError("nodelay on | nodelay off")
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if args == ["on"] else 0)
    value = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    return Reply([f"TCP_NODELAY is now {1 if value else 0} on the server's socket\n".encode("ascii")])


def is_framed(raw: bytes) -> bool:
    """Does this (maybe partial, maybe not UTF-8) line ask for a framed reply? Errors too must be
    framed then: a framed reader would take the 4 bytes "erro" as a length of 1.7 GB."""
    return raw.strip().partition(b" ")[0] == b"frame"


def read_lines(conn: socket.socket) -> Iterator[bytes]:
    """Yield each command line (without its newline). Ends when the client closes (recv -> b'').

    Two limits, so one client cannot hold memory or a slot for ever: a line may be at most
    MAX_LINE bytes, and once its first byte arrived the whole line must arrive within
    LINE_TIMEOUT seconds (one byte every few minutes would otherwise beat any idle timeout).
    Between lines a client may stay silent for IDLE_TIMEOUT.
    """
    buffer = bytearray()
    deadline = 0.0
    while True:
        newline = buffer.find(b"\n", 0, MAX_LINE + 1)   # look only where a legal line can end
        if newline >= 0:
            line = bytes(buffer[:newline]).rstrip(b"\r")
            del buffer[:newline + 1]
            deadline = 0.0
            yield line
            continue
        if len(buffer) > MAX_LINE:
            raise LineError(f"command line longer than {MAX_LINE} bytes", bytes(buffer[:64]))
        if buffer:
            if not deadline:
                deadline = time.monotonic() + LINE_TIMEOUT
            conn.settimeout(max(0.001, deadline - time.monotonic()))
        else:
            conn.settimeout(IDLE_TIMEOUT)
        try:
            chunk = conn.recv(4096)
        except TimeoutError:
            if buffer:
                raise LineError(f"command line not finished within {LINE_TIMEOUT:g} s",
                                bytes(buffer[:64])) from None
            raise
        if not chunk:          # b'' is how recv() says "the other side closed": end of stream
            return
        buffer += chunk


def error_reply(message: str) -> Reply:
    return Reply([f"error: {message}\n".encode()], note="error")


def handle_connection(conn: socket.socket, peer: str) -> None:
    try:
        for raw in read_lines(conn):
            framed = is_framed(raw)          # decided on the bytes: even a non-UTF-8 line
            try:
                text = raw.decode("utf-8")
                _, command = parse_frame(text)
                words = command.split()
                if words[:1] == ["nodelay"]:
                    reply = set_nodelay(conn, words[1:])
                else:
                    reply = run_command(command)
            except (UnicodeDecodeError, CommandError) as exc:
                reason = "command is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
                reply = error_reply(reason)
            print(f"{peer} > {raw[:60].decode('utf-8', 'replace')!r}: {reply.size} bytes"
                  f"{' framed' if framed else ' raw'}{', ' + reply.note if reply.note else ''}", flush=True)
            send_reply(conn, reply, framed)
    except LineError as exc:       # too long or too slow: answer, then close (we are out of step)
        print(f"{peer}: {exc}, closing", flush=True)
        try:
            send_reply(conn, error_reply(str(exc)), exc.framed)
        except OSError:
            pass
        say_goodbye(conn)
    except (TimeoutError, ConnectionError, OSError) as exc:
        print(f"{peer}: {type(exc).__name__}: {exc}", flush=True)
    finally:
        conn.close()
        print(f"{peer} disconnected", flush=True)


def say_goodbye(conn: socket.socket) -> None:
    """Close so that our last reply arrives: FIN first, then discard what the client still sends.

    Closing with unread bytes in our receive queue makes the kernel send RST, and an RST can
    destroy the error we just sent before the client reads it.
    """
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        for _ in range(256):                 # at most 1 MiB, at most a second per recv
            if not conn.recv(4096):
                break
    except OSError:
        pass


# --- the listening socket: one thread per client -------------------------------------------------

def serve(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen(16)
        print(f"listening on {host}:{server.getsockname()[1]}", flush=True)   # port 0: the kernel picked one
        serve_forever(server)


def serve_forever(server: socket.socket) -> None:
    """Accept clients for ever, each in its own thread, at most MAX_CLIENTS at once."""
    slots = threading.BoundedSemaphore(MAX_CLIENTS)
    while True:
        conn, (ip, peer_port, *_) = server.accept()
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
            except Exception as exc:        # a bug in one connection must not stop the others
                print(f"{peer}: internal error: {exc!r}", flush=True)
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
