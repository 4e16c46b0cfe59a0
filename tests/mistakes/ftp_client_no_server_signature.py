# MISTAKE: does not verify the server's SCRAM server_signature in the 230 reply
# ruff: noqa  (written like tests/students/ftp/client_plain.py, in its own style; one mistake apart from it)
"""A plain FTP-exercise client: blocking sockets and functions, stdlib only.

Written from docs/ftp-protocol.md (version 1) and the client contract of services/ftp/README.md:

    python3 client_plain.py --host ftp-server --port 20060 --user alice --password wonderland \
        -c "put LOCAL REMOTE; ls; get REMOTE LOCAL; rm REMOTE; quit"

Commands run in order; the first one that fails stops the batch with exit status 1.
"""
import argparse
import getpass
import hashlib
import hmac
import json
import os
import secrets
import shlex
import socket
import struct
import sys
import unicodedata

MAX_HEADER = 65536
CHUNK = 256 * 1024


class FtpError(Exception):
    """A command failed (a reply we did not want, a local error, a broken stream)."""


# ---------------------------------------------------------------- frames (§1)

def recv_exact(sock, n):
    """Read exactly n bytes: one recv() may return fewer (sticky packets)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), CHUNK))
        if not chunk:
            raise FtpError(f"connection closed by the server ({len(buf)} of {n} bytes read)")
        buf += chunk
    return bytes(buf)


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def send_frame(sock, header, body=b""):
    header = dict(header, size=len(body))
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    sock.sendall(struct.pack("!I", len(raw)) + raw + body)


def send_header(sock, header):
    """Send a header whose body the caller streams after it (header['size'] set by caller)."""
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    sock.sendall(struct.pack("!I", len(raw)) + raw)


def recv_header(sock):
    (length,) = struct.unpack("!I", recv_exact(sock, 4))
    if length == 0 or length > MAX_HEADER:
        raise FtpError(f"bad frame: header length {length}")
    raw = recv_exact(sock, length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                            parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FtpError(f"bad frame: header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise FtpError("bad frame: header is not a JSON object")
    size = header.get("size", 0) or 0
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise FtpError(f"bad frame: size {size!r}")
    return header


def recv_reply(sock):
    """A whole reply (header + body in memory): for replies that are not file downloads."""
    header = recv_header(sock)
    body = recv_exact(sock, header.get("size") or 0)
    check_body(header, body)
    if not isinstance(header.get("code"), int):
        raise FtpError(f"bad reply without a code: {header}")
    return header, body


def check_body(header, body):
    want = header.get("sha256")
    if want and hashlib.sha256(body).hexdigest() != str(want).lower():
        raise FtpError("bad frame: body does not match its sha256")


def request(sock, header):
    send_frame(sock, header)
    reply, _ = recv_reply(sock)
    return reply


def say(reply):
    print(f"{reply.get('code')} {reply.get('msg', '')}", flush=True)


def expect(reply, *codes):
    if reply.get("code") not in codes:
        say(reply)
        raise FtpError(f"server answered {reply.get('code')}")
    return reply


# ---------------------------------------------------------------- login (§4)

def login(sock, user, password):
    cnonce = secrets.token_hex(16)
    challenge = expect(request(sock, {"op": "login", "user": user, "cnonce": cnonce}), 331)
    if challenge.get("kdf") != "scrypt":
        raise FtpError(f"unsupported kdf {challenge.get('kdf')!r}")
    n, r, p = challenge.get("n"), challenge.get("r"), challenge.get("p")
    for name, value, top in (("n", n, 2 ** 16), ("r", r, 16), ("p", p, 4)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise FtpError(f"refusing scrypt parameter {name}={value!r} (limit {top})")
    if n < 2 or n & (n - 1):
        raise FtpError(f"refusing scrypt parameter n={n} (not a power of 2)")
    try:
        salt = bytes.fromhex(challenge["salt"])
        snonce = challenge["snonce"]
        bytes.fromhex(snonce)
    except (KeyError, TypeError, ValueError):
        raise FtpError("malformed challenge (salt/snonce)") from None

    pw = unicodedata.normalize("NFC", password).encode("utf-8")
    salted = hashlib.scrypt(pw, salt=salt, n=n, r=r, p=p, dklen=32,
                            maxmem=256 * r * n + 16 * 1024 * 1024)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    auth_message = f"{user},{cnonce},{snonce}".encode("utf-8")
    client_sig = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, client_sig))

    reply = request(sock, {"op": "auth", "proof": proof.hex()})
    expect(reply, 230)
    want = hmac.new(server_key, auth_message, hashlib.sha256).hexdigest()
    got = str(reply.get("server_signature", "")).lower()
    # MISTAKE: server_signature is never checked (any server that says 230 is trusted)
    say(reply)


# ---------------------------------------------------------------- commands

def file_digest(path):
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def cmd_put(sock, local, remote=None):
    remote = remote or os.path.basename(local)
    try:
        size, digest = file_digest(local)   # before saying anything to the server
    except OSError as exc:
        raise FtpError(f"local error: cannot read {local!r}: {exc.strerror}; nothing was sent")
    reply = expect(request(sock, {"op": "put", "path": remote, "file_size": size,
                                  "digest": digest, "algo": "sha256"}), 350)
    offset = reply.get("offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= size:
        send_frame(sock, {"op": "abort"})
        recv_reply(sock)
        raise FtpError(f"server asked for offset {offset!r} of a {size}-byte file")
    say(reply)
    send_header(sock, {"op": "data", "offset": offset, "size": size - offset})
    with open(local, "rb") as f:
        f.seek(offset)
        left = size - offset
        while left:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise FtpError(f"local error: {local!r} shrank while it was sent")
            sock.sendall(chunk)
            left -= len(chunk)
    done, _ = recv_reply(sock)
    expect(done, 226)
    if str(done.get("digest", digest)).lower() != digest:
        raise FtpError("the server stored a different digest")
    say(done)


def cmd_get(sock, remote, local=None):
    local = local or os.path.basename(remote.rstrip("/")) or "download"
    if os.path.isdir(local):
        local = os.path.join(local, os.path.basename(remote.rstrip("/")))
    folder, name = os.path.split(os.path.abspath(local))
    part = os.path.join(folder, f".{name}.part")
    side = part + ".json"
    req = {"op": "get", "path": remote, "offset": 0, "algo": "sha256"}
    try:   # a partial download of the same remote file: ask for the rest (§5)
        with open(side) as f:
            meta = json.load(f)
        have = os.path.getsize(part)
        if meta.get("path") == remote and meta.get("digest") and have <= meta.get("file_size", -1):
            req.update(offset=have, if_digest=meta["digest"])
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    send_frame(sock, req)
    head = recv_header(sock)
    if head.get("code") != 150:
        recv_exact(sock, head.get("size") or 0)
        expect(head, 150)
    file_size, offset, digest = head.get("file_size"), head.get("offset", 0), head.get("digest")
    body_size = head.get("size") or 0
    if not (isinstance(offset, int) and isinstance(file_size, int) and digest
            and 0 <= offset <= file_size and body_size == file_size - offset
            and offset <= req["offset"]):
        raise FtpError(f"inconsistent 150 reply: {head}")
    with open(side, "w") as f:
        json.dump({"path": remote, "file_size": file_size, "algo": "sha256", "digest": digest}, f)
    h = hashlib.sha256()
    body_hash = hashlib.sha256()
    with open(part, "a+b") as f:
        f.truncate(offset)          # keep exactly the bytes the server resumes after
        f.seek(0)
        left = offset
        while left:
            chunk = f.read(min(CHUNK, left))
            h.update(chunk)
            left -= len(chunk)
        f.seek(offset)
        left = body_size
        while left:
            chunk = sock.recv(min(CHUNK, left))
            if not chunk:
                raise FtpError(f"download cut after {body_size - left} of {body_size} bytes; "
                               "run get again to resume")
            f.write(chunk)
            h.update(chunk)
            body_hash.update(chunk)
            left -= len(chunk)
        f.flush()
        os.fsync(f.fileno())
    if head.get("sha256") and body_hash.hexdigest() != str(head["sha256"]).lower():
        os.unlink(part)
        raise FtpError("bad frame: download body does not match its sha256")
    done, _ = recv_reply(sock)
    expect(done, 226)
    if h.hexdigest() != str(digest).lower():
        os.unlink(part)
        os.unlink(side)
        raise FtpError("checksum mismatch: the copy differs from the server's file (deleted)")
    os.replace(part, local)
    os.unlink(side)
    extra = f" (resumed from byte {offset})" if offset else ""
    print(f"{done.get('code')} {done.get('msg', '')}{extra} -> {local}", flush=True)


def cmd_ls(sock, path="."):
    req = {"op": "ls", "path": path}
    while True:
        reply = expect(request(sock, req), 200)
        for e in reply.get("entries", []):
            size = e.get("size", 0)
            if e.get("type") == "partial":
                size = f"{size}/{e.get('file_size')}"
            print(f"{e.get('type', '?'):8} {size:>12}  {e.get('name')}")
        if not reply.get("truncated") or reply.get("continue_after") is None:
            break
        req = {"op": "ls", "path": path, "after": reply["continue_after"]}


def simple(op, code, field="path"):
    def run(sock, *args):
        req = {"op": op}
        if args:
            req[field] = args[0]
        say(expect(request(sock, req), code))
    return run


def cmd_quit(sock):
    say(expect(request(sock, {"op": "quit"}), 221))
    sock.shutdown(socket.SHUT_WR)    # the server closes after 221: read up to its FIN
    while sock.recv(CHUNK):
        pass
    raise SystemExit(0)


COMMANDS = {  # name: (function, min args, max args)
    "put": (cmd_put, 1, 2),
    "get": (cmd_get, 1, 2),
    "ls": (cmd_ls, 0, 1),
    "rm": (simple("rm", 250), 1, 1),
    "cd": (simple("cd", 250), 1, 1),
    "mkdir": (simple("mkdir", 257), 1, 1),
    "pwd": (simple("pwd", 257), 0, 0),
    "quit": (cmd_quit, 0, 0),
}


def run_command(sock, line):
    words = shlex.split(line)
    name, args = words[0], words[1:]
    if name not in COMMANDS:
        raise FtpError(f"unknown command {name!r}; commands: {', '.join(COMMANDS)}")
    fn, lo, hi = COMMANDS[name]
    if not lo <= len(args) <= hi:
        raise FtpError(f"{name}: wrong number of arguments")
    fn(sock, *args)


def main(argv=None):
    ap = argparse.ArgumentParser(description="client for the FTP exercise (protocol v1)")
    ap.add_argument("--host", default="ftp-server")
    ap.add_argument("--port", type=int, default=20060)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password")
    ap.add_argument("-c", dest="commands", required=True,
                    help="';'-separated commands: put LOCAL [REMOTE], get REMOTE [LOCAL], "
                         "ls [PATH], rm PATH, cd PATH, mkdir PATH, pwd, quit")
    args = ap.parse_args(argv)
    password = args.password if args.password is not None else getpass.getpass(
        f"password for {args.user}: ")
    lines = [c.strip() for c in args.commands.split(";") if c.strip()]
    sock = None
    try:
        sock = socket.create_connection((args.host, args.port), timeout=120)
        greeting, _ = recv_reply(sock)
        expect(greeting, 220)
        login(sock, args.user, password)
        for line in lines:
            run_command(sock, line)
        cmd_quit(sock)               # the batch did not say quit: leave politely anyway
    except SystemExit as done:
        return done.code
    except (FtpError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if sock is not None:
            sock.close()


if __name__ == "__main__":
    sys.exit(main())
