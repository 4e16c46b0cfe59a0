"""What the FTP benchmark runs *inside* its two containers (bench/ftp.py copies this file in).

Server container (long-running, started once):

    python3 ftp_peer.py ceiling-server --port 20070 --dir D     bare-socket ceilings, one loop
    python3 ftp_peer.py pyftpd-server --port 2121 --root D      pyftpdlib 2.2.0, quiet, one user
    python3 ftp_peer.py pyftpd-server --port 2122 --root D --fsync   the same, fsync before the 226
    python3 ftp_peer.py login-bare-server --port 20062         our login's frames, canned

Client container (one process per measurement; prints exactly one JSON line):

    python3 ftp_peer.py transfer ceiling get --remote f64m --count 1
    python3 ftp_peer.py transfer ours get --mode verified --local /data/cli/x --remote f64m
    python3 ftp_peer.py transfer pyftpd put --local /data/cli/f64m --remote up-pyftpd-f64m
    python3 ftp_peer.py logins ours --clients 300
    python3 ftp_peer.py logins bare --clients 300                its raw-socket client

Either:

    python3 ftp_peer.py mkfile PATH SIZE          random bytes; prints the sha256
    python3 ftp_peer.py wait-listening PORT...    until the kernel lists those ports as LISTEN

The ceilings are the fastest a bare Python loop moves the same bytes between the same two
containers on the same volume, so every ratio is taken against a number measured in the same run:

* download ceiling: ``socket.sendfile`` from the file → ``recv_into`` one reused 1 MiB buffer,
  bytes discarded (the network path and nothing else);
* upload ceiling: ``socket.sendfile`` → ``recv_into`` → ``os.write`` to a new file + ``sha256``
  update: the pipeline a verified upload cannot avoid. The server acks with the digest, then
  fsyncs and acks again, so the client gets the time both without and with the fsync.

Ceiling wire format (ours, not FTP): request = ``!cQH`` (op ``G``/``P``, size, name length) +
name; ``G`` answers ``!Q`` size + the bytes; ``P`` is followed by ``size`` bytes and answered
with the 32-byte sha256, then ``!d`` seconds spent in fsync.
"""
from __future__ import annotations

import argparse
import ftplib
import hashlib
import itertools
import json
import os
import resource
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable

from framing.codec import HEADER_LENGTH  # the frames' 4-byte length prefix (the image has services/)

TIMEOUT = 120.0              # every socket has one; a 1 GiB transfer takes a few seconds here
BUFFER = 1024 * 1024         # the ceilings' and ftplib's block size
REQUEST = struct.Struct("!cQH")
SIZE = struct.Struct("!Q")
SECONDS = struct.Struct("!d")
LISTEN = "0A"                # TCP state LISTEN in /proc/net/tcp


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"peer closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_sha256(path: str) -> float:
    """Seconds for one sha256 pass over a file: the pass a put makes before sending (outside
    the clock, just before the put, so the page cache is in the same state)."""
    started = time.perf_counter()
    with open(path, "rb") as f:
        hashlib.file_digest(f, "sha256")
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# Setup commands
# ---------------------------------------------------------------------------------------------

def make_file(path: str, size: int) -> str:
    """Incompressible bytes (nothing on the path compresses, but no shortcut should look good)."""
    hasher = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        left = size
        while left:
            block = os.urandom(min(BUFFER, left))
            write_all(fd, block)
            hasher.update(block)
            left -= len(block)
    finally:
        os.close(fd)
    return hasher.hexdigest()


def listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_listening(ports: list[int], timeout: float = 30.0) -> None:
    """Poll the kernel's socket table (no probe connection: a server would count it as a client)."""
    deadline = time.monotonic() + timeout
    while not set(ports) <= listening_ports():
        if time.monotonic() > deadline:
            missing = sorted(set(ports) - listening_ports())
            raise TimeoutError(f"ports {missing} not listening after {timeout} s")
        time.sleep(0.02)   # last resort: nothing to block on until the other process calls listen()


# ---------------------------------------------------------------------------------------------
# Ceiling server: one connection at a time, any number of requests per connection
# ---------------------------------------------------------------------------------------------

