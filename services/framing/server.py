"""Framing lesson server: a safe fake shell whose every reply is a frame.

The sticky lesson's server wrote raw bytes and left the client guessing where one reply
ended (粘包). This one frames everything, requests and replies alike::

    4 bytes "!I" header length | UTF-8 JSON header (报头) | body of header["size"] bytes

Request header: ``{"cmd": "big 5000", "mode": "normal"}`` (+ "size"/"sha256" if a body follows).
Reply header:   ``{"ok": true, "cmd": "big 5000", "size": 5000, "sha256": "..."}`` + body,
or              ``{"ok": false, "error": "unknown command 'ls'", "size": 0}``.

Commands (whitelisted; nothing reaches a real shell, unlike the seed's ``shell=True``)::

    help          this list
    echo TEXT     TEXT back
    big N         N bytes of a fixed pattern (N <= 16 MiB)
    lines N       "line 1\\n" ... "line N\\n"
    hash          size and sha256 of the request's body

Sending modes, so clients can be tested against a hostile network (request header "mode")::

    normal    the reply in one sendall
    trickle   the first bytes one per send(), with TCP_NODELAY and short pauses
    pipeline  the reply ("more": true) and a second frame back to back, in one sendall
    truncate  announce the full size, send half the body, close
    corrupt   the right size and sha256 in the header, but one byte of the body flipped
    oversize  announce a header length of 2**32-1, then keep the connection open (sending
              nothing more) until the client gives up: a client without a limit hangs

One thread per connection; a client that sends bad bytes gets a framed error and is closed,
the others carry on. Big replies are generated while they are sent, CHUNK bytes at a time, so
a client that asks for 16 MiB and never reads costs one chunk of memory, not 16 MiB; at most
MAX_CLIENTS are served at once. Run: ``python3 server.py --port 20030``.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

if __package__ in (None, ""):   # run as a script (python3 framing/server.py): find the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from framing.codec import (  # noqa: E402
    HEADER_LENGTH,
    NEED_DATA,
    ChecksumMismatch,
    Data,
    FrameDecoder,
    FramingError,
    Header,
    encode_frame,
    encode_header,
)
from framing.numbers import NumberError, parse_count  # noqa: E402
from framing.sockio import send_frame  # noqa: E402

MAX_CLIENTS = 64                  # connections served at once; more get a polite "busy"
MAX_REQUEST_BODY = 16 * 2**20     # the decoder refuses larger request bodies up front
MAX_BIG = 16 * 2**20
MAX_LINES = 100_000
CHUNK = 64 * 1024                 # replies go out in pieces of about this size: memory per client
LINES_PER_CHUNK = 5000            # "lines N" is generated this many lines at a time (~64 KiB)
IDLE_TIMEOUT = 60.0               # a silent client is dropped after this many seconds ...
FRAME_TIMEOUT = 10.0              # ... and a started request must be complete within this
TRICKLE_BYTES = 200               # "trickle": this many bytes go one per send() ...
TRICKLE_PAUSE = 0.005             # ... with this pause after each
OVERSIZE_HOLD = 30.0              # "oversize": the connection stays open this long for the client to give up
PATTERN = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SECOND_FRAME = b"[second frame]"
MODES = ("normal", "trickle", "pipeline", "truncate", "corrupt", "oversize")

HELP = """\
help          this list
echo TEXT     TEXT back
big N         N bytes of a fixed pattern (N <= 16 MiB)
lines N       "line 1" ... "line N", one per line
hash          size and sha256 of the request's body
modes (request header "mode"): normal trickle pipeline truncate corrupt oversize
"""


class RequestError(Exception):
    """A well-framed request we refuse: the reply says why and the connection stays open."""


def log(peer: str, message: str) -> None:
    print(f"[{peer}] {message}", flush=True)


# ------------------------------------------------------------------------------ commands

@dataclass
class Body:
    """A reply body we can describe (size, sha256) before sending, and send in chunks.

    The header carries size and sha256 *before* the body, but ``big 16777216`` must not mean a
    16 MiB ``bytes`` per client: 64 slow clients would need 1 GiB in a 256 MiB container. So a
    body is a recipe: ``chunks()`` generates it piece by piece while we send, and the digest
    is computed by a first streaming pass (and remembered, since ``big N`` is always the same).
    """
    size: int
    sha256: str
    chunks: Callable[[], Iterator[bytes]]

    @classmethod
    def of(cls, data: bytes) -> Body:
        return cls(len(data), hashlib.sha256(data).hexdigest(), lambda: iter([data]))


def big_chunks(n: int) -> Iterator[bytes]:
    """N bytes of PATTERN, repeated (a client can check every byte), CHUNK bytes at a time."""
    block = PATTERN * (CHUNK // len(PATTERN))       # a whole number of patterns: chunks line up
    for start in range(0, n, len(block)):
        yield block[:n - start]


def lines_chunks(n: int) -> Iterator[bytes]:
    """"line 1\n" ... "line N\n", about CHUNK bytes at a time."""
    for first in range(1, n + 1, LINES_PER_CHUNK):
        last = min(n, first + LINES_PER_CHUNK - 1)
        yield "".join(f"line {i}\n" for i in range(first, last + 1)).encode()


@functools.lru_cache(maxsize=64)
def digest_of(kind: str, n: int) -> tuple[int, str]:
    """(size, sha256) of a generated body, in one streaming pass; cached per (kind, N)."""
    hasher, size = hashlib.sha256(), 0
    for chunk in GENERATORS[kind](n):
        hasher.update(chunk)
        size += len(chunk)
    return size, hasher.hexdigest()


GENERATORS = {"big": big_chunks, "lines": lines_chunks}


def generated(kind: str, n: int) -> Body:
    size, sha256 = digest_of(kind, n)
    return Body(size, sha256, lambda: GENERATORS[kind](n))


def big_output(n: int) -> bytes:
    """The whole body of ``big N`` at once (for tools and tests; the server streams it)."""
    return b"".join(big_chunks(n))


def lines_output(n: int) -> bytes:
    return b"".join(lines_chunks(n))


def count_argument(arg: str, limit: int) -> int:
    try:
        return parse_count(arg, limit)      # ASCII digits only: "²" and 5000 nines are refused
    except NumberError as exc:
        raise RequestError(str(exc)) from None


def run_body(cmd: str, body_size: int, body_sha256: str) -> tuple[dict, Body]:
    """Return (extra reply fields, reply body) for a whitelisted command."""
    name, _, arg = cmd.strip().partition(" ")
    if name == "help":
        return {}, Body.of(HELP.encode())
    if name == "echo":
        return {}, Body.of(arg.encode("utf-8", "replace"))
    if name == "big":
        return {}, generated("big", count_argument(arg, MAX_BIG))
    if name == "lines":
        return {}, generated("lines", count_argument(arg, MAX_LINES))
    if name == "hash":
        return ({"body_size": body_size, "body_sha256": body_sha256},
                Body.of(f"{body_size} {body_sha256}\n".encode()))
    raise RequestError(f"unknown command {name[:40]!r}; try 'help'")


def run_command(cmd: str, body_size: int, body_sha256: str) -> tuple[dict, bytes]:
    """``run_body`` with the body in memory (for the seed-style server in tests/negative)."""
    extra, body = run_body(cmd, body_size, body_sha256)
    return extra, b"".join(body.chunks())


# ----------------------------------------------------------------------- reading requests

@dataclass
class Request:
    fields: dict
    body_size: int
    body_sha256: str   # computed here, as the body streams past: the body is never stored


def read_request(conn: socket.socket, decoder: FrameDecoder) -> Request | None:
    """Read one request frame; None if the client closed cleanly between requests."""
    fields: dict = {}
    hasher = hashlib.sha256()
    body_size = 0
    deadline = None          # set once a frame has started: slow-drip clients are cut off
    while True:
        event = decoder.next_event()
        if event is NEED_DATA:
            wait = IDLE_TIMEOUT if deadline is None else deadline - time.monotonic()
            try:
                if wait <= 0:     # not settimeout(0): that makes the socket non-blocking instead
                    raise TimeoutError
                conn.settimeout(wait)
                data = conn.recv(65536)
            except TimeoutError:
                raise TimeoutError(f"request incomplete after {FRAME_TIMEOUT:.0f} s"
                                   if deadline else f"idle for {IDLE_TIMEOUT:.0f} s") from None
            if not data:                          # b'': the client closed its side
                decoder.end_of_stream()           # TruncatedFrame if it stopped mid-frame
                return None
            if deadline is None:
                deadline = time.monotonic() + FRAME_TIMEOUT
            decoder.receive_data(data)
        elif isinstance(event, Header):
            fields = event.fields
        elif isinstance(event, Data):
            hasher.update(event.data)
            body_size += len(event.data)
        else:                                     # EndOfFrame (sha256 already checked)
            return Request(fields, body_size, hasher.hexdigest())


# ----------------------------------------------------------------------- sending replies

class ChunkedSender:
    """sendall() in pieces of about CHUNK bytes: small writes are gathered, big ones go as is.

    Gathering matters for small frames: header and body in one write, not two (two small
    writes can meet Nagle's algorithm and the peer's delayed ACK and wait ~40 ms). Bounding
    matters for big ones: sendall() blocks while the client does not read (backpressure), so
    a slow reader costs us one chunk, not the whole reply.
    """

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.pending = bytearray()

    def write(self, data: bytes) -> None:
        self.pending += data
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.conn.sendall(self.pending)
            self.pending.clear()


def frame_pieces(fields: dict, body: Body, limit: int | None = None) -> Iterator[bytes]:
    """The reply frame as pieces: prefix + header, then the body (its first ``limit`` bytes)."""
    yield encode_header(fields, body.size, body.sha256)
    left = body.size if limit is None else limit
    for chunk in body.chunks():
        if left <= 0:
            return
        yield chunk[:left]
        left -= len(chunk)


def send_reply(conn: socket.socket, fields: dict, body: Body, mode: str) -> bool:
    """Send a reply frame the way ``mode`` asks; return False if the connection must close."""
    out = ChunkedSender(conn)
    if mode == "normal":
        for piece in frame_pieces(fields, body):
            out.write(piece)
    elif mode == "trickle":
        # TCP_NODELAY: each one-byte send leaves at once, in its own segment. Without it, Nagle's
        # algorithm may hold a byte back until the previous one is acknowledged (the peer may
        # delay that ACK by ~40 ms): the bytes still arrive in pieces, only slower.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        trickled = 0
        for piece in frame_pieces(fields, body):
            while trickled < TRICKLE_BYTES and piece:
                conn.sendall(piece[:1])
                time.sleep(TRICKLE_PAUSE)
                piece, trickled = piece[1:], trickled + 1
            out.write(piece)
    elif mode == "pipeline":
        for piece in frame_pieces(dict(fields, more=True, part=1), body):
            out.write(piece)
        second = {"ok": True, "cmd": fields.get("cmd"), "part": 2}
        out.write(encode_frame(second, SECOND_FRAME))      # back to back with the first
    elif mode == "truncate":
        header = encode_header(fields, body.size, body.sha256)
        if body.size:       # the full header, then half the body
            for piece in frame_pieces(fields, body, limit=body.size // 2):
                out.write(piece)
        else:               # no body to cut: cut the header instead
            out.write(header[:len(header) // 2])
        out.flush()
        return False
    elif mode == "corrupt":
        if not body.size:       # no byte to flip: announce a wrong sha256 instead
            body = Body(0, "0" * 64, lambda: iter(()))
        pieces = frame_pieces(fields, body)
        out.write(next(pieces))                  # prefix and header, with the body's true sha256
        flipped = False
        for piece in pieces:
            if not flipped and piece:            # then the body, its first byte flipped
                piece, flipped = bytes([piece[0] ^ 0x01]) + piece[1:], True
            out.write(piece)
    elif mode == "oversize":
        # No shutdown(SHUT_WR) here: an EOF would let a client that tries to read the announced
        # 4 GiB stop anyway. The connection stays open, as a slow server's would, until it gives up.
        conn.sendall(HEADER_LENGTH.pack(2**32 - 1) + b'{"ok": true, "size": 0')
        wait_for_client_to_close(conn, timeout=OVERSIZE_HOLD, half_close=False)
        return False
    out.flush()
    return True


def send_error(conn: socket.socket, message: str) -> None:
    """Tell the client what went wrong, in a frame it can read. The peer may be gone already."""
    try:
        send_frame(conn, {"ok": False, "error": message})
    except OSError:
        pass


def wait_for_client_to_close(conn: socket.socket, timeout: float = 10.0, half_close: bool = True) -> None:
    """Read and discard until the client closes (or ``timeout``), so our close sends FIN, not RST.

    Closing a socket whose receive queue still holds unread bytes makes the kernel send RST,
    and an RST can destroy the error frame we just sent before the client reads it.
    """
    try:
        if half_close:
            conn.shutdown(socket.SHUT_WR)    # our side is done: the client sees EOF after our data
        conn.settimeout(timeout)
        discarded = 0
        while discarded < 2**20 and (chunk := conn.recv(65536)):
            discarded += len(chunk)
    except OSError:
        pass


def answer(conn: socket.socket, request: Request) -> bool:
    """Run one request and send the reply; return False if the connection must close."""
    cmd, mode = request.fields.get("cmd"), request.fields.get("mode", "normal")
    try:
        if not isinstance(cmd, str):
            raise RequestError('the request header needs "cmd": a string such as "echo hi"')
        if mode not in MODES:
            raise RequestError(f"unknown mode {str(mode)[:40]!r}; modes: {', '.join(MODES)}")
        extra, body = run_body(cmd, request.body_size, request.body_sha256)
    except RequestError as exc:
        send_error(conn, str(exc))
        return True
    return send_reply(conn, {"ok": True, "cmd": cmd, **extra}, body, mode)


# ---------------------------------------------------------------------------- the server

def serve_client(conn: socket.socket, peer: str) -> None:
    """Answer one client's requests until it leaves or breaks the protocol."""
    decoder = FrameDecoder(max_body_size=MAX_REQUEST_BODY)
    served = 0
    with conn:
        while True:
            try:
                request = read_request(conn, decoder)
            except ChecksumMismatch as exc:       # the frame was consumed: still in step
                log(peer, f"ChecksumMismatch: {exc}")
                send_error(conn, f"ChecksumMismatch: {exc}")
                continue
            except (FramingError, TimeoutError) as exc:    # out of step, or too slow: close
                log(peer, f"closing after {served} requests: {type(exc).__name__}: {exc}")
                send_error(conn, f"{type(exc).__name__}: {exc}")
                wait_for_client_to_close(conn, timeout=1.0)
                return
            except OSError as exc:                # reset by the peer, etc.
                log(peer, f"connection error: {exc}")
                return
            if request is None:
                if served:
                    log(peer, f"closed after {served} requests")
                return
            served += 1
            log(peer, f"request {request.fields.get('cmd')!r} mode={request.fields.get('mode', 'normal')}")
            try:
                if not answer(conn, request):
                    return
            except OSError as exc:
                log(peer, f"client went away: {exc}")
                return


def serve_forever(listener: socket.socket) -> None:
    slots = threading.BoundedSemaphore(MAX_CLIENTS)
    while True:
        conn, (host, port, *_) = listener.accept()
        peer = f"{host}:{port}"
        if not slots.acquire(blocking=False):
            send_error(conn, f"server busy ({MAX_CLIENTS} clients connected); try again later")
            conn.close()
            continue

        def run(conn: socket.socket = conn, peer: str = peer) -> None:
            try:
                serve_client(conn, peer)
            except Exception as exc:          # a bug in one connection must not stop the others
                log(peer, f"internal error: {exc!r}")
            finally:
                slots.release()

        threading.Thread(target=run, name=peer, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=20030)
    args = parser.parse_args(argv)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # create_server sets SO_REUSEADDR, so a restart does not hit "Address already in use".
    with socket.create_server((args.host, args.port)) as listener:
        print(f"listening on {args.host}:{args.port}", flush=True)
        try:
            serve_forever(listener)
        except KeyboardInterrupt:
            print("shutting down", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
