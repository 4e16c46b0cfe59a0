#!/usr/bin/env python3
"""An FTP-style server for the SocketLab exercise, written from docs/ftp-protocol.md alone.

Design: one asyncio event loop (single thread), one coroutine per session.
Standard library only.
"""
import argparse
import asyncio
import errno
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import signal
import stat
import struct
import sys
import time
import unicodedata

import store
import wire

MAX_HEADER = 65536
MAX_FILE = 2 ** 40
MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 244
MAX_LOGIN_ATTEMPTS = 3
CHUNK = 256 * 1024
HEX_RE = re.compile(r"^[0-9a-fA-F]*$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
ALGOS = {"sha256": 64, "md5": 32}

HELP = {
    "login": "login USER CNONCE - start the challenge-response login",
    "auth": "auth PROOF - prove the password",
    "pwd": "pwd - print the current directory",
    "cd": "cd PATH - change directory",
    "ls": "ls [PATH] [after] - list a directory (paged)",
    "mkdir": "mkdir PATH - make a directory",
    "rm": "rm PATH - remove a file or an empty directory",
    "quota": "quota - show usage and limits",
    "put": "put PATH FILE_SIZE DIGEST - upload (resumable)",
    "data": "data OFFSET + body - the bytes of an upload",
    "abort": "abort - stop an upload, keep the bytes",
    "get": "get PATH [OFFSET] [IF_DIGEST] - download (resumable)",
    "noop": "noop - do nothing",
    "help": "help - this list",
    "quit": "quit - end the session",
}

CONNECTED, AUTHENTICATING, READY, UPLOADING = "connected", "authenticating", "ready", "uploading"
ALL_OPS = set(HELP) | {"trailer"}
COMMAND_OPS = {"pwd", "cd", "ls", "mkdir", "rm", "quota", "put", "get"}
ALLOWED = {
    CONNECTED: {"login", "help", "noop", "quit"},
    AUTHENTICATING: {"auth", "login", "help", "noop", "quit"},
    READY: COMMAND_OPS | {"help", "noop", "quit"},
    UPLOADING: {"data", "abort", "quit"},
}


Reply = wire.Reply


class Gone(Exception):
    """The peer went away (EOF / reset) or we must close without a reply."""


def oserror_reply(e, what=""):
    code = store.errno_code(e.errno)
    return Reply(code, f"{what}: {e.strerror or e}".strip(": "))


# ---------------------------------------------------------------- field checks

def f_int(h, name, default=None, required=True):
    if name not in h:
        if default is not None or not required:
            return default
        raise Reply(501, f"missing field {name!r}")
    v = h[name]
    if type(v) is not int or v < 0 or v > MAX_FILE:
        raise Reply(501, f"{name!r} must be an integer 0..2**40")
    return v


def f_bool(h, name, default):
    v = h.get(name, default)
    if type(v) is not bool:
        raise Reply(501, f"{name!r} must be true or false")
    return v


def f_hex(h, name, nbytes=None, minb=None, maxb=None, required=True):
    if name not in h or h[name] is None:
        if required:
            raise Reply(501, f"missing field {name!r}")
        return None
    v = h[name]
    if not isinstance(v, str) or not HEX_RE.match(v) or len(v) % 2:
        raise Reply(501, f"{name!r} must be hexadecimal")
    n = len(v) // 2
    if nbytes is not None and n != nbytes:
        raise Reply(501, f"{name!r} must be {nbytes} bytes of hex")
    if minb is not None and not (minb <= n <= maxb):
        raise Reply(501, f"{name!r} must be {minb}..{maxb} bytes of hex")
    return v


def f_algo(h):
    a = h.get("algo", "sha256")
    if a not in ALGOS:
        raise Reply(501, "algo must be 'sha256' or 'md5'")
    return a


def f_path(h, name="path", default=None):
    if name not in h:
        if default is not None:
            return default
        raise Reply(501, f"missing field {name!r}")
    v = h[name]
    if not isinstance(v, str) or not v:
        raise Reply(501, f"{name!r} must be a non-empty string")
    if len(v) > MAX_PATH_CHARS:
        raise Reply(501, f"{name!r} is longer than {MAX_PATH_CHARS} characters")
    if "\x00" in v:
        raise Reply(553, "NUL is not allowed in a path")
    for ch in v:
        if unicodedata.category(ch) in ("Cc",):
            raise Reply(553, "control characters are not allowed in a path")
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise Reply(553, "invalid Unicode (lone surrogate) in a path")
    if "\\" in v:
        raise Reply(553, "'\\' is not allowed in a path")
    return unicodedata.normalize("NFC", v)


# ---------------------------------------------------------------- the server

class Server:
    def __init__(self, args):
        self.args = args
        self.root = os.path.abspath(args.root)
        self.users = store.Users(self.root)
        self.secret = self.users.secret()
        self.active = 0
        self.uploads = {}          # real final path -> Upload
        self.throttle = Throttle()
        self.digests = {}          # (dev, ino, size, mtime_ns, algo) -> hex
        self.sessions = set()

    def limits(self):
        a = self.args
        return {"max_header": MAX_HEADER, "max_sessions": a.max_sessions,
                "max_login_attempts": MAX_LOGIN_ATTEMPTS, "max_path_chars": MAX_PATH_CHARS,
                "max_name_bytes": MAX_NAME_BYTES, "max_file_size": MAX_FILE,
                "idle_timeout": a.idle_timeout, "header_deadline": a.header_deadline,
                "login_deadline": a.login_deadline, "stall_timeout": a.stall_timeout,
                "min_body_rate": a.min_body_rate, "rate_window": a.rate_window}

    async def on_connect(self, reader, writer):
        self.active += 1
        try:
            if self.active > self.args.max_sessions:
                await wire.send(writer, {"code": 421, "msg": f"too many sessions ({self.args.max_sessions}); try again later"})
                await wire.close_gracefully(reader, writer)
                return
            s = Session(self, reader, writer)
            task = asyncio.current_task()
            self.sessions.add(task)
            try:
                await s.run()
            finally:
                self.sessions.discard(task)
        except Exception as e:  # never let one session kill the loop
            print("session error:", repr(e), file=sys.stderr, flush=True)
            try:
                writer.transport.abort()
            except Exception:
                pass
        finally:
            self.active -= 1

    def reserved(self, user):
        return sum(u.remaining() for u in self.uploads.values() if u.user == user)

    def file_digest(self, fd, st, algo):
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, algo)
        d = self.digests.get(key)
        if d is None:
            h = hashlib.new(algo)
            os.lseek(fd, 0, 0)
            while True:
                b = os.read(fd, CHUNK)
                if not b:
                    break
                h.update(b)
            d = h.hexdigest()
            if len(self.digests) > 1000:
                self.digests.clear()
            self.digests[key] = d
        return d


