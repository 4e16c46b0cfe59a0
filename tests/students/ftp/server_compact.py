#!/usr/bin/env python3
"""A compact, stdlib-only server for the SocketLab FTP exercise protocol (version 1).

Written from docs/ftp-protocol.md and the contract in services/ftp/README.md alone.
One thread per connection; shared state (quota reservations, uploads in progress,
login throttling) behind locks.
"""
import argparse
import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import stat
import struct
import sys
import threading
import time
import unicodedata

MAX_HEADER = 65536
MAX_INT = 2 ** 40
MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 244
MAX_LOGIN_ATTEMPTS = 3
DEFAULT_ENTRIES = 1000
N, R, P = 2 ** 14, 8, 1
CHUNK = 64 * 1024

USER_RE = re.compile(r"[a-z_][a-z0-9_-]*\Z")
HEX_RE = re.compile(r"[0-9a-fA-F]+\Z")
RESERVED_RE = re.compile(r"\..+\.part(\.json)?\Z", re.S)

ERRNO_REPLY = {}
for _names, _code in (
        (("ENOENT", "ENOTDIR", "EISDIR", "EEXIST", "ENOTEMPTY", "EACCES", "EPERM",
          "EROFS", "EMLINK", "ENXIO"), 550),
        (("ENAMETOOLONG", "ELOOP", "EINVAL", "EILSEQ"), 553),
        (("ENOSPC", "EDQUOT", "EFBIG"), 452),
        (("EBUSY", "ETXTBSY", "EAGAIN"), 450)):
    for _n in _names:
        if hasattr(errno, _n):
            ERRNO_REPLY[getattr(errno, _n)] = _code


def os_reply(e):
    return ERRNO_REPLY.get(e.errno, 451), "%s" % (e.strerror or e)


# ---------------------------------------------------------------- errors
class Reply(Exception):
    """An error reply; the session goes on."""
    def __init__(self, code, msg, **fields):
        super().__init__(msg)
        self.code, self.msg, self.fields = code, msg, fields


class Close(Exception):
    """Send this reply (if code) and close the session."""
    def __init__(self, code, msg, **fields):
        super().__init__(msg)
        self.code, self.msg, self.fields = code, msg, fields


class Gone(Exception):
    """The peer went away (or must be dropped silently)."""


# ---------------------------------------------------------------- strict JSON
def _no_const(name):
    raise ValueError("%s not allowed" % name)


def _int(s):
    if len(s.lstrip("-")) > 20:
        raise ValueError("integer too long")
    return int(s)


def _float(s):
    v = float(s)
    if v in (float("inf"), float("-inf")) or v != v:
        raise ValueError("number %s out of range (would be Infinity)" % s[:20])
    return v


