"""Mistake: the body is never checked against the header's sha256. Otherwise correct."""
import argparse
import hashlib
import json
import socket
import struct
import sys


def recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--command", action="append", required=True)
    p.add_argument("--mode", default="normal")
    a = p.parse_args()
    try:
        with socket.create_connection((a.host, a.port), timeout=10) as sock:
            for cmd in a.command:
                raw = json.dumps({"cmd": cmd, "mode": a.mode, "size": 0,
                                  "sha256": hashlib.sha256(b"").hexdigest()}).encode()
                sock.sendall(struct.pack("!I", len(raw)) + raw)
                more = True
                while more:
                    (n,) = struct.unpack("!I", recv_exact(sock, 4))
                    if n > 65536:
                        raise ValueError(f"header length {n} too large")
                    header = json.loads(recv_exact(sock, n))
                    body = recv_exact(sock, header.get("size", 0))
                    if not header.get("ok"):          # the mistake: sha256 of the body never compared
                        raise ValueError(f"bad reply {header}")
                    sys.stdout.buffer.write(body)
                    more = header.get("more") is True
    except (OSError, EOFError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


sys.exit(main())
