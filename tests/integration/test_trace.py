"""`lab.py trace` on real containers: the call log and the capture, merged, say what the lessons say.

Each trace starts its own throw-away instance of the lesson (like `check`), with the capture
sidecar in the server's network namespace, and removes it all afterwards.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from socketlab.scenarios.udp import LOSS, SEED
from socketlab.trace.command import write_outputs
from socketlab.trace.ladder import render_text
from socketlab.trace.notes import frame_spans, placed_frames, stream_length
from socketlab.trace.session import trace_lesson
from socketlab.trace.wire import read_pcap
from tests.conftest import RUN_ID
from udp.relay import Impairment, plan

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _trace(docker_client, topology, lesson, scenario):
    return trace_lesson(docker_client, topology, lesson, [scenario], say=lambda _: None, project=RUN_ID)


@pytest.fixture(scope="module")
def sticky(docker_client, lab_image, topology):
    return _trace(docker_client, topology, "sticky", "coalesce")


@pytest.fixture(scope="module")
def basic(docker_client, lab_image, topology):
    return _trace(docker_client, topology, "basic", "accept-new-socket")


def rounds(ladder):
    """Per `sends hello world` command: the data segments the client got, and its recv() results."""
    out, current = [], None
    for row in ladder.rows:
        if row.kind == "call" and row.side == "client" and row.call.call == "sendall":
            current = {"command": row.call.head, "segments": [], "recvs": []}
            out.append(current)
        elif current is None:
            continue
        elif row.kind == "segment" and row.direction == "s2c" and row.seg.length:
            current["segments"].append(row.seg.length)
        elif row.kind == "call" and row.side == "client" and row.call.call.startswith("recv"):
            current["recvs"].append((row.call.n, row.call.head))
    return [r for r in out if r["command"].startswith("b'sends hello world")]


def test_coalesce_two_segments_of_five_bytes_one_recv_of_ten(sticky):
    st = sticky.scenarios[0]
    assert st.report.passed, st.report.summary
    seen = rounds(st.ladder)
    assert len(seen) == st.report.observed["rounds"] == 20
    for r in seen:
        assert r["segments"] == [5, 5], r           # two sendall() calls: two segments on the wire
        assert r["recvs"] == [(10, "b'helloworld'")], r   # ... and ONE recv() returns both
    notes = [row.note for row in st.ladder.rows if row.note]
    assert any("ONE recv()" in n for n in notes)


def test_client_and_server_calls_share_the_connection_of_the_packets(sticky):
    ladder = sticky.scenarios[0].ladder
    assert len(ladder.connections) == 1
    conn = ladder.connections[1]
    assert conn.server.endswith(":20020") and conn.server.startswith(sticky.node_ips["server"])
    assert {r.side for r in ladder.rows if r.call and r.conn == 1} == {"client", "server"}
    server_sends = [r.call.head for r in ladder.calls("server", "sendall")]
    assert server_sends.count("b'hello'") >= 20 and server_sends.count("b'world'") >= 20


def test_basic_handshake_before_accept_returns_and_a_new_port_each_time(basic):
    st = basic.scenarios[0]
    assert st.report.passed, st.report.summary
    ladder = st.ladder
    tcp = [c for c in ladder.connections.values() if c.server.endswith(":20000")]
    assert len(tcp) == 3
    assert len({c.client for c in tcp}) == 3                        # a new client port per connection
    for conn in tcp:
        rows = [r for r in ladder.rows if r.conn == conn.id]
        flags = [r.seg.flags for r in rows if r.kind == "segment"]
        assert flags[:3] == ["SYN", "SYN-ACK", "ACK"], flags
        handshake_done = rows.index([r for r in rows if r.kind == "segment"][2])
        accept = next(i for i, r in enumerate(rows) if r.kind == "call" and r.call.call == "accept")
        assert handshake_done < accept, "accept() returned before the handshake's ACK"
        assert rows[accept].call.peer == conn.client


def test_json_and_html_and_pcap(basic, tmp_path, docker_client):
    data = json.loads(json.dumps(basic.as_dict()))
    events = data["scenarios"][0]["events"]
    assert any(e.get("segment", {}).get("flags") == "SYN" for e in events)
    assert any(e.get("call", {}).get("call") == "accept" for e in events)
    html_path, pcap_path = write_outputs(basic, tmp_path / "basic.html")
    assert pcap_path == tmp_path / "basic.pcap"
    assert len(read_pcap(pcap_path.read_bytes())) == len(basic.segments) > 0
    # and libpcap reads it as Wireshark would: tcpdump, from the capture image, one line per packet
    from socketlab.images import ImageBuilder
    from tests.conftest import OWNER_LABELS
    image = ImageBuilder(docker_client).ensure_capture()
    listing = docker_client.containers.run(image, ["tcpdump", "-nr", "/pcap/basic.pcap"], remove=True,
                                           volumes={str(tmp_path): {"bind": "/pcap", "mode": "ro"}},
                                           labels=OWNER_LABELS, user="0").decode()
    import dpkt
    with pcap_path.open("rb") as f:
        packets = sum(1 for _ in dpkt.pcap.Reader(f))     # the segments, and the capture's start mark
    assert len(listing.strip().splitlines()) == packets >= len(basic.segments), listing
    assert "Flags [S]" in listing and "Flags [S.]" in listing

    class Count(HTMLParser):
        svg = seg = 0
        external: list[str] = []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            self.svg += tag == "svg"
            self.seg += "seg" in (attrs.get("class") or "").split()
            if tag in ("script", "link", "img") or attrs.get("src"):
                self.external.append(tag)

    page = Count()
    page.feed(html_path.read_text(encoding="utf-8"))
    assert page.svg == 1 and page.seg == len(basic.scenarios[0].ladder.segments)
    assert not page.external


ARTIFACTS = ROOT / "tests" / "artifacts"      # git-ignored (its own .gitignore); CI keeps it


def _chromium(browser: str, *args: str, url: str) -> subprocess.CompletedProcess:
    profile = ARTIFACTS / "chromium-profile"
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-extensions", "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
                           *args, url], capture_output=True, text=True, timeout=180)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_html_renders_in_a_headless_browser(udp, tmp_path):
    """The page in a real Chromium: the DOM it built has one arrow per segment and one ✘ per drop,
    nothing was logged to the console, and a screenshot is kept (tests/artifacts/trace-udp.png)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed (apt-get install chromium); the HTML is still parsed above")
    ARTIFACTS.mkdir(exist_ok=True)
    html_path, _ = write_outputs(udp, ARTIFACTS / "trace-udp.html")
    dom = _chromium(browser, "--dump-dom", url=html_path.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "CONSOLE" not in dom.stderr and "Uncaught" not in dom.stderr, dom.stderr[-2000:]
    ladders = [s.ladder for s in udp.scenarios]
    assert dom.stdout.count("<svg") == len(ladders)
    assert dom.stdout.count('<line class="seg') == sum(len(lad.segments) for lad in ladders) > 0
    assert dom.stdout.count('<line class="drop"') == sum(len(lad.drops) for lad in ladders) > 0
    assert dom.stdout.count('class="note"') == sum(1 for lad in ladders for r in lad.rows if r.note)
    shot = ARTIFACTS / "trace-udp.png"
    shot.unlink(missing_ok=True)
    done = _chromium(browser, f"--screenshot={shot}", "--window-size=1100,1600", "--hide-scrollbars",
                     url=html_path.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    assert _png_size(shot) == (1100, 1600) and shot.stat().st_size > 20_000


def test_the_command_prints_the_ladder_and_writes_the_page(tmp_path, lab_image):
    env = dict(os.environ, SOCKETLAB_PROJECT=RUN_ID, SOCKETLAB_SUBNET="")
    out = tmp_path / "refused.html"
    proc = subprocess.run([sys.executable, "lab.py", "trace", "basic", "--scenario", "connect-ex-refused",
                           "-o", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "─ SYN " in proc.stdout and " RST ─" in proc.stdout and "ECONNREFUSED" in proc.stdout
    assert "\033[" not in proc.stdout                                # not a terminal: no colour
    assert all(len(line) <= 100 for line in proc.stdout.splitlines())
    assert out.is_file() and out.with_suffix(".pcap").is_file()


@pytest.fixture(scope="module")
def loops(docker_client, lab_image, topology):
    return trace_lesson(docker_client, topology, "loops", ["restart-after-quit", "address-in-use", "closed-port"],
                        say=lambda _: None, project=RUN_ID)


def test_loops_first_fin_comes_from_the_side_whose_close_came_first(loops):
    assert all(s.report.passed for s in loops.scenarios), [s.report.summary for s in loops.scenarios]
    closers = set()
    for st in loops.scenarios:
        ladder = st.ladder
        for conn in ladder.connections.values():
            rows = [r for r in ladder.rows if r.conn == conn.id]
            fins = [r for r in rows if r.kind == "segment" and "FIN" in r.seg.flags]
            closes = [r for r in rows if r.kind == "call" and r.call.call == "close"]
            if not fins or not closes:
                continue
            first_closer = closes[0].side
            assert fins[0].direction == ("c2s" if first_closer == "client" else "s2c"), (st.report.scenario, conn)
            assert ladder.rows.index(closes[0]) < ladder.rows.index(fins[0])
            assert f"from the {first_closer}" in fins[0].note
            closers.add(first_closer)
    assert closers == {"client", "server"}           # the address-in-use matrix closes from both sides


def test_loops_rebind_failure_is_shown_with_its_errno(loops):
    ladder = next(s.ladder for s in loops.scenarios if s.report.scenario == "address-in-use")
    failed = [r for r in ladder.calls("server", "bind") if r.call.errno == 98]
    assert failed and "Address already in use" in failed[0].note


# -- udp: boundaries kept, a datagram cut, and the datagrams the seeded relay dropped -------------
@pytest.fixture(scope="module")
def udp(docker_client, lab_image, topology):
    return trace_lesson(docker_client, topology, "udp", ["relay-loss", "truncation", "boundaries"],
                        say=lambda _: None, project=RUN_ID)


def _scenario(result, name):
    return next(s for s in result.scenarios if s.report.scenario == name)


def test_udp_relay_drops_on_the_ladder_are_the_ones_the_seed_decides(udp):
    st = _scenario(udp, "relay-loss")
    assert st.report.passed, st.report.summary
    ladder, count = st.ladder, 30
    up = plan(SEED, "up", count, Impairment(loss=LOSS))
    reached = [f.index for f in up if not f.drop]
    down = plan(SEED, "down", len(reached), Impairment(loss=LOSS))
    want_up = [f.index for f in up if f.drop]
    want_down = [f.index for f in down if f.drop]               # numbered among the echoes that came back
    assert st.report.observed["lost_up"] == want_up
    assert st.report.observed["lost_down"] == [reached[i] for i in want_down]
    flows: dict[int, dict[str, list]] = {}
    for row in ladder.drops:
        flows.setdefault(row.conn, {}).setdefault(row.drop.direction, []).append(row)
    up_flows = [f["up"] for f in flows.values() if "up" in f]
    down_flows = [f["down"] for f in flows.values() if "down" in f]
    assert len(up_flows) == len(down_flows) == 2                  # two runs of the probe: two flows, each way
    for rows in up_flows:                                         # the same datagrams on both runs
        assert [r.drop.index for r in rows] == want_up
        assert [r.drop.head for r in rows] == [f"b'seq {i}'" for i in want_up]
        assert all(r.direction == "c2s" for r in rows)
    for rows in down_flows:
        assert [r.drop.index for r in rows] == want_down
        assert [r.drop.head for r in rows] == [f"b'seq {reached[i]}'" for i in want_down]
        assert all(r.direction == "s2c" for r in rows)
    on_wire = [r for r in ladder.segments if r.seg.proto == "udp"]
    for rows in down_flows:        # a lost echo left the server (captured) before the relay dropped it
        for r in rows:
            echo = [s for s in on_wire if s.conn == r.conn and s.direction == "s2c" and s.seg.head == r.drop.head]
            assert echo and echo[0].t < r.t
    # a datagram lost on its way in never reaches the server's wire; every other one does, once per run
    relayed = sorted(s.seg.head for s in on_wire if s.direction == "c2s")
    assert relayed == sorted(f"b'seq {i}'" for i in reached for _ in range(2))
    assert any("the relay dropped datagram" in r.note for r in ladder.drops)
    text = render_text(ladder, colour=False)
    assert "✘ relay" in text and "relay ✘" in text


def test_udp_boundaries_each_recv_is_one_datagram_and_an_empty_one_counts(udp):
    st = _scenario(udp, "boundaries")
    assert st.report.passed, st.report.summary
    ladder = st.ladder
    [conn] = ladder.connections.values()
    assert conn.proto == "udp"
    echoes = [r.seg for r in ladder.segments if r.direction == "s2c"]
    # then the datagrams that must come back unchanged (spaces, CRLF, not UTF-8)
    assert [s.head for s in echoes][:5] == ["b'x'", "b'a'", "b'bb'", "b'ccc'", "b''"]
    recvs = [r.call for r in ladder.calls("client", {"recvfrom", "recv"})]
    assert [(c.n, c.head) for c in recvs][:5] == [(1, "b'x'"), (1, "b'a'"), (2, "b'bb'"), (3, "b'ccc'"),
                                                  (0, "b''")]
    # the three echoes were all queued before the first of their recvs returned
    rows = ladder.rows
    abc = [r for r in ladder.segments if r.direction == "s2c" and r.seg.head in ("b'a'", "b'bb'", "b'ccc'")]
    first_recv = next(r for r in ladder.calls("client") if r.call.head == "b'a'" and r.call.call == "recvfrom")
    assert rows.index(abc[-1]) < rows.index(first_recv)
    assert "keeps the boundaries" in first_recv.note
    empty = next(r for r in ladder.calls("client", "recvfrom") if r.call.n == 0)
    assert "0 bytes is a real message" in empty.note


def test_udp_truncation_one_datagram_in_two_fragments_cut_by_the_buffer(udp):
    st = _scenario(udp, "truncation")
    assert st.report.passed, st.report.summary
    ladder = st.ladder
    big = [r for r in ladder.segments if r.seg.length == 2000]
    assert [r.direction for r in big] == ["c2s", "s2c"]            # one datagram each way, not two
    assert all(r.seg.fragments == 2 for r in big)                  # ... in two IP fragments (MTU 1500)
    [cut] = ladder.calls("client", "recvmsg")
    assert (cut.call.req, cut.call.n, cut.call.extra["msg_flags"]) == (1024, 1024, ["MSG_TRUNC"])
    assert "the other 976 bytes of the 2000-byte datagram are gone" in cut.note
    after = ladder.rows[ladder.rows.index(cut) + 1:]
    nxt = next(r for r in after if r.kind == "call" and r.side == "client" and r.call.call == "recv")
    assert (nxt.call.n, nxt.call.head) == (4, "b'next'")
    assert "1024 TRUNC" in render_text(ladder, colour=False)


# -- loops: connect() to a closed port --------------------------------------------------------------
def test_loops_connect_to_a_closed_port_is_answered_by_rst(loops):
    st = _scenario(loops, "closed-port")
    assert st.report.passed, st.report.summary
    [conn] = st.ladder.connections.values()
    rows = [r for r in st.ladder.rows if r.conn == conn.id]
    assert [(r.seg.flags, r.direction) for r in rows if r.kind == "segment"] == [("SYN", "c2s"), ("RST-ACK", "s2c")]
    rst = next(r for r in rows if r.kind == "segment" and "RST" in r.seg.flags)
    failed = next(r for r in rows if r.kind == "call" and r.call.call == "connect")
    assert failed.call.errno == 111 and rows.index(rst) < rows.index(failed)
    assert "ECONNREFUSED" in rst.note
    text = render_text(st.ladder, colour=False)
    assert "connect() ✘ ECONNREFUSED" in text


# -- framing: a frame in many segments, frames sharing one -------------------------------------------
@pytest.fixture(scope="module")
def framing(docker_client, lab_image, topology):
    return trace_lesson(docker_client, topology, "framing", ["trickle", "pipelined-requests"],
                        say=lambda _: None, project=RUN_ID)


def test_framing_trickle_one_frame_over_as_many_segments_as_bytes(framing):
    st = _scenario(framing, "trickle")
    assert st.report.passed, st.report.summary
    sends = st.report.observed["request_sends"]
    carried = [r for r in st.ladder.segments if r.direction == "c2s" and r.seg.length]
    request = list({r.seg.seq: r for r in reversed(carried)}.values())[::-1]   # a retransmission is not new
    assert len(request) == sends > 100 and {r.seg.length for r in request} == {1}
    assert f"in {sends} segments" in request[0].note
    reply = [r for r in st.ladder.segments if r.direction == "s2c" and r.seg.length]
    assert len(reply) >= 4                                        # the server trickles its reply too
    recv4 = [r.call.n for r in st.ladder.calls("client", "recv")][:4]
    assert recv4 == st.report.observed["prefix_recv_sizes"] == [1, 1, 1, 1]


def test_framing_pipeline_several_frames_in_one_segment(framing):
    st = _scenario(framing, "pipelined-requests")
    assert st.report.passed, st.report.summary
    data = [r for r in st.ladder.segments if r.direction == "c2s" and r.seg.length]
    shared = [r for r in data if "whole frames in ONE segment" in r.note]
    assert shared[0] is data[0]                                    # noted once per connection
    assert len(shared) == len({r.conn for r in shared}) <= len({r.conn for r in data})
    assert frame_count(shared[0].seg.payload) == 4                # three requests and a body: four frames
    sends = st.ladder.calls("client", "sendall")
    assert sends[0].call.n == shared[0].seg.length                # one sendall(), one segment


def frame_count(payload: bytes) -> int:
    return len(frame_spans(payload))


# -- ftp: an upload cut short, and the put that resumes it at the offset ------------------------------
@pytest.fixture(scope="module")
def ftp(docker_client, lab_image, topology):
    return trace_lesson(docker_client, topology, "ftp", ["resume-upload"], say=lambda _: None, project=RUN_ID)


def test_ftp_cut_upload_then_resume_from_the_offset(ftp):
    """Matched by op names and offsets in the frames' JSON headers, not by the frames' exact layout."""
    st = ftp.scenarios[0]
    assert st.report.passed, st.report.summary
    o = st.report.observed
    frames = placed_frames(st.ladder, resync=True)
    data = [p for p in frames if p.direction == "c2s" and p.frame.header.get("op") == "data"]
    assert [p.frame.header.get("offset") for p in data] == [0, o["resume_offset"]] == [0, o["cut_after"]]
    cut, resume = data
    assert cut.conn != resume.conn
    body_sent = stream_length(cut.rows) - cut.frame.body_start
    assert body_sent == o["cut_after"]                                # the cut: exactly that many bytes went
    fin = next(r for r in st.ladder.segments if r.conn == cut.conn and r.direction == "c2s" and "FIN" in r.seg.flags)
    assert "the upload is cut" in fin.note
    replies = [p.frame.header for p in frames if p.conn == resume.conn and p.direction == "s2c"]
    accepted = next(h for h in replies if h.get("code") == 350)
    assert accepted["offset"] == o["cut_after"]                       # the server names the offset ...
    puts = [p for p in frames if p.conn == resume.conn and p.frame.header.get("op") == "put"]
    assert puts and st.ladder.rows.index(puts[0].rows[puts[0].first]) < st.ladder.rows.index(resume.rows[resume.first])
    announced = resume.frame.header.get("size")
    assert announced == o["size"] - o["cut_after"] == o["received_on_resume"]   # ... and only the rest
    resent = stream_length(resume.rows) - resume.frame.body_start              # crosses (+ ls and quit)
    assert announced <= resent < announced + 4096
    assert any("350 with offset 1048576" in r.note for r in st.ladder.segments)
    assert 226 in [h.get("code") for h in replies]


def test_a_trace_whose_terminal_closes_removes_its_instance(docker_client, lab_image):
    """SIGHUP (the terminal window closed) mid-trace: lab.py leaves through its clean-up."""
    import signal

    import pexpect
    project = f"{RUN_ID}-hup"
    env = dict(os.environ, SOCKETLAB_PROJECT=project, SOCKETLAB_SUBNET="")
    child = pexpect.spawn(sys.executable, ["lab.py", "trace", "sticky", "--scenario", "coalesce"], cwd=str(ROOT),
                          env=env, encoding="utf-8", timeout=180)
    try:
        child.expect("running 1 scenario")          # the throw-away instance is up
        child.kill(signal.SIGHUP)
        child.expect(pexpect.EOF, timeout=180)
    finally:
        child.close(force=True)
    # sparse: the other test worker's containers may vanish between listing and inspecting
    left = [c.id for c in docker_client.containers.list(all=True, sparse=True, filters={"label": "socketlab.project"})
            if (c.attrs.get("Labels") or {}).get("socketlab.project", "").startswith(project)]
    assert left == [], left
