"""What to point at in a ladder: per lesson, the few rows that carry the lesson.

Every note is computed from what the ladder shows (its rows, in their order), never assumed:
if accept() had returned before the handshake's ACK, the note would not say it came after.
"""
from __future__ import annotations

import bisect
import collections
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass

from .callog import RECEIVES
from .ladder import Ladder, Row, _port


def _first(rows: list[Row], test: Callable[[Row], bool]) -> Row | None:
    return next((r for r in rows if test(r)), None)


def _conn_rows(ladder: Ladder, conn_id: int) -> list[Row]:
    return [r for r in ladder.rows if r.conn == conn_id]


def _seg(row: Row, label: str) -> bool:
    if row.kind != "segment" or row.seg.proto != "tcp":
        return False
    flags = row.seg.flags.split("-")
    if label == "SYN":
        return flags == ["SYN"]
    if label == "SYN-ACK":
        return "SYN" in flags and "ACK" in flags
    return label in flags


def _add(row: Row | None, text: str) -> None:
    if row is not None:
        row.note = f"{row.note} {text}".strip()


def handshake(ladder: Ladder) -> None:
    """The three-way handshake of the first connection that has one, and where accept() returns."""
    for conn in ladder.connections.values():
        rows = _conn_rows(ladder, conn.id)
        syn = _first(rows, lambda r: _seg(r, "SYN") and r.direction == "c2s")
        synack = _first(rows, lambda r: _seg(r, "SYN-ACK"))
        if not syn or not synack:
            continue
        after = rows[rows.index(synack) + 1:]
        ack = _first(after, lambda r: r.kind == "segment" and r.direction == "c2s" and "ACK" in r.seg.flags)
        _add(syn, "handshake 1/3: connect() makes the client's kernel send SYN.")
        _add(synack, "2/3: the server's KERNEL answers (the socket is in listen()); no accept() is involved.")
        accept = _first(rows, lambda r: r.kind == "call" and r.call.call == "accept")
        if ack:
            _add(ack, "3/3: established - the connection waits in the listen backlog.")
        if accept and ack and ladder.rows.index(accept) > ladder.rows.index(ack):
            _add(accept, f"accept() returns only after the handshake, with a NEW socket (fd {accept.call.ret}) "
                         f"for client port {_port(conn.client)}; the listening socket stays open for the next.")
        return


def new_port_each_time(ladder: Ladder) -> None:
    """basic: every connect() gets a fresh ephemeral port from the client's kernel."""
    previous = None
    for conn in ladder.connections.values():
        if conn.proto != "tcp":
            continue
        syn = _first(_conn_rows(ladder, conn.id), lambda r: _seg(r, "SYN") and r.direction == "c2s")
        if syn and previous:
            _add(syn, f"connection #{conn.id}: a new client port {_port(conn.client)} "
                      f"(#{previous.id} used {_port(previous.client)}).")
        if syn:
            previous = conn


def refused(ladder: Ladder) -> None:
    """A SYN answered by RST: nothing listens there, connect() fails with ECONNREFUSED."""
    for conn in ladder.connections.values():
        rows = _conn_rows(ladder, conn.id)
        syn = _first(rows, lambda r: _seg(r, "SYN"))
        rst = _first(rows, lambda r: _seg(r, "RST") and r.direction == "s2c")
        if syn and rst and not _first(rows, lambda r: _seg(r, "SYN-ACK")):
            _add(rst, f"nothing listens on port {_port(conn.server)}: the server's kernel answers the SYN "
                      "with RST, and connect() fails with ECONNREFUSED (errno 111).")
            return


def coalesced_recv(ladder: Ladder) -> None:
    """sticky: one recv() returns the bytes of several segments (several send() calls)."""
    pending: dict[int, list[Row]] = {}
    for row in ladder.rows:
        if row.kind == "segment" and row.direction == "s2c" and row.seg.length:
            pending.setdefault(row.conn, []).append(row)
        elif row.kind == "call" and row.side == "client" and row.call.call.startswith("recv") and row.call.n:
            segs = pending.pop(row.conn, [])
            if len(segs) >= 2 and sum(s.seg.length for s in segs) == row.call.n:
                for k, s in enumerate(segs, 1):
                    _add(s, f"segment {k} of {len(segs)}: one server send(), {s.seg.length} bytes.")
                _add(row, f"ONE recv() returns all {row.call.n} bytes of {len(segs)} segments: TCP keeps no "
                          "message boundaries (粘包 sticky packets).")
                return


