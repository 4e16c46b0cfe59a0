"""An asyncio-streams client for the FTP exercise (protocol version 1), stdlib only.

    python3 client_asyncio.py --host ftp-server --port 20060 --user alice --password wonderland \
        -c "put LOCAL REMOTE; ls; get REMOTE LOCAL; rm REMOTE; quit"

Exit status 0 when every command succeeded, 1 at the first that failed.
"""
import argparse
import asyncio
import getpass
import hashlib
import hmac
import json
import os
import secrets
import shlex
import struct
import sys
import unicodedata

MAX_HEADER = 65536
CHUNK = 128 * 1024


class Failed(Exception):
    pass


def _pairs(pairs):
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("duplicate key in header")
    return d


def _bad_constant(c):
    raise ValueError(f"{c} in header")


class Session:
    def __init__(self, reader, writer):
        self.r, self.w = reader, writer

    # ---- frames
    async def send(self, header, body=b""):
        raw = json.dumps({**header, "size": len(body)}, allow_nan=False).encode("utf-8")
        self.w.write(struct.pack("!I", len(raw)) + raw + body)
        await self.w.drain()

    async def exactly(self, n):
        try:
            return await self.r.readexactly(n)   # never a short read, unlike one recv()
        except asyncio.IncompleteReadError as e:
            raise Failed(f"server closed the connection ({len(e.partial)} of {n} bytes)")

    async def head(self):
        (n,) = struct.unpack("!I", await self.exactly(4))
        if not 0 < n <= MAX_HEADER:
            raise Failed(f"framing: header length {n}")
        try:
            h = json.loads((await self.exactly(n)).decode("utf-8"),
                           object_pairs_hook=_pairs, parse_constant=_bad_constant)
        except ValueError as e:
            raise Failed(f"framing: {e}") from None
        if not isinstance(h, dict) or type(h.get("code")) is not int:
            raise Failed(f"framing: not a reply {h!r}")
        size = h.get("size") or 0
        if type(size) is not int or size < 0:
            raise Failed(f"framing: size {size!r}")
        h["size"] = size
        return h

    async def reply(self):
        h = await self.head()
        body = await self.exactly(h["size"])
        if h.get("sha256") and hashlib.sha256(body).hexdigest() != str(h["sha256"]).lower():
            raise Failed("framing: body sha256 mismatch")
        return h

    async def ask(self, want, **req):
        await self.send(req)
        h = await self.reply()
        return self.want(h, want)

    @staticmethod
    def want(h, code):
        if h["code"] != code:
            print(h["code"], h.get("msg", ""), flush=True)
            raise Failed(f"expected {code}, got {h['code']}")
        return h

    # ---- login
    async def login(self, user, password):
        cnonce = secrets.token_hex(24)
        c = await self.ask(331, op="login", user=user, cnonce=cnonce)
        n, r, p = c.get("n"), c.get("r"), c.get("p")
        if c.get("kdf") != "scrypt" or not all(type(v) is int for v in (n, r, p)):
            raise Failed("unusable challenge")
        if not (2 <= n <= 1 << 16 and n & (n - 1) == 0 and 1 <= r <= 16 and 1 <= p <= 4):
            raise Failed(f"refusing scrypt n={n} r={r} p={p}: over the limits of §4")
        salt, snonce = bytes.fromhex(c["salt"]), c["snonce"]
        salted = await asyncio.to_thread(
            hashlib.scrypt, unicodedata.normalize("NFC", password).encode("utf-8"),
            salt=salt, n=n, r=r, p=p, dklen=32, maxmem=512 * 1024 * 1024)
        ck = hmac.digest(salted, b"Client Key", "sha256")
        sk = hashlib.sha256(ck).digest()
        msg = f"{user},{cnonce},{snonce}".encode("utf-8")
        sig = hmac.digest(sk, msg, "sha256")
        ok = await self.ask(230, op="auth", proof=bytes(x ^ y for x, y in zip(ck, sig)).hex())
        server_sig = hmac.digest(hmac.digest(salted, b"Server Key", "sha256"), msg, "sha256")
        if not hmac.compare_digest(server_sig.hex(), str(ok.get("server_signature", "")).lower()):
            raise Failed("server_signature does not verify; not trusting this server")
        print(ok["code"], ok.get("msg", ""), flush=True)

    # ---- commands
    async def put(self, local, remote=None):
        remote = remote or os.path.basename(local)
        try:
            size, digest = await asyncio.to_thread(self._hash_file, local)
        except OSError as e:
            raise Failed(f"local error: {local}: {e.strerror}; nothing was sent") from None
        h = await self.ask(350, op="put", path=remote, file_size=size, digest=digest)
        off = h.get("offset", 0)
        if type(off) is not int or not 0 <= off <= size:
            await self.ask(226, op="abort")
            raise Failed(f"nonsense offset {off!r}")
        print(h["code"], h.get("msg", ""), flush=True)
        raw = json.dumps({"op": "data", "offset": off, "size": size - off}).encode("utf-8")
        self.w.write(struct.pack("!I", len(raw)) + raw)
        with open(local, "rb") as f:
            f.seek(off)
            left = size - off
            while left > 0:
                block = f.read(min(CHUNK, left))
                if not block:
                    raise Failed(f"{local} shrank during the upload")
                self.w.write(block)
                await self.w.drain()
                left -= len(block)
        await self.w.drain()
        done = self.want(await self.reply(), 226)
        if str(done.get("digest", digest)).lower() != digest:
            raise Failed("stored digest differs")
        print(done["code"], done.get("msg", ""), flush=True)

    @staticmethod
    def _hash_file(path):
        h, n = hashlib.sha256(), 0
        with open(path, "rb") as f:
            while b := f.read(CHUNK):
                h.update(b)
                n += len(b)
        return n, h.hexdigest()

    async def get(self, remote, local=None):
        name = os.path.basename(remote.rstrip("/"))
        local = local or name
        if os.path.isdir(local):
            local = os.path.join(local, name)
        d, b = os.path.split(os.path.abspath(local))
        part, side = os.path.join(d, f".{b}.part"), os.path.join(d, f".{b}.part.json")
        req = {"op": "get", "path": remote, "offset": 0, "algo": "sha256"}
        if os.path.exists(part) and os.path.exists(side):
            try:
                with open(side) as f:
                    meta = json.load(f)
                if meta["path"] == remote:
                    req.update(offset=os.path.getsize(part), if_digest=meta["digest"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        await self.send(req)
        h = await self.head()
        if h["code"] != 150:
            await self.exactly(h["size"])
            self.want(h, 150)
        total, off, digest = h.get("file_size"), h.get("offset"), h.get("digest")
        if (type(total) is not int or type(off) is not int or not isinstance(digest, str)
                or off > req["offset"] or h["size"] != total - off):
            raise Failed(f"150 reply does not add up: {h}")
        with open(side, "w") as f:
            json.dump({"path": remote, "file_size": total, "algo": "sha256", "digest": digest}, f)
        whole, body = hashlib.sha256(), hashlib.sha256()
        mode = "r+b" if os.path.exists(part) else "w+b"
        with open(part, mode) as f:
            f.truncate(off)
            while b := f.read(CHUNK):
                whole.update(b)
            f.seek(off)
            left = h["size"]
            while left:
                try:
                    b = await self.r.read(min(CHUNK, left))
                except ConnectionError as e:
                    raise Failed(f"download broken: {e}") from None
                if not b:
                    raise Failed(f"download cut with {left} bytes to go; get again to resume")
                f.write(b)
                whole.update(b)
                body.update(b)
                left -= len(b)
            f.flush()
            os.fsync(f.fileno())
        if h.get("sha256") and body.hexdigest() != str(h["sha256"]).lower():
            raise Failed("body sha256 mismatch")
        done = self.want(await self.reply(), 226)
        if whole.hexdigest() != digest.lower():
            os.remove(part)
            os.remove(side)
            raise Failed("sha256 of the copy differs from the server's: deleted")
        os.replace(part, local)
        os.remove(side)
        print(done["code"], done.get("msg", ""),
              *([f"(resumed from byte {off})"] if off else []), "->", local, flush=True)

    async def ls(self, path="."):
        req = {"op": "ls", "path": path}
        while True:
            page = await self.ask(200, **req)
            for e in page.get("entries", []):
                size = e.get("size")
                if e.get("type") == "partial":
                    size = f"{size}/{e.get('file_size')}"
                print(f"{e.get('type')}\t{size}\t{e.get('name')}", flush=True)
            if not page.get("truncated") or page.get("continue_after") is None:
                return
            req["after"] = page["continue_after"]

    async def simple(self, op, code, *args):
        h = await self.ask(code, op=op, **({"path": args[0]} if args else {}))
        print(h["code"], h.get("msg", ""), flush=True)

    async def quit(self):
        h = await self.ask(221, op="quit")
        print(h["code"], h.get("msg", ""), flush=True)
        if self.w.can_write_eof():
            self.w.write_eof()
        while await self.r.read(CHUNK):
            pass


ARITY = {"put": (1, 2), "get": (1, 2), "ls": (0, 1), "rm": (1, 1), "cd": (1, 1),
         "mkdir": (1, 1), "pwd": (0, 0), "quit": (0, 0)}
CODES = {"rm": 250, "cd": 250, "mkdir": 257, "pwd": 257}


async def run(args, password):
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(args.host, args.port), timeout=30)
    s = Session(reader, writer)
    try:
        s.want(await s.reply(), 220)
        await s.login(args.user, password)
        for line in (x.strip() for x in args.c.split(";")):
            if not line:
                continue
            name, *rest = shlex.split(line)
            if name not in ARITY:
                raise Failed(f"unknown command {name!r}")
            lo, hi = ARITY[name]
            if not lo <= len(rest) <= hi:
                raise Failed(f"{name}: {lo} to {hi} arguments")
            if name in CODES:
                await s.simple(name, CODES[name], *rest)
            else:
                await getattr(s, name)(*rest)
            if name == "quit":
                return 0
        await s.quit()
        return 0
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def main():
    ap = argparse.ArgumentParser(description="asyncio client for the FTP exercise")
    ap.add_argument("--host", default="ftp-server")
    ap.add_argument("--port", type=int, default=20060)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password")
    ap.add_argument("-c", required=True, metavar="COMMANDS")
    args = ap.parse_args()
    pw = args.password if args.password is not None else getpass.getpass(
        f"password for {args.user}: ")
    try:
        return asyncio.run(run(args, pw))
    except (Failed, OSError, ValueError, asyncio.TimeoutError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
