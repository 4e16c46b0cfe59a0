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

from socketlab.trace.command import write_outputs
from socketlab.trace.session import trace_lesson
from socketlab.trace.wire import read_pcap
from tests.conftest import RUN_ID

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


def test_json_and_html_and_pcap(basic, tmp_path):
    data = json.loads(json.dumps(basic.as_dict()))
    events = data["scenarios"][0]["events"]
    assert any(e.get("segment", {}).get("flags") == "SYN" for e in events)
    assert any(e.get("call", {}).get("call") == "accept" for e in events)
    html_path, pcap_path = write_outputs(basic, tmp_path / "basic.html")
    assert pcap_path == tmp_path / "basic.pcap"
    assert len(read_pcap(pcap_path.read_bytes())) == len(basic.segments) > 0

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


def test_html_renders_in_a_headless_browser(basic, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed (apt-get install chromium); the HTML is still parsed above")
    html_path, _ = write_outputs(basic, tmp_path / "basic.html")
    shot = tmp_path / "ladder.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1100,1400", html_path.as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


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
    return trace_lesson(docker_client, topology, "loops", ["restart-after-quit", "address-in-use"],
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
