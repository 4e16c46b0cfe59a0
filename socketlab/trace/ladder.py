"""The ladder: socket calls and packets merged into one sequence diagram, and drawn as text.

    client calls            packets on the wire              server calls
    connect(…:20020)…
                            ── SYN ──────────────────▶
                            ◀────────────── SYN-ACK ──
                            ── ACK ──────────────────▶
    connect → ok, :40112                                     accept → fd 5 ← :40112

Calls come from the call log of each node (callog.py), packets from the capture in the server's
network namespace (wire.py). Both carry wall-clock nanoseconds from the one host clock, so the
merge is a sort by time; the *connection* of each record comes from its addresses: a call knows
its socket's local and peer address, a packet its source and destination, and the two ends of a
TCP connection (or a UDP exchange) are the same pair of addresses seen from both sides.

Only the client's and the server's calls are drawn. A node in between (the udp lesson's relay)
is part of the wire: its own socket calls are left out, and the datagrams it dropped (its log
says when and which, relaylog.py) are drawn as ✘ where they died.

Calls that *wait* (accept, connect, recv) are drawn where they return - that is when the program
learns something - and, when packets of their connection arrive while they wait, also where they
began. Calls that *act* (send, close, shutdown, ...) are drawn where they began: what they cause
on the wire comes after.
"""
from __future__ import annotations

import itertools
import os
import sys
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field

from .callog import RECEIVES, SENDS, WAITS, Call
from .relaylog import Drop
from .wire import Segment

WIDTH = 100
SIDES = ("client", "server")     # the roles whose calls are drawn; any other node is part of the wire
TIME_W, CONN_W, SIDE_W, WIRE_W = 8, 2, 29, 28     # 8+1+2+1+29+1+28+1+29 = 100 columns


@dataclass
class Connection:
    id: int
    client: str          # "10.77.0.31:40112"
    server: str          # "10.77.0.30:20020"
    proto: str = "tcp"

    def as_dict(self) -> dict:
        return {"id": self.id, "client": self.client, "server": self.server, "proto": self.proto}


@dataclass
class Row:
    t: int
    kind: str                      # "call" (a call, at its return for waits), "wait" (a wait begins),
                                   # "segment", "drop" (a datagram the relay dropped)
    side: str                      # "client", "server" or "wire"
    conn: int | None
    call: Call | None = None
    seg: Segment | None = None
    direction: str = ""            # segments and drops: "c2s" (client to server) or "s2c"
    note: str = ""
    drop: Drop | None = None

    def as_dict(self) -> dict:
        d = {"t": self.t, "kind": self.kind, "side": self.side, "conn": self.conn}
        if self.call:
            d["call"] = self.call.as_dict()
        if self.seg:
            d["segment"] = {**self.seg.as_dict(), "direction": self.direction}
        if self.drop:
            d["drop"] = {**self.drop.as_dict(), "direction": self.direction}
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class Ladder:
    title: str
    rows: list[Row]
    connections: dict[int, Connection]
    roles: dict[str, str] = field(default_factory=dict)     # side -> "10.77.0.31 (python3 -m ...)"
    hidden_acks: int = 0
    start: int = 0
    programs: dict[str, list[str]] = field(default_factory=dict)   # side -> ["sticky/probes.py coalesce", ...]

    @property
    def segments(self) -> list[Row]:
        return [r for r in self.rows if r.kind == "segment"]

    @property
    def drops(self) -> list[Row]:
        return [r for r in self.rows if r.kind == "drop"]

    def calls(self, side: str | None = None, name: str | set[str] | None = None) -> list[Row]:
        names = {name} if isinstance(name, str) else name
        return [r for r in self.rows if r.kind == "call" and (side is None or r.side == side)
                and (names is None or r.call.call in names)]

    def as_dict(self) -> dict:
        return {"title": self.title, "start": self.start, "hidden_acks": self.hidden_acks, "roles": self.roles,
                "programs": self.programs,
                "connections": [c.as_dict() for c in self.connections.values()],
                "events": [r.as_dict() for r in self.rows]}


