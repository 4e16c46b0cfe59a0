"""Framing client, style: plain socket with a recv_exact loop (recv_into a bytearray).

Written from the contract in services/framing/README.md alone (stdlib only).
"""
import argparse
import hashlib
import json
import socket
import struct
import sys

MAX_HEADER = 65536


def recv_exact(sock, n):
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise EOFError(f"connection closed after {got} of {n} bytes ({n - got} missing)")
        got += k
    return bytes(buf)


def read_frame(sock):
    (n,) = struct.unpack("!I", recv_exact(sock, 4))
    if n == 0 or n > MAX_HEADER:
        raise ValueError(f"header length {n} outside 1..{MAX_HEADER}")
    header = json.loads(recv_exact(sock, n).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    size = header.get("size")
    if type(size) is not int or size < 0 or size > 1 << 30:
        raise ValueError(f"bad size {size!r}")
    body = recv_exact(sock, size)
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise ValueError("sha256 mismatch")
    return header, body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--command", action="append", required=True)
    ap.add_argument("--mode", default="normal")
    a = ap.parse_args()
    try:
        with socket.create_connection((a.host, a.port), timeout=30) as sock:
            for cmd in a.command:
                hdr = json.dumps({"cmd": cmd, "mode": a.mode, "size": 0,
                                  "sha256": hashlib.sha256(b"").hexdigest()}).encode()
                sock.sendall(struct.pack("!I", len(hdr)) + hdr)
                out = []
                while True:
                    header, body = read_frame(sock)
                    if header.get("ok") is not True:
                        raise ValueError(f"server error: {header.get('error')}")
                    out.append(body)
                    if not header.get("more"):
                        break
                sys.stdout.buffer.write(b"".join(out))
                sys.stdout.buffer.flush()
    except (OSError, EOFError, ValueError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
