"""A framing server that would be correct, with its reading and sending steps replaceable, so each
mistake control in this folder differs from a correct program in exactly one place.

    python3 recv_assumed.py --port 20030      (the check runs: --server tests/mistakes/framing --entry X.py)
"""
import argparse
import hashlib
import json
import socket
import struct
import threading

MAX_HEADER = 64 * 1024


def recv_exact(conn: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("client left")
        data += chunk
    return bytes(data)


def send_all(conn: socket.socket, data: bytes) -> None:
    conn.sendall(data)


def frame(header: dict, body: bytes = b"") -> bytes:
    header = {**header, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    raw = json.dumps(header).encode()
    return struct.pack("!I", len(raw)) + raw + body


def answer(cmd: str, body: bytes) -> tuple[dict, bytes]:
    word, _, arg = cmd.partition(" ")
    if word == "echo":
        return {"ok": True, "cmd": cmd}, arg.encode()
    if word in ("big", "lines") and arg.isascii() and arg.isdigit() and len(arg) < 10:
        n = int(arg)
        if word == "big":
            return {"ok": True, "cmd": cmd}, (b"0123456789" * (n // 10 + 1))[:n]
        return {"ok": True, "cmd": cmd}, "".join(f"line {i} of {n}\n" for i in range(1, n + 1)).encode()
    if word == "hash":
        return {"ok": True, "cmd": cmd, "body_size": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest()}, b""
    return {"ok": False, "error": f"unknown command {cmd!r}"}, b""


def serve_client(conn: socket.socket, read=recv_exact, send=send_all, timeout: float | None = None,
                 read_body=None, max_header: int | None = MAX_HEADER) -> None:
    with conn:
        conn.settimeout(timeout)
        while True:
            try:
                (n,) = struct.unpack("!I", read(conn, 4))
            except (EOFError, OSError, struct.error):
                return
            try:
                if n == 0 or (max_header is not None and n > max_header):
                    raise ValueError(f"header length {n} out of range")
                header = json.loads(read(conn, n).decode("utf-8"))
                if not isinstance(header, dict) or not isinstance(header.get("cmd"), str):
                    raise ValueError("header must be an object with a string cmd")
                size = header.get("size", 0)
                if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 16 * 2**20:
                    raise ValueError("bad size")
                body = (read_body or read)(conn, size)
                if header.get("sha256") not in (None, hashlib.sha256(body).hexdigest()):
                    send(conn, frame({"ok": False, "error": "checksum mismatch"}))
                    continue
            except (ValueError, UnicodeDecodeError, RecursionError, struct.error) as exc:
                send(conn, frame({"ok": False, "error": str(exc)[:200]}))
                return
            except (EOFError, OSError):
                return
            send(conn, frame(*answer(header["cmd"], body)))


def main(read=recv_exact, send=send_all, timeout: float | None = None, read_body=None,
         max_header: int | None = MAX_HEADER) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=20030)
    port = parser.parse_args().port
    with socket.create_server(("0.0.0.0", port), reuse_port=False) as listener:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve_client, args=(conn, read, send, timeout, read_body, max_header),
                             daemon=True).start()
