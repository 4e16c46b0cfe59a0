"""Interactive client for the framing lesson: the seed's 报头 recipe, done right.

The seed's client reads a reply in three steps: the 4-byte header length, the header, the
body. The steps are right; the reads are not. Here each step uses ``recv_exact``, which loops
until it has exactly the bytes the protocol promises, because ``recv(n)`` may return fewer::

    1. 4 bytes      -> struct "!I" -> header length (refused at once if absurd)
    2. that many    -> UTF-8 JSON header (报头): {"ok": true, "size": 5000, "sha256": ...}
    3. "size" bytes -> the body, and not one byte more (the next frame starts right after)
    4. sha256 of the body == header["sha256"]?

Usage::

    python3 client.py --host framing-server --port 20030            # interactive prompt
    python3 client.py --host framing-server --command "big 100000"  # one-shot: body to stdout

One-shot mode sends each --command in turn (with --mode), writes the reply bodies to stdout
exactly as received, messages to stderr, and exits 0 only if every reply was complete,
verified and ok.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys

if __package__ in (None, ""):   # run as a script (python3 framing/client.py): find the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from framing.codec import (  # noqa: E402
    HEADER_LENGTH,
    ChecksumMismatch,
    FramingError,
    header_size_from_prefix,
    parse_header,
)
from framing.sockio import recv_exact, send_frame  # noqa: E402

MAX_BODY = 64 * 2**20          # refuse replies announcing more than this (before reading them)
MODES = ("normal", "trickle", "pipeline", "truncate", "corrupt", "oversize")
MAX_COMMAND = 60000         # a request header is at most 64 KiB (codec limit), the command is in it
PREVIEW = 2000                 # interactive mode shows at most this many characters of a body


class ServerError(Exception):
    """The server answered {"ok": false, "error": ...}."""


def receive_frame(sock: socket.socket) -> tuple[dict, bytes]:
    """Read one frame: length, header, body; check the body's sha256."""
    prefix = recv_exact(sock, HEADER_LENGTH.size)                       # step 1
    header_size = header_size_from_prefix(prefix)    # HeaderTooLarge here, before reading on
    header = parse_header(recv_exact(sock, header_size), max_body_size=MAX_BODY)   # step 2
    body = recv_exact(sock, header["size"])                             # step 3
    expected = header.get("sha256")                                     # step 4
    if expected is not None and hashlib.sha256(body).hexdigest() != expected.lower():
        raise ChecksumMismatch(f"body of {len(body)} bytes does not match the header's sha256")
    return header, body


def receive_reply(sock: socket.socket) -> list[tuple[dict, bytes]]:
    """Read the frames of one reply: a frame with "more": true is followed by another."""
    frames = [receive_frame(sock)]
    while frames[-1][0].get("more") is True:
        frames.append(receive_frame(sock))
    return frames


def ask(sock: socket.socket, command: str, mode: str) -> list[tuple[dict, bytes]]:
    """Send one request and return its reply frames; ServerError if the server refused."""
    send_frame(sock, {"cmd": command, "mode": mode})
    frames = receive_reply(sock)
    for header, _ in frames:
        if header.get("ok") is not True:
            raise ServerError(str(header.get("error", header)))
    return frames


def run_commands(sock: socket.socket, commands: list[str], mode: str) -> int:
    """One-shot mode: bodies to stdout, everything else to stderr."""
    for command in commands:
        frames = ask(sock, command, mode)
        for header, body in frames:
            sys.stdout.buffer.write(body)
            print(f"# {command!r}: {len(body)} bytes, sha256 "
                  f"{'verified' if 'sha256' in header else 'absent'}", file=sys.stderr)
        sys.stdout.buffer.flush()
    return 0


def show(header: dict, body: bytes) -> None:
    text = body.decode("utf-8", "replace")   # UTF-8, the encoding we sent (not the seed's gbk)
    print(text[:PREVIEW], end="" if text.endswith("\n") else "\n")
    if len(text) > PREVIEW:
        print(f"... ({len(text) - PREVIEW} more characters)")
    extra = {k: v for k, v in header.items() if k not in ("ok", "cmd", "size", "sha256")}
    print(f"[{len(body)} bytes, sha256 {'ok' if 'sha256' in header else 'absent'}"
          f"{', ' + str(extra) if extra else ''}]")


def interact(sock: socket.socket, mode: str) -> int:
    print("commands: help, echo TEXT, big N, lines N; /mode NAME to change the sending mode; "
          "quit to leave")
    interrupted = False
    while True:
        try:
            line = input(f"[{mode}] >> ").strip()
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            if interrupted:
                print()
                return 0
            print("\n(Ctrl-C again, or quit, to leave)")
            interrupted = True
            continue
        interrupted = False
        if not line:
            continue             # an empty request is fine here, but nothing to ask
        if len(line.encode("utf-8", "surrogateescape")) > MAX_COMMAND:
            print(f"(that line is over {MAX_COMMAND} bytes, more than a request header may hold; "
                  "nothing was sent)")
            continue
        if line in ("quit", "exit"):
            return 0
        if line.startswith("/mode"):
            wanted = line.partition(" ")[2].strip()
            if wanted in MODES:
                mode = wanted
            else:
                print(f"modes: {', '.join(MODES)}")
            continue
        try:
            for header, body in ask(sock, line, mode):
                show(header, body)
        except ServerError as exc:
            print(f"server says: {exc}")
        # Anything else (EOF, truncated or bad frame) leaves the stream out of step: we stop.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Framed client for the framing lesson.")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=20030)
    parser.add_argument("--command", action="append", help="send this and exit (repeatable)")
    parser.add_argument("--mode", default="normal", choices=MODES, help="ask the server to send this way")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    sys.stdin.reconfigure(errors="replace")     # a non-UTF-8 byte becomes U+FFFD, not a traceback
    try:
        with socket.create_connection((args.host, args.port), timeout=args.timeout) as sock:
            if args.command:
                return run_commands(sock, args.command, args.mode)
            return interact(sock, args.mode)
    except KeyboardInterrupt:       # Ctrl-C while a reply was coming: the stream is out of step
        print("\n(stopped in the middle of a reply; connection closed)", file=sys.stderr)
        return 130
    except ServerError as exc:
        print(f"error: the server refused: {exc}", file=sys.stderr)
    except FramingError as exc:     # includes TruncatedFrame, HeaderTooLarge, ChecksumMismatch
        print(f"error: bad frame from the server: {type(exc).__name__}: {exc}", file=sys.stderr)
    except EOFError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:          # refused, reset, timed out
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
