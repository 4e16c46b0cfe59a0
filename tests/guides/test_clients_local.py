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

from ftp.client import FtpClient
from tests.loopback import free_port, wait_listening, wait_udp_bound

SERVICES = Path(__file__).resolve().parents[2] / "services"
ENV = {**os.environ, "PYTHONPATH": str(SERVICES), "PYTHONUNBUFFERED": "1", "TERM": "dumb"}


def start(argv: list[str], port: int, cwd: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, *argv], env=ENV, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)
    return proc


def spawn(argv: list[str], cwd: Path) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, argv, env=ENV, cwd=str(cwd), encoding="utf-8",
                         codec_errors="replace", timeout=30)


def ctrl_c_at_the_prompt(child: pexpect.spawn) -> None:
    """Ctrl-C once the client waits in read(0, ...), not merely once its prompt is on the screen.

    input() writes the prompt, then blocks in read(); a SIGINT that lands between the two only sets
    Python's flag and the read() waits on (a CPython race, seen in CI on a loaded machine: the
    ^C was echoed and nothing else came for 30 s). A person cannot type that fast; a test can."""
    syscall = Path(f"/proc/{child.pid}/syscall")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            fields = syscall.read_text().split()
        except OSError:                    # no /proc/PID/syscall here: a short pause does the same
            time.sleep(0.3)
            break
        if fields[:2] == ["0", "0x0"]:     # x86-64: syscall 0 (read) on fd 0
            break
        time.sleep(0.01)
    child.sendcontrol("c")


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
    c.expect(">>> ")
    ctrl_c_at_the_prompt(c)
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


class SlowFirstProxy:
    """127.0.0.1 proxy to a server: one direction of the first connection crawls (``slow="up"``:
    what the client sends, ``"down"``: what the server sends), so a test can press Ctrl-C in the
    middle of a transfer; every later connection is relayed at full speed. Bounded: daemon threads,
    closed at the end of the test."""

    CHUNK, PAUSE = 16384, 0.05                 # ~320 KiB/s for the first connection's slow direction

    def __init__(self, target: int, slow: str = "up") -> None:
        self.target, self.slow = target, slow
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.first_slow = 0                    # bytes relayed the slow way on the first connection
        self.connections = 0
        self.sockets: list[socket.socket] = [self.listener]
        import threading
        self.threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [down, up]
            self.connections += 1
            first = self.connections == 1
            self.threading.Thread(target=self._pipe, args=(down, up, first and self.slow == "up"), daemon=True).start()
            self.threading.Thread(target=self._pipe, args=(up, down, first and self.slow == "down"),
                                  daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, slow: bool) -> None:
        try:
            while chunk := src.recv(self.CHUNK if slow else 1 << 16):
                dst.sendall(chunk)
                if slow:
                    self.first_slow += len(chunk)
                    time.sleep(self.PAUSE)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def ftp_shell_interrupted_mid_transfer(proxy: SlowFirstProxy, command: str, cwd: Path) -> pexpect.spawn:
    """The interactive client through ``proxy``: type ``command``, press Ctrl-C once 400 000 bytes
    went the slow way (well inside the body), and see it say what it kept and come back."""
    c = spawn(["-m", "ftp.client", "--host", "127.0.0.1", "--port", str(proxy.port), "--no-progress",
               "--password", "wonderland"], cwd)
    c.expect("ftp alice:/> ")
    c.sendline(command)
    deadline = time.monotonic() + 30
    while proxy.first_slow < 400_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.first_slow >= 400_000, f"{command!r} did not start ({proxy.first_slow} bytes relayed)"
    c.sendcontrol("c")
    c.expect("cancelled; the bytes so far are kept: run the same command again to resume")
    c.expect("ftp alice:/> ")
    return c


