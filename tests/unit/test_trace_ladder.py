"""The trace's merge and rendering on a small synthetic capture and call log (no Docker).

The story is the sticky lesson's `coalesce` round: handshake, the client sends a command, the
server answers with two sendall() calls (two 5-byte segments), one client recv() returns 10 bytes.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import dpkt
import pytest

from socketlab.trace.callog import read_calls
from socketlab.trace.html import render_html
from socketlab.trace.ladder import WIDTH, _visible, merge, render_text
from socketlab.trace.notes import annotate
from socketlab.trace.wire import MARK, read_pcap, write_pcap

ROOT = Path(__file__).resolve().parents[2]
CLIENT, SERVER = ("10.0.0.2", 40000), ("10.0.0.1", 20020)
T0 = 1_764_626_400_000_000_000
MS = 1_000_000
NODES = {"client": CLIENT[0], "server": SERVER[0]}


def frame(src, dst, flags, payload=b"", seq=0, ack=0, udp=False) -> bytes:
    l4 = (dpkt.udp.UDP(sport=src[1], dport=dst[1], data=payload) if udp else
          dpkt.tcp.TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq, ack=ack, data=payload))
    ip = dpkt.ip.IP(src=socket.inet_aton(src[0]), dst=socket.inet_aton(dst[0]),
                    p=dpkt.ip.IP_PROTO_UDP if udp else dpkt.ip.IP_PROTO_TCP, data=l4)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip))


S, A, P, F = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH, dpkt.tcp.TH_FIN
PACKETS = [  # (ms, src, dst, flags, payload)
    (1.0, CLIENT, SERVER, S, b""),
    (1.1, SERVER, CLIENT, S | A, b""),
    (1.2, CLIENT, SERVER, A, b""),
    (2.0, CLIENT, SERVER, P | A, b"sends hello world\n"),
    (2.5, SERVER, CLIENT, P | A, b"hello"),
    (2.6, CLIENT, SERVER, A, b""),                   # a pure ACK: hidden unless asked for
    (2.8, SERVER, CLIENT, P | A, b"world"),
    (4.0, CLIENT, SERVER, F | A, b""),
    (4.1, SERVER, CLIENT, F | A, b""),
    (4.2, CLIENT, SERVER, A, b""),                   # answers the server's FIN: shown
]


def call(role, ms, dur_ms, name, fd, local=None, peer=None, **kw) -> str:
    return json.dumps({"t": T0 + int(ms * MS), "dur": int(dur_ms * MS), "pid": 7 if role == "server" else 9,
                       "call": name, "fd": fd, "local": local, "peer": peer, **kw})


c_end, s_end = f"{CLIENT[0]}:{CLIENT[1]}", f"{SERVER[0]}:{SERVER[1]}"
CLIENT_LOG = "\n".join([
    call("client", 0.5, 0.01, "socket", 3, args=["AF_INET", "SOCK_STREAM"], argv=["/lab/sticky/probes.py", "coalesce"]),
    call("client", 0.9, 0.4, "connect", 3, c_end, s_end, addr=s_end),
    call("client", 1.9, 0.05, "sendall", 3, c_end, s_end, req=18, n=18, head="b'sends hello world\\n'"),
    call("client", 3.0, 0.05, "recv", 3, c_end, s_end, req=1024, n=10, head="b'helloworld'"),
    call("client", 3.9, 0.05, "close", 3, c_end, s_end),
    '{"t": 17, "call": "recv", "fd"',                     # a torn last line: skipped
])
SERVER_LOG = "\n".join([
    call("server", 0.1, 0.01, "socket", 3, args=["AF_INET", "SOCK_STREAM"], argv=["sticky/server.py", "--port"]),
    call("server", 0.2, 0.01, "bind", 3, "0.0.0.0:20020", addr="0.0.0.0:20020"),
    call("server", 0.3, 0.01, "listen", 3, "0.0.0.0:20020", args=[5]),
    call("server", 0.4, 1.0, "accept", 3, s_end, c_end, ret=4),       # returns at 1.4 ms, after the ACK
    call("server", 1.5, 0.6, "recv", 4, s_end, c_end, req=4096, n=18, head="b'sends hello world\\n'"),
    call("server", 2.4, 0.05, "sendall", 4, s_end, c_end, req=5, n=5, head="b'hello'"),
    call("server", 2.7, 0.05, "sendall", 4, s_end, c_end, req=5, n=5, head="b'world'"),
    call("server", 2.9, 1.15, "recv", 4, s_end, c_end, req=4096, n=0, head="b''"),
    call("server", 4.08, 0.01, "close", 4, s_end, c_end),
])


def pcap_bytes(extra=()) -> bytes:
    items = [(T0 + int(ms * MS), frame(src, dst, flags, payload)) for ms, src, dst, flags, payload in PACKETS]
    return write_pcap(sorted([*items, *extra]))


@pytest.fixture
def ladder():
    calls = read_calls("client", CLIENT_LOG) + read_calls("server", SERVER_LOG)
    return annotate(merge(calls, read_pcap(pcap_bytes()), NODES, title="sticky / coalesce"), "sticky")


def test_pcap_is_read_with_flags_lengths_and_nanosecond_times():
    marker = (T0 + 9 * MS, frame(CLIENT, SERVER, 0, MARK + b"abc", udp=True))
    segs = read_pcap(pcap_bytes([marker]))
    assert len(segs) == len(PACKETS)                             # the capture's end marker is not traffic
    assert [s.flags for s in segs[:3]] == ["SYN", "SYN-ACK", "ACK"]
    assert segs[4].length == 5 and segs[4].head == "b'hello'" and segs[4].src == s_end
    assert segs[0].t == T0 + MS


def test_call_log_is_sorted_and_skips_a_torn_line():
    calls = read_calls("client", CLIENT_LOG)
    assert [c.call for c in calls] == ["socket", "connect", "sendall", "recv", "close"]
    assert calls[0].extra["argv"][0].endswith("probes.py")


def test_one_connection_with_both_ends_known(ladder):
    assert len(ladder.connections) == 1
    conn = ladder.connections[1]
    assert (conn.client, conn.server) == (c_end, s_end)
    # every call belongs to it - the client's socket() and the accept() that returned it included -
    # except those on the server's listening socket, which serves every connection
    listener = [r for r in ladder.rows if r.call and r.side == "server" and r.call.fd == 3 and r.call.call != "accept"]
    assert [r.call.call for r in listener] == ["socket", "bind", "listen"] and {r.conn for r in listener} == {None}
    assert all(r.conn == 1 for r in ladder.rows if r.call and r not in listener)


def test_handshake_comes_before_accept_returns(ladder):
    rows = ladder.rows
    order = [r.seg.flags for r in ladder.segments][:3]
    assert order == ["SYN", "SYN-ACK", "ACK"]
    ack = rows.index(ladder.segments[2])
    accept = rows.index(ladder.calls("server", "accept")[0])
    assert ack < accept
    assert "after the handshake" in rows[accept].note


def test_two_segments_of_five_bytes_then_one_recv_of_ten(ladder):
    data_to_client = [r.seg.length for r in ladder.segments if r.direction == "s2c" and r.seg.length]
    assert data_to_client == [5, 5]
    recvs = ladder.calls("client", "recv")
    assert [r.call.n for r in recvs] == [10]
    assert "ONE recv()" in recvs[0].note
    # the recv returns after both segments arrived
    assert ladder.rows.index(recvs[0]) > ladder.rows.index(ladder.segments[-4])


def test_pure_acks_are_hidden_but_the_ones_answering_syn_ack_and_fin_stay(ladder):
    flags = [r.seg.flags for r in ladder.segments]
    assert flags.count("ACK") == 2 and ladder.hidden_acks == 1
    calls = read_calls("client", CLIENT_LOG) + read_calls("server", SERVER_LOG)
    full = merge(calls, read_pcap(pcap_bytes()), NODES, show_acks=True)
    assert len(full.segments) == len(PACKETS) and full.hidden_acks == 0


def test_a_blocking_call_is_drawn_where_it_began_and_where_it_returned(ladder):
    kinds = [(r.kind, r.call.call) for r in ladder.rows if r.call and r.side == "client"]
    assert ("wait", "connect") in kinds and ("call", "connect") in kinds
    eof = [r for r in ladder.calls("server", "recv") if r.call.n == 0]
    assert eof and ladder.rows.index(eof[0]) > ladder.rows.index(
        next(r for r in ladder.segments if "FIN" in r.seg.flags))


def test_a_time_window_keeps_only_its_rows():
    calls = read_calls("client", CLIENT_LOG) + read_calls("server", SERVER_LOG)
    part = merge(calls, read_pcap(pcap_bytes()), NODES, window=(T0 + 2 * MS, T0 + 3 * MS))
    assert [r.seg.length for r in part.segments] == [18, 5, 5]


def test_text_fits_100_columns_and_is_plain_without_a_terminal(ladder):
    text = render_text(ladder, colour=False)
    assert "\033[" not in text
    assert all(len(line) <= WIDTH for line in text.splitlines()), max(text.splitlines(), key=len)
    assert "─ SYN " in text and "◀" in text and "recv(1024) → 10 b'helloworld'" in text
    coloured = render_text(ladder, colour=True)
    assert "\033[" in coloured and all(_visible(line) <= WIDTH for line in coloured.splitlines())


class _Counter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.classes: dict[str, int] = {}
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for key, value in attrs:
            if key == "class":
                for c in (value or "").split():
                    self.classes[c] = self.classes.get(c, 0) + 1
            if key in ("src", "href") and value and not value.startswith(("#", "url(#")):
                self.external.append(value)


def test_html_is_one_self_contained_page_with_an_svg_ladder(ladder):
    page = render_html("SocketLab trace: sticky", [(ladder, True, "2 sends, 1 recv")], "trace.pcap")
    parsed = _Counter()
    parsed.feed(page)
    assert parsed.tags.get("svg") == 1
    assert parsed.classes.get("seg") == len(ladder.segments)
    assert parsed.classes.get("call") == sum(1 for r in ladder.rows if r.call)
    assert parsed.classes.get("note", 0) >= 3
    assert not parsed.external and "script" not in parsed.tags and "link" not in parsed.tags
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_the_call_log_records_a_real_program(tmp_path):
    """labtrace on real sockets (localhost, no Docker): the fields the ladder relies on."""
    sys.path.insert(0, str(ROOT / "services"))
    import labtrace
    log = tmp_path / "calls.jsonl"
    labtrace.install(str(log))
    try:
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen()
            cli = socket.create_connection(srv.getsockname(), timeout=5)
            conn, _ = srv.accept()
            conn.sendall(b"hello")
            conn.sendall(b"world")
            got = b""
            while len(got) < 10:
                got += cli.recv(1024)
            with pytest.raises(TypeError):
                cli.send("text")              # type: ignore[arg-type]
            cli.close()
            conn.close()
    finally:
        labtrace.uninstall()
    assert socket.socket.sendall is socket._socket.socket.sendall     # the real methods are back
    calls = read_calls("client", log.read_text())
    names = [c.call for c in calls]
    assert {"socket", "bind", "listen", "connect", "accept", "sendall", "recv", "send", "close"} <= set(names)
    sends = [c for c in calls if c.call == "sendall"]
    assert [(c.req, c.n, c.head) for c in sends] == [(5, 5, "b'hello'"), (5, 5, "b'world'")]
    accept = next(c for c in calls if c.call == "accept")
    connect = next(c for c in calls if c.call == "connect")
    assert accept.peer == connect.local and accept.local == connect.peer
    assert next(c for c in calls if c.call == "send").exc.startswith("TypeError")
    assert all(c.t > 1e18 and c.dur >= 0 for c in calls)


def test_tracing_off_loads_nothing():
    """Without SOCKETLAB_TRACE, sitecustomize returns at once: labtrace is never imported."""
    env = {k: v for k, v in os.environ.items() if k != "SOCKETLAB_TRACE"}
    env["PYTHONPATH"] = str(ROOT / "services")
    out = subprocess.run([sys.executable, "-c", "import sys; print(sorted(sys.modules))"], env=env,
                         capture_output=True, text=True, timeout=30).stdout
    assert "'sitecustomize'" in out and "labtrace" not in out


def test_traced_overrides_wrap_the_server_command_and_keep_a_student_program():
    from socketlab.deploy import Override
    from socketlab.topology import load
    from socketlab.trace.session import traced_overrides
    lesson = load().lesson("sticky")
    plain = traced_overrides(lesson)
    assert set(plain) == {"server"}                                 # the client only sleeps
    assert plain["server"].command[:2] == ["env", "SOCKETLAB_TRACE=/tmp/labtrace-server.jsonl"]
    assert plain["server"].command[2:] == lesson.service("server").command
    student = traced_overrides(lesson, {"server": Override(image="overlay", command=["python3", "mine.py"])})
    assert student["server"].image == "overlay" and student["server"].command[2:] == ["python3", "mine.py"]


def test_udp_datagrams_and_an_empty_one():
    server = f"{SERVER[0]}:20040"
    pcap = write_pcap([(T0 + 1 * MS, frame(CLIENT, (SERVER[0], 20040), 0, b"ping", udp=True)),
                       (T0 + 2 * MS, frame(CLIENT, (SERVER[0], 20040), 0, b"", udp=True))])
    server_log = "\n".join([
        call("server", 0.1, 0.01, "socket", 3, args=["AF_INET", "SOCK_DGRAM"]),
        call("server", 0.5, 0.6, "recvfrom", 3, "0.0.0.0:20040", c_end, req=2048, n=4, head="b'ping'"),
        call("server", 1.5, 0.6, "recvfrom", 3, "0.0.0.0:20040", c_end, req=2048, n=0, head="b''"),
    ])
    client_log = "\n".join([
        call("client", 0.9, 0.05, "sendto", 5, c_end, server, req=4, n=4, head="b'ping'"),
        call("client", 1.9, 0.05, "sendto", 5, c_end, server, req=0, n=0, head="b''"),
    ])
    calls = read_calls("client", client_log) + read_calls("server", server_log)
    ladder = merge(calls, read_pcap(pcap), NODES)
    assert [c.proto for c in ladder.connections.values()] == ["udp"]
    text = render_text(ladder, colour=False)
    assert "UDP 4 b'ping'" in text and "UDP 0" in text
    assert "recvfrom(2048) → 0 (empty)" in text and "EOF" not in text
    conn = ladder.connections[1]
    assert (conn.client, conn.server) == (c_end, server)
    # the server's wildcard-bound socket is matched to the datagrams through the node's address
    assert {r.conn for r in ladder.calls("server", "recvfrom")} == {1}
