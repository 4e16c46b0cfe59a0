"""Framing client, style: a buffered incremental decoder class fed by recv(65536) (sans-IO).

Written from the contract in services/framing/README.md alone (stdlib only).
"""
import argparse
import hashlib
import json
import socket
import struct
import sys


class Decoder:
    """Feed bytes; take whole (header, body) frames out. Buffer is a bytearray + offset."""

    def __init__(self, max_header=65536):
        self.buf = bytearray()
        self.pos = 0
        self.max_header = max_header
        self.header = None

    def feed(self, data):
        self.buf += data

    def next_frame(self):
        avail = len(self.buf) - self.pos
        if self.header is None:
            if avail < 4:
                return None
            (n,) = struct.unpack_from("!I", self.buf, self.pos)
            if n == 0 or n > self.max_header:
                raise ValueError(f"header length {n} over the limit")
            if avail < 4 + n:
                return None
            self.header = json.loads(bytes(self.buf[self.pos + 4:self.pos + 4 + n]).decode("utf-8"))
            self.pos += 4 + n
            avail -= 4 + n
            if not isinstance(self.header, dict):
                raise ValueError("header not an object")
            s = self.header.get("size")
            if type(s) is not int or s < 0:
                raise ValueError(f"bad size {s!r}")
        size = self.header["size"]
        if avail < size:
            return None
        body = bytes(self.buf[self.pos:self.pos + size])
        self.pos += size
        header, self.header = self.header, None
        if self.pos > 1 << 20:  # compact now and then
            del self.buf[:self.pos]
            self.pos = 0
        if hashlib.sha256(body).hexdigest() != header.get("sha256"):
            raise ValueError("sha256 mismatch")
        return header, body

    def pending(self):
        return len(self.buf) - self.pos


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--command", action="append", required=True)
    ap.add_argument("--mode", default="normal")
    a = ap.parse_args()
    dec = Decoder()
    try:
        sock = socket.create_connection((a.host, a.port), timeout=15)
        for cmd in a.command:
            raw = json.dumps({"cmd": cmd, "mode": a.mode, "size": 0,
                              "sha256": hashlib.sha256(b"").hexdigest()}).encode()
            sock.sendall(struct.pack("!I", len(raw)) + raw)
            while True:
                fr = dec.next_frame()
                while fr is None:
                    data = sock.recv(65536)
                    if not data:
                        raise EOFError(f"connection closed mid-reply ({dec.pending()} bytes pending)")
                    dec.feed(data)
                    fr = dec.next_frame()
                header, body = fr
                if header.get("ok") is not True:
                    raise RuntimeError(f"server said: {header.get('error')}")
                sys.stdout.buffer.write(body)
                if not header.get("more"):
                    break
        sys.stdout.buffer.flush()
    except Exception as e:
        print("client failed:", e, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
