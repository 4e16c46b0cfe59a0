"""The trace's udp and framing pieces without Docker: the relay's DROPPED lines read back, IP
fragments counted into one datagram, drops drawn on the ladder, frames found in a byte stream."""
from __future__ import annotations

import json
import socket
import struct

import dpkt

from socketlab.trace.ladder import WIDTH, merge, render_text
from socketlab.trace.notes import annotate, frame_spans
from socketlab.trace.relaylog import read_drops
from socketlab.trace.wire import read_pcap, write_pcap
from udp.relay import Impairment, UdpRelay

T0 = 1_764_626_400_000_000_000
MS = 1_000_000


def test_the_relays_dropped_lines_are_read_back_with_time_and_addresses(capsys):
    relay = UdpRelay(0, ("127.0.0.1", 9), 42, Impairment(loss=1.0), host="127.0.0.1")   # drops everything
    try:
        flow = relay.flow_for(("127.0.0.1", 5555), 0.0)
        capsys.readouterr()
        relay.forward(flow, "up", b"seq 0", 0.0)
        relay.forward(flow, "down", b"seq 0", 0.0)
        up_port, down_port = relay.listener.getsockname()[1], flow.upstream.getsockname()[1]
    finally:
        relay.forget(flow)
        relay.listener.close()
    out = capsys.readouterr().out
    up, down = read_drops("relay", out + "up   #3  torn line: DROPPED at 12")
    assert (up.direction, up.index, up.length, up.head) == ("up", 0, 5, "b'seq 0'")
    assert (up.src, up.dst) == ("127.0.0.1:5555", f"127.0.0.1:{up_port}")
    assert (down.src, down.dst) == ("127.0.0.1:9", f"127.0.0.1:{down_port}")
    assert 0 < down.t - up.t < 10**9


def _fragments(src, dst, payload: bytes, ip_id: int = 7, mtu: int = 1500) -> list[bytes]:
    udp = bytes(dpkt.udp.UDP(sport=src[1], dport=dst[1], data=payload, ulen=8 + len(payload)))
    step = (mtu - 20) // 8 * 8
    frames = []
    for offset in range(0, len(udp), step):
        piece = udp[offset:offset + step]
        more = offset + step < len(udp)
        ip = dpkt.ip.IP(src=socket.inet_aton(src[0]), dst=socket.inet_aton(dst[0]), p=dpkt.ip.IP_PROTO_UDP,
                        id=ip_id, data=piece)
        ip.mf, ip.offset = int(more), offset // 8          # the offset counts 8-byte units
        ip.len = 20 + len(piece)
        frames.append(bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=bytes(ip))))
    return frames


def test_a_fragmented_datagram_is_one_datagram_of_its_full_length():
    client, server = ("10.0.0.2", 40000), ("10.0.0.1", 20040)
    frames = _fragments(client, server, b"x" * 2000)
    assert len(frames) == 2
    [seg] = read_pcap(write_pcap([(T0 + k * MS, f) for k, f in enumerate(frames)]))
    assert (seg.proto, seg.length, seg.fragments) == ("udp", 2000, 2)
    assert seg.head.startswith("b'xxxx")


def test_drops_are_drawn_on_the_wire_of_their_flow():
    client, relay, server = "10.0.0.3:45000", "10.0.0.4:20042", "10.0.0.1:20040"
    nodes = {"client": "10.0.0.3", "relay": "10.0.0.4", "server": "10.0.0.1"}
    calls = [json.dumps({"t": T0, "dur": 1000, "pid": 9, "call": "socket", "fd": 3, "args": ["AF_INET", "SOCK_DGRAM"]}),
             json.dumps({"t": T0 + MS, "dur": 1000, "pid": 9, "call": "sendto", "fd": 3, "local": "0.0.0.0:45000",
                         "peer": relay, "req": 5, "n": 5, "head": "b'seq 0'"})]
    from socketlab.trace.callog import read_calls
    log = (f"up   #0        5 bytes b'seq 0': DROPPED at {(T0 + 2 * MS) // 10**9}.{(T0 + 2 * MS) % 10**9:09d} "
           f"from {client} to 0.0.0.0:20042\n")
    drops = read_drops("relay", log)
    ladder = annotate(merge(read_calls("client", "\n".join(calls)), [], nodes, drops=drops), "udp")
    [drop] = ladder.drops
    conn = ladder.connections[drop.conn]
    assert (conn.client, conn.server, conn.proto, drop.direction) == (client, relay, "udp", "c2s")
    assert ladder.calls("client", "sendto")[0].conn == drop.conn          # the same flow as the sendto
    assert "dropped datagram #0" in drop.note
    text = render_text(ladder, colour=False)
    assert "─ UDP 5 b'seq 0' ────✘ relay" in text and "(udp, client → relay)" in text
    assert all(len(line) <= WIDTH for line in text.splitlines())
    assert server not in text


def _frame(header: dict, body: bytes = b"") -> bytes:
    raw = json.dumps({**header, "size": len(body)} if body else header).encode()
    return struct.pack("!I", len(raw)) + raw + body


def test_frames_are_found_in_a_stream_and_past_bytes_the_framing_does_not_count():
    one, two = _frame({"op": "put", "path": "a"}), _frame({"op": "data", "offset": 5}, b"{body}")
    assert [(f.start, f.end, f.header["op"]) for f in frame_spans(one + two)] == [
        (0, len(one), "put"), (len(one), len(one + two), "data")]
    trailer = b"\x00" * 3 + b"{not json"          # e.g. a digest trailer after the body
    found = frame_spans(two + trailer + one, resync=True)
    assert [f.header["op"] for f in found] == ["data", "put"]
    assert [f.header["op"] for f in frame_spans(two + trailer + one)] == ["data"]   # without resync: stops
    assert frame_spans(struct.pack("!I", 2**31) + b"{}") == []


def test_a_deeply_nested_header_is_no_frame_and_does_not_stop_the_search():
    """bad-input sends a header nested past the depth limit: json.loads raises RecursionError,
    which crashed `check ftp --trace` for every server (found by an outside tester)."""
    deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    after = _frame({"op": "quit"})
    found = frame_spans(struct.pack("!I", len(deep)) + deep + after, resync=True, limit=1 << 20)
    assert [f.header["op"] for f in found] == ["quit"]


def test_a_note_rule_that_fails_loses_only_its_note(monkeypatch):
    """A rule that meets bytes it did not expect must not take `check --trace`'s report with it."""
    from socketlab.trace import notes

    def broken(ladder):
        raise ValueError("unexpected bytes")

    calls = [json.dumps({"t": T0, "dur": 1000, "pid": 9, "call": "socket", "fd": 3, "args": ["AF_INET", "SOCK_DGRAM"]})]
    from socketlab.trace.callog import read_calls
    monkeypatch.setitem(notes.RULES, "udp", (broken,))
    ladder = annotate(merge(read_calls("client", "\n".join(calls)), [], {"client": "10.0.0.3"}), "udp")
    assert ladder.rows and "the 'broken' note could not be made: ValueError: unexpected bytes" in ladder.rows[0].note
