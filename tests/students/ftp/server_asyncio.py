#!/usr/bin/env python3
"""An FTP-exercise server (protocol version 1) on asyncio streams.

Written from services/ftp/README.md, docs/ftp-protocol.md and docs/lesson-contract.md only.
One event loop, one coroutine per connection, no threads: the quota check and the reservation
of an upload happen between two awaits, so they are atomic without a lock.

    python3 server_asyncio.py --port 20060 --root /srv/ftp [--max-sessions N]
"""
import argparse
import asyncio
import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import stat
import struct
import sys
import time
import unicodedata

MAX_HEADER = 65536
MAX_FILE = 2 ** 40
MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 244
MAX_DISK_PATH = 4096
MAX_LOGIN_ATTEMPTS = 3
CHUNK = 256 * 1024
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
HEX_RE = re.compile(r"[0-9a-fA-F]*")
RESERVED_RE = re.compile(r"\..+\.part(\.json)?", re.S)
DIGEST_LEN = {"sha256": 64, "md5": 32}
DEMO_USERS = (("alice", "wonderland", 10 << 20), ("bob", "builder", 1 << 20),
              ("alice2", "looking-glass", 2 << 20))
KDF = {"n": 1 << 14, "r": 8, "p": 1}

CONNECTED, AUTHENTICATING, READY, UPLOADING = "connected", "authenticating", "ready", "uploading"
READY_OPS = {"pwd", "cd", "ls", "mkdir", "rm", "quota", "put", "get"}
ALLOWED = {
    CONNECTED: {"login", "help", "noop", "quit"},
    AUTHENTICATING: {"auth", "login", "help", "noop", "quit"},
    READY: READY_OPS | {"help", "noop", "quit"},
    UPLOADING: {"data", "abort", "quit"},
}
ALL_OPS = READY_OPS | {"login", "auth", "help", "noop", "quit", "data", "abort", "trailer"}
HELP = {
    "login": "login USER - start the challenge (cnonce)", "auth": "auth - send the proof",
    "pwd": "pwd - where you are", "cd": "cd PATH - change directory",
    "ls": "ls [PATH] - list a directory", "mkdir": "mkdir PATH - make a directory",
    "rm": "rm PATH - remove a file or an empty directory", "quota": "quota - your space",
    "put": "put PATH - upload (file_size, digest, overwrite)", "data": "data - the upload's bytes",
    "abort": "abort - stop an upload, keep the bytes", "get": "get PATH - download (offset, if_digest)",
    "noop": "noop - nothing", "help": "help - this list", "quit": "quit - leave",
}

ERRNO_REPLY = {}
for _names, _code in (("ENOENT ENOTDIR EISDIR EEXIST ENOTEMPTY EACCES EPERM EROFS EMLINK ENXIO", 550),
                      ("ENAMETOOLONG ELOOP EINVAL EILSEQ", 553), ("ENOSPC EDQUOT EFBIG", 452),
                      ("EBUSY ETXTBSY EAGAIN", 450)):
    for _n in _names.split():
        if hasattr(errno, _n):
            ERRNO_REPLY[getattr(errno, _n)] = _code


def os_code(exc):
    return ERRNO_REPLY.get(exc.errno, 451)


# ---------------------------------------------------------------- replies and session-ending errors

class Reply(Exception):
    """An error reply; the session goes on."""
    def __init__(self, code, msg, **fields):
        super().__init__(msg)
        self.code, self.msg, self.fields = code, msg, fields


class Fatal(Exception):
    """Send this reply (if any), then end the session."""
    def __init__(self, code=None, msg=""):
        super().__init__(msg)
        self.code, self.msg = code, msg


class Gone(Exception):
    """The peer went away (EOF, reset); maybe a last 500 is worth trying."""
    def __init__(self, msg, mid_frame=False):
        super().__init__(msg)
        self.mid_frame = mid_frame


# ---------------------------------------------------------------- strict JSON header

def _no_dupes(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _int(text):
    if len(text.lstrip("-")) > 20:
        raise ValueError("integer longer than 20 digits")
    return int(text)


def _float(text):
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]} is not finite")
    return value


def _constant(name):
    raise ValueError(f"{name} is not JSON")


def _depth(value):
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest


def parse_header(raw):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"header is not UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        value = json.loads(text, object_pairs_hook=_no_dupes, parse_int=_int,
                           parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise ValueError("header nests too deeply")
    except ValueError as exc:
        raise ValueError(f"header is not strict JSON: {exc}")
    if not isinstance(value, dict):
        raise ValueError(f"header is a JSON {type(value).__name__}, not an object")
    if _depth(value) > 32:
        raise ValueError("header nests more than 32 levels")
    return value