class Throttle:
    """Failed logins per account and per address (§4)."""

    def __init__(self):
        self.acct = {}      # user -> [count, last_failure_time]
        self.addr = {}      # addr -> {user: count}, plus last time in addr_last
        self.addr_last = {}
        self.good = {}      # (addr, user) -> time of last successful login

    def _forget(self, now):
        for u in [u for u, (c, t) in self.acct.items() if now - t > 600]:
            del self.acct[u]
        for a in [a for a, t in self.addr_last.items() if now - t > 600]:
            del self.addr_last[a]
            self.addr.pop(a, None)

    def wait(self, addr, user):
        now = time.monotonic()
        self._forget(now)
        w = 0.0
        if user in self.acct:
            c, t = self.acct[user]
            good = self.good.get((addr, user))
            if c >= 5 and not (good is not None and now - good < 86400):
                w = max(w, t + min(30, 2 ** (c - 5)) - now)
        if addr in self.addr:
            c = sum(self.addr[addr].values())
            t = self.addr_last[addr]
            if c >= 10:
                w = max(w, t + min(60, 2 ** (c - 10)) - now)
        return max(1, math.ceil(w)) if w > 0 else 0

    def fail(self, addr, user):
        now = time.monotonic()
        c = self.acct.get(user, [0, now])[0]
        self.acct[user] = [c + 1, now]
        d = self.addr.setdefault(addr, {})
        d[user] = d.get(user, 0) + 1
        self.addr_last[addr] = now

    def success(self, addr, user):
        self.acct.pop(user, None)
        if addr in self.addr:
            self.addr[addr].pop(user, None)
        self.good[(addr, user)] = time.monotonic()