def ceiling_server(port: int, directory: str) -> None:
    listener = socket.create_server(("0.0.0.0", port), reuse_port=False)
    print(f"listening on 0.0.0.0:{port}", flush=True)
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as our server does: small acks
            try:
                while True:
                    head = conn.recv(REQUEST.size, socket.MSG_WAITALL)
                    if len(head) < REQUEST.size:
                        break                       # b'' = the client is done
                    op, size, name_len = REQUEST.unpack(head)
                    name = recv_exact(conn, name_len).decode()
                    if "/" in name or name.startswith("."):
                        raise ValueError(f"bad name {name!r}")
                    path = os.path.join(directory, name)
                    if op == b"G":
                        serve_download(conn, path)
                    else:
                        serve_upload(conn, path, size, view, early_writeback=op == b"Q")
            except (OSError, EOFError, ValueError) as exc:
                print(f"ceiling: {exc!r}", file=sys.stderr, flush=True)


def serve_download(conn: socket.socket, path: str) -> None:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        conn.sendall(SIZE.pack(size))
        conn.sendfile(f, 0, size)


def sync_file_range_function():
    import ctypes
    function = ctypes.CDLL(None, use_errno=True).sync_file_range
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


WRITEBACK_EVERY = 4 << 20       # as ftp/storage.py's hash thread: start the disk on every 4 MiB


def serve_upload(conn: socket.socket, path: str, size: int, view: memoryview, early_writeback: bool = False) -> None:
    """``early_writeback`` (op Q): also tell the kernel to start writing every 4 MiB at once
    (sync_file_range, which does not wait), as our server does: without it the dirty pages pile
    up and the kernel throttles the writer (balance_dirty_pages), so the plain ceiling is not the
    fastest a receiver can write."""
    hasher = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    start_writeback = sync_file_range_function() if early_writeback else None
    try:
        left, written, flushed = size, 0, 0
        while left:
            n = conn.recv_into(view, min(len(view), left))
            if not n:
                raise EOFError(f"client closed with {left} bytes to go")
            write_all(fd, view[:n])
            hasher.update(view[:n])
            left -= n
            written += n
            if start_writeback is not None and written - flushed >= WRITEBACK_EVERY:
                start_writeback(fd, flushed, written - flushed, 2)     # SYNC_FILE_RANGE_WRITE
                flushed = written
        conn.sendall(hasher.digest())          # ceiling as specified: bytes written and hashed
        started = time.perf_counter()
        os.fsync(fd)                           # what a durable (atomic, verified) upload adds
        conn.sendall(SECONDS.pack(time.perf_counter() - started))
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# pyftpdlib server
# ---------------------------------------------------------------------------------------------

def pyftpd_server(port: int, root: str, user: str, password: str, fsync: bool = False) -> None:
    import logging

    from pyftpdlib import __ver__
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler
    from pyftpdlib.log import config_logging
    from pyftpdlib.servers import FTPServer

    class DurableDTPHandler(DTPHandler):
        """An upload is fsync'ed before the 226 (pyftpdlib closes the file, then replies): the
        durability our server gives every upload, so 'same work' can be compared."""

        def close(self) -> None:
            f = self.file_obj
            if not self._closed and self.receive and f is not None and not f.closed:
                f.flush()
                os.fsync(f.fileno())
            super().close()

    # Warnings only: our server runs with --quiet, so neither pays for a log line per command.
    config_logging(level=logging.WARNING)
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, root, perm="elradfmwMT")

    class Handler(FTPHandler):
        pass
    handler = Handler
    handler.authorizer = authorizer
    if fsync:
        handler.dtp_handler = DurableDTPHandler
    server = FTPServer(("0.0.0.0", port), handler)    # defaults: sendfile on, backlog 100
    server.max_cons = 512                             # the default, stated: 300 logins fit
    print(f"pyftpdlib {__ver__} listening on 0.0.0.0:{port}{' (fsync before 226)' if fsync else ''}",
          flush=True)
    server.serve_forever()


