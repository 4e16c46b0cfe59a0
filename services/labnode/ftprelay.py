"""On the FTP server's machine: a relay between the client under test and the server (check ftp --client).

    python3 -m labnode.ftprelay --port 20063 --to-port 20060 --log /tmp/relay.jsonl [--trickle]

It forwards every byte both ways and writes down each frame it sees (docs/ftp-protocol.md §1): the
client's requests (op, offset, body size, the raw length prefix) and the server's replies (code,
body size), one JSON object a line. So a check can say *which* request a client sent wrong, or that
it sent none, instead of only "exit 1".

``--trickle`` delivers every server->client frame in pieces, with TCP_NODELAY and a pause after each
piece (30 ms; 250 ms in the greeting): the 4-byte prefix as 1 + 3 bytes, the JSON header in two
parts, the body in 16 KiB parts.
On a real network that happens whenever a segment is lost or a window is small; on the Docker
bridge it never does, so a client that takes one recv() for "the prefix" or "the header" passes
everywhere else. The relay notes where in the stream the client was when it hung up.

Bounded: at most --max-connections connections, --max-seconds in all; SIGTERM ends it at once.
"""
from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_HEADER = 65536
PAUSE = 0.03             # seconds after a piece of a prefix or header (a client must see it alone)
GREETING_PAUSE = 0.25    # the greeting's pieces wait longer: a client that read a piece wrongly has time to
                         # fail (print a traceback, exit) before the next arrives, so "where it hung up" is exact
BODY_PIECE = 16 * 1024
BODY_PAUSE = 0.002
KEPT_FIELDS = ("op", "code", "path", "offset", "file_size", "user", "after", "msg")


def recv_or_eof(sock: socket.socket) -> bytes:
    """What has arrived; b"" for EOF or a connection error alike (both end that direction)."""
    try:
        return sock.recv(65536)
    except OSError:
        return b""


@dataclass
class Piece:
    """Bytes to deliver, and where they sit in the stream (for 'the client hung up here')."""

    data: bytes
    frame: int                 # 1-based index of the frame in its direction
    part: str                  # prefix | header | body | raw
    end: int                   # bytes of that part delivered once this piece is out
    of: int                    # the part's length
    code: int | None = None    # the reply code (known once the header was parsed)
    last: bool = False         # the frame's last piece


