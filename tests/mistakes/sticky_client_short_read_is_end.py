"""Mistake: an unframed sticky client that takes a recv() shorter than 1024 bytes as the end of a
reply. A reply of exactly 5120 bytes arrives in five full reads, and the sixth waits for ever."""
import argparse
import socket
import sys

p = argparse.ArgumentParser()
p.add_argument("--host", required=True)
p.add_argument("--port", type=int, required=True)
p.add_argument("--command", action="append", required=True)
a = p.parse_args()

with socket.create_connection((a.host, a.port), timeout=10) as sock:
    for cmd in a.command:
        sock.sendall(f"{cmd}\n".encode())
        reply = b""
        while True:
            chunk = sock.recv(1024)
            reply += chunk
            if len(chunk) < 1024:       # the mistake: a short read says nothing about the end
                break
        sys.stdout.buffer.write(reply + (b"" if reply.endswith(b"\n") else b"\n") + b"--- end of reply ---\n")
        sys.stdout.flush()
