"""Framing client, style: sock.makefile('rb') and file.read(n) (a short read means EOF).

Written from the contract in services/framing/README.md alone (stdlib only).
"""
import argparse
import hashlib
import json
import socket
import struct
import sys


class Fail(Exception):
    pass


def read_n(f, n, what):
    data = f.read(n)
    if len(data) != n:
        raise Fail(f"connection closed in the {what}: got {len(data)} of {n} bytes")
    return data


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--command", action="append", default=[])
    p.add_argument("--mode", default="normal")
    a = p.parse_args()
    sock = socket.create_connection((a.host, a.port), timeout=20)
    rf = sock.makefile("rb")
    out = sys.stdout.buffer
    try:
        for cmd in a.command:
            req = json.dumps({"cmd": cmd, "mode": a.mode, "size": 0,
                              "sha256": hashlib.sha256(b"").hexdigest()}).encode("utf-8")
            sock.sendall(struct.pack("!I", len(req)) + req)
            more = True
            while more:
                (hlen,) = struct.unpack("!I", read_n(rf, 4, "length prefix"))
                if not 1 <= hlen <= 64 * 1024:
                    raise Fail(f"refusing header length {hlen}")
                hdr = json.loads(read_n(rf, hlen, "header").decode("utf-8"))
                if not isinstance(hdr, dict) or hdr.get("ok") is not True:
                    raise Fail(f"error reply: {hdr}")
                size, want = hdr.get("size"), hdr.get("sha256")
                if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                    raise Fail(f"bad size {size!r}")
                h, left, parts = hashlib.sha256(), size, []
                while left:
                    c = rf.read(min(left, 65536))
                    if not c:
                        raise Fail(f"connection closed after {size - left} of {size} body bytes")
                    h.update(c)
                    parts.append(c)
                    left -= len(c)
                if h.hexdigest() != want:
                    raise Fail("body does not match its sha256")
                out.write(b"".join(parts))
                more = bool(hdr.get("more"))
        out.flush()
    except (Fail, OSError, ValueError) as e:
        sys.stderr.write(f"framing client: {e}\n")
        return 2
    finally:
        rf.close()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