NAGLE_MS = 10


def held_by_nagle(ladder: Ladder) -> None:
    """sticky: a small send that leaves the server long after its sendall(), while the segment
    before it is still unacknowledged - Nagle's algorithm waiting for the peer's (delayed) ACK."""
    for i, row in enumerate(ladder.rows):
        if not (row.kind == "call" and row.side == "server" and row.call.call in ("send", "sendall")
                and row.call.n):
            continue
        later = ladder.rows[i + 1:]
        seg = _first(later, lambda r, conn=row.conn: r.kind == "segment" and r.conn == conn
                     and r.direction == "s2c" and r.seg.length)
        if seg is None or seg.seg.length != row.call.n or seg.t - row.t < NAGLE_MS * 1_000_000:
            continue
        earlier = [r for r in ladder.rows[:i] if r.kind == "segment" and r.conn == row.conn
                   and r.direction == "s2c" and r.seg.length]
        if not earlier:
            continue
        # the segment before belongs to the same reply: no recv() on the server in between
        between = ladder.rows[ladder.rows.index(earlier[-1]):i]
        if any(r.kind == "call" and r.side == "server" and r.call.call.startswith("recv") for r in between):
            continue
        _add(seg, f"this segment left {(seg.t - row.t) / 1e6:.0f} ms after its sendall(): Nagle's algorithm "
                  "holds a small segment until the one before it is ACKed, and the client's kernel delays that "
                  "ACK (--acks shows it). TCP_NODELAY sends it at once; recv() still gets both (nodelay-no-cure).")
        return


def first_fin(ladder: Ladder) -> None:
    """loops: the side whose close() came first sends the first FIN, and keeps TIME_WAIT (every connection)."""
    for conn in ladder.connections.values():
        rows = _conn_rows(ladder, conn.id)
        fin = _first(rows, lambda r: _seg(r, "FIN"))
        if not fin:
            continue
        closer = "client" if fin.direction == "c2s" else "server"
        close = _first(rows, lambda r: r.kind == "call" and r.call.call in ("close", "shutdown"))
        because = (f"its {close.call.call}() came first" if close and close.side == closer
                   else "it closed first")
        _add(fin, f"the first FIN comes from the {closer}: {because}. The {closer} is the one that will "
                  "sit in TIME_WAIT (about 60 s on Linux).")


def eof(ladder: Ladder) -> None:
    """recv() returning b'' is how a program learns that the peer's FIN arrived."""
    row = _first(ladder.rows, lambda r: r.kind == "call" and r.call.call.startswith("recv") and r.call.n == 0
                 and r.conn is not None and ladder.connections[r.conn].proto == "tcp")
    _add(row, "recv() returned b'': the peer's FIN has arrived - end of stream, not an error.")


def address_in_use(ladder: Ladder) -> None:
    """loops: a bind() that fails with EADDRINUSE, and what holds the port."""
    row = _first(ladder.rows, lambda r: r.kind == "call" and r.call.call == "bind" and r.call.errno == 98)
    if row is None:
        return
    port = _port(row.call.addr) if row.call.addr else "?"
    fins = [r for r in ladder.rows if _seg(r, "FIN") and r.t < row.t and r.conn
            and _port(ladder.connections[r.conn].server) == port]
    held = ""
    if fins and fins[0].direction == "s2c":
        held = " The last connection on it was closed by the server first, so its TIME_WAIT is on this machine."
    _add(row, f"Address already in use (errno 98) for port {port}.{held}")


