"""Style: 'frame CMD' + a recv_exact() helper (bytearray, loop until n bytes); one command at a time."""
import argparse
import socket
import struct
import sys


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(65536, n - len(buf)))
        if not chunk:
            raise ConnectionError(f"server closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--command", action="append", required=True)
    a = ap.parse_args()
    out = sys.stdout.buffer
    with socket.create_connection((a.host, a.port), timeout=30) as s:
        for cmd in a.command:
            s.sendall(b"frame " + cmd.encode("utf-8") + b"\n")
            (length,) = struct.unpack("!I", recv_exact(s, 4))
            reply = recv_exact(s, length)
            out.write(reply)
            if not reply.endswith(b"\n"):
                out.write(b"\n")
            out.write(b"--- end of reply ---\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