def _pairs(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError("duplicate key %r" % k)
        d[k] = v
    return d


def _depth(obj, limit=32):
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            if d > limit:
                raise ValueError("nesting deeper than %d" % limit)
            for v in (o.values() if isinstance(o, dict) else o):
                stack.append((v, d + 1))


def parse_header(raw):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Close(500, "header is not UTF-8")
    # cheap pre-check of nesting so the decoder never recurses deeply
    depth = best = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
            if best > 32:
                raise Close(500, "header nesting deeper than 32")
        elif ch in "]}":
            depth -= 1
    try:
        obj = json.loads(text, parse_constant=_no_const, parse_int=_int, parse_float=_float,
                         object_pairs_hook=_pairs)
        _depth(obj)
    except (ValueError, RecursionError) as e:
        raise Close(500, "header is not valid JSON: %s" % e)
    if not isinstance(obj, dict):
        raise Close(500, "header is not a JSON object")
    return obj


def encode_frame(header, body=b""):
    header = dict(header)
    header["size"] = len(body) if body is not None else 0
    raw = json.dumps(header, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8")
    return struct.pack("!I", len(raw)) + raw + (body or b"")


# ---------------------------------------------------------------- validation
def is_int(v):
    return type(v) is int and 0 <= v <= MAX_INT


def want_int(h, k, default=None):
    v = h.get(k, default)
    if v is None or not is_int(v):
        raise Reply(501, "%s must be an integer 0..2^40" % k)
    return v


def want_hex(h, k, nbytes=None, lo=None, hi=None, optional=False):
    v = h.get(k)
    if v is None and optional:
        return None
    if not isinstance(v, str) or not HEX_RE.match(v) or len(v) % 2:
        raise Reply(501, "%s must be hexadecimal" % k)
    n = len(v) // 2
    if nbytes is not None and n != nbytes:
        raise Reply(501, "%s must be %d bytes" % (k, nbytes))
    if lo is not None and not lo <= n <= hi:
        raise Reply(501, "%s must be %d..%d bytes" % (k, lo, hi))
    return v


def want_bool(h, k, default):
    v = h.get(k, default)
    if type(v) is not bool:
        raise Reply(501, "%s must be true or false" % k)
    return v


def want_algo(h):
    a = h.get("algo", "sha256")
    if a not in ("sha256", "md5"):
        raise Reply(501, "algo must be sha256 or md5")
    return a


def want_path(h, k="path", default=None):
    v = h.get(k, default)
    if not isinstance(v, str):
        raise Reply(501, "%s must be a string" % k)
    if not 1 <= len(v) <= MAX_PATH_CHARS:
        raise Reply(501, "%s must be 1..%d characters" % (k, MAX_PATH_CHARS))
    if "\x00" in v:
        raise Reply(553, "NUL in path")
    if any(ord(c) < 32 or 0x7f <= ord(c) < 0xa0 for c in v):
        raise Reply(553, "control character in path")
    if any(0xd800 <= ord(c) <= 0xdfff for c in v):
        raise Reply(553, "path is not valid Unicode")
    if "\\" in v:
        raise Reply(553, "backslash not allowed in path")
    return unicodedata.normalize("NFC", v)


# ---------------------------------------------------------------- users
def make_verifier(password, salt, n=N, r=R, p=P):
    salted = hashlib.scrypt(unicodedata.normalize("NFC", password).encode("utf-8"),
                            salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * 1024 * 1024)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


class Users:
    DEMO = (("alice", "wonderland", 10 * 2 ** 20), ("bob", "builder", 2 ** 20),
            ("alice2", "looking-glass", 2 * 2 ** 20))

    def __init__(self, root):
        self.root = root
        self.path = os.path.join(root, "users.json")
        self.lock = threading.Lock()
        self.users, self.stamp = {}, None
        os.makedirs(os.path.join(root, "home"), exist_ok=True)
        if not os.path.exists(self.path):
            self._create_demo()
        self.reload()

    def _create_demo(self):
        users = {}
        for name, pw, quota in self.DEMO:
            salt = secrets.token_bytes(16)
            sk, svk = make_verifier(pw, salt)
            users[name] = {"salt": salt.hex(), "kdf": "scrypt", "n": N, "r": R, "p": P,
                           "stored_key": sk.hex(), "server_key": svk.hex(),
                           "quota": quota, "max_entries": DEFAULT_ENTRIES}
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"version": 1, "users": users}, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def reload(self):
        with self.lock:
            try:
                st = os.stat(self.path)
            except OSError:
                return
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self.stamp:
                return
            try:
                with open(self.path) as f:
                    data = json.load(f)
                users = data["users"]
                assert isinstance(users, dict)
            except Exception as e:
                print("users.json unreadable, keeping the old table: %s" % e, flush=True)
                return
            self.users, self.stamp = users, stamp
            for name in users:
                if USER_RE.match(name) and len(name) <= 32:
                    os.makedirs(self.home(name), exist_ok=True)

    def home(self, name):
        return os.path.join(self.root, "home", name)

    def get(self, name):
        self.reload()
        return self.users.get(name)


# ---------------------------------------------------------------- login throttling
class Throttle:
    FORGET = 600

    def __init__(self):
        self.lock = threading.Lock()
        self.acct = {}      # account -> [count, last_failure]
        self.addr = {}      # address -> [{account: count}, last_failure]
        self.good = {}      # (address, account) -> time of last success

    def _gc(self, now):
        for k in [k for k, v in self.acct.items() if now - v[1] > self.FORGET]:
            del self.acct[k]
        for k in [k for k, v in self.addr.items() if now - v[1] > self.FORGET]:
            del self.addr[k]

    def retry_after(self, account, address):
        now = time.monotonic()
        with self.lock:
            self._gc(now)
            wait = 0.0
            a = self.acct.get(account)
            good = self.good.get((address, account))
            exempt = good is not None and now - good < 86400
            if a and a[0] >= 5 and not exempt:
                wait = max(wait, a[1] + min(30, 2 ** (a[0] - 5)) - now)
            d = self.addr.get(address)
            if d:
                n = sum(d[0].values())
                if n >= 10:
                    wait = max(wait, d[1] + min(60, 2 ** (n - 10)) - now)
            return wait

    def failure(self, account, address):
        now = time.monotonic()
        with self.lock:
            a = self.acct.setdefault(account, [0, now])
            a[0] += 1
            a[1] = now
            d = self.addr.setdefault(address, [{}, now])
            d[0][account] = d[0].get(account, 0) + 1
            d[1] = now

    def success(self, account, address):
        with self.lock:
            self.acct.pop(account, None)
            d = self.addr.get(address)
            if d:
                d[0].pop(account, None)
            self.good[(address, account)] = time.monotonic()


# ---------------------------------------------------------------- storage
def part_names(disk):
    d, name = os.path.split(disk)
    return os.path.join(d, "." + name + ".part"), os.path.join(d, "." + name + ".part.json")


def inside(path, home):
    path, home = os.fsdecode(path), os.fsdecode(home)
    return path == home or path.startswith(home.rstrip(os.sep) + os.sep)


def fsync_dir(d):
    try:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def read_sidecar(path):
    try:
        with open(path, "rb") as f:
            d = json.loads(f.read().decode("utf-8"))
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def escape_name(b):
    try:
        return b.decode("utf-8"), False
    except UnicodeDecodeError:
        return b.decode("utf-8", "backslashreplace"), True


class Server:
    def __init__(self, args):
        self.args = args
        self.root = os.path.abspath(args.root)
        self.users = Users(self.root)
        self.throttle = Throttle()
        self.secret = secrets.token_bytes(32)
        self.lock = threading.Lock()
        self.sessions = 0
        self.user_locks = {}
        self.reserved = {}      # user -> {disk path: bytes}
        self.uploading = {}     # real disk path -> (user, has_part?)

    def user_lock(self, user):
        with self.lock:
            return self.user_locks.setdefault(user, threading.Lock())

    def limits(self):
        a = self.args
        return {"max_header": MAX_HEADER, "max_sessions": a.max_sessions,
                "max_login_attempts": MAX_LOGIN_ATTEMPTS, "max_path_chars": MAX_PATH_CHARS,
                "max_name_bytes": MAX_NAME_BYTES, "max_file_size": MAX_INT,
                "idle_timeout": a.idle_timeout, "header_deadline": a.header_deadline,
                "login_deadline": a.login_deadline, "stall_timeout": a.stall_timeout,
                "min_body_rate": a.min_body_rate, "rate_window": a.rate_window}

    def usage(self, user, home):
        """(used bytes, entries) under a home, from the disk."""
        used = entries = 0
        for dirpath, dirs, files in os.walk(home):
            for name in dirs:
                entries += 1
            for name in files:
                p = os.path.join(dirpath, name)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    used += st.st_size
                if not (name.startswith(".") and name.endswith(".part.json")
                        and RESERVED_RE.match(name)):
                    entries += 1
            # symlinks to directories are in dirs but not walked: already counted
        with self.lock:
            for disk, (u, has_part) in self.uploading.items():
                if u == user and not has_part():
                    entries += 1
            reserved = sum(self.reserved.get(user, {}).values())
        return used, reserved, entries

    def serve(self):
        srv = socket.socket(socket.AF_INET6 if ":" in self.args.host else socket.AF_INET)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((self.args.host, self.args.port))
        srv.listen(128)
        print("listening on %s:%d" % (self.args.host, self.args.port), flush=True)
        while True:
            conn, addr = srv.accept()
            with self.lock:
                full = self.sessions >= self.args.max_sessions
                if not full:
                    self.sessions += 1
            threading.Thread(target=self._run, args=(conn, addr, full), daemon=True).start()

    def _run(self, conn, addr, full):
        try:
            s = Session(self, conn, addr)
            if full:
                s.close_with(421, "server full: %d sessions at once" % self.args.max_sessions,
                             server="socketlab-ftp", version=1, limits=self.limits())
            else:
                s.run()
        except Exception as e:  # never let a thread die noisily
            print("session error: %r" % e, flush=True)
            try:
                conn.close()
            except OSError:
                pass
        finally:
            if not full:
                with self.lock:
                    self.sessions -= 1


# ---------------------------------------------------------------- session
CMDS = {"pwd", "cd", "ls", "mkdir", "rm", "quota", "put", "get"}
ALL_OPS = CMDS | {"login", "auth", "data", "abort", "noop", "help", "quit"}
HELP = {
    "login": "login {user, cnonce} - start the SCRAM-style login",
    "auth": "auth {proof} - prove the password",
    "pwd": "pwd - the current directory",
    "cd": "cd {path} - change directory",
    "ls": "ls {path?, after?} - list a directory (paged)",
    "mkdir": "mkdir {path} - make a directory",
    "rm": "rm {path} - remove a file, link or empty directory",
    "quota": "quota - bytes and entries used and allowed",
    "put": "put {path, file_size, digest, algo?, overwrite?} - start an upload",
    "data": "data {offset} + body - the bytes of an upload",
    "abort": "abort - end an upload, keep the part",
    "get": "get {path, offset?, algo?, if_digest?} - download",
    "noop": "noop - do nothing",
    "help": "help - this list",
    "quit": "quit - end the session",
}


class Session:
    def __init__(self, server, sock, addr):
        self.srv, self.sock, self.addr = server, sock, addr[0]
        self.a = server.args
        self.buf = bytearray()
        self.t0 = time.monotonic()
        self.state = "CONNECTED"
        self.user = self.home = None
        self.cwd = "/"
        self.challenge = None
        self.failures = 0
        self.upload = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    # ---- I/O
    def send(self, code, msg, body=None, **fields):
        h = {"code": code, "msg": msg}
        h.update(fields)
        self.sock.settimeout(self.a.stall_timeout)
        try:
            self.sock.sendall(encode_frame(h, body))
        except (OSError, socket.timeout):
            raise Gone()

    def close_with(self, code, msg, **fields):
        try:
            if code:
                self.send(code, msg, **fields)
            self.sock.shutdown(socket.SHUT_WR)
            end, got = time.monotonic() + 1.0, len(self.buf)
            while got < 2 ** 20:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                d = self.sock.recv(65536)
                if not d:
                    break
                got += len(d)
        except (OSError, Gone):
            pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def _fill(self, deadline, on_timeout):
        left = deadline - time.monotonic()
        if left <= 0:
            raise on_timeout
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(CHUNK)
        except socket.timeout:
            raise on_timeout
        except OSError:
            raise EOFError
        if not d:
            raise EOFError
        self.buf += d

    def read_exact(self, n, deadline, on_timeout):
        while len(self.buf) < n:
            self._fill(deadline, on_timeout)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_header(self):
        now = time.monotonic()
        deadline, why = now + self.a.idle_timeout, "idle timeout"
        if self.user is None:
            ld = self.t0 + self.a.login_deadline
            if ld < deadline:
                deadline, why = ld, "not logged in within the login deadline"
        if not self.buf:
            try:
                self._fill(deadline, Close(421, why))
            except EOFError:
                raise Gone()
        hd = time.monotonic() + self.a.header_deadline
        late = Close(421, "header deadline passed")
        try:
            (n,) = struct.unpack("!I", self.read_exact(4, hd, late))
            if n == 0 or n > MAX_HEADER:
                raise Close(500, "framing violation: header length %d (1..%d)" % (n, MAX_HEADER))
            raw = self.read_exact(n, hd, late)
        except EOFError:
            raise Close(500, "stream ended mid-frame")
        h = parse_header(raw)
        size = h.get("size", 0)
        if size is None:
            size = 0
        if type(size) is not int or size < 0 or size > MAX_INT:
            raise Close(500, "framing violation: bad size %r" % (size,))
        sha = h.get("sha256")
        if sha is not None and (not isinstance(sha, str) or not HEX_RE.match(sha)):
            raise Close(500, "framing violation: sha256 must be hex")
        return h, size

    def read_body(self, size, sink=None):
        """Read size body bytes into sink(chunk), enforcing stall and rate limits.
        Returns the sha256 hex of the body. Raises EOFError, Close(421)."""
        h = hashlib.sha256()
        left = size
        stall = Close(421, "body stalled")
        rate_win = self.a.rate_window
        min_rate = self.a.min_body_rate
        win_start, win_bytes, win_need = time.monotonic(), 0, min(min_rate * rate_win, left)
        while left:
            if not self.buf:
                now = time.monotonic()
                if win_need and now >= win_start + rate_win:
                    if win_bytes < win_need:
                        raise Close(421, "body too slow: under %d bytes/s" % min_rate)
                    win_start, win_bytes = now, 0
                    win_need = min(min_rate * rate_win, left)
                deadline = now + self.a.stall_timeout
                rate_dl = win_start + rate_win
                if win_need and rate_dl < deadline:
                    try:
                        self._fill(rate_dl, socket.timeout())
                    except socket.timeout:
                        continue
                else:
                    self._fill(deadline, stall)
            chunk = bytes(self.buf[:left])
            del self.buf[:len(chunk)]
            left -= len(chunk)
            win_bytes += len(chunk)
            h.update(chunk)
            if sink:
                sink(chunk)
        return h.hexdigest()

    # ---- main loop
    def run(self):
        self.send(220, "socketlab-ftp ready; log in with login/auth", server="socketlab-ftp",
                  version=1, features=["scram-scrypt", "resume", "sha256", "md5", "pages",
                                       "quota"], limits=self.srv.limits())
        try:
            while True:
                h, size = self.read_header()
                self.handle(h, size)
        except Close as c:
            self.abandon_upload()
            self.close_with(c.code, c.msg, **c.fields)
        except (Gone, EOFError):
            self.abandon_upload()
            try:
                self.sock.close()
            except OSError:
                pass

    def skip_body(self, h, size):
        if size:
            try:
                got = self.read_body(size)
            except EOFError:
                raise Close(500, "stream ended mid-frame")
            want = h.get("sha256")
            if want is not None and want.lower() != got:
                raise Close(500, "body checksum does not match its sha256")

    def handle(self, h, size):
        op = h.get("op")
        if op == "data" and self.state == "UPLOADING":
            return self.op_data(h, size)
        if size:
            self.skip_body(h, size)
        elif h.get("sha256") is not None and h["sha256"].lower() != hashlib.sha256(b"").hexdigest():
            raise Close(500, "body checksum does not match its sha256")
        if op is None:
            return self.send(500, "missing op")
        if not isinstance(op, str) or op not in ALL_OPS:
            return self.send(500, "unknown op %r" % (op,))
        if size and op != "data":
            return self.send(501, "%s takes no body" % op)
        st = self.state
        allowed = {"CONNECTED": {"login", "help", "noop", "quit"},
                   "AUTHENTICATING": {"auth", "login", "help", "noop", "quit"},
                   "READY": CMDS | {"help", "noop", "quit"},
                   "UPLOADING": {"data", "abort", "quit"}}[st]
        if op not in allowed:
            if st in ("CONNECTED", "AUTHENTICATING") and op in CMDS:
                return self.send(530, "not logged in")
            return self.send(503, "%s not allowed now (%s)" % (op, st.lower()))
        try:
            getattr(self, "op_" + op)(h)
        except Reply as r:
            self.send(r.code, r.msg, **r.fields)
        except OSError as e:
            code, msg = os_reply(e)
            self.send(code, msg)
        except (Close, Gone, EOFError):
            raise
        except Exception as e:   # a bug of ours: answer it, keep the session in step
            print("internal error in %s: %r" % (op, e), flush=True)
            self.send(451, "local error: %s" % type(e).__name__)

    # ---- simple ops
    def op_noop(self, h):
        self.send(200, "ok")

    def op_help(self, h):
        self.send(214, "commands", commands=HELP)

    def op_quit(self, h):
        self.abandon_upload()
        raise Close(221, "goodbye")

    # ---- login
    def op_login(self, h):
        self.state, self.challenge = "CONNECTED", None
        user = h.get("user")
        if not isinstance(user, str) or not 1 <= len(user) <= 32 or not USER_RE.match(user):
            raise Reply(501, "user must be 1..32 characters [a-z_][a-z0-9_-]*")
        cnonce = want_hex(h, "cnonce", lo=8, hi=64)
        wait = self.srv.throttle.retry_after(user, self.addr)
        if wait > 0:
            raise Reply(530, "too many failed logins: retry later",
                        retry_after=max(1, int(wait + 0.999)))
        rec = self.srv.users.get(user)
        if rec:
            salt, n, r, p = rec["salt"], rec.get("n", N), rec.get("r", R), rec.get("p", P)
        else:
            salt = hmac.new(self.srv.secret, b"salt:" + user.encode(), hashlib.sha256).digest()[:16].hex()
            n, r, p = N, R, P
        snonce = secrets.token_hex(16)
        self.challenge = (user, cnonce, snonce)
        self.state = "AUTHENTICATING"
        self.send(331, "prove you know the password", user=user, salt=salt.lower(),
                  kdf="scrypt", n=n, r=r, p=p, snonce=snonce)

    def op_auth(self, h):
        user, cnonce, snonce = self.challenge
        self.challenge, self.state = None, "CONNECTED"
        proof = want_hex(h, "proof", nbytes=32)
        wait = self.srv.throttle.retry_after(user, self.addr)
        if wait > 0:
            raise Reply(530, "too many failed logins: retry later",
                        retry_after=max(1, int(wait + 0.999)))
        msg = ("%s,%s,%s" % (user, cnonce, snonce)).encode("utf-8")
        rec = self.srv.users.get(user)
        ok = False
        if rec:
            try:
                stored = bytes.fromhex(rec["stored_key"])
                sig = hmac.new(stored, msg, hashlib.sha256).digest()
                ck = bytes(a ^ b for a, b in zip(bytes.fromhex(proof), sig))
                ok = hmac.compare_digest(hashlib.sha256(ck).digest(), stored)
            except (KeyError, ValueError, TypeError):
                ok = False
        if not ok:
            self.srv.throttle.failure(user, self.addr)
            self.failures += 1
            time.sleep(self.a.login_delay)
            if self.failures >= MAX_LOGIN_ATTEMPTS:
                raise Close(421, "login incorrect: too many failures, closing")
            raise Reply(530, "login incorrect", attempts_left=MAX_LOGIN_ATTEMPTS - self.failures)
        self.srv.throttle.success(user, self.addr)
        home = self.srv.users.home(user)
        os.makedirs(home, exist_ok=True)
        self.user, self.home, self.cwd = user, os.path.realpath(home), "/"
        self.state = "READY"
        ssig = hmac.new(bytes.fromhex(rec["server_key"]), msg, hashlib.sha256).hexdigest()
        self.send(230, "welcome, %s" % user, user=user, home="/", server_signature=ssig)

    # ---- paths
    def resolve(self, vpath, follow_last=True):
        """-> (virtual path, disk path). Raises Reply(553) for anything out of the home."""
        parts = [] if vpath.startswith("/") else [c for c in self.cwd.split("/") if c]
        for c in vpath.split("/"):
            if c in ("", "."):
                continue
            if c == "..":
                if not parts:
                    raise Reply(553, "path leaves the home directory")
                parts.pop()
                continue
            if len(c.encode("utf-8")) > MAX_NAME_BYTES:
                raise Reply(553, "name longer than %d bytes" % MAX_NAME_BYTES)
            if RESERVED_RE.match(c):
                raise Reply(553, "name reserved for unfinished uploads")
            parts.append(c)
        disk = os.path.join(self.home, *parts)
        if len(disk.encode("utf-8")) > 4096:
            raise Reply(553, "path on the disk too long")
        if parts:
            parent = os.path.realpath(os.path.dirname(disk))
            if not inside(parent, self.home):
                raise Reply(553, "path leads out of the home (symlink)")
            disk = os.path.join(parent, parts[-1])
            if follow_last and os.path.islink(disk):
                if not inside(os.path.realpath(disk), self.home):
                    raise Reply(553, "symlink leads out of the home")
        return "/" + "/".join(parts), disk

    # ---- directory ops
    def op_pwd(self, h):
        self.send(257, "current directory", path=self.cwd)

    def op_cd(self, h):
        v, d = self.resolve(want_path(h))
        if not os.path.isdir(d):
            raise Reply(550, "not a directory")
        os.listdir(d)  # permission
        self.cwd = v
        self.send(250, "directory changed", path=v)

    def op_mkdir(self, h):
        v, d = self.resolve(want_path(h))
        if v == "/":
            raise Reply(550, "exists")
        with self.srv.user_lock(self.user):
            if os.path.lexists(d):
                raise Reply(550, "exists")
            if not os.path.isdir(os.path.dirname(d)):
                raise Reply(550, "no such parent directory")
            rec = self.srv.users.get(self.user) or {}
            _, _, entries = self.srv.usage(self.user, self.home)
            if entries + 1 > rec.get("max_entries", DEFAULT_ENTRIES):
                raise Reply(552, "entry limit reached")
            os.mkdir(d)
        self.send(257, "directory created", path=v)

    def op_rm(self, h):
        v, d = self.resolve(want_path(h), follow_last=False)
        if v == "/":
            raise Reply(550, "cannot remove the home directory")
        real = os.path.realpath(d) if not os.path.islink(d) else d
        part, side = part_names(d)
        with self.srv.lock:
            busy = d in self.srv.uploading or real in self.srv.uploading
        if busy:
            raise Reply(450, "being uploaded")
        if os.path.islink(d) or (os.path.lexists(d) and not os.path.isdir(d)):
            os.unlink(d)
        elif os.path.isdir(d):
            os.rmdir(d)
        elif os.path.lexists(part) or os.path.lexists(side):
            for p in (part, side):
                if os.path.lexists(p):
                    os.unlink(p)
        else:
            raise Reply(550, "no such file or directory")
        self.send(250, "removed", path=v)

    def entry(self, dirpath, bname, sidecars):
        name, bad = escape_name(bname)
        p = os.path.join(dirpath, bname)
        st = os.lstat(p)
        e = {"name": name}
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(p)
            try:
                tst = os.stat(p)
            except OSError:
                tst = None
            home = self.home.encode() if isinstance(p, bytes) else self.home
            if tst is None or not inside(real, home):
                e.update(type="link", size=0, mtime=int(st.st_mtime))
            else:
                st = tst
        if "type" not in e:
            if stat.S_ISREG(st.st_mode):
                typ = "file"
            elif stat.S_ISDIR(st.st_mode):
                typ = "dir"
            else:
                typ = "other"
            e.update(type=typ, size=st.st_size if typ == "file" else 0,
                     mtime=int(st.st_mtime))
        if bad:
            e["undecodable"] = True
        return e

    def list_dir(self, d):
        bd = os.fsencode(d)
        names = os.listdir(bd)
        out = []
        for b in names:
            m = re.match(rb"\.(.+)\.part(\.json)?\Z", b, re.S)
            if m and m.group(2):
                continue   # sidecar: not an entry
            try:
                if m:
                    st = os.lstat(os.path.join(bd, b))
                    side = read_sidecar(os.path.join(bd, b + b".json")) or {}
                    name, bad = escape_name(m.group(1))
                    e = {"name": name, "type": "partial", "size": st.st_size,
                         "file_size": side.get("file_size")}
                    if bad:
                        e["undecodable"] = True
                else:
                    e = self.entry(bd, b, None)
            except OSError:
                continue
            out.append(e)
        out.sort(key=lambda e: (e["name"], e["type"]))
        return out

    def op_ls(self, h):
        v, d = self.resolve(want_path(h, default="."))
        after = h.get("after")
        if after is not None and not isinstance(after, str):
            raise Reply(501, "after must be a string")
        if os.path.isdir(d):
            entries = self.list_dir(d)
        elif os.path.lexists(d):
            entries = [self.entry(os.path.dirname(d), os.path.basename(d), None)]
        else:
            part, side = part_names(d)
            if not os.path.exists(part):
                raise Reply(550, "no such file or directory")
            sc = read_sidecar(side) or {}
            entries = [{"name": os.path.basename(d), "type": "partial",
                        "size": os.path.getsize(part), "file_size": sc.get("file_size")}]
        total = len(entries)
        rest = [e for e in entries if after is None or e["name"] > after]
        fields = dict(path=v, entries=rest, truncated=False, total=total, continue_after=None)
        if len(encode_frame(dict(code=200, msg="listing", **fields))) - 4 <= MAX_HEADER:
            return self.send(200, "listing", **fields)
        # page: add whole name groups while the header fits
        base = len(encode_frame(dict(code=200, msg="listing", path=v, entries=[],
                                     truncated=True, total=total, continue_after=""))) - 4
        budget, used, page = MAX_HEADER - base, 0, []
        i = 0
        while i < len(rest):
            j = i
            group_cost = 0
            while j < len(rest) and rest[j]["name"] == rest[i]["name"]:
                group_cost += len(json.dumps(rest[j], ensure_ascii=False,
                                             separators=(", ", ": ")).encode()) + 2
                j += 1
            name_cost = len(json.dumps(rest[i]["name"], ensure_ascii=False).encode())
            if used + group_cost + name_cost > budget and page:
                break
            page.extend(rest[i:j])
            used += group_cost
            i = j
        while True:
            fields = dict(path=v, entries=page, truncated=True, total=total,
                          continue_after=page[-1]["name"] if page else None)
            if len(encode_frame(dict(code=200, msg="listing", **fields))) - 4 <= MAX_HEADER or len(page) <= 1:
                break
            last = page[-1]["name"]
            while page and page[-1]["name"] == last:
                page.pop()
        self.send(200, "listing", **fields)

    def op_quota(self, h):
        rec = self.srv.users.get(self.user) or {}
        used, reserved, entries = self.srv.usage(self.user, self.home)
        limit = rec.get("quota", 0)
        self.send(200, "quota", used=used, reserved=reserved, limit=limit,
                  free=max(0, limit - used - reserved), entries=entries,
                  max_entries=rec.get("max_entries", DEFAULT_ENTRIES))

    # ---- uploads
    def op_put(self, h):
        path = want_path(h)
        file_size = want_int(h, "file_size")
        algo = want_algo(h)
        digest = want_hex(h, "digest", nbytes=32 if algo == "sha256" else 16).lower()
        overwrite = want_bool(h, "overwrite", False)
        v, d = self.resolve(path)
        if v == "/":
            raise Reply(550, "is a directory")
        parent = os.path.dirname(d)
        if not os.path.isdir(parent):
            raise Reply(550, "no such directory")
        if os.path.isdir(d):
            raise Reply(550, "is a directory")
        real = os.path.realpath(d)
        part, side = part_names(d)
        srv = self.srv
        with srv.user_lock(self.user):
            with srv.lock:
                if real in srv.uploading or d in srv.uploading:
                    raise Reply(450, "the same path is being uploaded")
            exists = os.path.lexists(d)
            if exists and not overwrite:
                raise Reply(550, "exists (set overwrite)")
            offset = 0
            sc = read_sidecar(side)
            if os.path.isfile(part) and sc and sc.get("file_size") == file_size \
                    and sc.get("algo") == algo and str(sc.get("digest", "")).lower() == digest:
                offset = os.path.getsize(part)
                if offset > file_size:
                    offset = 0
            rec = srv.users.get(self.user) or {}
            used, reserved, entries = srv.usage(self.user, self.home)
            need = file_size - offset
            if used + reserved + need > rec.get("quota", 0):
                raise Reply(552, "over quota: %d used, %d reserved, %d more needed, limit %d"
                            % (used, reserved, need, rec.get("quota", 0)))
            if not exists and not os.path.lexists(part) and \
                    entries + 1 > rec.get("max_entries", DEFAULT_ENTRIES):
                raise Reply(552, "entry limit reached")
            if offset == 0:
                if os.path.lexists(part):
                    os.unlink(part)
            try:
                fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    os.write(fd, json.dumps({"file_size": file_size, "algo": algo,
                                             "digest": digest, "path": v}).encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                try:
                    os.unlink(side)
                except OSError:
                    pass
                raise
            key = d
            srv.reserved.setdefault(self.user, {})[key] = need
            srv.uploading[key] = (self.user, lambda: os.path.lexists(part))
        self.upload = dict(v=v, d=d, part=part, side=side, file_size=file_size, algo=algo,
                           digest=digest, offset=offset, key=key)
        self.state = "UPLOADING"
        self.send(350, "send the data", offset=offset, file_size=file_size, path=v)

    def end_upload(self, keep=True):
        """Release the reservation; drop an empty part if nothing was kept."""
        u, self.upload = self.upload, None
        self.state = "READY" if self.user else self.state
        if not u:
            return 0
        kept = 0
        try:
            kept = os.path.getsize(u["part"])
        except OSError:
            kept = 0
        if not keep or kept == 0:
            for p in (u["part"], u["side"]):
                try:
                    os.unlink(p)
                except OSError:
                    pass
            kept = 0
        with self.srv.lock:
            self.srv.reserved.get(self.user, {}).pop(u["key"], None)
            self.srv.uploading.pop(u["key"], None)
        return kept

    def abandon_upload(self):
        if self.upload:
            self.end_upload(keep=True)

    def op_abort(self, h):
        kept = self.end_upload(keep=True)
        self.send(226, "upload aborted", kept=kept)

    def op_data(self, h, size):
        u = self.upload
        offset = h.get("offset")
        if not is_int(offset) or offset != u["offset"] or size != u["file_size"] - u["offset"]:
            self.skip_body(h, size)
            self.end_upload(keep=True)
            raise_ = "offset must be %d and the body %d bytes" % (u["offset"], u["file_size"] - u["offset"])
            return self.send(501, "wrong offset or body size: " + raise_)
        hasher = hashlib.new(u["algo"])
        err = None
        f = None
        try:
            f = open(u["part"], "r+b" if os.path.exists(u["part"]) else "w+b")
            f.truncate(u["offset"])
            f.seek(0)
            left = u["offset"]
            while left:
                b = f.read(min(CHUNK, left))
                if not b:
                    break
                hasher.update(b)
                left -= len(b)
            f.seek(u["offset"])
        except OSError as e:
            err = e

        def sink(chunk):
            nonlocal err
            hasher.update(chunk)
            if err is None:
                try:
                    f.write(chunk)
                except OSError as e:
                    err = e

        def stop():
            if f:
                try:
                    f.flush()
                    os.fsync(f.fileno())
                except OSError:
                    pass
                try:
                    f.close()
                except OSError:
                    pass
        try:
            got_sha = self.read_body(size, sink)
        except EOFError:
            stop()
            self.end_upload(keep=True)
            raise Close(500, "stream ended mid-frame")
        except Close:
            stop()
            self.end_upload(keep=True)
            raise
        want = h.get("sha256")
        if want is not None and want.lower() != got_sha:
            try:
                f.flush()
                f.truncate(u["offset"])
            except (OSError, AttributeError):
                pass
            stop()
            self.end_upload(keep=True)
            raise Close(500, "body checksum does not match its sha256: body dropped")
        if err is None:
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                err = e
        if err is not None:
            stop()
            self.end_upload(keep=True)
            code, msg = os_reply(err)
            return self.send(code, msg)
        stop()
        if hasher.hexdigest() != u["digest"]:
            self.end_upload(keep=False)
            return self.send(451, "digest mismatch: the upload is deleted")
        try:
            os.replace(u["part"], u["d"])
            fsync_dir(os.path.dirname(u["d"]))
            os.unlink(u["side"])
        except OSError as e:
            self.end_upload(keep=True)
            code, msg = os_reply(e)
            return self.send(code, msg)
        self.end_upload(keep=True)
        self.send(226, "upload complete", path=u["v"], file_size=u["file_size"],
                  algo=u["algo"], digest=u["digest"], received=size)

    # ---- downloads
    def op_get(self, h):
        path = want_path(h)
        offset = want_int(h, "offset", 0)
        algo = want_algo(h)
        if_digest = want_hex(h, "if_digest", optional=True)
        v, d = self.resolve(path)
        st = os.stat(d)
        if not stat.S_ISREG(st.st_mode):
            raise Reply(550, "not a regular file")
        fd = os.open(d, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise Reply(550, "not a regular file")
            size = st.st_size
            hasher = hashlib.new(algo)
            left = size
            while left:
                b = f.read(min(CHUNK, left))
                if not b:
                    break
                hasher.update(b)
                left -= len(b)
            digest = hasher.hexdigest()
            if if_digest is not None and if_digest.lower() != digest:
                offset = 0
            if offset > size:
                raise Reply(501, "offset %d beyond the end (%d)" % (offset, size))
            n = size - offset
            hdr = {"code": 150, "msg": "download starts", "path": v, "file_size": size,
                   "offset": offset, "algo": algo, "digest": digest, "size": n}
            raw = json.dumps(hdr, ensure_ascii=False, separators=(", ", ": ")).encode()
            self.sock.settimeout(self.a.stall_timeout)
            try:
                self.sock.sendall(struct.pack("!I", len(raw)) + raw)
                f.seek(offset)
                left = n
                while left:
                    b = f.read(min(CHUNK, left))
                    if not b:
                        b = b"\0" * min(CHUNK, left)   # file shrank: keep the frame whole
                    self.sock.sendall(b)
                    left -= len(b)
            except (OSError, socket.timeout):
                raise Gone()
        self.send(226, "download complete", sent=n)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=20060)
    ap.add_argument("--root", default="ftp-root")
    ap.add_argument("--max-sessions", type=int, default=100)
    ap.add_argument("--idle-timeout", type=float, default=300)
    ap.add_argument("--header-deadline", type=float, default=10)
    ap.add_argument("--stall-timeout", type=float, default=60)
    ap.add_argument("--login-deadline", type=float, default=60)
    ap.add_argument("--min-body-rate", type=float, default=1024)
    ap.add_argument("--rate-window", type=float, default=30)
    ap.add_argument("--login-delay", type=float, default=1.0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    server = Server(args)
    try:
        server.serve()
    except (KeyboardInterrupt, SystemExit):
        pass
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
