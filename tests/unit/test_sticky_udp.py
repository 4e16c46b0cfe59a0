"""Lessons sticky and udp on loopback: the servers, probes, relay and scenarios, without Docker.

The servers run as real processes (as students run them); the scenario functions run against
them through ``LocalNode``, a ``scenario.Node`` for this machine.
"""
from __future__ import annotations

import json
import os
import random
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from labnode.probes import sticky as sticky_probes
from labnode.probes import udp as udp_probes
from socketlab.scenario import LessonRun, RunResult
from socketlab.scenarios import sticky as sticky_scenarios
from socketlab.scenarios import udp as udp_scenarios
from sticky.server import MAX_LINE, CommandError, big_pattern, parse_frame, run_command
from udp.relay import Impairment, plan
from udp.server import MAX_DATAGRAM, Peer, Records, receive_data

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
NEGATIVE = ROOT / "tests" / "negative"
PY = sys.executable


# --- helpers: processes and free ports -----------------------------------------------------------

class Process:
    """A lesson program started the way a student starts it; waits for `listening on HOST:PORT`."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen([PY, *argv], cwd=SERVICES, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"{argv} did not start: {line!r}")
        self.port = int(line.split()[2].rsplit(":", 1)[1])
        # keep draining its output so a chatty server never blocks on a full pipe
        self.output: list[str] = []
        threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True).start()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)


def free_port_block(size: int = 10) -> int:
    """A base port such that base..base+size-1 are free for TCP and UDP on 127.0.0.1 right now."""
    for _ in range(200):
        base = random.randrange(30000, 40000)
        socks = []
        try:
            for p in range(base, base + size):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


class LocalNode:
    """``scenario.Node`` for this machine; background processes log into a private directory."""

    def __init__(self, name: str, logs: Path) -> None:
        self.name = name
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def run(self, argv, *, timeout: float = 30) -> RunResult:
        try:
            p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=SERVICES)
        except subprocess.TimeoutExpired as exc:
            return RunResult(124, str(exc.stdout or ""), "timeout")
        return RunResult(p.returncode, p.stdout, p.stderr)

    def spawn(self, name: str, argv) -> None:
        with open(self.logs / f"{name}.log", "w") as log:
            self.procs[name] = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, cwd=SERVICES)

    def stop(self, name: str, signal: str = "TERM") -> None:
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)

    def read_file(self, path: str) -> bytes:
        mine = self.logs / Path(path).name
        return mine.read_bytes() if path.startswith("/tmp/") and mine.exists() else Path(path).read_bytes()


def local_run(lesson: str, port: int, tmp_path: Path, client_cmd: list[str],
              relay: bool = False) -> LessonRun:
    nodes = {role: LocalNode(f"local-{role}", tmp_path) for role in ("server", "client")}
    if relay:
        nodes["relay"] = LocalNode("local-relay", tmp_path)
    return LessonRun(lesson=lesson, nodes=nodes, server_host="127.0.0.1", ports={"server": port},
                     server_cmd=[PY, f"{lesson}/server.py"], client_cmd=client_cmd, python=PY,
                     workdir=str(SERVICES))


def probe_result(capsys) -> dict:
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("RESULT ")]
    assert len(lines) == 1
    return json.loads(lines[0][len("RESULT "):])


# --- sticky: the fake shell ----------------------------------------------------------------------

def test_big_pattern_names_its_own_offsets():
    data = big_pattern(5120)
    assert len(data) == 5120 and data.count(b"\n") == 80
    assert data[1024:1036] == b"big@00001024"             # so a stray chunk says where it came from
    assert len(big_pattern(100)) == 100 and big_pattern(0) == b""


def test_only_whitelisted_commands_run():
    assert run_command("echo hi").parts == [b"hi\n"]
    assert run_command("sends hello world").parts == [b"hello", b"world"]
    assert run_command("lines 2").parts == [b"line 1 of 2\nline 2 of 2\n"]
    for bad in ("rm -rf /", "big", "big -1", "big 99999999999", "lines x", "", "sends"):
        with pytest.raises(CommandError):
            run_command(bad)
    source = (SERVICES / "sticky" / "server.py").read_text()
    assert "import subprocess" not in source and "os.system" not in source


def test_frame_prefix_is_parsed():
    assert parse_frame("frame big 10") == (True, "big 10")
    assert parse_frame("big 10") == (False, "big 10")
    assert parse_frame("framed 1")[0] is False


@pytest.fixture(scope="module")
def sticky_server():
    server = Process("sticky/server.py", "--host", "127.0.0.1", "--port", "0")
    yield server
    assert server.stop() == 0                      # SIGTERM: a clean exit


def test_leftover_of_the_first_reply_is_read_as_the_second(sticky_server, capsys):
    assert sticky_probes.leftover("127.0.0.1", sticky_server.port)
    o = probe_result(capsys)["observed"]
    assert o["r1_len"] == 1024 and o["r2_len"] == 1024
    assert o["r2_is_continuation"] and not o["r2_is_echo_reply"]
    assert o["r2_head"].startswith("big@00001024") and o["out2"] == "hi\n" and o["queued_before_r2"] == 4099


@pytest.mark.parametrize("nodelay", [False, True])
def test_two_queued_sends_read_as_one_with_or_without_nodelay(sticky_server, capsys, nodelay):
    assert sticky_probes.coalesce("127.0.0.1", sticky_server.port, rounds=5, nodelay=nodelay)
    o = probe_result(capsys)["observed"]
    assert o["coalesced"] == 5 and o["first_recv"] == "helloworld"
    if nodelay:
        assert o["client_nodelay"] == 1 and o["server_nodelay_reply"].startswith("TCP_NODELAY is now 1")
    else:
        assert o["paced_recvs"] == ["hello", "world"]


def test_framed_replies_come_out_exactly(sticky_server, capsys):
    assert sticky_probes.framed("127.0.0.1", sticky_server.port)
    o = probe_result(capsys)["observed"]
    assert o["sizes"] == [5120, 3, 10] and o["left_over"] == 0 and o["sends"] == "helloworld"


@pytest.mark.parametrize("client, passes", [
    ("sticky/client.py", True),
    ("sticky/naive_client.py", False),
    (str(NEGATIVE / "sticky_seed_client.py"), False),
])
def test_grade_client_passes_only_the_framed_client(sticky_server, capsys, monkeypatch, client, passes):
    monkeypatch.chdir(SERVICES)
    ok = sticky_probes.grade_client("127.0.0.1", sticky_server.port, shlex.join([PY, client]))
    o = probe_result(capsys)["observed"]
    assert ok is passes and o["all_exact"] is passes and o["client_exit"] == 0
    if not passes:
        assert o["printed_bytes"][0] <= 1025 and o["exact"][1] is False     # echo hi printed the leftover


def test_bad_input_gets_an_error_and_the_server_keeps_serving(sticky_server):
    with socket.create_connection(("127.0.0.1", sticky_server.port), timeout=5) as sock:
        sock.sendall(b"\xff\xfe\n")
        assert sock.recv(1024) == b"error: command is not UTF-8 text\n"
        sock.sendall(b"frame bogus\n")
        size = int.from_bytes(sticky_probes.recv_exact(sock, 4), "big")
        assert sticky_probes.recv_exact(sock, size).startswith(b"error: unknown command 'bogus'")
    with socket.create_connection(("127.0.0.1", sticky_server.port), timeout=5) as sock:
        sock.sendall(b"x" * (MAX_LINE + 10))          # no newline, ever
        assert b"longer than" in sock.recv(1024)
        assert sock.recv(1024) == b""                 # then the server hangs up
    with socket.create_connection(("127.0.0.1", sticky_server.port), timeout=5) as sock:
        sock.sendall(b"echo still here\n")
        assert sock.recv(1024) == b"still here\n"


def test_sticky_scenarios_on_loopback(sticky_server, tmp_path):
    run = local_run("sticky", sticky_server.port, tmp_path, [PY, "sticky/client.py"])
    for sc in sticky_scenarios.SCENARIOS:
        outcome = sc(run)
        assert outcome.passed, (sc.name, outcome.summary, outcome.transcript)
    assert [s.roles for s in sticky_scenarios.SCENARIOS][-1] == ("client",)
    seed = local_run("sticky", sticky_server.port, tmp_path, [PY, str(NEGATIVE / "sticky_seed_client.py")])
    outcome = sticky_scenarios.client_exact_replies(seed)
    assert not outcome.passed and outcome.observed["exact"] == [False] * 6


# --- udp: the relay's fates are a pure function of the seed --------------------------------------

def test_relay_plan_is_deterministic_and_independent_of_other_options():
    lossy = Impairment(loss=0.3)
    drops = [f.index for f in plan(42, "up", 30, lossy) if f.drop]
    assert drops == [0, 6, 7, 8, 12, 13, 15, 20, 27]
    noisy = Impairment(0.3, duplicate=0.5, reorder=0.5)
    assert drops == [f.index for f in plan(42, "up", 30, noisy) if f.drop]
    assert drops != [f.index for f in plan(42, "down", 30, lossy) if f.drop]
    assert drops != [f.index for f in plan(43, "up", 30, lossy) if f.drop]
    many = plan(7, "up", 10_000, lossy)
    assert 2800 < sum(f.drop for f in many) < 3200
    assert not any(f.drop or f.copies > 1 or f.hold for f in plan(42, "up", 100, Impairment()))


def test_predicted_arrivals_for_seed_42():
    arrive, lost_up, lost_down = udp_probes.predicted_arrivals(30, 42, 0.3, one_way=False)
    assert lost_up == [0, 6, 7, 8, 12, 13, 15, 20, 27] and lost_down == [4, 9, 14, 17]
    assert len(arrive) == 17
    arrive, _, lost_down = udp_probes.predicted_arrivals(30, 42, 0.3, one_way=True)
    assert lost_down == [] and len(arrive) == 21


def test_stop_and_wait_receiver_delivers_once_in_order():
    peer = Peer()
    assert receive_data(peer, 0, b"a") == b"ACK 0"
    assert receive_data(peer, 0, b"a") == b"ACK 0"     # our ACK was lost: ACK again, deliver nothing
    assert receive_data(peer, 2, b"c") is None         # a gap: ignored
    assert receive_data(peer, 1, b"b") == b"ACK 1"
    assert peer.delivered == [b"a", b"b"] and peer.duplicates == 1 and peer.ahead == 1


def test_stats_always_fit_in_one_datagram():
    records = Records()
    for i in range(900):
        peer = records.peer(f"10.0.{i // 250}.{i % 250}:{40000 + i}")
        peer.delivered = [b"m" * 200] * 300
        peer.next_seq = 300
    assert len(records.stats("me")) <= MAX_DATAGRAM


# --- udp: the server, the probes, the relay on loopback ------------------------------------------

@pytest.fixture(scope="module")
def udp_server():
    server = Process("udp/server.py", "--host", "127.0.0.1", "--port", "0", "--quiet")
    yield server
    assert server.stop() == 0


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_connection_and_icmp_errors(udp_server, capsys):
    assert udp_probes.no_connection("127.0.0.1", udp_server.port, closed_udp_port())
    o = probe_result(capsys)["observed"]
    assert o["replies"] == ["from A", "from B"] and len(set(o["client_ports"])) == 2
    assert o["sendto_closed_returned"] == 5 and o["unconnected_recv"] == "timeout"
    assert o["connected_recv_errno"] == 111


def test_boundaries_and_the_empty_datagram(udp_server, capsys):
    assert udp_probes.boundaries("127.0.0.1", udp_server.port)
    o = probe_result(capsys)["observed"]
    assert o["received"] == ["a", "bb", "ccc"] and o["empty_datagram_len"] == 0


def test_truncation_loses_the_rest(udp_server, capsys):
    assert udp_probes.truncation("127.0.0.1", udp_server.port)
    o = probe_result(capsys)["observed"]
    assert (o["echo_size"], o["received"], o["msg_trunc"]) == (2000, 1024, True)
    assert o["lost"] == 976 and o["next_datagram"] == "next"


def test_max_size(udp_server, capsys):
    assert udp_probes.max_size("127.0.0.1", udp_server.port)
    o = probe_result(capsys)["observed"]
    assert o["echo_len"] == 65507 and o["oversize_errno"] == 90 and o["oversize_errno_name"] == "EMSGSIZE"


def test_overflow_drops_what_does_not_fit(udp_server, capsys):
    assert udp_probes.overflow("127.0.0.1", udp_server.port, count=500)
    o = probe_result(capsys)["observed"]
    assert o["rcvbuf_effective"] == 8192
    assert 0 < o["received"] < 10 and o["received"] + o["socket_drops"] == 500
    assert o["rcvbuf_errors_delta"] >= o["socket_drops"]


def test_blast_and_data_refuse_bad_arguments(udp_server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        for bad in (b"BLAST 99999999 10", b"BLAST 1 70000", b"BLAST x"):
            s.sendto(bad, ("127.0.0.1", udp_server.port))
            assert s.recv(65535).startswith(b"ERR usage")
        s.sendto(b"DATA x y", ("127.0.0.1", udp_server.port))      # not a number: just echoed
        assert s.recv(65535) == b"DATA x y"


def test_seed_server_truncates(tmp_path, capsys):
    server = Process(str(NEGATIVE / "udp_seed_server.py"), "--port", str(closed_udp_port()))
    try:
        assert not udp_probes.truncation("127.0.0.1", server.port)
        assert probe_result(capsys)["observed"]["echo_size"] == 1024
    finally:
        server.stop()


@pytest.fixture
def lossy_relay(udp_server):
    relay = Process("udp/relay.py", "--host", "127.0.0.1", "--port", "0", "--to",
                    f"127.0.0.1:{udp_server.port}", "--loss", "0.3", "--duplicate", "0.1", "--reorder", "0.1",
                    "--seed", "42")
    yield relay
    relay.stop()


def test_reliable_client_delivers_everything_and_the_seed_client_does_not(udp_server, lossy_relay, capsys):
    seed_client = str(NEGATIVE / "udp_seed_client.py")
    for client, passes, count in (("udp/client.py", True, 15), (seed_client, False, 5)):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:        # a clean record each time
            s.settimeout(5)
            s.sendto(b"RESET", ("127.0.0.1", udp_server.port))
            assert s.recv(100).startswith(b"OK")
        argv = [PY, client, "--host", "127.0.0.1", "--port", str(lossy_relay.port), "--count", str(count)]
        proc = subprocess.run(argv, cwd=SERVICES, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert udp_probes.delivered("127.0.0.1", udp_server.port, count) is passes
        o = probe_result(capsys)["observed"]
        assert o["delivered"] == (count if passes else 0)          # the seed client: datagram 0 is lost
        if passes:
            assert o["in_order"] and o["senders"] == 1 and "delivered 15/15" in proc.stdout


def test_relay_loss_is_exactly_the_predicted_set(udp_server):
    relay = Process("udp/relay.py", "--host", "127.0.0.1", "--port", "0", "--to",
                    f"127.0.0.1:{udp_server.port}", "--loss", "0.3", "--seed", "42")
    try:
        for _ in range(2):                                # a new socket is a new flow: the same fates again
            argv = [PY, "-m", "labnode.probes.udp", "relay-loss", "--host", "127.0.0.1", "--port", str(relay.port),
                    "--count", "30"]
            out = subprocess.run(argv, cwd=SERVICES, capture_output=True, text=True, timeout=30).stdout
            o = json.loads(out.splitlines()[-1][len("RESULT "):])["observed"]
            assert o["missing"] == [0, 4, 6, 7, 8, 9, 12, 13, 14, 15, 17, 20, 27] == o["predicted_missing"]
    finally:
        assert relay.stop() == 0
    assert any(line.startswith("relay summary ") for line in relay.output)


def test_tcp_relay_cuts_after_exactly_n_bytes():
    payload = bytes(range(256)) * 400                       # 102400 bytes
    with socket.create_server(("127.0.0.1", 0)) as upstream:
        def serve_one() -> None:
            conn, _ = upstream.accept()
            with conn:
                try:
                    conn.sendall(payload)
                    conn.recv(1)
                except OSError:
                    pass
        threading.Thread(target=serve_one, daemon=True).start()
        relay = Process("udp/relay.py", "--tcp", "--host", "127.0.0.1", "--port", "0",
                        "--to", f"127.0.0.1:{upstream.getsockname()[1]}", "--cut-after", "10000")
        try:
            with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
                got = bytearray()
                while chunk := sock.recv(65536):
                    got += chunk
            assert bytes(got) == payload[:10000]
        finally:
            relay.stop()


def test_udp_scenarios_on_loopback(tmp_path):
    base = free_port_block()
    server = Process("udp/server.py", "--host", "127.0.0.1", "--port", str(base))
    try:
        run = local_run("udp", base, tmp_path, [PY, "udp/client.py"], relay=True)
        outcomes = {sc.name: sc(run) for sc in udp_scenarios.SCENARIOS}
        for name, outcome in outcomes.items():
            assert outcome.passed, (name, outcome.summary, outcome.transcript)
        assert outcomes["relay-loss"].observed["runs_identical"]
        assert outcomes["reliable-delivery"].observed["delivered"] == udp_scenarios.RELIABLE_COUNT
        assert outcomes["reliable-delivery"].observed["relay"]["up"]["dropped"] > 0
        seed = local_run("udp", base, tmp_path, [PY, str(NEGATIVE / "udp_seed_client.py")])
        outcome = udp_scenarios.reliable_delivery(seed)
        assert not outcome.passed and outcome.observed["delivered"] == 0
    finally:
        server.stop()
