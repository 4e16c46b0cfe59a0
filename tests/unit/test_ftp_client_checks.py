"""The machinery of `check ftp --client` (socketlab/scenarios/ftp_client.py), without Docker: the relay's
frame parser, the trickle relay against the fake server on loopback, and what client-batch says from the
frames a client sent."""
import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from labnode.ftprelay import FrameParser
from socketlab.scenarios.ftp_client import Ran, Wire, judge_batch
from tests.loopback import free_port, wait_listening

SERVICES = Path(__file__).resolve().parents[2] / "services"


def frame(fields: dict, body: bytes = b"") -> bytes:
    raw = json.dumps({**fields, "size": len(body)}).encode()
    return struct.pack("!I", len(raw)) + raw + body


def test_the_parser_cuts_a_frame_into_prefix_header_and_body_pieces_and_logs_it():
    logged = []
    pieces = FrameParser("s2c", logged.append).feed(frame({"code": 150, "msg": "here"}, b"x" * 40000))
    assert [(p.part, len(p.data)) for p in pieces][:2] == [("prefix", 1), ("prefix", 3)]
    assert [p.part for p in pieces[2:4]] == ["header", "header"]
    assert sum(len(p.data) for p in pieces if p.part == "body") == 40000
    assert [p.last for p in pieces].count(True) == 1 and pieces[-1].last
    assert logged[0]["code"] == 150 and logged[0]["body"] == 40000


def test_a_prefix_in_native_byte_order_is_logged_with_both_readings():
    logged = []
    raw = json.dumps({"op": "login", "size": 0}).encode()
    FrameParser("c2s", logged.append).feed(struct.pack("<I", len(raw)) + raw)
    assert logged[0]["ev"] == "bad-prefix" and logged[0]["as_little_endian"] == len(raw)


def test_the_trickle_relay_tells_where_a_one_recv_client_hung_up(tmp_path):
    fake_port, relay_port = free_port(), free_port()
    env = {"PYTHONPATH": str(SERVICES)}
    fake = subprocess.Popen([sys.executable, "-m", "labnode.ftpfake", "--port", str(fake_port), "--mode",
                             "bad-signature", "--log", str(tmp_path / "fake.jsonl"), "--max-seconds", "20"], env=env)
    relay = subprocess.Popen([sys.executable, "-m", "labnode.ftprelay", "--port", str(relay_port), "--to-port",
                              str(fake_port), "--log", str(tmp_path / "relay.jsonl"), "--trickle",
                              "--max-connections", "1", "--max-seconds", "20"], env=env)
    try:
        wait_listening(fake_port)   # the fake's own accept loop takes this probe as its first connection
        time.sleep(0.3)
        for _ in range(100):
            try:
                sock = socket.create_connection(("127.0.0.1", relay_port), timeout=5)
                break
            except OSError:
                time.sleep(0.05)
        first = sock.recv(4)            # the mistake: one recv() taken as the 4-byte prefix
        sock.close()
        relay.wait(timeout=10)
    finally:
        for p in (relay, fake):
            p.terminate()
            p.wait(timeout=10)
    assert len(first) == 1
    events = [json.loads(line) for line in (tmp_path / "relay.jsonl").read_text().splitlines()]
    closed = next(e for e in events if e["ev"] == "closed")
    assert closed["client_stopped_at"] == {"frame": 1, "part": "prefix", "delivered": 1, "of": 4, "code": None,
                                           "frame_complete": False}


def events(*frames: tuple[str, dict]) -> list[dict]:
    return [{"ev": "frame", "dir": d, "frame": i, "conn": 1, "prefix": "0000002a", **f}
            for i, (d, f) in enumerate(frames, start=1)]


def test_client_batch_names_a_skipped_rm_and_a_native_byte_order():
    ok = Ran("c", 0, [])
    wire = Wire(1, events(("s2c", {"code": 220}), ("c2s", {"op": "login"}), ("c2s", {"op": "put"}),
                          ("c2s", {"op": "get"}), ("c2s", {"op": "quit"})))
    summary, fix = judge_batch(ok, wire, "a", "a", removed=False)
    assert summary == "'rm cli.bin' did not remove it (the client never sent an rm request), yet the client exited 0"
    silent = Wire(1, events(("s2c", {"code": 220, "prefix": "00000227"})))
    silent.events[0]["prefix"] = "00000227"
    summary, fix = judge_batch(Ran("c", 1, []), silent, "a", None, removed=True)
    assert "sent nothing usable after the greeting" in summary and "654442496" in summary and "!I" in fix