class Upload:
    def __init__(self, session, user, final, part, side, vpath, file_size, offset, algo, digest):
        self.session, self.user = session, user
        self.final, self.part, self.side, self.vpath = final, part, side, vpath
        self.file_size, self.offset, self.algo, self.digest = file_size, offset, algo, digest
        self.received = 0

    def remaining(self):
        return max(0, self.file_size - self.offset - self.received)


class Session:
    def __init__(self, server, reader, writer):
        self.srv, self.r, self.w = server, reader, writer
        self.a = server.args
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.addr = peer[0]
        self.state = CONNECTED
        self.t0 = time.monotonic()
        self.user = None
        self.home = None
        self.cwd = []              # virtual components
        self.failures = 0
        self.challenge = None
        self.upload = None

    # ------------------------------------------------------------ plumbing
    async def send(self, code, msg, body_size=0, **fields):
        h = {"code": code, "msg": msg}
        h.update(fields)
        await wire.send(self.w, h, body_size)

    def _deadline(self, t):
        """Shrink a timeout to the login deadline while not logged in."""
        if self.user is None:
            left = self.t0 + self.a.login_deadline - time.monotonic()
            if left < t:
                return max(0.0, left), True
        return t, False

    async def _read(self, n, timeout, what):
        t, is_login = self._deadline(timeout)
        try:
            return await asyncio.wait_for(self.r.readexactly(n), t)
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise Reply(500, f"the stream ended in the middle of a frame ({what})", close=True)
            raise Gone()
        except (asyncio.TimeoutError, TimeoutError):
            if is_login:
                raise Reply(421, f"not logged in within {self.a.login_deadline:g} s; closing", close=True)
            raise Reply(421, f"{what}: timeout; closing", close=True)
        except (ConnectionError, OSError):
            raise Gone()

    async def read_header(self):
        first = await self._read(1, self.a.idle_timeout, "idle")
        try:
            rest = await self._read(3, self.a.header_deadline, "header deadline passed")
            (n,) = struct.unpack("!I", first + rest)
            if n == 0 or n > MAX_HEADER:
                raise Reply(500, f"bad header length {n} (must be 1..{MAX_HEADER})", close=True)
            raw = await self._read(n, self.a.header_deadline, "header deadline passed")
        except Reply as e:
            if e.code == 500 and "stream ended" in e.msg:
                raise Reply(500, "the stream ended in the middle of a frame header", close=True)
            raise
        try:
            h = wire.parse_header(raw)
        except ValueError as e:
            raise Reply(500, f"bad frame header: {e}", close=True)
        return h

    async def read_body(self, size, sink):
        """Read `size` body bytes, calling sink(chunk); stall and rate limits of §6."""
        remaining = size
        now = time.monotonic()
        last = now
        wstart = now
        wneed = min(self.a.min_body_rate * self.a.rate_window, remaining)
        wgot = 0
        while remaining:
            now = time.monotonic()
            timeout = max(0.0, min(last + self.a.stall_timeout - now, wstart + self.a.rate_window - now))
            chunk = None
            try:
                chunk = await asyncio.wait_for(self.r.read(min(remaining, CHUNK)), timeout)
            except (asyncio.TimeoutError, TimeoutError):
                pass
            except (ConnectionError, OSError):
                raise Gone()
            now = time.monotonic()
            if chunk == b"":
                raise Gone()
            if chunk:
                remaining -= len(chunk)
                wgot += len(chunk)
                last = now
                sink(chunk)
                if not remaining:
                    break
            if now - last >= self.a.stall_timeout:
                raise Reply(421, f"the body stalled: no byte for {self.a.stall_timeout:g} s; closing", close=True)
            if now - wstart >= self.a.rate_window:
                if wgot < wneed:
                    raise Reply(421, f"the body is too slow (under {self.a.min_body_rate} bytes/s); closing", close=True)
                wstart, wgot = now, 0
                wneed = min(self.a.min_body_rate * self.a.rate_window, remaining)

    async def skip_body(self, h):
        size = h.get("size") or 0
        if not size:
            wire.check_body_sum(h, b"")
            return
        hs = hashlib.sha256()
        await self.read_body(size, hs.update)
        if "sha256" in h and hs.hexdigest() != h["sha256"].lower():
            raise Reply(500, "body checksum (sha256) does not match", close=True)

    # ------------------------------------------------------------ main loop
    async def run(self):
        try:
            await self.send(220, "myftp ready; log in with login/auth (SCRAM over scrypt)",
                            server="myftp", version=1, features=[], limits=self.srv.limits())
            while True:
                try:
                    h = await self.read_header()
                    await self.dispatch(h)
                except Reply as e:
                    if e.close:
                        await self.end_upload()
                    await self.send(e.code, e.msg, **e.fields)
                    if e.close:
                        await wire.close_gracefully(self.r, self.w)
                        return
                except Quit:
                    await self.end_upload()
                    await self.send(221, "goodbye")
                    await wire.close_gracefully(self.r, self.w)
                    return
        except (Gone, ConnectionError, OSError):
            pass
        finally:
            await self.end_upload()
            try:
                self.w.transport.abort() if not self.w.transport.is_closing() else None
            except Exception:
                pass

    async def dispatch(self, h):
        op = h.get("op")
        if not isinstance(op, str) or op not in ALL_OPS:
            await self.skip_body(h)
            if "op" not in h:
                raise Reply(500, "missing 'op'")
            raise Reply(500, f"unknown op {op!r}; help lists the ops")
        if op not in ALLOWED[self.state]:
            await self.skip_body(h)
            if self.state in (CONNECTED, AUTHENTICATING) and op in COMMAND_OPS:
                raise Reply(530, "not logged in: log in first (login, then auth)")
            if op == "trailer":
                raise Reply(503, "no upload waits for a trailer (this server speaks protocol 1)")
            raise Reply(503, f"{op!r} is not allowed now (state: {self.state})")
        if op == "data":
            return await self.op_data(h)
        size = h.get("size") or 0
        if size:
            await self.skip_body(h)
            if self.state == UPLOADING and op == "abort":
                await self.end_upload()
                self.state = READY
            raise Reply(501, f"{op!r} carries no body; {size} body bytes skipped")
        await self.skip_body(h)   # checks a 'sha256' of the empty body
        await getattr(self, "op_" + op)(h)

    # ------------------------------------------------------------ login
    async def op_help(self, h):
        await self.send(214, "commands", commands=HELP)

    async def op_noop(self, h):
        await self.send(200, "ok")

    async def op_quit(self, h):
        raise Quit()

    async def op_login(self, h):
        self.challenge = None
        self.state = CONNECTED
        user = h.get("user")
        if not isinstance(user, str) or not USER_RE.match(user):
            raise Reply(501, "user must be 1-32 characters [a-z_][a-z0-9_-]*")
        cnonce = f_hex(h, "cnonce", minb=8, maxb=64)
        wait = self.srv.throttle.wait(self.addr, user)
        if wait:
            raise Reply(530, f"too many failed logins; try again in {wait} s", retry_after=wait)
        rec = self.srv.users.get(user)
        if rec is not None:
            salt, n, r, p = rec["salt"], rec["n"], rec["r"], rec["p"]
        else:
            salt = hmac.new(self.srv.secret, b"salt:" + user.encode(), "sha256").hexdigest()[:32]
            n, r, p = 2 ** 14, 8, 1
        snonce = secrets.token_hex(16)
        self.challenge = (user, cnonce, snonce, rec)
        self.state = AUTHENTICATING
        await self.send(331, "prove you know the password", user=user, salt=salt, kdf="scrypt",
                        n=n, r=r, p=p, snonce=snonce)

    async def op_auth(self, h):
        user, cnonce, snonce, rec = self.challenge
        self.challenge = None
        self.state = CONNECTED
        proof = f_hex(h, "proof", nbytes=32)
        wait = self.srv.throttle.wait(self.addr, user)
        if wait:
            raise Reply(530, f"too many failed logins; try again in {wait} s", retry_after=wait)
        msg = f"{user},{cnonce},{snonce}".encode()
        ok = False
        rec = self.srv.users.get(user) or rec   # picks up a changed users.json
        if rec is not None:
            stored = bytes.fromhex(rec["stored_key"])
            sig = hmac.new(stored, msg, "sha256").digest()
            client_key = bytes(a ^ b for a, b in zip(bytes.fromhex(proof), sig))
            ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), stored)
        if not ok:
            self.failures += 1
            self.srv.throttle.fail(self.addr, user)
            await asyncio.sleep(self.a.login_delay)
            if self.failures >= MAX_LOGIN_ATTEMPTS:
                raise Reply(421, f"{self.failures} failed logins; closing", close=True)
            raise Reply(530, "login incorrect", attempts_left=MAX_LOGIN_ATTEMPTS - self.failures)
        self.srv.throttle.success(self.addr, user)
        server_sig = hmac.new(bytes.fromhex(rec["server_key"]), msg, "sha256").hexdigest()
        home = self.srv.users.home(user)
        os.makedirs(home, exist_ok=True)
        self.user, self.home, self.cwd = user, os.path.realpath(home), []
        self.state = READY
        await self.send(230, f"welcome, {user}", user=user, home="/", server_signature=server_sig)

    # ------------------------------------------------------------ paths
    def resolve(self, vpath, follow_last=True):
        """Virtual path -> (virtual string, real path). Raises Reply 553/550."""
        comps = [] if vpath.startswith("/") else list(self.cwd)
        for c in vpath.split("/"):
            if c in ("", "."):
                continue
            if c == "..":
                if not comps:
                    raise Reply(553, f"{vpath!r} leads outside your home directory")
                comps.pop()
                continue
            if len(c.encode("utf-8")) > MAX_NAME_BYTES:
                raise Reply(553, f"a name is longer than {MAX_NAME_BYTES} UTF-8 bytes")
            if store.reserved_name(c):
                raise Reply(553, f"{c!r} is reserved for unfinished uploads")
            comps.append(c)
        real = os.path.join(self.home, *comps) if comps else self.home
        if len(real.encode("utf-8")) > 4096:
            raise Reply(553, "path too long on the server's disk")
        if comps and not follow_last:
            check = os.path.dirname(real)
        else:
            check = real
        try:
            rp = os.path.realpath(check)
            if not store.inside(self.home, rp):
                raise Reply(553, f"{vpath!r} leads outside your home directory (symlink)")
            # a loop shows up as a path realpath could not finish
            os.stat(check) if os.path.lexists(check) and os.path.islink(check) else None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Reply(553, f"{vpath!r}: symlink loop")
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise oserror_reply(e, vpath)
        return "/" + "/".join(comps), real, comps

    # ------------------------------------------------------------ commands
    async def op_pwd(self, h):
        await self.send(257, "/" + "/".join(self.cwd), path="/" + "/".join(self.cwd))

    async def op_cd(self, h):
        v, real, comps = self.resolve(f_path(h))
        try:
            st = os.stat(real)
        except OSError as e:
            raise oserror_reply(e, v)
        if not stat.S_ISDIR(st.st_mode):
            raise Reply(550, f"{v} is not a directory")
        self.cwd = comps
        await self.send(250, v, path=v)

    async def op_mkdir(self, h):
        v, real, comps = self.resolve(f_path(h))
        if not comps:
            raise Reply(550, "/ exists")
        u = self.srv.users.get(self.user) or {}
        used, entries = store.usage(self.home)
        entries += self.pending_no_part()
        if entries + 1 > u.get("max_entries", 1000):
            raise Reply(552, f"entry limit: {entries} of {u.get('max_entries', 1000)} entries used")
        try:
            os.mkdir(real)
        except OSError as e:
            raise oserror_reply(e, v)
        await self.send(257, f'"{v}" created', path=v)

    async def op_rm(self, h):
        v, real, comps = self.resolve(f_path(h), follow_last=False)
        if not comps:
            raise Reply(550, "cannot remove your home directory")
        if real in self.srv.uploads or os.path.realpath(real) in self.srv.uploads:
            raise Reply(450, f"{v} is being uploaded")
        part, side = store.part_names(real)
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            if os.path.lexists(part):   # only an unfinished upload: remove it
                for p in (part, side):
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass
                return await self.send(250, f"{v}: unfinished upload removed", path=v)
            raise Reply(550, f"{v}: no such file or directory")
        except OSError as e:
            raise oserror_reply(e, v)
        try:
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(real)
            else:
                os.unlink(real)
        except OSError as e:
            raise oserror_reply(e, v)
        await self.send(250, f"{v} removed", path=v)

    def pending_no_part(self):
        return sum(1 for u in self.srv.uploads.values()
                   if u.user == self.user and not os.path.lexists(u.part))

    async def op_quota(self, h):
        u = self.srv.users.get(self.user) or {}
        used, entries = store.usage(self.home)
        entries += self.pending_no_part()
        limit = u.get("quota", 0)
        res = self.srv.reserved(self.user)
        await self.send(200, f"used {used} + reserved {res} of {limit} bytes", used=used, reserved=res,
                        limit=limit, free=max(0, limit - used - res), entries=entries,
                        max_entries=u.get("max_entries", 1000))

    async def op_ls(self, h):
        v, real, comps = self.resolve(f_path(h, default="."))
        after = h.get("after")
        if after is not None and not isinstance(after, str):
            raise Reply(501, "'after' must be a name (a string)")
        try:
            st = os.stat(real)
        except OSError as e:
            if os.path.lexists(real) and os.path.islink(real):
                st = None
            else:
                part, side = store.part_names(real)
                if comps and os.path.lexists(part):
                    ent = store.partial_entry(comps[-1], part, side)
                    return await self.send(200, v, path=v, entries=[ent], truncated=False,
                                           total=1, continue_after=None)
                raise oserror_reply(e, v)
        if st is not None and stat.S_ISDIR(st.st_mode):
            try:
                entries = store.list_dir(real, self.home)
            except OSError as e:
                raise oserror_reply(e, v)
        else:
            entries = [store.entry_for(os.path.dirname(real), os.path.basename(real), self.home)]
        total = len(entries)
        if after is not None:
            entries = [e for e in entries if e["name"] > after]
        page, truncated = wire.fit_page(entries, lambda es, tr, ca: {
            "code": 200, "msg": v, "path": v, "entries": es, "truncated": tr, "total": total,
            "continue_after": ca, "size": 0})
        await self.send(200, v, path=v, entries=page, truncated=truncated, total=total,
                        continue_after=page[-1]["name"] if truncated and page else None)

    # ------------------------------------------------------------ uploads
    async def op_put(self, h):
        vp = f_path(h)
        file_size = f_int(h, "file_size")
        algo = f_algo(h)
        overwrite = f_bool(h, "overwrite", False)
        if "trailer" in h:
            if type(h["trailer"]) is not bool:
                raise Reply(501, "'trailer' must be true or false")
            if h["trailer"]:
                raise Reply(501, "this server speaks protocol 1: send the digest in the put")
        digest = f_hex(h, "digest", nbytes=ALGOS[algo] // 2).lower()
        v, real, comps = self.resolve(vp)
        if not comps:
            raise Reply(550, "/ is a directory")
        parent = os.path.dirname(real)
        try:
            if not stat.S_ISDIR(os.stat(parent).st_mode):
                raise Reply(550, f"{os.path.dirname(v) or '/'} is not a directory")
        except OSError as e:
            raise Reply(550 if e.errno in (errno.ENOENT, errno.ENOTDIR) else store.errno_code(e.errno),
                        f"no such directory: {os.path.dirname(v) or '/'}")
        real = os.path.join(os.path.realpath(parent), os.path.basename(real))
        exists = os.path.lexists(real)
        if exists:
            try:
                st = os.stat(real)
            except OSError as e:
                raise oserror_reply(e, v)
            if stat.S_ISDIR(st.st_mode):
                raise Reply(550, f"{v} is a directory")
            if not overwrite:
                raise Reply(550, f"{v} exists; send overwrite: true to replace it")
        if real in self.srv.uploads:
            raise Reply(450, f"{v} is being uploaded by another session")
        part, side = store.part_names(real)
        offset = 0
        old = store.read_sidecar(side)
        part_exists = os.path.lexists(part)
        if part_exists and old and old.get("file_size") == file_size and old.get("algo") == algo \
                and str(old.get("digest", "")).lower() == digest:
            try:
                offset = os.stat(part).st_size
            except OSError:
                offset = 0
            if offset > file_size:
                offset = 0
        u = self.srv.users.get(self.user) or {}
        used, entries = store.usage(self.home)
        entries += self.pending_no_part()
        limit = u.get("quota", 0)
        res = self.srv.reserved(self.user)
        if offset == 0 and part_exists:
            # the old part will be deleted: it no longer counts
            used -= store.size_of(part) + store.size_of(side)
        if used + res + (file_size - offset) > limit:
            raise Reply(552, f"quota exceeded: {used} bytes used + {res} reserved + "
                             f"{file_size - offset} more > your quota of {limit} bytes")
        if not exists and not part_exists and entries + 1 > u.get("max_entries", 1000):
            raise Reply(552, f"entry limit: {entries} of {u.get('max_entries', 1000)} entries used")
        try:
            if offset == 0:
                for p in (part, side):
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass
            store.write_sidecar(side, {"file_size": file_size, "algo": algo, "digest": digest, "path": v})
            fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)
            os.close(fd)
        except OSError as e:
            for p in (part, side) if offset == 0 else ():
                try:
                    os.unlink(p)
                except OSError:
                    pass
            raise oserror_reply(e, v)
        up = Upload(self, self.user, real, part, side, v, file_size, offset, algo, digest)
        self.srv.uploads[real] = up
        self.upload = up
        self.state = UPLOADING
        await self.send(350, f"send {file_size - offset} bytes from offset {offset}",
                        offset=offset, file_size=file_size, path=v)

    async def end_upload(self):
        """The upload stops (abort, quit, error, disconnect): keep the part for a resume."""
        up = self.upload
        if up is None:
            return
        self.upload = None
        self.srv.uploads.pop(up.final, None)
        try:
            if os.path.exists(up.part) and os.stat(up.part).st_size > 0:
                fd = os.open(up.part, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                return os.path.getsize(up.part)
            for p in (up.part, up.side):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        except OSError:
            pass
        return 0

    async def op_abort(self, h):
        up = self.upload
        kept = await self.end_upload() or 0
        self.state = READY
        await self.send(226, f"upload of {up.vpath} stopped; {kept} bytes kept for a resume", kept=kept)

    async def op_data(self, h):
        up = self.upload
        size = h.get("size") or 0
        off = h.get("offset")
        if type(off) is not int or off != up.offset or size != up.file_size - up.offset:
            await self.skip_body(h)
            await self.end_upload()
            self.state = READY
            raise Reply(501, f"data must have offset {up.offset} and exactly {up.file_size - up.offset} "
                             f"body bytes (got offset {off!r}, {size} bytes); the upload ended, the part is kept")
        hasher = hashlib.new(up.algo)
        frame_sum = hashlib.sha256() if "sha256" in h else None
        try:
            fd = os.open(up.part, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            await self.skip_body(h)
            await self.end_upload()
            self.state = READY
            raise oserror_reply(e, up.vpath)
        write_error = None
        try:
            os.ftruncate(fd, up.offset)
            os.lseek(fd, 0, 0)
            left = up.offset
            while left:
                b = os.read(fd, min(CHUNK, left))
                if not b:
                    break
                hasher.update(b)
                left -= len(b)
            os.lseek(fd, up.offset, 0)

            def sink(chunk):
                nonlocal write_error
                hasher.update(chunk)
                if frame_sum:
                    frame_sum.update(chunk)
                if write_error is None:
                    try:
                        mv = memoryview(chunk)
                        while mv:
                            n = os.write(fd, mv)
                            mv = mv[n:]
                        up.received += len(chunk)
                    except OSError as e:
                        write_error = e

            try:
                await self.read_body(size, sink)
            except (Gone, Reply):
                try:
                    os.fsync(fd)
                except OSError:
                    pass
                raise
            if frame_sum is not None and frame_sum.hexdigest() != h["sha256"].lower():
                os.ftruncate(fd, up.offset)
                os.fsync(fd)
                os.close(fd)
                fd = None
                raise Reply(500, "the data frame's sha256 does not match its body; those bytes are dropped; closing",
                            close=True)
            if write_error is not None:
                os.fsync(fd) if write_error.errno not in (errno.EIO,) else None
                os.close(fd)
                fd = None
                await self.end_upload()
                self.state = READY
                raise oserror_reply(write_error, up.vpath)
            got = hasher.hexdigest()
            if got != up.digest:
                os.close(fd)
                fd = None
                self.upload = None
                self.srv.uploads.pop(up.final, None)
                self.state = READY
                for p in (up.part, up.side):
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass
                raise Reply(451, f"{up.vpath}: the file's {up.algo} is {got}, not the announced {up.digest}; "
                                 "the partial upload is deleted")
            os.fsync(fd)
            os.close(fd)
            fd = None
            try:
                os.replace(up.part, up.final)
                dfd = os.open(os.path.dirname(up.final), os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
                try:
                    os.unlink(up.side)
                except FileNotFoundError:
                    pass
            except OSError as e:
                await self.end_upload()
                self.state = READY
                raise oserror_reply(e, up.vpath)
            self.upload = None
            self.srv.uploads.pop(up.final, None)
            self.state = READY
            await self.send(226, f"{up.vpath} stored, {up.algo} verified", path=up.vpath,
                            file_size=up.file_size, algo=up.algo, digest=got, received=size)
        finally:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    # ------------------------------------------------------------ downloads
    async def op_get(self, h):
        vp = f_path(h)
        offset = f_int(h, "offset", default=0)
        algo = f_algo(h)
        ifd = f_hex(h, "if_digest", required=False)
        v, real, comps = self.resolve(vp)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Reply(553, f"{v}: symlink loop")
            raise oserror_reply(e, v)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Reply(550, f"{v} is not a regular file")
            digest = self.srv.file_digest(fd, st, algo)
            if ifd is not None and ifd.lower() != digest:
                offset = 0
            if offset > st.st_size:
                raise Reply(501, f"offset {offset} is beyond the end of {v} ({st.st_size} bytes)")
            body = st.st_size - offset
            await self.send(150, f"sending {body} bytes of {v} from offset {offset}", body_size=body,
                            path=v, file_size=st.st_size, offset=offset, algo=algo, digest=digest)
            os.lseek(fd, offset, 0)
            left = body
            while left:
                b = os.read(fd, min(CHUNK, left))
                if not b:       # the file shrank under us: cannot keep the frame honest
                    raise Gone()
                self.w.write(b)
                left -= len(b)
                try:
                    await asyncio.wait_for(self.w.drain(), self.a.stall_timeout)
                except (asyncio.TimeoutError, TimeoutError):
                    raise Gone()    # close without a reply (§6)
        finally:
            os.close(fd)
        await self.send(226, f"{v}: {body} bytes sent", sent=body)


class Quit(Exception):
    pass


async def main_async(args):
    srv = Server(args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(srv.on_connect, args.host, args.port, reuse_address=True,
                                        backlog=128)
    print(f"listening on {args.host}:{args.port}", flush=True)
    await stop.wait()
    server.close()
    for t in list(srv.sessions):
        t.cancel()


def main():
    p = argparse.ArgumentParser(description="FTP-style server (SocketLab exercise)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=20060)
    p.add_argument("--root", default="./ftp-root")
    p.add_argument("--max-sessions", type=int, default=100)
    p.add_argument("--idle-timeout", type=float, default=300)
    p.add_argument("--header-deadline", type=float, default=10)
    p.add_argument("--stall-timeout", type=float, default=60)
    p.add_argument("--login-deadline", type=float, default=60)
    p.add_argument("--min-body-rate", type=int, default=1024)
    p.add_argument("--rate-window", type=float, default=30)
    p.add_argument("--login-delay", type=float, default=1.0)
    args = p.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