def served_side_by_side(ladder: Ladder) -> None:
    """socketserver: a second connection served while the first is still open (no FIN yet) - each
    connection has its own thread, so an idle client holds up nobody."""
    open_since: dict[int, Row] = {}
    closed: set[int] = set()
    for row in ladder.rows:
        if row.kind == "segment" and "FIN" in row.seg.flags:
            closed.add(row.conn)
        elif row.kind == "call" and row.side == "server" and row.call.call == "accept" and row.conn:
            open_since.setdefault(row.conn, row)
        elif (row.kind == "call" and row.side == "server" and row.call.call in ("send", "sendall") and row.conn
              and row.conn != min(open_since, default=row.conn)):
            first = min(open_since)
            if first in closed:
                continue
            thread = row.call.extra.get("thread")
            _add(row, f"connection #{row.conn} is answered{f' (by {thread})' if thread else ''} while #{first} "
                      "is still open and idle: ThreadingTCPServer runs each connection's handle() in a thread "
                      "of its own.")
            return


# -- udp ------------------------------------------------------------------------------------------
def _udp(ladder: Ladder, row: Row) -> bool:
    return row.conn is not None and ladder.connections[row.conn].proto == "udp"


def datagram_boundaries(ladder: Ladder) -> None:
    """udp: datagrams queued together still come out one per recv(), each exactly as sent."""
    pending: dict[int, list[Row]] = {}
    for row in ladder.rows:
        if row.kind == "segment" and row.seg.proto == "udp" and row.direction == "s2c":
            pending.setdefault(row.conn, []).append(row)
        elif (row.kind == "call" and row.side == "client" and row.call.call in RECEIVES and row.call.n is not None
              and _udp(ladder, row) and not row.call.extra.get("flags")):
            queued = pending.get(row.conn, [])
            if len(queued) >= 3:
                recvs = [r for r in ladder.rows[ladder.rows.index(row):] if r.kind == "call" and r.side == "client"
                         and r.conn == row.conn and r.call.call in RECEIVES][:len(queued)]
                if [r.call.n for r in recvs] == [q.seg.length for q in queued]:
                    _add(queued[0], f"{len(queued)} datagrams queued at the client before it reads.")
                    _add(recvs[0], f"recv 1 of {len(queued)}: exactly datagram 1 ({recvs[0].call.n} bytes) - UDP "
                                   "keeps the boundaries of every sendto() (compare the sticky lesson).")
                    for k, r in enumerate(recvs[1:], 2):
                        _add(r, f"recv {k} of {len(queued)}: exactly datagram {k}.")
                    pending.clear()
                    return
            pending.pop(row.conn, None)


def empty_datagram(ladder: Ladder) -> None:
    """udp: b'' is a datagram of 0 bytes, not the end of anything."""
    row = _first(ladder.rows, lambda r: r.kind == "call" and r.side == "client" and r.call.call in RECEIVES
                 and r.call.n == 0 and _udp(ladder, r))
    _add(row, "a datagram of 0 bytes is a real message: recvfrom() returns b'', and it is not EOF - UDP has no "
              "connection to end.")


def truncated_datagram(ladder: Ladder) -> None:
    """udp: a datagram longer than the receive buffer is cut; the rest is thrown away."""
    last: dict[int, Row] = {}
    for row in ladder.rows:
        if row.kind == "segment" and row.seg.proto == "udp" and row.direction == "s2c":
            last.setdefault(row.conn, row)
            if row.seg.fragments > 1:
                _add(row, f"one datagram of {row.seg.length} bytes, in {row.seg.fragments} IP fragments (MTU "
                          "1500); the receiver gets it whole or not at all.")
        elif (row.kind == "call" and row.side == "client" and "MSG_PEEK" in (row.call.extra.get("flags") or [])
              and "MSG_TRUNC" in row.call.extra["flags"]):
            _add(row, f"MSG_PEEK|MSG_TRUNC: Linux says how long the waiting datagram really is ({row.call.n} "
                      "bytes) and leaves it queued.")
        elif row.kind == "call" and row.side == "client" and "MSG_TRUNC" in (row.call.extra.get("msg_flags") or []):
            seg = last.get(row.conn)
            size = seg.seg.length if seg else None
            lost = f"the other {size - row.call.n} bytes of the {size}-byte datagram are gone" if size else \
                "the rest of the datagram is gone"
            _add(row, f"{row.call.call}({row.call.req}) got {row.call.n} bytes and MSG_TRUNC: {lost}; "
                      "recvfrom() would not even say so.")
            after = _first(ladder.rows[ladder.rows.index(row) + 1:], lambda r, conn=row.conn: r.kind == "call"
                           and r.side == "client" and r.conn == conn and r.call.call in RECEIVES and r.call.n)
            _add(after, "the next recv() is the next datagram, whole: nothing of the cut one is left over.")
            return


