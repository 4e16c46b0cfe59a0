"""A class-based FTP-exercise client over socket.makefile(), stdlib only.

Protocol: docs/ftp-protocol.md, version 1. Contract: services/ftp/README.md, "Write your own".

    python3 client_class.py --host ftp-server --port 20060 --user alice --password wonderland \
        -c "put /tmp/a.bin a.bin; ls; get a.bin /tmp/b.bin; rm a.bin; quit"
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
import time
import unicodedata
from dataclasses import dataclass, field

PREFIX = struct.Struct("!I")
MAX_HEADER = 1 << 16
BLOCK = 64 * 1024
SCRYPT_LIMITS = {"n": 1 << 16, "r": 16, "p": 4}


class CommandFailed(Exception):
    pass


class StreamBroken(CommandFailed):
    """The byte stream cannot be trusted any more: the session is over."""


@dataclass
class Reply:
    code: int
    msg: str
    fields: dict = field(default_factory=dict)
    size: int = 0

    def __str__(self):
        return f"{self.code} {self.msg}"

    def get(self, key, default=None):
        return self.fields.get(key, default)


class Progress:
    """At most 10 redraws a second, on stderr, only when stderr is a terminal."""

    def __init__(self, label, total, done=0):
        self.label, self.total, self.done = label, total, done
        self.last = 0.0
        self.enabled = sys.stderr.isatty() and total > 0

    def add(self, n):
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self.last >= 0.1 or self.done >= self.total):
            self.last = now
            pct = 100 * self.done // self.total
            bar = "#" * (pct // 4)
            sys.stderr.write(f"\r{self.label} [{bar:<25}] {pct:3}%")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


class FrameStream:
    """Frames (!I header length + JSON header + body) over a buffered socket file."""

    def __init__(self, sock):
        self.sock = sock
        self.rfile = sock.makefile("rb", buffering=BLOCK)
        self.wfile = sock.makefile("wb", buffering=BLOCK)

    def _read(self, n):
        data = self.rfile.read(n)   # a BufferedReader returns n bytes, or fewer only at EOF
        if data is None or len(data) < n:
            raise StreamBroken("the server closed the connection")
        return data

    @staticmethod
    def _strict_object(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate keys")
        return dict(pairs)

    def write_header(self, header):
        raw = json.dumps(header, ensure_ascii=False, allow_nan=False).encode()
        self.wfile.write(PREFIX.pack(len(raw)))
        self.wfile.write(raw)

    def write_body_part(self, data):
        self.wfile.write(data)

    def flush(self):
        self.wfile.flush()

    def send(self, header):
        self.write_header({**header, "size": 0})
        self.flush()

    def read_header(self):
        (n,) = PREFIX.unpack(self._read(PREFIX.size))
        if not 0 < n <= MAX_HEADER:
            raise StreamBroken(f"framing violation: header length {n}")
        try:
            obj = json.loads(self._read(n).decode("utf-8"),
                             object_pairs_hook=self._strict_object,
                             parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError as exc:   # UnicodeDecodeError and JSONDecodeError included
            raise StreamBroken(f"framing violation: header is not strict JSON ({exc})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("code"), int):
            raise StreamBroken(f"not a reply: {obj!r}")
        size = obj.pop("size", 0) or 0
        if not isinstance(size, int) or size < 0:
            raise StreamBroken(f"framing violation: size {size!r}")
        return Reply(obj.pop("code"), str(obj.pop("msg", "")), obj, size)

    def read_body(self, size, sink=None, progress=None):
        """The body in memory, or streamed to sink(chunk). Checks the frame's own sha256."""
        h = hashlib.sha256()
        parts = []
        left = size
        while left:
            chunk = self._read(min(BLOCK, left))
            h.update(chunk)
            left -= len(chunk)
            if sink:
                sink(chunk)
            else:
                parts.append(chunk)
            if progress:
                progress.add(len(chunk))
        return b"".join(parts), h.hexdigest()

    def read_reply(self):
        reply = self.read_header()
        _, digest = self.read_body(reply.size)
        if reply.get("sha256") and str(reply.get("sha256")).lower() != digest:
            raise StreamBroken("framing violation: a reply body does not match its sha256")
        return reply

    def close(self):
        for f in (self.wfile, self.rfile):
            try:
                f.close()
            except OSError:
                pass
        self.sock.close()


