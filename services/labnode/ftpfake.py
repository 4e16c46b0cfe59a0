"""On the FTP server's machine: a fake FTP server that does not hold alice's verifier (check ftp --client).

    python3 -m labnode.ftpfake --port 20064 --mode bad-signature --log /tmp/fake.jsonl
    python3 -m labnode.ftpfake --port 20064 --mode huge-scrypt --log /tmp/fake.jsonl
    python3 -m labnode.ftpfake --port 20064 --mode bad-signature,huge-scrypt ...   (one per connection)

It speaks protocol 1 (docs/ftp-protocol.md) well enough for a client to go on:

* ``bad-signature``: greets, answers ``login`` with a well-formed challenge and ``auth`` with 230
  whose ``server_signature`` is random. Only a server holding alice's ``server_key`` can compute
  the right one (§4), so a client that checks it stops here; one that does not goes on, and the
  fake answers its commands (350, 226, 200 ...) so it can believe everything worked.
* ``huge-scrypt``: the challenge asks for scrypt n = 2**17, beyond §4's limit n <= 2**16 (a hostile
  server's way to make a client allocate memory). A client must refuse it and never send ``auth``.

Every request is written to --log (one JSON object a line). Bounded: --max-connections, --max-seconds,
20 s per read; SIGTERM ends it at once.
"""
from __future__ import annotations

import argparse
import json
import secrets
import signal
import socket
import struct
import sys
import time

MAX_HEADER = 65536
MAX_BODY = 64 * 1024 * 1024
MODES = {"bad-signature": {"n": 1 << 14, "r": 8, "p": 1},
         "huge-scrypt": {"n": 1 << 17, "r": 1, "p": 1}}     # 16 MiB: computable, yet over the limit


class Closed(Exception):
    pass


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 16))
        if not chunk:
            raise Closed(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def send(sock: socket.socket, code: int, msg: str, **fields: object) -> None:
    raw = json.dumps({"code": code, "msg": msg, **fields, "size": 0}).encode("utf-8")
    sock.sendall(struct.pack("!I", len(raw)) + raw)


def greeting(sock: socket.socket) -> None:
    send(sock, 220, "socketlab-ftp ready", server="socketlab-ftp", version=1,
         features=["scram-scrypt", "sha256", "md5", "resume-put", "resume-get", "quota", "if-digest"],
         limits={"max_header": MAX_HEADER, "max_sessions": 100, "max_login_attempts": 3})


def session(sock: socket.socket, mode: str, log) -> str:
    greeting(sock)
    user, put = "alice", {}
    while True:
        (length,) = struct.unpack("!I", recv_exact(sock, 4))
        if not 0 < length <= MAX_HEADER:
            send(sock, 500, f"bad frame: header length {length}")
            return "bad prefix"
        try:
            req = json.loads(recv_exact(sock, length).decode("utf-8"))
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError:
            send(sock, 500, "bad frame: header is not a JSON object")
            return "bad header"
        size = req.get("size") or 0
        size = size if isinstance(size, int) and 0 <= size <= MAX_BODY else 0
        left = size
        while left:                                  # bodies are read and dropped
            left -= len(recv_exact(sock, min(left, 1 << 16)))
        op = req.get("op")
        log({"ev": "request", "op": op, "body": size, **{k: req[k] for k in ("path", "offset", "user") if k in req}})
        if op == "login":
            user = str(req.get("user", "alice"))
            send(sock, 331, "prove you know the password", user=user, snonce=secrets.token_hex(16),
                 salt=secrets.token_hex(16), kdf="scrypt", **MODES[mode])
        elif op == "auth" and mode == "huge-scrypt":
            send(sock, 530, "login incorrect", attempts_left=2)
        elif op == "auth":
            send(sock, 230, f"welcome, {user}", user=user, home="/", server_signature=secrets.token_hex(32))
        elif op == "put":
            put = req
            send(sock, 350, "send the data", offset=0, file_size=req.get("file_size", 0), path=req.get("path"))
        elif op == "data":
            send(sock, 226, "transfer complete", path=put.get("path"), file_size=put.get("file_size", size),
                 algo=put.get("algo", "sha256"), digest=put.get("digest"), received=size)
        elif op == "ls":
            send(sock, 200, "listing", path="/", entries=[], truncated=False, total=0, continue_after=None)
        elif op == "get":
            send(sock, 550, "no such file")
        elif op in ("rm", "cd"):
            send(sock, 250, "done", path=req.get("path", "/"))
        elif op in ("mkdir", "pwd"):
            send(sock, 257, "path", path=req.get("path", "/"))
        elif op == "quit":
            send(sock, 221, "goodbye")
            return "quit"
        else:
            send(sock, 200, "ok")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m labnode.ftpfake", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", required=True, help=f"one of {sorted(MODES)}, or several (comma-separated): "
                                                      "one per connection, in turn")
    parser.add_argument("--log", required=True)
    parser.add_argument("--max-connections", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    modes = args.mode.split(",")
    if not set(modes) <= set(MODES):
        parser.error(f"--mode: choose from {sorted(MODES)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    out = open(args.log, "w", encoding="utf-8")

    def log(entry: dict) -> None:
        out.write(json.dumps(entry, sort_keys=True) + "\n")
        out.flush()

    deadline = time.monotonic() + args.max_seconds
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", args.port))
    listener.listen(4)
    print(f"fake ftp server ({args.mode}) listening on 0.0.0.0:{args.port}", flush=True)
    for conn in range(1, args.max_connections + 1):
        listener.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            sock, peer = listener.accept()
        except TimeoutError:
            break
        sock.settimeout(20)
        mode = modes[(conn - 1) % len(modes)]
        log({"ev": "connect", "conn": conn, "mode": mode, "peer": f"{peer[0]}:{peer[1]}"})
        try:
            how = session(sock, mode, lambda e, conn=conn: log({**e, "conn": conn}))
        except (Closed, OSError, struct.error) as exc:
            how = f"the client closed the connection ({exc})"
        finally:
            sock.close()
        log({"ev": "closed", "conn": conn, "reason": how})
    return 0


if __name__ == "__main__":
    sys.exit(main())
