"""Mistake: no limit on the header length: a prefix ff ff ff ff makes it try to read a
4 GiB header (recv(4294967295)), and it waits for it as long as the server keeps the connection
open. Otherwise correct."""
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
                    # the mistake: no `if n > 65536: raise ValueError(...)` before reading the header
                    header = json.loads(recv_exact(sock, n))
                    body = recv_exact(sock, header.get("size", 0))
                    if not header.get("ok") or hashlib.sha256(body).hexdigest() != header.get("sha256"):
                        raise ValueError(f"bad reply {header}")
                    sys.stdout.buffer.write(body)
                    more = header.get("more") is True
    except (OSError, EOFError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


sys.exit(main())
