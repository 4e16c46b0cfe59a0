"""Framing server, style: plain sockets, one thread per connection, a recv_exact helper.

Written from the contract in services/framing/README.md alone (stdlib only).
"""
import argparse
import hashlib
import json
import socket
import struct
import threading

MAX_HEADER = 64 * 1024
MAX_BODY = 8 * 1024 * 1024
MAX_DEPTH = 32
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


class BadFrame(Exception):
    """The request is malformed; close_after says whether the stream is out of step."""

    def __init__(self, msg, close_after=True):
        super().__init__(msg)
        self.close_after = close_after


def recv_exact(sock, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError(f"peer closed after {got} of {n} bytes")
        got += k
    return bytes(buf)


def depth(obj):
    """Nesting depth: a scalar is 0, {} or [] is 1, and so on (iterative, no recursion)."""
    best = 0
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            best = max(best, d)
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            best = max(best, d)
            stack.extend((v, d + 1) for v in o)
    return best


def send_frame(sock, header, body=b""):
    header = dict(header)
    header["size"] = len(body)
    header["sha256"] = hashlib.sha256(body).hexdigest()
    hb = json.dumps(header).encode("utf-8")
    sock.sendall(struct.pack("!I", len(hb)) + hb)
    if body:
        sock.sendall(body)


def parse_header(raw):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadFrame("header is not UTF-8")
    try:
        hdr = json.loads(text)
    except RecursionError:
        raise BadFrame("header nested too deeply")
    except ValueError as e:
        raise BadFrame(f"header is not JSON: {e}")
    if not isinstance(hdr, dict):
        raise BadFrame("header is not a JSON object")
    if depth(hdr) > MAX_DEPTH:
        raise BadFrame(f"header nested deeper than {MAX_DEPTH}")
    size = hdr.get("size", 0)
    if type(size) is not int or size < 0:
        raise BadFrame(f"size must be a non-negative integer, not {str(size)[:40]!r}")
    if size > MAX_BODY:
        raise BadFrame(f"size {str(size)[:40]} exceeds the limit of {MAX_BODY} bytes")
    sha = hdr.get("sha256")
    if sha is not None and not isinstance(sha, str):
        raise BadFrame("sha256 must be a string")
    return hdr, size


def run_command(cmd, body):
    """Return (extra header fields, reply body) or raise BadFrame (stream stays in step)."""
    name, _, arg = cmd.partition(" ")
    if name == "echo":
        return {}, arg.encode("utf-8")
    if name in ("lines", "big"):
        try:
            n = int(arg)
        except ValueError:
            raise BadFrame(f"{name} needs a number", close_after=False)
        if n < 0 or (name == "big" and n > MAX_BODY) or (name == "lines" and n > 1_000_000):
            raise BadFrame(f"{name} {n}: out of range", close_after=False)
        if name == "big":
            pattern = b"0123456789abcdef" * 64
            reps, rest = divmod(n, len(pattern))
            return {}, pattern * reps + pattern[:rest]
        return {}, "".join(f"line {i}\n" for i in range(1, n + 1)).encode("utf-8")
    if name == "hash":
        return {"body_size": len(body), "body_sha256": hashlib.sha256(body).hexdigest()}, b""
    raise BadFrame(f"unknown command {cmd[:60]!r}", close_after=False)


def handle(conn, addr):
    with conn:
        try:
            while True:
                try:
                    prefix = conn.recv(4)
                    if not prefix:
                        return  # clean close between frames
                    if len(prefix) < 4:
                        prefix += recv_exact(conn, 4 - len(prefix))
                    (n,) = struct.unpack("!I", prefix)
                    if n == 0:
                        raise BadFrame("header length 0")
                    if n > MAX_HEADER:
                        raise BadFrame(f"header length {n} exceeds the limit of {MAX_HEADER}")
                    hdr, size = parse_header(recv_exact(conn, n))
                    body = recv_exact(conn, size) if size else b""
                    sha = hdr.get("sha256")
                    if sha is not None and sha.lower() != hashlib.sha256(body).hexdigest():
                        raise BadFrame("body sha256 does not match the header", close_after=False)
                    cmd = hdr.get("cmd")
                    if not isinstance(cmd, str):
                        raise BadFrame("missing or non-string cmd", close_after=False)
                    extra, reply = run_command(cmd, body)
                    send_frame(conn, {"ok": True, "cmd": cmd, **extra}, reply)
                except BadFrame as e:
                    send_frame(conn, {"ok": False, "error": str(e)})
                    if e.close_after:
                        return
        except EOFError as e:
            try:
                send_frame(conn, {"ok": False, "error": f"truncated frame: {e}"})
            except OSError:
                pass
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=20030)
    args = ap.parse_args()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", args.port))
    srv.listen(64)
    print(f"listening on 0.0.0.0:{args.port}", flush=True)
    while True:
        conn, addr = srv.accept()
        threading.Thread(target=handle, args=(conn, addr), daemon=True).start()


if __name__ == "__main__":
    main()