class FtpClient:
    def __init__(self, host, port, timeout=120.0, out=print):
        self.out = out
        self.frames = FrameStream(socket.create_connection((host, port), timeout=timeout))
        self.user = None
        hello = self.frames.read_reply()
        if hello.code != 220:
            raise StreamBroken(f"no greeting: {hello}")

    # -- plumbing
    def call(self, op, ok, **fields):
        self.frames.send({"op": op, **fields})
        reply = self.frames.read_reply()
        return self.check(reply, ok)

    def check(self, reply, ok):
        if reply.code not in (ok if isinstance(ok, tuple) else (ok,)):
            self.out(str(reply))
            if reply.code == 421:
                raise StreamBroken("the server is closing the session")
            raise CommandFailed(f"{reply.code} {reply.msg}")
        return reply

    # -- §4 login
    def login(self, user, password):
        cnonce = secrets.token_bytes(16).hex()
        chal = self.call("login", 331, user=user, cnonce=cnonce)
        params = {k: chal.get(k) for k in SCRYPT_LIMITS}
        for k, v in params.items():
            if type(v) is not int or v < 1 or v > SCRYPT_LIMITS[k]:
                raise CommandFailed(f"server asks for scrypt {k}={v!r}: beyond {SCRYPT_LIMITS[k]}")
        if chal.get("kdf") != "scrypt":
            raise CommandFailed(f"unknown kdf {chal.get('kdf')!r}")
        snonce = chal.get("snonce")
        salt = bytes.fromhex(chal.get("salt"))
        salted = hashlib.scrypt(unicodedata.normalize("NFC", password).encode(), salt=salt,
                                dklen=32, maxmem=(1 << 30), **params)
        mac = lambda key, msg: hmac.digest(key, msg, "sha256")  # noqa: E731
        client_key = mac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        auth_message = ",".join((user, cnonce, snonce)).encode()
        proof = int.from_bytes(client_key, "big") ^ int.from_bytes(
            mac(stored_key, auth_message), "big")
        ok = self.call("auth", 230, proof=proof.to_bytes(32, "big").hex())
        expected = mac(mac(salted, b"Server Key"), auth_message)
        try:
            theirs = bytes.fromhex(ok.get("server_signature") or "")
        except ValueError:
            theirs = b""
        if not hmac.compare_digest(expected, theirs):
            raise StreamBroken("server signature does not verify: not the real server")
        self.user = user
        self.out(str(ok))

    # -- commands
    def put(self, local, remote=None):
        remote = remote or os.path.basename(local)
        h, size = hashlib.sha256(), 0
        try:
            with open(local, "rb") as f:
                for block in iter(lambda: f.read(BLOCK), b""):
                    h.update(block)
                    size += len(block)
        except OSError as exc:
            raise CommandFailed(f"local error: {local}: {exc.strerror}; nothing was sent")
        digest = h.hexdigest()
        go = self.call("put", 350, path=remote, file_size=size, digest=digest, algo="sha256")
        offset = go.get("offset", 0)
        if type(offset) is not int or not 0 <= offset <= size:
            self.call("abort", 226)
            raise CommandFailed(f"bad resume offset {offset!r}")
        self.out(str(go))
        progress = Progress(f"put {remote}", size, offset)
        self.frames.write_header({"op": "data", "offset": offset, "size": size - offset})
        with open(local, "rb") as f:
            f.seek(offset)
            left = size - offset
            while left:
                block = f.read(min(BLOCK, left))
                if not block:
                    raise StreamBroken(f"{local} got shorter while it was sent")
                self.frames.write_body_part(block)
                left -= len(block)
                progress.add(len(block))
        self.frames.flush()
        done = self.check(self.frames.read_reply(), 226)
        if done.get("digest") and done.get("digest").lower() != digest:
            raise CommandFailed("server reports another digest")
        self.out(str(done))

    def get(self, remote, local=None):
        base = os.path.basename(remote.rstrip("/"))
        local = local or base
        if os.path.isdir(local):
            local = os.path.join(local, base)
        head, tail = os.path.split(local)
        part = os.path.join(head, f".{tail}.part")
        meta_path = part + ".json"
        offset, if_digest = 0, None
        try:
            with open(meta_path) as f:
                meta = json.load(f)
            if meta.get("path") == remote:
                offset, if_digest = os.path.getsize(part), meta.get("digest")
        except (OSError, ValueError, AttributeError):
            pass
        req = {"path": remote, "offset": offset if if_digest else 0, "algo": "sha256"}
        if if_digest:
            req["if_digest"] = if_digest
        self.frames.send({"op": "get", **req})
        start = self.frames.read_header()
        if start.code != 150:
            self.frames.read_body(start.size)
            self.check(start, 150)
        total, at, digest = start.get("file_size"), start.get("offset"), start.get("digest")
        if (type(total) is not int or type(at) is not int or not isinstance(digest, str)
                or at > req["offset"] or start.size != total - at):
            raise StreamBroken(f"150 does not add up: {start.fields} size={start.size}")
        with open(meta_path, "w") as f:
            json.dump({"path": remote, "file_size": total, "algo": "sha256", "digest": digest}, f)
        whole = hashlib.sha256()
        with open(part, "r+b" if os.path.exists(part) else "w+b") as f:
            f.truncate(at)
            for block in iter(lambda: f.read(BLOCK), b""):
                whole.update(block)
            f.seek(at)

            def sink(chunk):
                f.write(chunk)
                whole.update(chunk)
            _, body_digest = self.frames.read_body(start.size, sink, Progress(f"get {remote}",
                                                                               total, at))
            f.flush()
            os.fsync(f.fileno())
        if start.get("sha256") and start.get("sha256").lower() != body_digest:
            raise StreamBroken("download body does not match the frame's sha256")
        done = self.check(self.frames.read_reply(), 226)
        if whole.hexdigest() != digest.lower():
            os.remove(part)
            os.remove(meta_path)
            raise CommandFailed(f"sha256 mismatch on {remote}: copy deleted, get it again")
        os.replace(part, local)
        os.remove(meta_path)
        self.out(f"{done}" + (f" (resumed from byte {at})" if at else "") + f" -> {local}")

    def ls(self, path="."):
        after = None
        while True:
            extra = {"after": after} if after is not None else {}
            page = self.call("ls", 200, path=path, **extra)
            for e in page.get("entries") or []:
                size = e.get("size")
                if e.get("type") == "partial":
                    size = f"{size}/{e.get('file_size')}"
                self.out(f"{e.get('type'):<8}{size!s:>14}  {e.get('name')}")
            after = page.get("continue_after")
            if not page.get("truncated") or after is None:
                return

    def rm(self, path):
        self.out(str(self.call("rm", 250, path=path)))

    def cd(self, path):
        self.out(str(self.call("cd", 250, path=path)))

    def mkdir(self, path):
        self.out(str(self.call("mkdir", 257, path=path)))

    def pwd(self):
        self.out(self.call("pwd", 257).get("path"))

    def quit(self):
        self.out(str(self.call("quit", 221)))
        self.close(drain=True)

    def close(self, drain=False):
        if drain:
            try:
                self.frames.sock.shutdown(socket.SHUT_WR)
                while self.frames.rfile.read1(BLOCK):
                    pass
            except OSError:
                pass
        self.frames.close()

    COMMANDS = {"put": (1, 2), "get": (1, 2), "ls": (0, 1), "rm": (1, 1), "cd": (1, 1),
                "mkdir": (1, 1), "pwd": (0, 0), "quit": (0, 0)}

    def run(self, line):
        name, *args = shlex.split(line)
        if name not in self.COMMANDS:
            raise CommandFailed(f"unknown command {name!r}")
        lo, hi = self.COMMANDS[name]
        if not lo <= len(args) <= hi:
            raise CommandFailed(f"usage: {name} takes {lo}..{hi} arguments")
        getattr(self, name)(*args)
        return name != "quit"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="ftp-server")
    p.add_argument("--port", type=int, default=20060)
    p.add_argument("--user", required=True)
    p.add_argument("--password")
    p.add_argument("-c", "--commands", required=True, help="';'-separated commands")
    a = p.parse_args()
    password = a.password if a.password is not None else getpass.getpass(f"password for {a.user}: ")
    client = None
    try:
        client = FtpClient(a.host, a.port)
        client.login(a.user, password)
        for line in filter(None, (s.strip() for s in a.commands.split(";"))):
            if not client.run(line):
                return 0
        client.quit()
        return 0
    except (CommandFailed, OSError, ValueError) as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if client is not None and client.frames.sock.fileno() != -1:
            client.close()


if __name__ == "__main__":
    sys.exit(main())