def test_ftp_ctrl_c_in_the_middle_of_an_upload_keeps_the_session_and_the_bytes(ftp_server, tmp_path):
    port, _, _ = ftp_server
    (tmp_path / "big.bin").write_bytes(os.urandom(3_000_000))
    proxy = SlowFirstProxy(port)
    try:
        c = ftp_shell_interrupted_mid_transfer(proxy, "put big.bin", tmp_path)
        c.sendline("put big.bin")            # the same session goes on, from where the server stopped
        c.expect(r"350 send (\d+) bytes from offset (\d+)")
        rest, offset = int(c.match.group(1)), int(c.match.group(2))
        assert offset > 0 and rest + offset == 3_000_000
        c.expect("226 /big.bin stored, sha256 verified")
        c.sendline("quit")
        c.expect("221")
        c.expect(pexpect.EOF)
    finally:
        proxy.close()
    stored = tmp_path / "root" / "home" / "alice" / "big.bin"
    assert stored.read_bytes() == (tmp_path / "big.bin").read_bytes()


def test_ftp_ctrl_c_in_the_middle_of_a_download_keeps_the_part_and_the_next_get_resumes(ftp_server, tmp_path):
    port, _, _ = ftp_server
    data = os.urandom(3_000_000)
    (tmp_path / "big.bin").write_bytes(data)
    proxy = SlowFirstProxy(port, slow="down")
    try:
        with FtpClient("127.0.0.1", port) as ftp:      # straight to the server: the file is there
            ftp.login("alice", "wonderland")
            ftp.put(str(tmp_path / "big.bin"))
        (tmp_path / "big.bin").unlink()
        c = ftp_shell_interrupted_mid_transfer(proxy, "get big.bin", tmp_path)
        kept = (tmp_path / ".big.bin.part").stat().st_size
        assert 0 < kept < len(data) and not (tmp_path / "big.bin").exists()
        c.sendline("get big.bin")            # resumes from the local part, and verifies the whole file
        c.expect(r"226 .* \(resumed from byte (\d+)\)")
        assert int(c.match.group(1)) == kept
        c.expect("ftp alice:/> ")
        c.sendline("quit")
        c.expect("221")
        c.expect(pexpect.EOF)
    finally:
        proxy.close()
    assert (tmp_path / "big.bin").read_bytes() == data
    assert not any(tmp_path.glob(".big.bin.part*"))


# every interactive client, and what it shows when it waits for a line
CLIENTS = {"basic": "> ", "loops": ">>> ", "socketserver": r"\[\+_\+\] ", "sticky": ">> ",
           "framing": r"\[normal\] >> ", "udp": ">> "}


@pytest.mark.parametrize("lesson", list(CLIENTS))
def test_every_client_takes_a_students_odd_input_without_a_traceback(lesson, tmp_path):
    """Empty, over-long and non-UTF-8 lines, Ctrl-C at the prompt: each gets a word or a reply,
    the prompt comes back, and the second Ctrl-C leaves without a traceback."""
    udp = lesson == "udp"
    port = free_port(socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    server_argv = [str(SERVICES / lesson / "server.py"), "--host", "127.0.0.1", "--port", str(port)]
    if udp:
        server = subprocess.Popen([sys.executable, *server_argv, "--quiet"], env=ENV, cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_udp_bound(port, proc=server)
    else:
        server = start(server_argv, port, tmp_path)
    prompt = CLIENTS[lesson]
    try:
        c = spawn([str(SERVICES / lesson / "client.py"), "--host", "127.0.0.1", "--port", str(port)], tmp_path)
        c.logfile_read = (tmp_path / "transcript.txt").open("a", encoding="utf-8")
        c.expect(prompt)
        for typed in ("", "x" * 70000, "\xff\xfe not text"):
            if typed.startswith("\xff"):
                os.write(c.child_fd, b"\xff\xfe not text\r")
            else:
                c.sendline(typed)
            c.expect(prompt, timeout=30)
        ctrl_c_at_the_prompt(c)
        c.expect("Ctrl-C again")
        c.expect(prompt)
        ctrl_c_at_the_prompt(c)
        c.expect(pexpect.EOF, timeout=15)
    finally:
        server.terminate()
        server.wait(10)
    transcript = (tmp_path / "transcript.txt").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in transcript, transcript[-3000:]
