"""Hostile clients against the small lesson servers: basic, loops, socketserver (TCP) and udp.

Each server runs as its own process on 127.0.0.1 (exactly as in its container, but for the
address); every attack is followed by a fresh, polite client that must be served correctly, and
the server process must still be alive. Every socket has a timeout; every loop is bounded.
(The framing, sticky and ftp servers have their own, larger suites beside this file.)
"""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.loopback import free_port, wait_listening, wait_udp_bound

SERVICES = Path(__file__).resolve().parents[2] / "services"
TIMEOUT = 5.0


def start(lesson: str, port: int, udp: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SERVICES), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(SERVICES / lesson / "server.py"), "--host", "127.0.0.1",
                             "--port", str(port), *(["--quiet"] if udp else [])],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if udp:
        wait_udp_bound(port, proc=proc)
    else:
        wait_listening(port, proc=proc)
    return proc


@pytest.fixture(scope="module", params=["basic", "loops", "socketserver"])
def tcp_server(request):
    port = free_port()
    proc = start(request.param, port)
    yield request.param, port, proc
    proc.terminate()
    proc.wait(10)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def polite(lesson: str, port: int) -> None:
    """A fresh client gets exactly the lesson's answer."""
    with connect(port) as s:
        if lesson == "basic":
            s.sendall(b"hello")
            reply = s.recv(4096)
            assert b"you sent 5 bytes: b'hello'" in reply, reply
        elif lesson == "loops":
            s.sendall(b"hello")
            assert s.recv(1024) == b"olleh"
            s.sendall(b"quit")
        else:
            s.sendall(b"hello\n")
            assert s.recv(1024) == b"HELLO\n"


def reset(sock: socket.socket) -> None:
    """Leave with RST instead of FIN (SO_LINGER 0): what a crashed or killed client looks like."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def attack_close_at_once(port):
    connect(port).close()


def attack_reset_after_sending(port):
    s = connect(port)
    s.sendall(b"hello")
    reset(s)


def attack_reset_before_the_reply_is_read(port):
    s = connect(port)
    s.sendall(b"x" * 100)
    time.sleep(0.2)                   # the server is replying, or has replied, to a socket that is gone
    reset(s)


def attack_not_utf8(port):
    with connect(port) as s:
        s.sendall(b"\xff\xfe\x00 not text\n")
        s.settimeout(2)
        try:
            s.recv(4096)
        except (TimeoutError, ConnectionError):
            pass


def attack_a_megabyte_then_leave(port):
    s = connect(port)
    try:
        s.sendall(os.urandom(1 << 20))
    except OSError:
        pass                          # the server may close (or reset) before it all went in
    reset(s)


def attack_half_close(port):
    with connect(port) as s:
        s.sendall(b"hi\n")
        s.shutdown(socket.SHUT_WR)    # FIN: no more from us, but we still read
        s.settimeout(3)
        try:
            while s.recv(4096):
                pass
        except (TimeoutError, ConnectionError):
            pass


def attack_a_hundred_quick_connections(port):
    for _ in range(100):
        s = connect(port)
        if _ % 2:
            reset(s)
        else:
            s.close()


TCP_ATTACKS = [attack_close_at_once, attack_reset_after_sending, attack_reset_before_the_reply_is_read,
               attack_not_utf8, attack_a_megabyte_then_leave, attack_half_close, attack_a_hundred_quick_connections]


@pytest.mark.parametrize("attack", TCP_ATTACKS, ids=[a.__name__.removeprefix("attack_") for a in TCP_ATTACKS])
def test_tcp_server_survives_and_serves_a_fresh_client(tcp_server, attack):
    lesson, port, proc = tcp_server
    attack(port)
    # the iterative servers (basic, loops) finish with the attacker first; give them a moment
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, f"the {lesson} server died: {proc.stderr.read().decode()[-2000:]}"
        try:
            polite(lesson, port)
            break
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def udp_server():
    port = free_port(socket.SOCK_DGRAM)
    proc = start("udp", port, udp=True)
    yield port, proc
    proc.terminate()
    proc.wait(10)


def udp_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recvfrom(65535)[0]
        except TimeoutError:
            return None


UDP_GARBAGE = [b"", b"\xff\xfe\x00", b"x" * 65507, b"BLAST", b"BLAST 99999999 1000", b"BLAST 10 100000",
               b"BLAST -1 -1", b"BLAST ten tons", b"DATA", b"DATA notanumber hi", b"DATA 99999999999999999999 x",
               b"STATS extra words", b"RESET please", b"\x00" * 100]


@pytest.mark.parametrize("garbage", UDP_GARBAGE, ids=[repr(g[:24]) for g in UDP_GARBAGE])
def test_udp_server_answers_garbage_and_serves_a_fresh_client(udp_server, garbage):
    port, proc = udp_server
    udp_exchange(port, garbage, timeout=0.5)
    assert proc.poll() is None, f"the udp server died: {proc.stderr.read().decode()[-2000:]}"
    assert udp_exchange(port, b"hello") == b"hello"


def test_udp_server_forgets_old_senders_beyond_its_limit_and_keeps_serving(udp_server):
    """1200 different sender addresses (more than MAX_PEERS) each ask for STATS."""
    port, proc = udp_server
    for _ in range(1200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"DATA 0 x", ("127.0.0.1", port))
    assert proc.poll() is None
    # the flood may still fill the server's receive queue, and UDP drops what does not fit: ask
    # again, like any UDP client (bounded)
    reply = next((r for r in (udp_exchange(port, b"STATS", timeout=2) for _ in range(5)) if r is not None), None)
    assert reply is not None and len(reply) <= 65507
    assert udp_exchange(port, b"hello") == b"hello"
