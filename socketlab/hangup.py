"""Runs *inside* a lesson container: an interactive program on a terminal of its own that ends
when the student's terminal goes away. Stdlib only; ``lab.py client``/``shell`` send this file's
source with ``python3 -c``, because the container's root is read-only.

Why not ``docker exec -it``: with a tty the daemon keeps the exec'd process running after its
client is gone (a closed window, a killed ``docker exec``), so ghost clients pile up and hold
connections to iterative servers. Without a tty the daemon does close the process's stdin. So
lab.py runs ``docker exec -i`` (the host terminal in raw mode) and this supervisor:

    host terminal (raw) --stdin pipe--> supervisor --pty master--> program (on the pty slave)
    host terminal      <--stdout pipe-- supervisor <--pty master--

The program gets a real terminal (line editing, echo, Ctrl-C as SIGINT from the pty), and when
stdin reaches end-of-file -- the connection is gone, there is no other way for it to end -- the
supervisor closes the pty master: the kernel hangs up the program's session (SIGHUP), and what
survives a grace period is killed.

    python3 -c "$(cat hangup.py)" ROWS COLS PROGRAM [ARGS...]
"""
from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time

GRACE = 2.0    # seconds a hung-up program gets to exit by itself before it is killed


def session_members(sid: int) -> list[int]:
    """Every process of a session (the program and anything it started, e.g. a shell's jobs)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getsid(int(name)) == sid:
                    pids.append(int(name))
            except OSError:
                continue
    return pids


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def relay(master: int) -> bool:
    """Copy stdin to the program and its output to stdout; True when stdin ended (hang up)."""
    while True:
        readable, _, _ = select.select([0, master], [], [])
        if master in readable:
            try:
                data = os.read(master, 65536)
            except OSError:          # EIO: the program closed its terminal (it exited)
                return False
            if not data:
                return False
            try:
                write_all(1, data)
            except OSError:          # nobody reads our output any more
                return True
        if 0 in readable:
            data = os.read(0, 65536)
            if not data:
                return True
            write_all(master, data)


def main(argv: list[str]) -> int:
    rows, cols, program = int(argv[0]), int(argv[1]), argv[2:]
    pid, master = pty.fork()          # the child: a new session, the pty slave as its terminal
    if pid == 0:
        try:
            os.execvp(program[0], program)
        except OSError as exc:
            print(f"cannot run {program[0]}: {exc}", file=sys.stderr)
            os._exit(127)
    if rows and cols:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    hung_up = relay(master)
    os.close(master)                  # with stdin gone: the kernel sends SIGHUP to the session
    deadline = time.monotonic() + (GRACE if hung_up else 0.2)
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        done, status = 0, 0
    for member in session_members(pid):   # leftovers: the program, or what it started
        try:
            os.kill(member, signal.SIGKILL)
        except OSError:
            pass
    if not done:
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if not hung_up else 129


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
