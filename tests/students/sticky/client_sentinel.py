"""Style: no 'frame' -- after each command send 'echo <random marker>'; the reply ends where the marker
line begins (the server answers commands in order). Uses the contract's 'any other way' clause."""
import argparse
import secrets
import socket
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--command", action="append", required=True)
a = ap.parse_args()

marker = ("END" + secrets.token_hex(16)).encode()
s = socket.create_connection((a.host, a.port), timeout=50)
buf = bytearray()
for cmd in a.command:
    s.sendall(cmd.encode("utf-8") + b"\n" + b"echo " + marker + b"\n")
    while True:
        i = buf.find(marker + b"\n")
        if i >= 0:
            break
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("server closed")
        buf += chunk
    reply = bytes(buf[:i])
    del buf[: i + len(marker) + 1]
    sys.stdout.buffer.write(reply)
    if not reply.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.buffer.write(b"--- end of reply ---\n")
    sys.stdout.buffer.flush()
s.close()