def relay_drops(ladder: Ladder) -> None:
    """udp: the datagrams the seeded relay dropped, where they died."""
    seen: set[str] = set()
    for row in ladder.drops:
        d = row.drop
        if d.direction in seen:
            continue
        seen.add(d.direction)
        if d.direction == "up":
            _add(row, f"the relay dropped datagram #{d.index} of this flow on its way in: the server never sees "
                      "it, nothing on the wire, no error anywhere. The seed decides which: the same ones every run.")
        else:
            _add(row, f"the server's echo #{d.index} left the server (the capture saw it) and the relay dropped "
                      "it: the client waits for an answer that will not come.")


# -- framing (and ftp, which speaks its frames) ----------------------------------------------------
def _streams(ladder: Ladder) -> dict[tuple[int, str], list[Row]]:
    """The data segments of each connection and direction, in order (retransmissions left out)."""
    out: dict[tuple[int, str], list[Row]] = {}
    seen: set[tuple] = set()
    for row in ladder.segments:
        if row.seg.proto == "tcp" and row.seg.length and (row.conn, row.direction, row.seg.seq) not in seen:
            seen.add((row.conn, row.direction, row.seg.seq))
            out.setdefault((row.conn, row.direction), []).append(row)
    return out


@dataclass
class Placed:
    """A frame found in a connection's byte stream, with the segments it travelled in."""
    conn: int
    direction: str
    frame: Frame
    first: int          # index into rows of the segment holding its first byte
    last: int           # ... and its last byte (as far as the stream goes)
    rows: list[Row]


def placed_frames(ladder: Ladder, resync: bool = False) -> list[Placed]:
    out = []
    for (conn, direction), rows in _streams(ladder).items():
        starts = list(itertools.accumulate((r.seg.length for r in rows[:-1]), initial=0))
        for f in frame_spans(b"".join(r.seg.payload for r in rows), resync):
            out.append(Placed(conn, direction, f, bisect.bisect_right(starts, f.start) - 1,
                              bisect.bisect_right(starts, f.end - 1) - 1, rows))
    return out


def stream_length(rows: list[Row]) -> int:
    """Bytes of a connection's direction, by TCP sequence numbers: right even if the capture
    missed a packet (the payload bytes would then be short)."""
    first = rows[0].seg.seq
    return max((r.seg.seq - first) % 2**32 + r.seg.length for r in rows)


def framed(ladder: Ladder) -> None:
    """framing: one frame in many segments (trickle), and whole frames sharing one segment (pipeline);
    the first of each, per connection and direction."""
    split: set[tuple] = set()
    whole: collections.Counter = collections.Counter()
    frames = placed_frames(ladder)
    for p in frames:
        stream = (p.conn, p.direction)
        if stream not in split and p.last - p.first + 1 >= 4:
            split.add(stream)
            what = p.frame.header.get("cmd") or p.frame.header.get("op") or p.frame.header.get("code") or "?"
            _add(p.rows[p.first], f"one {p.frame.end - p.frame.start}-byte frame ({what!r}) in "
                                  f"{p.last - p.first + 1} segments: recv() gets pieces; recv_exact loops until "
                                  "the 4-byte prefix, the header and the body are each whole.")
        if p.first == p.last:
            whole[(stream, p.first)] += 1
    shared: set[tuple] = set()
    for p in frames:
        stream = (p.conn, p.direction)
        count = whole[(stream, p.first)]
        if count >= 2 and stream not in shared:
            shared.add(stream)
            _add(p.rows[p.first], f"{count} whole frames in ONE segment: only the length prefixes say where "
                                  "each ends; a reader that takes what one recv() returns as one message merges "
                                  "them.")


