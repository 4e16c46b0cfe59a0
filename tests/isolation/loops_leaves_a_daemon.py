"""A hostile loops server (tests/integration/test_grading.py, isolation): it leaves a daemon behind.

It serves the lesson's port correctly, but first starts a daemon that escapes its process group
(fork, setsid, fork), ignores SIGTERM and SIGHUP and holds every spare port the restart scenarios
could use: port+1 .. port+9 and the fallback range port+1001 .. port+2000 (labnode free-port).
Its own restart scenarios therefore find no free port; the program graded after it in the same
batch must not notice it was ever there.
"""
import os
import signal
import socket
import sys
import time

port = int(sys.argv[sys.argv.index("--port") + 1])


def squat() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    held = []
    for spare in [*range(port + 1, port + 10), *range(port + 1001, port + 2001)]:
        s = socket.socket()
        s.bind(("0.0.0.0", spare))
        s.listen()
        held.append(s)
    while True:
        time.sleep(3600)


if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        squat()
    os._exit(0)
os.wait()
time.sleep(1)            # the daemon has its ports before anyone is served

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", port))
server.listen()
while True:
    conn, _ = server.accept()
    with conn:
        while (data := conn.recv(1024)) and data != b"quit":
            conn.sendall(data[::-1])