def dump(header):
    return json.dumps(header, ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------- field checks

def f_int(req, key, default=None, required=True):
    if key not in req:
        if default is not None or not required:
            return default
        raise Reply(501, f"missing field {key!r}")
    value = req[key]
    if type(value) is not int or not 0 <= value <= MAX_FILE:
        raise Reply(501, f"{key!r} must be an integer from 0 to 2**40")
    return value


def f_bool(req, key, default=False):
    value = req.get(key, default)
    if type(value) is not bool:
        raise Reply(501, f"{key!r} must be true or false")
    return value


def f_hex(req, key, length=None, lengths=None, required=True):
    if key not in req:
        if required:
            raise Reply(501, f"missing field {key!r}")
        return None
    value = req[key]
    if not isinstance(value, str) or not HEX_RE.fullmatch(value) or len(value) % 2:
        raise Reply(501, f"{key!r} must be a hex string")
    if length is not None and len(value) != length:
        raise Reply(501, f"{key!r} must be {length} hex digits")
    if lengths is not None and not lengths[0] <= len(value) <= lengths[1]:
        raise Reply(501, f"{key!r} must be {lengths[0] // 2}-{lengths[1] // 2} bytes of hex")
    return value


def f_algo(req):
    algo = req.get("algo", "sha256")
    if algo not in DIGEST_LEN:
        raise Reply(501, "'algo' must be \"sha256\" or \"md5\"")
    return algo


# ---------------------------------------------------------------- users.json

class Users:
    def __init__(self, root):
        self.root = root
        self.file = os.path.join(root, "users.json")
        self.stamp = None
        self.table = {}
        self.secret = secrets.token_bytes(32)
        os.makedirs(os.path.join(root, "home"), exist_ok=True)
        if not os.path.exists(self.file):
            self.create_demo()
        self.reload()

    @staticmethod
    def make_record(password, quota):
        salt = os.urandom(16)
        salted = hashlib.scrypt(unicodedata.normalize("NFC", password).encode(), salt=salt,
                                dklen=32, maxmem=128 << 20, **KDF)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        return {"salt": salt.hex(), "kdf": "scrypt", **KDF,
                "stored_key": hashlib.sha256(client_key).hexdigest(),
                "server_key": hmac.new(salted, b"Server Key", hashlib.sha256).hexdigest(),
                "quota": quota, "max_entries": 1000}

    def create_demo(self):
        doc = {"version": 1, "users": {name: self.make_record(pw, quota) for name, pw, quota in DEMO_USERS}}
        tmp = self.file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.file)

    def reload(self):
        try:
            st = os.stat(self.file)
        except OSError:
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self.stamp:
            return
        try:
            with open(self.file) as fh:
                doc = json.load(fh)
            table = {name: rec for name, rec in doc["users"].items() if isinstance(rec, dict)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            print(f"users.json unreadable, keeping the old table: {exc}", file=sys.stderr, flush=True)
            return
        self.table, self.stamp = table, stamp
        for name in table:
            if USER_RE.fullmatch(name):
                os.makedirs(self.home(name), exist_ok=True)

    def home(self, name):
        return os.path.join(self.root, "home", name)

    def get(self, name):
        self.reload()
        return self.table.get(name)

    def fake_salt(self, name):
        return hmac.new(self.secret, b"salt\0" + name.encode(), hashlib.sha256).digest()[:16]


# ---------------------------------------------------------------- login throttling (§4)

class Throttle:
    def __init__(self, free, cap):
        self.free, self.cap, self.table = free, cap, {}   # key -> [failures, last, {account: n}]

    def _entry(self, key, now):
        entry = self.table.get(key)
        if entry and now - entry[1] > 600:
            del self.table[key]
            entry = None
        return entry

    def wait(self, key, now):
        entry = self._entry(key, now)
        if not entry or entry[0] < self.free:
            return 0.0
        delay = min(self.cap, 2 ** (entry[0] - self.free))
        return max(0.0, entry[1] + delay - now)

    def fail(self, key, now, account=None):
        entry = self._entry(key, now)
        if entry is None:
            if len(self.table) >= 10000:
                oldest = min(self.table, key=lambda k: self.table[k][1])
                del self.table[oldest]
            entry = self.table[key] = [0, now, {}]
        entry[0] += 1
        entry[1] = now
        if account is not None:
            entry[2][account] = entry[2].get(account, 0) + 1

    def forgive(self, key, account=None):
        entry = self.table.get(key)
        if entry is None:
            return
        if account is None:
            del self.table[key]
        else:
            entry[0] -= entry[2].pop(account, 0)
            if entry[0] <= 0:
                del self.table[key]


# ---------------------------------------------------------------- the server state

class Server:
    def __init__(self, args):
        self.args = args
        self.users = Users(args.root)
        self.sessions = 0
        self.uploads = {}          # real final path -> Upload
        self.digests = {}          # (path, ino, size, mtime_ns, algo) -> hex
        self.accounts = Throttle(5, 30)
        self.addresses = Throttle(10, 60)
        self.good = {}             # (account, address) -> time of the last successful login

    def reserved(self, user):
        return sum(u.file_size - u.offset - u.received for u in self.uploads.values() if u.user == user)

    def limits(self):
        a = self.args
        return {"max_header": MAX_HEADER, "max_sessions": a.max_sessions,
                "max_login_attempts": MAX_LOGIN_ATTEMPTS, "max_path_chars": MAX_PATH_CHARS,
                "max_name_bytes": MAX_NAME_BYTES, "max_file_size": MAX_FILE,
                "idle_timeout": a.idle_timeout, "header_deadline": a.header_deadline,
                "login_deadline": a.login_deadline, "stall_timeout": a.stall_timeout,
                "min_body_rate": a.min_body_rate, "rate_window": a.rate_window}

    def digest_of(self, fd, real, algo):
        st = os.fstat(fd)
        key = (real, st.st_ino, st.st_size, st.st_mtime_ns, algo)
        if key not in self.digests:
            h, pos = hashlib.new(algo), 0
            while True:
                block = os.pread(fd, CHUNK, pos)
                if not block:
                    break
                h.update(block)
                pos += len(block)
            if len(self.digests) > 1000:
                self.digests.clear()
            self.digests[key] = h.hexdigest()
        return self.digests[key]


class Upload:
    def __init__(self, user, real, vpath, part, side, file_size, algo, digest, offset):
        self.user, self.real, self.vpath, self.part, self.side = user, real, vpath, part, side
        self.file_size, self.algo, self.digest, self.offset = file_size, algo, digest, offset
        self.received = 0


# ---------------------------------------------------------------- disk helpers

def usage(home):
    used = entries = 0
    stack = [home]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    entries += 1
                    stack.append(e.path)
                    continue
                if stat.S_ISREG(st.st_mode):
                    used += st.st_size
                if not (e.name.startswith(".") and e.name.endswith(".part.json")
                        and RESERVED_RE.fullmatch(e.name)):
                    entries += 1
    return used, entries


def inside(real, home):
    try:
        return os.path.commonpath([real, home]) == home
    except ValueError:
        return False


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def unlink_quiet(*paths):
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass


def display_name(name):
    """A disk name for ls: undecodable bytes (surrogate escapes) as \\xNN."""
    if any("\udc80" <= ch <= "\udcff" for ch in name):
        return "".join(f"\\x{ord(ch) - 0xdc00:02x}" if "\udc80" <= ch <= "\udcff" else ch for ch in name), True
    return name, False


# ---------------------------------------------------------------- one session

class Session:
    def __init__(self, server, reader, writer):
        self.srv, self.args = server, server.args
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.addr = peer[0]
        self.state = CONNECTED
        self.user = self.home = None
        self.cwd = []
        self.challenge = None
        self.failures = 0
        self.upload = None
        self.started = time.monotonic()
        self.counted = False

    # ---- output
    async def send(self, code, msg, body=None, **fields):
        header = {"code": code, "msg": msg, **fields, "size": 0}
        if body is not None:
            header["size"] = body
        raw = dump(header)
        self.writer.write(struct.pack("!I", len(raw)) + raw)
        await self.drain()

    async def drain(self):
        try:
            await asyncio.wait_for(self.writer.drain(), self.args.stall_timeout)
        except asyncio.TimeoutError:
            self.writer.transport.abort()
            raise Fatal(None, "the client reads nothing")
        except (ConnectionError, OSError):
            raise Gone("connection lost while sending")

    async def close(self, code=None, msg=""):
        self.release()
        try:
            if code is not None:
                await self.send(code, msg)
            if self.writer.can_write_eof():
                self.writer.write_eof()
            deadline, budget = time.monotonic() + 1.0, 1 << 20
            while budget > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                data = await asyncio.wait_for(self.reader.read(65536), left)
                if not data:
                    break
                budget -= len(data)
        except (Fatal, Gone, ConnectionError, OSError, asyncio.TimeoutError):
            pass
        self.writer.transport.abort() if self.writer.transport.is_closing() else self.writer.close()

    def release(self):
        if self.counted:
            self.counted = False
            self.srv.sessions -= 1

    # ---- input
    async def read_exact(self, n, deadline, what):
        try:
            return await asyncio.wait_for(self.reader.readexactly(n), max(0.0, deadline - time.monotonic()))
        except asyncio.IncompleteReadError:
            raise Gone(f"the stream ended in the middle of a frame ({what})", mid_frame=True)
        except asyncio.TimeoutError:
            raise Fatal(421, f"header deadline passed: a frame's header must arrive within "
                             f"{self.args.header_deadline:g} s of its first byte; closing")
        except (ConnectionError, OSError):
            raise Gone("connection lost")

    async def read_header(self):
        now = time.monotonic()
        timeout, why = self.args.idle_timeout, f"idle for {self.args.idle_timeout:g} s; closing"
        if self.state in (CONNECTED, AUTHENTICATING):
            left = self.started + self.args.login_deadline - now
            if left < timeout:
                timeout, why = left, f"not logged in within {self.args.login_deadline:g} s; closing"
        try:
            first = await asyncio.wait_for(self.reader.read(1), max(0.0, timeout))
        except asyncio.TimeoutError:
            raise Fatal(421, why)
        except (ConnectionError, OSError):
            raise Gone("connection lost")
        if not first:
            return None
        deadline = time.monotonic() + self.args.header_deadline
        prefix = first + await self.read_exact(3, deadline, "length prefix")
        (length,) = struct.unpack("!I", prefix)
        if length == 0 or length > MAX_HEADER:
            raise Fatal(500, f"framing violation: header length {length} is not within 1..{MAX_HEADER}")
        raw = await self.read_exact(length, deadline, "header")
        try:
            header = parse_header(raw)
        except ValueError as exc:
            raise Fatal(500, f"framing violation: {exc}")
        size = header.get("size", 0)
        if size is None:
            size = 0
        if type(size) is not int or size < 0 or size > MAX_FILE:
            raise Fatal(500, "framing violation: 'size' must be a non-negative integer up to 2**40")
        header["size"] = size
        digest = header.get("sha256")
        if digest is not None and (not isinstance(digest, str) or len(digest) != 64
                                   or not HEX_RE.fullmatch(digest)):
            raise Fatal(500, "framing violation: 'sha256' must be 64 hex digits")
        return header

    async def body(self, size):
        """Yield the next `size` bytes of the stream in chunks (stall and rate limits)."""
        a = self.args
        remaining = size
        now = time.monotonic()
        last = win_start = now
        win_need, win_got = min(a.min_body_rate * a.rate_window, remaining), 0
        while remaining:
            now = time.monotonic()
            timeout = last + a.stall_timeout - now
            if a.min_body_rate > 0:
                timeout = min(timeout, win_start + a.rate_window - now)
            try:
                chunk = await asyncio.wait_for(self.reader.read(min(remaining, CHUNK)), max(0.0, timeout))
            except asyncio.TimeoutError:
                chunk = None
            except (ConnectionError, OSError):
                raise Gone("connection lost in a body", mid_frame=True)
            now = time.monotonic()
            if chunk == b"":
                raise Gone(f"the stream ended in the middle of a body ({size - remaining} of {size} bytes)",
                           mid_frame=True)
            if chunk:
                remaining -= len(chunk)
                win_got += len(chunk)
                last = now
            if a.min_body_rate > 0 and now >= win_start + a.rate_window:
                if win_got < win_need:
                    raise Fatal(421, f"body too slow: {win_got} bytes in {a.rate_window:g} s, at least "
                                     f"{a.min_body_rate} bytes/s needed; closing")
                win_start, win_got = now, 0
                win_need = min(a.min_body_rate * a.rate_window, remaining)
            if chunk is None and now >= last + a.stall_timeout:
                raise Fatal(421, f"body stalled: no byte for {a.stall_timeout:g} s; closing")
            if chunk:
                yield chunk

    async def skip_body(self, header):
        size = header["size"]
        if not size:
            return
        h = hashlib.sha256() if header.get("sha256") else None
        async for chunk in self.body(size):
            if h:
                h.update(chunk)
        if h and h.hexdigest() != header["sha256"].lower():
            raise Fatal(500, "framing violation: the body does not match its sha256")

    # ---- the loop
    async def run(self):
        await self.send(220, "socketlab-ftp (asyncio) ready; log in with login/auth (SCRAM over scrypt)",
                        server="socketlab-ftp-asyncio", version=1, features=[], limits=self.srv.limits())
        while True:
            req = await self.read_header()
            if req is None:
                return
            await self.dispatch(req)

    async def dispatch(self, req):
        op = req.get("op")
        if not isinstance(op, str) or op not in ALL_OPS:
            await self.skip_body(req)
            what = "missing 'op'" if op is None else f"unknown op {op!r}"
            return await self.send(500, f"{what}; send help for the list")
        if op not in ALLOWED[self.state]:
            await self.skip_body(req)
            if self.state in (CONNECTED, AUTHENTICATING) and op in READY_OPS:
                return await self.send(530, "not logged in: login and auth first")
            return await self.send(503, f"bad sequence: {op!r} is not allowed now ({self.state})")
        if req["size"] and op != "data":
            await self.skip_body(req)
            self.after_error(op)
            return await self.send(501, f"{op!r} takes no body")
        try:
            await getattr(self, "op_" + op)(req)
        except Reply as r:
            self.after_error(op)
            await self.send(r.code, r.msg, **r.fields)

    def after_error(self, op):
        """An op the state allowed moves the state whatever its reply (§3)."""
        if op in ("login", "auth"):
            self.state, self.challenge = CONNECTED, None
        elif op in ("data", "abort") and self.upload:
            self.end_upload()

    # ---- login
    def throttled(self, account):
        now = time.monotonic()
        wait = self.srv.addresses.wait(self.addr, now)
        good = self.srv.good.get((account, self.addr))
        if good is None or time.time() - good > 86400:
            wait = max(wait, self.srv.accounts.wait(account, now))
        return wait

    async def op_login(self, req):
        self.state, self.challenge = CONNECTED, None
        user = req.get("user")
        if not isinstance(user, str) or not USER_RE.fullmatch(user):
            raise Reply(501, "'user' must be 1-32 characters [a-z_][a-z0-9_-]*")
        cnonce = f_hex(req, "cnonce", lengths=(16, 128))
        wait = self.throttled(user)
        if wait > 0:
            raise Reply(530, f"too many failed logins; try again in {wait:.0f} s", retry_after=max(1, round(wait + 0.49)))
        record = self.srv.users.get(user)
        if record:
            try:
                salt = bytes.fromhex(record["salt"])
                n, r, p = int(record["n"]), int(record["r"]), int(record["p"])
                stored, server_key = bytes.fromhex(record["stored_key"]), bytes.fromhex(record["server_key"])
            except (KeyError, ValueError, TypeError):
                record = None
        if not record:
            salt, (n, r, p) = self.srv.users.fake_salt(user), (KDF["n"], KDF["r"], KDF["p"])
            stored, server_key = secrets.token_bytes(32), None
        snonce = secrets.token_hex(16)
        self.challenge = (user, cnonce, snonce, stored, server_key)
        self.state = AUTHENTICATING
        await self.send(331, "prove you know the password", user=user, snonce=snonce, salt=salt.hex(),
                        kdf="scrypt", n=n, r=r, p=p)

    async def op_auth(self, req):
        user, cnonce, snonce, stored, server_key = self.challenge
        self.challenge, self.state = None, CONNECTED
        proof = bytes.fromhex(f_hex(req, "proof", length=64))
        wait = self.throttled(user)
        if wait > 0:
            raise Reply(530, f"too many failed logins; try again in {wait:.0f} s", retry_after=max(1, round(wait + 0.49)))
        message = f"{user},{cnonce},{snonce}".encode()
        signature = hmac.new(stored, message, hashlib.sha256).digest()
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), stored) and server_key is not None
        now = time.monotonic()
        if ok:
            self.srv.accounts.forgive(user)
            self.srv.addresses.forgive(self.addr, account=user)
            self.srv.good[(user, self.addr)] = time.time()
            if len(self.srv.good) > 10000:
                self.srv.good.pop(next(iter(self.srv.good)))
            self.user, self.home = user, os.path.realpath(self.srv.users.home(user))
            os.makedirs(self.home, exist_ok=True)
            self.cwd, self.state, self.failures = [], READY, 0
            return await self.send(230, f"welcome, {user}", user=user, home="/",
                                   server_signature=hmac.new(server_key, message, hashlib.sha256).hexdigest())
        self.srv.accounts.fail(user, now)
        self.srv.addresses.fail(self.addr, now, account=user)
        self.failures += 1
        await asyncio.sleep(self.args.login_delay)
        if self.failures >= MAX_LOGIN_ATTEMPTS:
            raise Fatal(421, f"{self.failures} failed logins; closing")
        raise Reply(530, "login incorrect", attempts_left=MAX_LOGIN_ATTEMPTS - self.failures)

    # ---- paths
    def resolve(self, value, follow_last=True):
        """Client path -> (virtual components, real path on the disk)."""
        if not isinstance(value, str) or not value:
            raise Reply(501, "'path' must be a non-empty string")
        if len(value) > MAX_PATH_CHARS:
            raise Reply(501, f"'path' is longer than {MAX_PATH_CHARS} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Reply(553, "the path is not valid Unicode (a lone surrogate)")
        if "\0" in value:
            raise Reply(553, "a path may not contain NUL")
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            raise Reply(553, "a path may not contain control characters")
        if "\\" in value:
            raise Reply(553, "'\\' is not allowed in a path")
        value = unicodedata.normalize("NFC", value)
        comps = [] if value.startswith("/") else list(self.cwd)
        for part in value.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not comps:
                    raise Reply(553, f"{value!r} leads outside your home directory")
                comps.pop()
                continue
            if len(part.encode()) > MAX_NAME_BYTES:
                raise Reply(553, f"a name is longer than {MAX_NAME_BYTES} bytes")
            if RESERVED_RE.fullmatch(part):
                raise Reply(553, f"{part!r} is reserved for unfinished uploads")
            comps.append(part)
        real = os.path.join(self.home, *comps)
        if len(real.encode()) > MAX_DISK_PATH:
            raise Reply(553, "the path is too long on the server's disk")
        if follow_last or not comps:
            resolved = os.path.realpath(real)
        else:
            resolved = os.path.join(os.path.realpath(os.path.dirname(real)), comps[-1])
        if not inside(resolved, self.home):
            raise Reply(553, f"{value!r} leads outside your home directory")
        return comps, resolved

    @staticmethod
    def vpath(comps):
        return "/" + "/".join(comps)

    # ---- simple commands
    async def op_noop(self, req):
        await self.send(200, "ok")

    async def op_help(self, req):
        await self.send(214, "commands", commands=HELP)

    async def op_quit(self, req):
        if self.upload:
            self.end_upload()
        raise Fatal(221, "goodbye")

    async def op_pwd(self, req):
        await self.send(257, f'"{self.vpath(self.cwd)}" is the current directory', path=self.vpath(self.cwd))

    async def op_cd(self, req):
        comps, real = self.resolve(req.get("path"))
        try:
            st = os.stat(real)
        except OSError as exc:
            raise Reply(os_code(exc), f"cannot cd to {self.vpath(comps)}: {exc.strerror}")
        if not stat.S_ISDIR(st.st_mode):
            raise Reply(550, f"{self.vpath(comps)} is not a directory")
        self.cwd = comps
        await self.send(250, self.vpath(comps), path=self.vpath(comps))

    async def op_mkdir(self, req):
        comps, real = self.resolve(req.get("path"))
        if not comps:
            raise Reply(550, "/ exists")
        record = self.srv.users.get(self.user) or {}
        _, entries = usage(self.home)
        if os.path.lexists(real):
            raise Reply(550, f"{self.vpath(comps)} exists")
        if entries + 1 > int(record.get("max_entries", 1000)):
            raise Reply(552, f"entry limit reached: {entries} of {record.get('max_entries', 1000)}")
        try:
            os.mkdir(real)
        except OSError as exc:
            raise Reply(os_code(exc), f"cannot create {self.vpath(comps)}: {exc.strerror}")
        await self.send(257, f'"{self.vpath(comps)}" created', path=self.vpath(comps))

    async def op_rm(self, req):
        comps, real = self.resolve(req.get("path"), follow_last=False)
        if not comps:
            raise Reply(550, "cannot remove your home directory")
        if real in self.srv.uploads or os.path.realpath(real) in self.srv.uploads:
            raise Reply(450, f"{self.vpath(comps)} is being uploaded")
        part = os.path.join(os.path.dirname(real), "." + os.path.basename(real) + ".part")
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            if os.path.lexists(part):          # only an unfinished upload: give its space back
                unlink_quiet(part, part + ".json")
                return await self.send(250, f"unfinished upload {self.vpath(comps)} removed",
                                       path=self.vpath(comps))
            raise Reply(550, f"{self.vpath(comps)}: no such file or directory")
        except OSError as exc:
            raise Reply(os_code(exc), f"cannot remove {self.vpath(comps)}: {exc.strerror}")
        try:
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(real)
            else:
                os.unlink(real)
        except OSError as exc:
            raise Reply(os_code(exc), f"cannot remove {self.vpath(comps)}: {exc.strerror}")
        await self.send(250, f"{self.vpath(comps)} removed", path=self.vpath(comps))

    async def op_quota(self, req):
        record = self.srv.users.get(self.user) or {}
        used, entries = usage(self.home)
        limit = int(record.get("quota", 0))
        reserved = self.srv.reserved(self.user)
        await self.send(200, f"used {used} B + reserved {reserved} B of {limit} B",
                        used=used, reserved=reserved, limit=limit, free=max(0, limit - used - reserved),
                        entries=entries, max_entries=int(record.get("max_entries", 1000)))

    # ---- ls
    def entry(self, dirpath, name):
        full = os.path.join(dirpath, name)
        shown, bad = display_name(name)
        st = os.lstat(full)
        item = {"name": shown}
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.path.realpath(full)
                tst = os.stat(full) if inside(target, self.home) else None
            except OSError:
                tst = None
            if tst is None:
                item.update(type="link", size=0, mtime=int(st.st_mtime))
            else:
                st = tst
        if "type" not in item:
            if stat.S_ISDIR(st.st_mode):
                item.update(type="dir", size=0, mtime=int(st.st_mtime))
            elif stat.S_ISREG(st.st_mode):
                item.update(type="file", size=st.st_size, mtime=int(st.st_mtime))
            else:
                item.update(type="other", size=0, mtime=int(st.st_mtime))
        if bad:
            item["undecodable"] = True
        return item

    def partial(self, dirpath, name):
        real_name = name[1:-len(".part")]
        shown, bad = display_name(real_name)
        st = os.lstat(os.path.join(dirpath, name))
        file_size = None
        try:
            with open(os.path.join(dirpath, name + ".json")) as fh:
                file_size = json.load(fh).get("file_size")
        except (OSError, ValueError, AttributeError):
            pass
        item = {"name": shown, "type": "partial", "size": st.st_size, "file_size": file_size}
        if bad:
            item["undecodable"] = True
        return item

    async def op_ls(self, req):
        comps, real = self.resolve(req.get("path", "."))
        after = req.get("after")
        if after is not None and not isinstance(after, str):
            raise Reply(501, "'after' must be a name (a string)")
        try:
            st = os.stat(real)
        except OSError as exc:
            raise Reply(os_code(exc), f"cannot list {self.vpath(comps)}: {exc.strerror}")
        items = []
        if stat.S_ISDIR(st.st_mode):
            try:
                names = os.listdir(real)
            except OSError as exc:
                raise Reply(os_code(exc), f"cannot list {self.vpath(comps)}: {exc.strerror}")
            for name in names:
                try:
                    if name.startswith(".") and name.endswith(".part.json") and RESERVED_RE.fullmatch(name):
                        continue
                    if name.startswith(".") and name.endswith(".part") and RESERVED_RE.fullmatch(name):
                        items.append(self.partial(real, name))
                    else:
                        items.append(self.entry(real, name))
                except OSError:
                    continue
        else:
            items.append(self.entry(os.path.dirname(real), os.path.basename(real)))
            items[0]["name"] = comps[-1] if comps else items[0]["name"]
        items.sort(key=lambda e: (e["name"], e["type"]))
        total = len(items)
        if after is not None:
            items = [e for e in items if e["name"] > after]
        path = self.vpath(comps)
        base = {"code": 200, "msg": f"{total} entries in {path}", "path": path, "entries": [],
                "truncated": False, "total": total, "continue_after": None, "size": 0}
        if len(dump({**base, "entries": items})) <= MAX_HEADER:
            return await self.send(200, base["msg"], path=path, entries=items, truncated=False,
                                   total=total, continue_after=None)
        room = MAX_HEADER - len(dump({**base, "truncated": True})) - 8
        page, spent = [], 0
        i = 0
        while i < len(items):                      # whole groups of one name: never split a name
            j = i
            while j < len(items) and items[j]["name"] == items[i]["name"]:
                j += 1
            group = items[i:j]
            cost = sum(len(dump(e)) + 2 for e in group)
            if page and spent + cost + len(dump(group[0]["name"])) > room:
                break
            page.extend(group)
            spent += cost
            i = j
        while True:                                # measure exactly as sent; trim if needed
            header = {**base, "entries": page, "truncated": True, "continue_after": page[-1]["name"]}
            if len(dump(header)) <= MAX_HEADER or len(page) <= 1:
                break
            last = page[-1]["name"]
            while page and page[-1]["name"] == last:
                page.pop()
        await self.send(200, base["msg"], path=path, entries=page, truncated=True, total=total,
                        continue_after=page[-1]["name"])

    # ---- uploads
    async def op_put(self, req):
        comps, real = self.resolve(req.get("path"))
        file_size = f_int(req, "file_size")
        algo = f_algo(req)
        if "trailer" in req:
            if type(req["trailer"]) is not bool:
                raise Reply(501, "'trailer' must be true or false")
            if req["trailer"] and "digest" in req:
                raise Reply(501, "'trailer' and 'digest' together")
            if req["trailer"]:
                raise Reply(501, "this server speaks protocol 1: send the 'digest' in the put")
        digest = f_hex(req, "digest", length=DIGEST_LEN[algo]).lower()
        overwrite = f_bool(req, "overwrite")
        if not comps:
            raise Reply(550, "/ is a directory")
        vp = self.vpath(comps)
        parent, name = os.path.dirname(real), os.path.basename(real)
        if not os.path.isdir(parent):
            raise Reply(550, f"no such directory for {vp}")
        try:
            st = os.stat(real)
            if stat.S_ISDIR(st.st_mode):
                raise Reply(550, f"{vp} is a directory")
            if not stat.S_ISREG(st.st_mode):
                raise Reply(550, f"{vp} is not a regular file")
            if not overwrite:
                raise Reply(550, f"{vp} exists (send overwrite: true to replace it)")
            exists = True
        except FileNotFoundError:
            exists = False
        except OSError as exc:
            raise Reply(os_code(exc), f"cannot store {vp}: {exc.strerror}")
        if real in self.srv.uploads:
            raise Reply(450, f"{vp} is being uploaded by another session")
        part = os.path.join(parent, "." + name + ".part")
        side = part + ".json"
        offset, stale = 0, 0
        part_exists = os.path.lexists(part)
        if part_exists:
            try:
                with open(side) as fh:
                    meta = json.load(fh)
                pst = os.lstat(part)
                if (stat.S_ISREG(pst.st_mode) and meta.get("file_size") == file_size
                        and meta.get("algo") == algo and str(meta.get("digest", "")).lower() == digest
                        and pst.st_size <= file_size):
                    offset = pst.st_size
            except (OSError, ValueError, AttributeError):
                pass
            if offset == 0:
                for p in (part, side):
                    try:
                        stale += os.lstat(p).st_size
                    except OSError:
                        pass
        elif os.path.lexists(side):
            try:
                stale += os.lstat(side).st_size
            except OSError:
                pass
        record = self.srv.users.get(self.user) or {}
        limit, max_entries = int(record.get("quota", 0)), int(record.get("max_entries", 1000))
        used, entries = usage(self.home)
        used -= stale
        reserved = self.srv.reserved(self.user)
        need = file_size - offset
        if used + reserved + need > limit:
            raise Reply(552, f"quota exceeded: {used} bytes used + {reserved} reserved + {need} more "
                             f"> your quota of {limit} bytes")
        if not exists and not part_exists and entries + 1 > max_entries:
            raise Reply(552, f"entry limit reached: {entries} of {max_entries}")
        # Everything checked: no await from here to the reservation.
        if offset == 0 and (part_exists or os.path.lexists(side)):
            unlink_quiet(part, side)
        try:
            with open(side, "w") as fh:
                json.dump({"file_size": file_size, "algo": algo, "digest": digest, "path": vp}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            os.close(fd)
        except OSError as exc:
            if offset == 0:
                unlink_quiet(part, side)
            raise Reply(os_code(exc), f"cannot store {vp}: {exc.strerror}")
        self.upload = Upload(self.user, real, vp, part, side, file_size, algo, digest, offset)
        self.srv.uploads[real] = self.upload
        self.state = UPLOADING
        await self.send(350, f"send {need} bytes from offset {offset}", offset=offset,
                        file_size=file_size, path=vp)

    def end_upload(self, keep=True):
        up, self.upload = self.upload, None
        self.state = READY if self.state == UPLOADING else self.state
        if up is None:
            return
        self.srv.uploads.pop(up.real, None)
        try:
            size = os.lstat(up.part).st_size
        except OSError:
            size = 0
        if not keep or size == 0:
            unlink_quiet(up.part, up.side)

    async def op_abort(self, req):
        up = self.upload
        try:
            kept = os.lstat(up.part).st_size
        except OSError:
            kept = 0
        self.end_upload()
        await self.send(226, f"upload aborted; {kept} bytes kept for a resume", kept=kept, path=up.vpath)

    async def op_data(self, req):
        up = self.upload
        size = req["size"]
        offset = req.get("offset")
        if type(offset) is not int or offset != up.offset or size != up.file_size - up.offset:
            await self.skip_body(req)
            raise Reply(501, f"data must have offset {up.offset} and a body of "
                             f"{up.file_size - up.offset} bytes (got offset {offset!r}, {size} bytes)")
        frame_hash = hashlib.sha256() if req.get("sha256") else None
        h = hashlib.new(up.algo)
        try:
            fd = os.open(up.part, os.O_RDWR | os.O_NOFOLLOW)
        except OSError as exc:
            await self.skip_body(req)
            raise Reply(os_code(exc), f"cannot write the partial upload: {exc.strerror}")
        error = None
        written = up.offset
        try:
            os.ftruncate(fd, up.offset)
            pos = 0
            while pos < up.offset:
                block = os.pread(fd, min(CHUNK, up.offset - pos), pos)
                if not block:
                    break
                h.update(block)
                pos += len(block)
            os.lseek(fd, up.offset, os.SEEK_SET)
            drop = None
            try:
                async for chunk in self.body(size):
                    up.received += len(chunk)
                    h.update(chunk)
                    if frame_hash:
                        frame_hash.update(chunk)
                    if error is None:
                        try:
                            view = memoryview(chunk)
                            while view:
                                n = os.write(fd, view)
                                view = view[n:]
                                written += n
                        except OSError as exc:
                            error = exc
            except (Gone, Fatal) as exc:
                drop = exc
            if drop is None and frame_hash and frame_hash.hexdigest() != req["sha256"].lower():
                drop = Fatal(500, "framing violation: the data body does not match its sha256; "
                                  f"its bytes are dropped, {up.offset} bytes kept")
                os.ftruncate(fd, up.offset)
            try:
                os.fsync(fd)
            except OSError as exc:
                error = error or exc
            if drop is not None:
                self.end_upload()
                raise drop
            if error is not None:
                try:
                    os.ftruncate(fd, written)
                    os.fsync(fd)
                except OSError:
                    pass
                self.end_upload()
                raise Reply(os_code(error), f"cannot write {up.vpath}: {error.strerror}; "
                                            f"{written} bytes kept for a resume")
            got = h.hexdigest()
            if got != up.digest:
                self.end_upload(keep=False)
                raise Reply(451, f"{up.algo} mismatch: the file hashes to {got}, the put announced "
                                 f"{up.digest}; the partial upload is deleted", path=up.vpath)
            try:
                os.replace(up.part, up.real)
                fsync_dir(os.path.dirname(up.real))
                unlink_quiet(up.side)
                fsync_dir(os.path.dirname(up.real))
            except OSError as exc:
                self.end_upload()
                raise Reply(os_code(exc), f"cannot store {up.vpath}: {exc.strerror}")
            try:
                fst = os.fstat(fd)
                self.srv.digests[(up.real, fst.st_ino, fst.st_size, fst.st_mtime_ns, up.algo)] = got
            except OSError:
                pass
        finally:
            os.close(fd)
        self.srv.uploads.pop(up.real, None)
        self.upload, self.state = None, READY
        await self.send(226, f"{up.vpath} stored, {up.algo} verified", path=up.vpath,
                        file_size=up.file_size, algo=up.algo, digest=got, received=up.received)

    # ---- downloads
    async def op_get(self, req):
        comps, real = self.resolve(req.get("path"))
        offset = f_int(req, "offset", default=0)
        algo = f_algo(req)
        if_digest = f_hex(req, "if_digest", required=False)
        vp = self.vpath(comps)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError as exc:
            raise Reply(os_code(exc), f"cannot read {vp}: {exc.strerror}")
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Reply(550, f"{vp} is not a regular file")
            try:
                digest = self.srv.digest_of(fd, real, algo)
            except OSError as exc:
                raise Reply(os_code(exc), f"cannot read {vp}: {exc.strerror}")
            file_size = st.st_size
            if if_digest is not None and if_digest.lower() != digest:
                offset = 0
            if offset > file_size:
                raise Reply(501, f"offset {offset} is beyond the end of {vp} ({file_size} bytes)")
            count = file_size - offset
            self.state = "downloading"
            await self.send(150, f"sending {count} bytes of {vp} from offset {offset}", body=count,
                            path=vp, file_size=file_size, offset=offset, algo=algo, digest=digest)
            cut = self.args.drop_after_bytes if offset == 0 else None
            pos, sent = offset, 0
            while sent < count:
                n = min(CHUNK, count - sent)
                if cut is not None:
                    n = min(n, cut - sent)
                    if n <= 0:
                        self.writer.transport.abort()
                        raise Fatal(None, "download cut on purpose (--drop-after-bytes)")
                block = os.pread(fd, n, pos)
                if not block:     # the file shrank under us: the frame cannot be completed
                    self.writer.transport.abort()
                    raise Fatal(None, "file shrank during a download")
                self.writer.write(block)
                await self.drain()
                pos += len(block)
                sent += len(block)
        finally:
            os.close(fd)
        self.state = READY
        await self.send(226, f"{vp}: {sent} bytes sent", sent=sent, path=vp)


# ---------------------------------------------------------------- accept

async def refuse(server, reader, writer, limit):
    s = Session(server, reader, writer)
    await s.close(421, f"too many sessions ({limit}); try again later")


async def handle(server, reader, writer):
    try:
        writer.transport.set_write_buffer_limits(high=CHUNK)
    except (AttributeError, RuntimeError):
        pass
    if server.sessions >= server.args.max_sessions:
        try:
            await refuse(server, reader, writer, server.args.max_sessions)
        except Exception:
            writer.transport.abort()
        return
    s = Session(server, reader, writer)
    server.sessions += 1
    s.counted = True
    try:
        await s.run()
        await s.close()
    except Fatal as exc:
        if s.upload:
            s.end_upload()
        if exc.code is None:
            s.release()
            writer.transport.abort()
        else:
            await s.close(exc.code, exc.msg)
    except Gone as exc:
        if s.upload:
            s.end_upload()
        await s.close(500 if exc.mid_frame else None, f"framing violation: {exc}")
    except asyncio.CancelledError:
        s.release()
        writer.transport.abort()
        raise
    except Exception as exc:                                  # a bug: say so, never drop silently
        print(f"session error: {exc!r}", file=sys.stderr, flush=True)
        if s.upload:
            s.end_upload()
        await s.close(451, f"server error: {type(exc).__name__}")
    finally:
        s.release()


async def main_async(args):
    server = Server(args)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    listener = await asyncio.start_server(lambda r, w: handle(server, r, w), args.host, args.port,
                                          limit=1 << 20, backlog=128, reuse_address=True)
    print(f"listening on {args.host}:{args.port}", flush=True)
    async with listener:
        await stop
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description="FTP-exercise server, protocol 1, asyncio")
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=20060)
    ap.add_argument("--root", default="/srv/ftp")
    ap.add_argument("--max-sessions", type=int, default=100)
    ap.add_argument("--idle-timeout", type=float, default=300.0)
    ap.add_argument("--header-deadline", type=float, default=10.0)
    ap.add_argument("--stall-timeout", type=float, default=60.0)
    ap.add_argument("--login-deadline", type=float, default=60.0)
    ap.add_argument("--min-body-rate", type=int, default=1024)
    ap.add_argument("--rate-window", type=float, default=30.0)
    ap.add_argument("--login-delay", type=float, default=1.0)
    ap.add_argument("--drop-after-bytes", type=int, default=None)
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        print(f"ignoring options {unknown}", file=sys.stderr, flush=True)
    args.root = os.path.abspath(args.root)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
