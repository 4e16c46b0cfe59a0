"""Mistake: a framed sticky client that unpacks the length prefix with the seed's struct 'i'
(the machine's own byte order) instead of '!I': it waits for a length the server never sends."""
import argparse
import struct
import sys


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("server closed")
        data += chunk
    return data


p = argparse.ArgumentParser()
p.add_argument("--host", required=True)
p.add_argument("--port", type=int, required=True)
p.add_argument("--command", action="append", required=True)
a = p.parse_args()
import socket  # noqa: E402

with socket.create_connection((a.host, a.port), timeout=10) as sock:
    for cmd in a.command:
        sock.sendall(f"frame {cmd}\n".encode())
        prefix = recv_exact(sock, 4)
        body = recv_exact(sock, struct.unpack("i", prefix)[0])
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.write(b"\n--- end of reply ---\n")
        sys.stdout.flush()
