"""The interactive clients explain a student's mistake and go on (no Docker: servers on loopback).

Typed in a pseudo-terminal like the guide tests, against the reference servers started on
127.0.0.1, so these run in seconds on any machine.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
ENV = {**os.environ, "PYTHONPATH": str(SERVICES), "PYTHONUNBUFFERED": "1", "TERM": "dumb"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def start(argv: list[str], port: int, cwd: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, *argv], env=ENV, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)
    return proc


def spawn(argv: list[str], cwd: Path) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, argv, env=ENV, cwd=str(cwd), encoding="utf-8",
                         codec_errors="replace", timeout=30)


@pytest.fixture
def loops_server(tmp_path):
    port = free_port()
    proc = start([str(SERVICES / "loops" / "server.py"), "--host", "127.0.0.1", "--port", str(port)], port, tmp_path)
    yield port
    proc.terminate()
    proc.wait(10)


def test_loops_client_bounds_long_lines_and_stays_in_step(loops_server, tmp_path):
    c = spawn([str(SERVICES / "loops" / "client.py"), "--host", "127.0.0.1", "--port", str(loops_server)], tmp_path)
    c.expect(">>> ")
    c.sendline("a" * 1500 + "b")
    c.expect(r"that line is 1501 bytes; the server reads 1024 at a time, so only the first 1024 are sent")
    c.expect(">>> ")
    c.sendline("hello")
    c.expect("olleh")               # the next reply is this line's, not a leftover of the long one
    c.sendline("")
    c.expect("an empty line")
    c.sendcontrol("c")
    c.expect("Ctrl-C again")
    c.sendline("quit")
    c.expect(r"\(the server closed the connection\)")
    c.expect(pexpect.EOF)


@pytest.fixture
def ftp_server(tmp_path):
    port = free_port()
    root = tmp_path / "root"
    argv = ["-m", "ftp.server", "--host", "127.0.0.1", "--port", str(port), "--root", str(root)]
    proc = start(argv, port, tmp_path)
    yield port, argv, proc
    proc.terminate()
    proc.wait(10)


def test_ftp_shell_survives_mistakes_and_a_lost_server(ftp_server, tmp_path):
    port, argv, proc = ftp_server
    c = spawn(["-m", "ftp.client", "--host", "127.0.0.1", "--port", str(port), "--no-progress"], tmp_path)
    c.expect("password for alice: ")
    c.sendline("not-it")
    c.expect("530 login incorrect")
    c.expect("password for alice: ")
    c.sendline("wonderland")
    c.expect("ftp alice:/> ")
    c.sendline("lcd /no/such/folder")
    c.expect("local error: cannot change to '/no/such/folder'")
    c.sendline("mkdir " + "x" * 2000)
    c.expect("that line is 2006 bytes; the server accepts paths of up to 1024 characters, so nothing was sent")
    os.write(c.child_fd, b"ls \xff\r")   # a byte that is not UTF-8
    c.expect("not valid UTF-8")
    c.sendline("get missing.txt")
    c.expect("550")
    c.expect("ftp alice:/> ")
    proc.terminate()                # the server goes away
    proc.wait(10)
    c.sendline("ls")
    c.expect("the server went away")
    c.expect(r"\(disconnected\)> ")
    restarted = start(argv, port, tmp_path)
    try:
        c.sendline("pwd")
        c.expect("reconnected to 127.0.0.1")
        c.expect("ftp alice:/> ")
        c.sendline("quit")
        c.expect("221")
        c.expect(pexpect.EOF)
    finally:
        restarted.terminate()
        restarted.wait(10)