def resumed_upload(ladder: Ladder) -> None:
    """ftp: an upload cut short, and the next put resuming from the offset the server names.

    Found by the ops and fields of the frames' JSON headers (put, data + offset, the 350 reply and
    its offset), never by a frame's exact layout: bytes the framing layer does not count (a trailer)
    are skipped over."""
    frames = placed_frames(ladder, resync=True)
    cut_seen = False
    for conn in ladder.connections:
        mine = [p for p in frames if p.conn == conn]
        data = [p for p in mine if p.direction == "c2s" and p.frame.header.get("op") == "data"]
        codes = [p.frame.header.get("code") for p in mine if p.direction == "s2c"]
        if not data:
            continue
        p = data[-1]
        offset = p.frame.header.get("offset")
        announced = p.frame.header.get("size") or 0
        sent = stream_length(p.rows) - p.frame.body_start
        fin = _first(_conn_rows(ladder, conn), lambda r: _seg(r, "FIN") and r.direction == "c2s")
        if not cut_seen and 226 not in codes and fin and sent < announced:
            cut_seen = True
            _add(fin, f"the upload is cut: the client closes after {sent} of the {announced} body bytes of its "
                      f"data frame (offset {offset}); no 226 - the server keeps the {sent} bytes as a hidden "
                      "partial.")
        elif cut_seen and isinstance(offset, int) and offset > 0:
            accepted = next((q for q in mine if q.direction == "s2c" and q.frame.header.get("code") == 350), None)
            if accepted is not None:
                _add(accepted.rows[accepted.first], f"the same put again: 350 with offset {offset} - the server "
                                                    f"already holds {offset} bytes of this file (same size and "
                                                    "digest).")
            _add(p.rows[p.first], f"data from offset {offset}: only the remaining {announced} bytes cross the "
                                  "wire.")
            return


@dataclass
class Frame:
    start: int
    end: int           # after the body (or where the stream ends)
    header: dict
    body_start: int = 0


def frame_spans(stream: bytes, resync: bool = False, limit: int = 65536) -> list[Frame]:
    """The frames of the framing lesson in a byte stream: '!I' header length, JSON header, "size"
    body bytes (services/framing/codec.py has the rules; this only finds the edges, for the notes).
    ``resync``: after bytes that are no frame, look for the next plausible one instead of stopping
    (a protocol may add bytes the framing layer does not count, e.g. a trailer)."""
    out, pos = [], 0
    while pos + 4 <= len(stream):
        found = _frame_at(stream, pos, limit)
        if found is None:
            if not resync:
                break
            nxt = stream.find(b"{", pos + 5)
            if nxt < 0:
                break
            pos = nxt - 4
            continue
        out.append(found)
        pos = found.end
    return out


def _frame_at(stream: bytes, pos: int, limit: int) -> Frame | None:
    size = int.from_bytes(stream[pos:pos + 4], "big")
    if not 2 <= size <= limit or stream[pos + 4:pos + 5] != b"{" or pos + 4 + size > len(stream):
        return None
    try:
        header = json.loads(stream[pos + 4:pos + 4 + size])
    except (ValueError, RecursionError):        # RecursionError: deep nesting, e.g. bad-input's attack
        return None
    if not isinstance(header, dict):
        return None
    body = header.get("size") if isinstance(header.get("size"), int) and header.get("size") > 0 else 0
    return Frame(pos, min(pos + 4 + size + body, len(stream)), header, pos + 4 + size)


DEFAULT = (handshake, refused, first_fin)
RULES: dict[str, tuple] = {
    "basic": (handshake, new_port_each_time, refused),
    "sticky": (handshake, coalesced_recv, held_by_nagle),
    "loops": (handshake, first_fin, eof, address_in_use, refused),
    "udp": (datagram_boundaries, empty_datagram, truncated_datagram, relay_drops),
    "framing": (handshake, framed),
    "ftp": (handshake, resumed_upload),
    "socketserver": (handshake, served_side_by_side, first_fin),
}


def annotate(ladder: Ladder, lesson: str) -> Ladder:
    """The lesson's notes on the ladder. A rule that fails on bytes it did not expect loses only
    its own note, said on the first row: the calls, the packets and the grading stay whole."""
    for rule in RULES.get(lesson, DEFAULT):
        try:
            rule(ladder)
        except Exception as exc:               # noqa: BLE001 - a note is never worth the report
            _add(ladder.rows[0] if ladder.rows else None,
                 f"(the {rule.__name__!r} note could not be made: {type(exc).__name__}: {exc}; "
                 "the rows below are complete)")
    return ladder