@dataclass
class FrameParser:
    """Splits one direction's bytes into frames (prefix, header, body) as they arrive.

    Never raises: bytes that cannot be a frame (a prefix of 0 or over 64 KiB, a header that is not
    JSON) are logged once and the rest of that direction is passed on raw."""

    direction: str
    log: Callable[[dict], None]
    buf: bytearray = field(default_factory=bytearray)
    state: str = "prefix"
    frame: int = 0
    length: int = 0
    body_left: int = 0
    code: int | None = None
    prefix_hex: str = ""
    body_size: int = 0

    def feed(self, data: bytes) -> list[Piece]:
        pieces: list[Piece] = []
        self.buf += data
        while self.buf:
            if self.state == "raw":
                pieces.append(Piece(bytes(self.buf), self.frame, "raw", len(self.buf), len(self.buf)))
                self.buf.clear()
            elif self.state == "prefix":
                if len(self.buf) < 4:
                    break
                prefix = bytes(self.buf[:4])
                del self.buf[:4]
                self.frame += 1
                self.code = None
                (self.length,) = struct.unpack("!I", prefix)
                pieces += [Piece(prefix[:1], self.frame, "prefix", 1, 4), Piece(prefix[1:], self.frame, "prefix", 4, 4)]
                if not 0 < self.length <= MAX_HEADER:
                    self.log({"ev": "bad-prefix", "dir": self.direction, "frame": self.frame, "prefix": prefix.hex(),
                              "as_network_order": self.length, "as_little_endian": struct.unpack("<I", prefix)[0],
                              "next": bytes(self.buf[:24]).decode("utf-8", "replace")})
                    self.state = "raw"
                    continue
                self.prefix_hex = prefix.hex()
                self.state = "header"
            elif self.state == "header":
                if len(self.buf) < self.length:
                    break
                raw = bytes(self.buf[:self.length])
                del self.buf[:self.length]
                halves = [raw[:max(1, self.length // 2)], raw[max(1, self.length // 2):]]
                done = 0
                try:
                    header = json.loads(raw.decode("utf-8"))
                    if not isinstance(header, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    self.log({"ev": "bad-header", "dir": self.direction, "frame": self.frame, "error": str(exc)[:120],
                              "start": raw[:60].decode("utf-8", "replace")})
                    header = None
                code = header.get("code") if header else None
                self.code = code if isinstance(code, int) else None
                size = (header or {}).get("size") or 0
                size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 0
                for part in (p for p in halves if p):
                    done += len(part)
                    pieces.append(Piece(part, self.frame, "header", done, self.length, self.code,
                                        last=header is not None and done == self.length and not size))
                if header is None:
                    self.state = "raw"
                    continue
                entry = {"ev": "frame", "dir": self.direction, "frame": self.frame, "prefix": self.prefix_hex,
                         "length": self.length, "body": size}
                entry.update({k: header[k] if k != "msg" else str(header[k])[:80] for k in KEPT_FIELDS if k in header})
                self.log(entry)
                self.body_left = self.body_size = size
                self.state = "body" if size else "prefix"
            elif self.state == "body":
                take = min(self.body_left, len(self.buf), BODY_PIECE)
                chunk = bytes(self.buf[:take])
                del self.buf[:take]
                self.body_left -= take
                pieces.append(Piece(chunk, self.frame, "body", self.body_size - self.body_left, self.body_size,
                                    self.code, last=not self.body_left))
                if not self.body_left:
                    self.state = "prefix"
        return pieces


class Relay:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = open(args.log, "w", encoding="utf-8")
        self.deadline = time.monotonic() + args.max_seconds

    def log(self, entry: dict) -> None:
        self.out.write(json.dumps(entry, sort_keys=True) + "\n")
        self.out.flush()

    def serve(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", self.args.port))
        listener.listen(8)
        print(f"relay listening on 0.0.0.0:{self.args.port} -> {self.args.to_host}:{self.args.to_port}"
              + (" (trickle)" if self.args.trickle else ""), flush=True)
        for conn in range(1, self.args.max_connections + 1):
            listener.settimeout(max(0.1, self.deadline - time.monotonic()))
            try:
                client, peer = listener.accept()
            except TimeoutError:
                return
            self.log({"ev": "connect", "conn": conn, "peer": f"{peer[0]}:{peer[1]}"})
            try:
                self.relay(conn, client)
            finally:
                client.close()

    def relay(self, conn: int, client: socket.socket) -> None:
        up = socket.create_connection((self.args.to_host, self.args.to_port), timeout=10)
        if self.args.trickle:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        requests = FrameParser("c2s", lambda e: self.log({**e, "conn": conn}))
        replies = FrameParser("s2c", lambda e: self.log({**e, "conn": conn}))
        queue: deque[Piece] = deque()
        last: Piece | None = None          # the last piece the client was given
        server_open, fin_sent, reason, next_send = True, False, "relay stopped", 0.0
        linger = None                      # after the server's FIN: how long we wait for the client's
        try:
            while True:
                now = time.monotonic()
                if now > self.deadline or (linger is not None and now > linger):
                    reason = "relay time limit"
                    break
                if not server_open and not queue and not fin_sent:
                    fin_sent, linger = True, now + 10
                    try:
                        client.shutdown(socket.SHUT_WR)    # the server's FIN, passed on
                    except OSError:
                        pass
                watch = [client] + ([up] if server_open and len(queue) < 256 else [])
                readable, _, _ = select.select(watch, [], [], max(0.0, next_send - now) if queue else 0.5)
                if client in readable:
                    data = recv_or_eof(client)
                    if not data:
                        reason = "the client closed the connection"
                        break
                    requests.feed(data)
                    try:
                        up.sendall(data)
                    except OSError:
                        pass
                if up in readable:
                    data = recv_or_eof(up)
                    if not data:
                        server_open = False
                    else:
                        pieces = replies.feed(data)
                        if self.args.trickle:
                            queue.extend(pieces)
                        elif pieces:
                            queue.append(Piece(data, **{k: getattr(pieces[-1], k)
                                                        for k in ("frame", "part", "end", "of", "code", "last")}))
                if queue and time.monotonic() >= next_send:
                    piece = queue.popleft()
                    try:
                        client.sendall(piece.data)
                    except OSError:
                        reason = "the client reset the connection"
                        break
                    last = piece
                    if self.args.trickle:
                        pause = PAUSE if piece.frame > 1 else GREETING_PAUSE
                        next_send = time.monotonic() + (BODY_PAUSE if piece.part == "body" else pause)
        finally:
            at = None if last is None else {"frame": last.frame, "part": last.part, "delivered": last.end,
                                            "of": last.of, "code": last.code, "frame_complete": last.last}
            self.log({"ev": "closed", "conn": conn, "reason": reason, "client_stopped_at": at,
                      "undelivered": sum(len(p.data) for p in queue)})
            up.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m labnode.ftprelay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="where the client under test connects")
    parser.add_argument("--to-host", default="127.0.0.1")
    parser.add_argument("--to-port", type=int, required=True, help="the FTP server")
    parser.add_argument("--log", required=True, help="JSON lines: every frame both ways")
    parser.add_argument("--trickle", action="store_true", help="deliver the server's frames in small pieces")
    parser.add_argument("--max-connections", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Relay(args).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