# ---------------------------------------------------------------------------------------------
# The logins' bare exchange: our three round trips of frames, with nothing but the I/O
# ---------------------------------------------------------------------------------------------

def json_frame(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return HEADER_LENGTH.pack(len(raw)) + raw


def login_bare_server(port: int) -> None:
    """What any Python server must do for a login of our protocol, and no more: a selectors loop
    that accepts, greets, and answers each frame with a reply made at start-up (the 220, the
    331, the 230 and the 221 our server sends, of the same sizes). It parses nothing, checks no
    proof, keeps no session state but a counter: what our protocol's login costs before any of
    our code runs, measured in the same run. Not a server anyone should run."""
    import selectors

    from ftp.protocol import Code, FtpConnection, Role, greeting, reply
    from ftp.server import parse_args

    def frame_of(message) -> bytes:
        return FtpConnection(Role.SERVER).send(message)

    c = parse_args(["--max-sessions", "310"])      # the greeting of the ours-300 server, byte for byte
    canned = [frame_of(greeting(c.max_sessions, idle_timeout=c.idle_timeout, header_deadline=c.header_deadline,
                                login_deadline=c.login_deadline, stall_timeout=c.stall_timeout,
                                min_body_rate=c.min_body_rate, rate_window=c.rate_window)),
              frame_of(reply(Code.NEED_PROOF, "prove you know the password", user="bench", snonce="5a" * 16,
                             kdf="scrypt", salt="00" * 16, n=16384, r=8, p=1)),
              frame_of(reply(Code.LOGGED_IN, "welcome, bench", user="bench", home="/",
                             server_signature="00" * 32)),
              frame_of(reply(Code.CLOSING, "goodbye"))]
    listener = socket.create_server(("0.0.0.0", port), backlog=1024)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    print(f"bare login exchange listening on 0.0.0.0:{port}", flush=True)
    while True:
        for key, _ in selector.select():
            if key.data is None:
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conn.setblocking(False)
                    conn.sendall(canned[0])
                    selector.register(conn, selectors.EVENT_READ, [1])
                continue
            conn, said = key.fileobj, key.data
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data or said[0] >= len(canned):
                selector.unregister(conn)
                conn.close()
                continue
            conn.sendall(canned[said[0]])     # one frame in, the next canned reply out
            said[0] += 1


class BareSession:
    """The bare exchange's client: a raw socket, the length prefix and json, nothing checked but codes."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""
        self.expect(220)

    def expect(self, code: int) -> dict:
        while True:
            if len(self.pending) >= HEADER_LENGTH.size:
                (size,) = HEADER_LENGTH.unpack_from(self.pending)
                end = HEADER_LENGTH.size + size
                if len(self.pending) >= end:
                    header, self.pending = json.loads(self.pending[HEADER_LENGTH.size:end]), self.pending[end:]
                    if header.get("code") != code:
                        raise RuntimeError(f"bare exchange: expected {code}, got {header}")
                    return header
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the bare exchange's server closed")
            self.pending += chunk

    def login(self, user: str) -> None:
        self.sock.sendall(json_frame({"op": "login", "user": user, "cnonce": os.urandom(16).hex()}))
        self.expect(331)
        self.sock.sendall(json_frame({"op": "auth", "proof": "00" * 32}))
        self.expect(230)

    def quit(self) -> None:
        try:
            self.sock.sendall(json_frame({"op": "quit"}))
            self.expect(221)
        finally:
            self.sock.close()


# ---------------------------------------------------------------------------------------------
# Clients: one measurement = one process, `count` transfers on one session
# ---------------------------------------------------------------------------------------------

class Measurement:
    """Wall time of each transfer and this process's CPU time over all of them."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.cpu = 0.0
        self.bytes = 0
        self.extra: dict = {}

    def run(self, transfer: Callable[[], int]) -> None:
        cpu, started = cpu_seconds(), time.perf_counter()
        moved = transfer()
        self.times.append(time.perf_counter() - started)
        self.cpu += cpu_seconds() - cpu
        self.bytes += moved


def numbered(remote: str, i: int) -> str:
    """The name of a measurement's i-th upload (0-based): NAME, NAME.2, NAME.3, ... Every put
    makes a new file, for every server alike: a put over an existing file would also pay for
    freeing the old one's blocks (ext4 here: ~0.2 ms per MiB, inside the ceiling's O_TRUNC and
    pyftpdlib's truncating open, after the reply in ours), which is no part of receiving one."""
    return remote if i == 0 else f"{remote}.{i + 1}"


def ceiling_client(args: argparse.Namespace, m: Measurement) -> None:
    sock = socket.create_connection((args.host, args.port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    fsync_times: list[float] = []
    name = args.remote.encode()
    puts = itertools.count()

    def download() -> int:
        sock.sendall(REQUEST.pack(b"G", 0, len(name)) + name)
        size, = SIZE.unpack(recv_exact(sock, SIZE.size))
        left = size
        while left:
            n = sock.recv_into(view, min(len(view), left))
            if not n:
                raise EOFError("ceiling server closed mid-file")
            left -= n
        return size

    def upload() -> int:
        target = numbered(args.remote, next(puts)).encode()
        with open(args.local, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            op = b"Q" if args.mode == "writeback" else b"P"
            sock.sendall(REQUEST.pack(op, size, len(target)) + target)
            sock.sendfile(f, 0, size)
        digest = recv_exact(sock, 32).hex()
        if args.digest and digest != args.digest:
            raise RuntimeError(f"ceiling upload digest {digest} != {args.digest}")
        return size

    for _ in range(args.count):
        m.run(download if args.op == "get" else upload)
        if args.op == "put":             # after the clock stopped: how long the fsync took
            fsync_times.append(SECONDS.unpack(recv_exact(sock, SECONDS.size))[0])
    sock.close()
    m.extra = {"fsync_seconds": fsync_times}


def ours_client(args: argparse.Namespace, m: Measurement) -> None:
    from ftp.client import FtpClient, FtpError
    from ftp.protocol import DEFAULT_ALGORITHM, Body, EndOfBody, Get

    def discard_get(ftp: FtpClient) -> int:
        """The library's session and decoder, but the body is dropped like the ceiling's."""
        ftp.send(Get(args.remote, 0, DEFAULT_ALGORITHM, None))
        opening = ftp.read_reply()
        if not opening.ok:
            raise FtpError(opening)
        size, got = opening.get_int("file_size"), 0
        if size:
            while not isinstance(event := ftp.next_event(), EndOfBody):
                assert isinstance(event, Body)
                got += len(event.data)
        done = ftp.read_reply()
        if not done.ok or got != size:
            raise RuntimeError(f"discard get: {done} after {got} of {size} bytes")
        return size

    def verified_get(ftp: FtpClient) -> int:
        done = ftp.get(args.remote, args.local, resume=False)
        if args.digest and done.fields.get("digest") != args.digest:
            raise RuntimeError(f"get digest {done.fields.get('digest')} != {args.digest}")
        return done.get_int("file_size")

    puts = itertools.count()

    def put(ftp: FtpClient) -> int:
        return ftp.put(args.local, numbered(args.remote, next(puts)), overwrite=True).get_int("file_size")

    class ProtocolOneClient(FtpClient):
        """What a client written to protocol 1 does: the digest in the put, so a pre-pass."""
        streams_digest = False

    prepass: list[float] = []
    client = ProtocolOneClient if args.mode == "prepass" else FtpClient

    with client(args.host, args.port, timeout=TIMEOUT) as ftp:
        ftp.login(args.user, args.password)
        action = put if args.op == "put" else discard_get if args.mode == "discard" else verified_get
        for _ in range(args.count):
            if args.op == "put" and args.mode == "prepass":
                prepass.append(timed_sha256(args.local))    # what put's own first pass costs
            m.run(lambda: action(ftp))
            if args.op == "get" and args.mode == "verified":
                os.unlink(args.local)                    # outside the clock
    m.extra = {"prepass_seconds": prepass}


def pyftpd_client(args: argparse.Namespace, m: Measurement) -> None:
    """ftplib with 1 MiB blocks; for a like-for-like row it does the client work ours does."""
    ftp = ftplib.FTP()
    ftp.connect(args.host, args.port, timeout=TIMEOUT)
    ftp.login(args.user, args.password)

    def discard_get() -> int:
        got = 0

        def sink(block: bytes) -> None:
            nonlocal got
            got += len(block)
        ftp.retrbinary(f"RETR {args.remote}", sink, blocksize=BUFFER)
        return got

    def verified_get() -> int:
        # What FtpClient.get does on its side: write to disk, sha256, fsync. FTP has no digest
        # of its own to compare with, so the expected one comes from the benchmark.
        hasher = hashlib.sha256()
        fd = os.open(args.local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            def sink(block: bytes) -> None:
                write_all(fd, block)
                hasher.update(block)
            ftp.retrbinary(f"RETR {args.remote}", sink, blocksize=BUFFER)
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if args.digest and hasher.hexdigest() != args.digest:
            raise RuntimeError(f"pyftpdlib download digest {hasher.hexdigest()} != {args.digest}")
        return size

    puts = itertools.count()

    def put() -> int:
        target = numbered(args.remote, next(puts))
        # What FtpClient.put does on its side: hash the file. In the same pass as the send
        # (storbinary's callback sees every block after it went out), as protocol 2 does; with
        # --mode prepass first, as protocol 1 does. FTP verifies nothing itself.
        with open(args.local, "rb") as f:
            if args.mode == "prepass":
                hashlib.file_digest(f, "sha256")
                f.seek(0)
                ftp.storbinary(f"STOR {target}", f, blocksize=BUFFER)
            else:
                hasher = hashlib.sha256()
                ftp.storbinary(f"STOR {target}", f, blocksize=BUFFER, callback=hasher.update)
                if args.digest and hasher.hexdigest() != args.digest:
                    raise RuntimeError(f"pyftpdlib upload hashed {hasher.hexdigest()} != {args.digest}")
            return os.fstat(f.fileno()).st_size

    action = put if args.op == "put" else discard_get if args.mode == "discard" else verified_get
    prepass: list[float] = []
    for _ in range(args.count):
        if args.op == "put" and args.mode == "prepass":
            prepass.append(timed_sha256(args.local))
        m.run(action)
        if args.op == "get" and args.mode == "verified":
            os.unlink(args.local)
    ftp.quit()
    m.extra = {"prepass_seconds": prepass}


CLIENTS = {"ceiling": ceiling_client, "ours": ours_client, "pyftpd": pyftpd_client}


def transfer(args: argparse.Namespace) -> dict:
    m = Measurement()
    CLIENTS[args.kind](args, m)
    return {"bytes": m.bytes, "seconds": sum(m.times), "times": m.times, "client_cpu": m.cpu, **m.extra}


# ---------------------------------------------------------------------------------------------
# 300 concurrent logins
# ---------------------------------------------------------------------------------------------

def login_function(args: argparse.Namespace) -> tuple[Callable[[], object], Callable[[object], None]]:
    if args.kind == "ours":
        from ftp.client import FtpClient

        def login() -> object:
            ftp = FtpClient(args.host, args.port, timeout=30)
            ftp.login(args.user, args.password)
            return ftp

        def close(ftp: object) -> None:
            ftp.__exit__(None, None, None)        # quit + close
        return login, close

    if args.kind == "bare":
        def bare_login() -> object:
            session = BareSession(args.host, args.port)
            session.login(args.user)
            return session
        return bare_login, lambda session: session.quit()

    def ftplib_login() -> object:
        ftp = ftplib.FTP()
        ftp.connect(args.host, args.port, timeout=30)
        ftp.login(args.user, args.password)
        return ftp

    def ftplib_close(ftp: object) -> None:
        try:
            ftp.quit()
        except (OSError, ftplib.Error):
            ftp.close()
    return ftplib_login, ftplib_close


def logins(args: argparse.Namespace) -> dict:
    """N threads wait at a barrier, then each connects and logs in; the clock stops when the
    last one is logged in. Everyone stays connected until then (N sessions at once)."""
    # One name lookup for all: 300 threads asking Docker's DNS at once sometimes lose a query
    # and wait out the resolver's 5 s timeout (seen for both servers), which is not a login.
    args.host = socket.gethostbyname(args.host)
    login, close = login_function(args)
    close(login())            # warm-up: imports, and FtpClient's cached scrypt (one per process)
    n = args.clients
    start = threading.Barrier(n + 1)
    finished = threading.Condition()
    release = threading.Event()
    done_at: list[float] = []
    errors: list[str] = []

    def client() -> None:
        session = None
        try:
            start.wait(timeout=60)
            session = login()
            stamp = time.perf_counter()
        except Exception as exc:   # noqa: BLE001 - counted and reported, not raised
            stamp = time.perf_counter()
            with finished:
                errors.append(repr(exc)[:200])
        with finished:
            done_at.append(stamp)
            finished.notify()
        release.wait(timeout=120)
        if session is not None:
            try:
                close(session)
            except Exception:    # noqa: BLE001
                pass

    threads = [threading.Thread(target=client, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    start.wait(timeout=60)
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    with finished:
        finished.wait_for(lambda: len(done_at) == n, timeout=120)
        elapsed = max(done_at) - t0 if done_at else float("nan")
        completed = len(done_at)
    cpu = cpu_seconds() - cpu0
    release.set()
    for t in threads:
        t.join(timeout=30)
    return {"clients": n, "completed": completed, "seconds": elapsed, "client_cpu": cpu,
            "errors": len(errors), "first_errors": errors[:3]}


# ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("mkfile")
    p.add_argument("path")
    p.add_argument("size", type=int)
    p = sub.add_parser("wait-listening")
    p.add_argument("ports", type=int, nargs="+")
    p = sub.add_parser("ceiling-server")
    p.add_argument("--port", type=int, default=20070)
    p.add_argument("--dir", required=True)
    p = sub.add_parser("login-bare-server")
    p.add_argument("--port", type=int, default=20062)
    p = sub.add_parser("pyftpd-server")
    p.add_argument("--port", type=int, default=2121)
    p.add_argument("--root", required=True)
    p.add_argument("--user", default="bench")
    p.add_argument("--password", default="bench")
    p.add_argument("--fsync", action="store_true", help="fsync every upload before the 226")
    for name in ("transfer", "logins"):
        p = sub.add_parser(name)
        p.add_argument("kind", choices=sorted(CLIENTS) if name == "transfer" else ["ours", "pyftpd", "bare"])
        if name == "transfer":
            p.add_argument("op", choices=["get", "put"])
            p.add_argument("--remote", required=True, help="file name on the server")
            p.add_argument("--local", help="source of a put / destination of a verified get")
            p.add_argument("--mode", choices=["discard", "verified", "prepass", "writeback"], default="verified",
                           help="get: drop the bytes (like the ceiling) or write+sha256+fsync them; "
                                "put: verified = sha256 while sending (protocol 2), prepass = sha256 "
                                "before sending (protocol 1); ceiling put: writeback = the server starts "
                                "the disk every 4 MiB")
            p.add_argument("--count", type=int, default=1, help="transfers on one session")
            p.add_argument("--digest", help="expected sha256 (checked outside the clock)")
        else:
            p.add_argument("--clients", type=int, default=300)
        p.add_argument("--host", default="ftpbench-server")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--user", default="bench")
        p.add_argument("--password", default="bench")
    args = parser.parse_args(argv)
    if args.command == "mkfile":
        print(make_file(args.path, args.size))
    elif args.command == "wait-listening":
        wait_listening(args.ports)
    elif args.command == "ceiling-server":
        ceiling_server(args.port, args.dir)
    elif args.command == "login-bare-server":
        login_bare_server(args.port)
    elif args.command == "pyftpd-server":
        pyftpd_server(args.port, args.root, args.user, args.password, args.fsync)
    elif args.command == "transfer":
        print(json.dumps(transfer(args)))
    else:
        print(json.dumps(logins(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