# -- merging --------------------------------------------------------------------------------------
def _host(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[0].strip("[]")


def _port(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[1]


class _Endpoints:
    """Turns a record's addresses into a connection key, with wildcard locals made concrete."""

    def __init__(self, node_ips: dict[str, str]) -> None:
        self.node_ips = node_ips

    def local(self, call: Call) -> str | None:
        if not call.local:
            return None
        host = _host(call.local)
        if host in ("0.0.0.0", "::", "") and call.role in self.node_ips:
            return f"{self.node_ips[call.role]}:{_port(call.local)}"
        return call.local

    def key(self, call: Call) -> frozenset | None:
        local = self.local(call)
        return frozenset((local, call.peer)) if local and call.peer else None


def _lives(calls: list[Call]) -> dict[tuple, list[int]]:
    """Indexes of the calls made on each socket, from socket() to close() (an fd is reused after)."""
    lives: dict[tuple, list[int]] = {}
    serial: dict[tuple, int] = {}
    for i, c in enumerate(calls):
        sock = (c.role, c.pid, c.fd)
        if c.call == "socket":
            serial[sock] = serial.get(sock, 0) + 1
        lives.setdefault((*sock, serial.get(sock, 0)), []).append(i)
        if c.call == "close":
            serial[sock] = serial.get(sock, 0) + 1
    return lives


def _protos(calls: list[Call]) -> dict[int, str]:
    """Each call's transport, from the socket() call that made its socket ("tcp" when not seen)."""
    out = {}
    for members in _lives(calls).values():
        made = next((calls[i] for i in members if calls[i].call == "socket"), None)
        kind = (made.extra.get("args") or ["", ""])[-1] if made else ""
        proto = "udp" if kind == "SOCK_DGRAM" else "tcp"
        out.update((i, proto) for i in members)
    return out


def _socket_keys(calls: list[Call], ends: _Endpoints) -> dict[int, frozenset | None]:
    """Each call's connection, also for calls made before the socket was connected (socket,
    setsockopt, connect's own start) and after (close): all calls on one socket, from socket()
    to close(), belong to the connection that socket had. accept() belongs to the connection it
    returns, never to the listening socket."""
    lives = _lives(calls)
    life_of = {i: life for life, members in lives.items() for i in members}
    life_key: dict[tuple, frozenset | None] = {}
    for life, members in lives.items():
        keys = {ends.key(calls[i]) for i in members if calls[i].call != "accept"} - {None}
        life_key[life] = keys.pop() if len(keys) == 1 else None
    out = {}
    for i, c in enumerate(calls):
        own = ends.key(c)
        out[i] = own if own is not None else (None if c.call == "accept" else life_key[life_of[i]])
    return out


def merge(calls: Iterable[Call], segments: Iterable[Segment], node_ips: dict[str, str],
          window: tuple[int, int] | None = None, title: str = "", show_acks: bool = False,
          drops: Iterable[Drop] = ()) -> Ladder:
    """One ladder from the calls of the client and server nodes, the packets and the relay's drops,
    for the time ``window`` (ns)."""
    calls = sorted((c for c in calls if c.role in SIDES), key=lambda c: c.t)
    segments = sorted(segments, key=lambda s: s.t)
    server_ips = {ip for role, ip in node_ips.items() if role == "server"}
    ends = _Endpoints(node_ips)
    keys = _socket_keys(calls, ends)
    protos = _protos(calls)

    def concrete(endpoint: str, role: str) -> str:
        host = _host(endpoint)
        return f"{node_ips[role]}:{_port(endpoint)}" if host in ("0.0.0.0", "::") and role in node_ips else endpoint

    drops = [(d, concrete(d.src, d.role), concrete(d.dst, d.role)) for d in sorted(drops, key=lambda d: d.t)]

    def inside(t: int) -> bool:
        return window is None or window[0] <= t <= window[1]

    # connections, numbered in order of their first record inside the window
    firsts: list[tuple[int, frozenset, str, str]] = []      # (t, key, server end, proto)
    for s in segments:
        if inside(s.t):
            server_end = s.src if _host(s.src) in server_ips else s.dst
            firsts.append((s.t, frozenset((s.src, s.dst)), server_end, s.proto))
    for i, c in enumerate(calls):
        # only a call that knows its own two ends can say which end is the server's
        if keys[i] and ends.key(c) == keys[i] and inside(c.t if c.call not in WAITS else c.end):
            local = ends.local(c)
            if c.role == "server" and local in keys[i]:
                server_end = local
            elif c.role != "server" and c.peer in keys[i]:
                server_end = c.peer
            else:
                server_end = min(keys[i], key=lambda e: int(_port(e)))   # the well-known port, not the ephemeral
            firsts.append((c.t, keys[i], server_end, protos[i]))
    for d, src, dst in drops:
        if inside(d.t):   # up: sent to the relay's own port; down: sent by the server
            firsts.append((d.t, frozenset((src, dst)), dst if d.direction == "up" else src, "udp"))
    connections: dict[frozenset, Connection] = {}
    for _, key, server_end, proto in sorted(firsts, key=lambda f: f[0]):
        if key not in connections:
            other = next((e for e in key if e != server_end), server_end)
            connections[key] = Connection(len(connections) + 1, other, server_end, proto)
        elif proto == "udp":
            connections[key].proto = "udp"

    # a call whose socket never got a peer (connect_ex refused) still has its local end, and the
    # packets know it - the client's end only: the server's end is shared with the listening socket
    by_endpoint = {conn.client: key for key, conn in connections.items()}
    for i, c in enumerate(calls):
        if keys[i] is None and c.call != "accept" and ends.local(c) in by_endpoint:
            keys[i] = by_endpoint[ends.local(c)]
    for life_members in _lives(calls).values():
        found = {keys[i] for i in life_members if calls[i].call != "accept"} - {None}
        if len(found) == 1:
            key = found.pop()
            for i in life_members:
                if keys[i] is None and calls[i].call != "accept":
                    keys[i] = key

    rows: list[Row] = []
    seg_times: dict[frozenset, list[int]] = {}
    hidden = 0
    state: dict[frozenset, str] = {}     # per connection: the last SYN-ACK / FIN that wants its ACK shown
    for s in segments:
        if not inside(s.t):
            continue
        key = frozenset((s.src, s.dst))
        conn = connections[key]
        direction = "c2s" if s.src == conn.client else "s2c"
        if s.is_pure_ack and not show_acks:
            if state.get(key, direction) == direction:   # only the ACK *answering* a SYN-ACK or FIN stays
                hidden += 1
                continue
            del state[key]
        elif "SYN" in s.flags and "ACK" in s.flags or "FIN" in s.flags:
            state[key] = direction
        rows.append(Row(s.t, "segment", "wire", conn.id, seg=s, direction=direction))
        seg_times.setdefault(key, []).append(s.t)
    for d, src, dst in drops:
        if inside(d.t):
            conn = connections[frozenset((src, dst))]
            rows.append(Row(d.t, "drop", "wire", conn.id, drop=d, direction="c2s" if src == conn.client else "s2c"))

    for i, c in enumerate(calls):
        key = keys[i]
        conn_id = connections[key].id if key in connections else None
        side = "server" if c.role == "server" else "client"
        if c.call in WAITS:
            if inside(c.end):
                rows.append(Row(c.end, "call", side, conn_id, call=c))
            waited = any(c.t < t < c.end for t in seg_times.get(key, ()))
            if inside(c.t) and (waited or (c.call == "connect" and protos[i] == "tcp")):
                rows.append(Row(c.t, "wait", side, conn_id, call=c))
        elif inside(c.t):
            rows.append(Row(c.t, "call", side, conn_id, call=c))
    order = {"wait": 0, "call": 1, "segment": 1, "drop": 1}
    rows.sort(key=lambda r: (r.t, order[r.kind]))
    start = rows[0].t if rows else (window[0] if window else 0)
    roles = {side: node_ips.get(side, "") for side in SIDES}
    if any(r.kind == "drop" for r in rows):
        roles.update((d.role, node_ips.get(d.role, "")) for d, _, _ in drops if d.role not in SIDES)
    ladder = Ladder(title, rows, {c.id: c for c in connections.values()}, roles, hidden, start)
    ladder.programs = _programs(calls, [r for r in rows if r.call])
    return ladder


def _programs(calls: list[Call], rows: list[Row]) -> dict[str, list[str]]:
    """Per side, the programs whose calls the ladder shows (argv comes with each process's first record)."""
    argv = {(c.role, c.pid): c.extra["argv"] for c in calls if c.extra.get("argv")}
    out: dict[str, list[str]] = {}
    for r in rows:
        words = argv.get((r.call.role, r.call.pid))
        if words:
            args = list(itertools.takewhile(lambda w: not w.startswith("-"), words[1:]))[:2]
            text = " ".join(["/".join(words[0].split("/")[-2:]), *args])
            if text not in out.setdefault(r.side, []):
                out[r.side].append(text)
    return out


# -- text -----------------------------------------------------------------------------------------
SHUT = {0: "SHUT_RD", 1: "SHUT_WR", 2: "SHUT_RDWR"}
ERRNO_NAMES = {111: "ECONNREFUSED", 104: "ECONNRESET", 98: "EADDRINUSE", 110: "ETIMEDOUT", 113: "EHOSTUNREACH",
               32: "EPIPE", 90: "EMSGSIZE", 11: "EAGAIN"}


def _short(endpoint: str | None, conn: Connection | None = None) -> str:
    """An address as short as it can be and still say which: ':40112' when the host is obvious."""
    if not endpoint:
        return "?"
    return f":{_port(endpoint)}" if conn and endpoint in (conn.client, conn.server) else endpoint


def _head(head: str, room: int) -> str:
    return head if head and len(head) <= room else (head[:max(room - 1, 0)] + "…" if room > 6 and head else "")


def call_text(row: Row, conn: Connection | None = None) -> str:
    c = row.call
    name = c.call
    wait = row.kind == "wait"
    if c.exc and not wait:
        err = ERRNO_NAMES.get(c.errno) or c.exc.split(":")[0]
        base = {"connect": f"connect({_short(c.addr, conn)})", "send": f"send({c.req})", "sendall": f"sendall({c.req})",
                "recv": f"recv({c.req})", "recv_into": f"recv_into({c.req})",
                "bind": f"bind(:{_port(c.addr)})" if c.addr else "bind()"}.get(name, f"{name}()")
        text = f"{base} ✘ {err}"
        return text if len(text) <= SIDE_W else f"{name}() ✘ {err}"
    if name == "socket":
        kind = (c.extra.get("args") or ["", "?"])[-1].replace("SOCK_", "")
        return f"socket({kind}) → fd {c.fd}"
    if name == "setsockopt":
        return f"setsockopt({c.extra.get('opt')}, {c.extra.get('value')})"
    if name == "bind":
        return f"bind({c.addr})"
    if name == "listen":
        args = c.extra.get("args") or []
        return f"listen({args[0] if args else ''})"
    if name == "connect":
        return f"connect({_short(c.addr)})…" if wait else f"connect → ok, {_short(c.local, conn)}"
    if name == "connect_ex":
        return (f"connect_ex({_short(c.addr)})…" if wait else
                f"connect_ex → {c.ret}" + (f" {ERRNO_NAMES.get(c.ret, '')}" if c.ret else " (ok)"))
    if name == "accept":
        return "accept()…" if wait else f"accept → fd {c.ret} ← {_short(c.peer, conn)}"
    if name in SENDS:
        size = f"{c.req}" + (f" → {c.n}" if c.n is not None and c.n != c.req else "")
        to = f" → {_short(c.peer, conn)}" if name == "sendto" else ""
        text = f"{name}({size}{to})"
        return f"{text} {_head(c.head, SIDE_W - len(text) - 1)}".rstrip()
    if name in RECEIVES:
        # MSG_TRUNC as an *input* flag only makes Linux return the real length: PEEK says the rest
        flags = "".join(f", {f.removeprefix('MSG_')}" for f in c.extra.get("flags") or [] if f != "MSG_TRUNC")
        asked = f"{name}({c.req}{flags})"
        if wait:
            return f"{asked}…"
        if c.n == 0:   # b'' ends a TCP stream; in UDP it is a datagram of 0 bytes
            return f"{asked} → " + ("0 (empty)" if conn and conn.proto == "udp" else "b'' (EOF)")
        if "MSG_TRUNC" in (c.extra.get("msg_flags") or []):
            return f"{asked} → {c.n} TRUNC"   # the datagram was longer: the rest is gone
        text = f"{asked} → {c.n}"
        return f"{text} {_head(c.head, SIDE_W - len(text) - 1)}".rstrip()
    if name == "shutdown":
        args = c.extra.get("args") or [None]
        return f"shutdown({SHUT.get(args[0], args[0])})"
    return f"{name}()"


def segment_label(s: Segment) -> str:
    if s.proto == "udp":
        return f"UDP {s.length} {s.head}"
    flags = s.flags.split("-")
    if "RST" in flags:
        return "RST"
    if "SYN" in flags:
        return "SYN-ACK" if "ACK" in flags else "SYN"
    if "FIN" in flags:
        return "FIN" + (f" +{s.length}" if s.length else "")
    if s.length:
        return f"{'PSH' if 'PSH' in flags else 'DATA'} {s.length} {s.head}"
    return "ACK"


def drop_label(d: Drop) -> str:
    return f"UDP {d.length} {d.head}"


def _fitted(label: str, room: int) -> str:
    return label if len(label) <= room else label[:room - 1] + "…"


def wire_text(row: Row, width: int = WIRE_W) -> str:
    if row.kind == "drop":   # the datagram dies at the relay: up on its way in, down on its way back
        label = _fitted(drop_label(row.drop), width - 11)
        fill = "─" * (width - len(label) - 10)
        return f"─ {label} {fill}✘ relay" if row.direction == "c2s" else f"relay ✘{fill} {label} ─"
    label = _fitted(segment_label(row.seg), width - 5)
    fill = "─" * (width - len(label) - 4)
    return f"─ {label} {fill}▶" if row.direction == "c2s" else f"◀{fill} {label} ─"


class _Style:
    def __init__(self, colour: bool) -> None:
        self.on = colour

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on and text.strip() else text


def _cell(text: str, width: int) -> str:
    return text[:width - 1] + "…" if len(text) > width else text.ljust(width)


def connection_label(ladder: Ladder, conn: Connection) -> str:
    """'#2  10.77.0.51:40112 → 10.77.0.52:20042 (udp, client → relay)': which nodes, when a relay is in between."""
    middle = {ip: role for role, ip in ladder.roles.items() if role not in SIDES and ip}
    via = ""
    if middle:
        via = f", {middle.get(_host(conn.client), 'client')} → {middle.get(_host(conn.server), 'server')}"
    return f"#{conn.id}  {conn.client} → {conn.server} ({conn.proto}{via})"


def render_text(ladder: Ladder, colour: bool | None = None) -> str:
    """The ladder for a terminal: 100 columns, colour only when stdout is a terminal."""
    if colour is None:   # a terminal that says it is "dumb" shows escape codes as text
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    style = _Style(colour)
    out = [style(f"── {ladder.title}", "1")] if ladder.title else []
    for side in ("client", "server"):
        if ladder.programs.get(side):
            out.append(f"   {side} {ladder.roles.get(side, '')}: {'; '.join(ladder.programs[side][:3])}")
    for role in ladder.roles:
        if role not in SIDES:
            out.append(f"   {role} {ladder.roles[role]}: on the wire, drawn as ✘ where it dropped a datagram "
                       "(its own calls are not drawn)")
    for conn in ladder.connections.values():
        out.append(f"   {connection_label(ladder, conn)}")
    client_h = ("CLIENT " + ladder.roles.get("client", "")).strip()
    server_h = ("SERVER " + ladder.roles.get("server", "")).strip()
    header = (f"{'ms':>{TIME_W}} {'#':<{CONN_W}} {_cell(client_h, SIDE_W)} "
              f"{_cell('WIRE (seen at the server)', WIRE_W)} {_cell(server_h, SIDE_W)}")
    out.append(style(header.rstrip(), "4"))
    for row in ladder.rows:
        ms = f"{(row.t - ladder.start) / 1e6:.3f}"
        conn = ladder.connections.get(row.conn) if row.conn else None
        tag = str(row.conn) if row.conn else ""
        left = mid = right = ""
        if row.kind == "segment":
            mid = wire_text(row)
            code = "31" if any(f in row.seg.flags for f in ("SYN", "FIN", "RST")) else "32"
            mid = style(mid, code)
        elif row.kind == "drop":
            mid = style(wire_text(row), "31")
        else:
            text = _cell(call_text(row, conn), SIDE_W)
            side_code = "36" if row.side == "client" else "35"
            code = "2" if row.kind == "wait" else ("31" if row.call.failed else side_code)
            if row.side == "client":
                left = style(text, code)
            else:
                right = style(text, code)
        left_pad = left + " " * (SIDE_W - _visible(left))
        mid_pad = mid + " " * (WIRE_W - _visible(mid))
        out.append(f"{ms:>{TIME_W}} {tag:<{CONN_W}} {left_pad} {mid_pad} {right}".rstrip())
        if row.note:
            indent = " " * (TIME_W + CONN_W + 2)
            for k, line in enumerate(textwrap.wrap(row.note, WIDTH - len(indent) - 2)):
                out.append(style(f"{indent}{'↳ ' if k == 0 else '  '}{line}", "33"))
    if ladder.hidden_acks:
        out.append(style(f"   ({ladder.hidden_acks} pure ACKs not shown)", "2"))
    return "\n".join(out)


def _visible(text: str) -> int:
    """Length without colour codes."""
    import re
    return len(re.sub(r"\033\[[0-9;]*m", "", text))
