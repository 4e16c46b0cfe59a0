"""What to point at in a ladder: per lesson, the few rows that carry the lesson.

Every note is computed from what the ladder shows (its rows, in their order), never assumed:
if accept() had returned before the handshake's ACK, the note would not say it came after.
"""
from __future__ import annotations

from collections.abc import Callable

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


DEFAULT = (handshake, refused, first_fin)
RULES: dict[str, tuple] = {
    "basic": (handshake, new_port_each_time, refused),
    "sticky": (handshake, coalesced_recv, held_by_nagle),
    "loops": (handshake, first_fin, eof, address_in_use, refused),
}


def annotate(ladder: Ladder, lesson: str) -> Ladder:
    for rule in RULES.get(lesson, DEFAULT):
        rule(ladder)
    return ladder
