"""The FTP exercise's client: a library (FtpClient) and an interactive shell on top of it.

    python3 -m ftp.client --host ftp-server --port 20060 --user alice          (asks the password)
    ftp alice:/> put notes.txt
    put notes.txt  100% [########################]  12.0 KiB / 12.0 KiB  1.2 MiB/s  ETA 0:00:00
    226 /notes.txt stored, sha256 verified
    ftp alice:/> ls

    python3 -m ftp.client --user alice --password wonderland -c "mkdir docs; cd docs; put a.txt; ls"

The library is what the probes, tests and benchmark use::

    with FtpClient("ftp-server", 20060) as ftp:
        ftp.login("alice", "wonderland")
        ftp.put("big.bin", progress=lambda done, total: ...)
        ftp.get("big.bin", "copy.bin")

Everything on the wire goes through the same sans-IO FtpConnection as the server's, so the
client cannot send a command at the wrong moment: the seed's client could (put with a missing
local file sent nothing while the server waited for a header, and the next command was read as
one). Here a put checks the local file *before* saying anything, and the state machine refuses
out-of-turn messages locally.

The shell never exits on a mistake: a missing local file, a wrong password (asked again), an
unknown command, a non-UTF-8 or over-long line, Ctrl-C (cancels a transfer, keeps the session;
a second Ctrl-C at the prompt leaves), a server that went away (it reconnects and logs in again
at the next command, or on ``open``). ``-c`` scripts stop at the first failed command, status 1.

Resume (断点续传) is automatic: an interrupted download leaves ``.<name>.part`` (+ ``.part.json``
with the file's size and digest) next to the destination; the next get of the same file asks
for the rest only. An interrupted upload is resumed by the server: put the same file again.
"""
from __future__ import annotations

import argparse
import cmd
import functools
import getpass
import hashlib
import json
import mmap
import os
import shlex
import socket
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from framing.codec import NEED_DATA
from ftp.auth import client_proof, expected_server_signature, new_nonce, salted_key
from ftp.protocol import (
    CHUNK_SIZE,
    COMMANDS,
    DEFAULT_ALGORITHM,
    DEFAULT_PORT,
    DIGEST_ALGORITHMS,
    KDF_NAME,
    MAX_LOGIN_ATTEMPTS,
    MAX_PATH_CHARS,
    PART_SUFFIX,
    SIDECAR_SUFFIX,
    TRAILER_FEATURE,
    Auth,
    Body,
    Cd,
    Code,
    EndOfBody,
    FtpConnection,
    Get,
    Help,
    Login,
    Ls,
    Mkdir,
    Noop,
    ProtocolError,
    Put,
    PutData,
    Pwd,
    Quit,
    Quota,
    Reply,
    Request,
    Rm,
    Role,
    State,
    Trailer,
)
from ftp.storage import HASH_IN_BACKGROUND, HashThreads, PartHasher, write_all

Progress = Callable[[int, int], None]     # progress(bytes_done, bytes_total)


class FtpError(Exception):
    """The server said no (``reply.code`` >= 400), or the transfer could not be verified."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply

    @property
    def code(self) -> int:
        return self.reply.code


class TransferCut(Exception):
    """Raised by put/get with ``cut_after``: we closed the connection on purpose mid-transfer."""

    def __init__(self, sent: int) -> None:
        super().__init__(f"connection cut on purpose after {sent} body bytes")
        self.sent = sent


@functools.lru_cache(maxsize=64)
def cached_salted_key(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    """scrypt is slow on purpose; a benchmark logging in 300 times pays for it once."""
    return salted_key(password, salt, n, r, p)


def file_digest(path: str, algo: str = DEFAULT_ALGORITHM) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algo).hexdigest()


CONTROL_BUFFER_SIZE = 16 * 1024
#: The threads that hash downloads while they arrive: one set for every FtpClient of the process,
#: started when all are busy and then kept (like the server's, see ftp/storage.py).
GET_HASH_THREADS = HashThreads()
STREAM_CHUNK = 1024 * 1024            # a put's unit of hashing and sending (protocol 2)


class FileMap:
    """A read-only memoryview of a whole file (mmap; an empty file is b""): a put hashes and
    sends straight from the page cache, without copying the file into a buffer first."""

    def __init__(self, f, size: int) -> None:
        self._map = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) if size else None
        if self._map is not None and hasattr(self._map, "madvise"):
            self._map.madvise(mmap.MADV_SEQUENTIAL)
        self.view = memoryview(self._map) if self._map is not None else memoryview(b"")

    def __enter__(self) -> memoryview:
        return self.view

    def __exit__(self, *exc: object) -> None:
        self.view.release()
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:      # a failed send left a slice with the hash thread: GC closes it
                pass


def _wait_and_release(job, chunk: memoryview) -> None:
    job.result()
    chunk.release()


def local_part_paths(local: str) -> tuple[str, str]:
    folder, name = os.path.split(os.path.abspath(local))
    return os.path.join(folder, f".{name}{PART_SUFFIX}"), os.path.join(folder, f".{name}{SIDECAR_SUFFIX}")


# ---------------------------------------------------------------------------------------------
# The library
# ---------------------------------------------------------------------------------------------

class FtpClient:
    """One session with the server. Every method returns the final Reply or raises FtpError."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, *, timeout: float = 30.0,
                 connect: bool = True) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.conn = FtpConnection(Role.CLIENT)
        # Replies are small: 16 KiB serve them. The 256 KiB buffer for download bodies is made
        # when the first body arrives (300 clients that only log in do not pay 75 MiB for it).
        self.control = memoryview(bytearray(CONTROL_BUFFER_SIZE))
        self.bulk: memoryview | None = None
        self.lender: PartHasher | None = None     # during a get: lends the buffers bodies go into
        self.hash_thread: ThreadPoolExecutor | None = None
        self.greeting: Reply | None = None
        self.user: str | None = None
        if connect:
            self.connect()

    # --- connection -------------------------------------------------------------------------

    def connect(self) -> Reply:
        """Connect and read the greeting: 220, or 421 when the server is full (FtpError)."""
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.greeting = self.read_reply()
        if self.greeting.code != Code.SERVICE_READY:
            self.close()
            raise FtpError(self.greeting)
        return self.greeting

    @property
    def streams_digest(self) -> bool:
        """Protocol 2: the server takes the digest in a trailer after the body, so a put reads
        the file once. A version-1 server (a student's, say) gets the digest up front."""
        fields = self.greeting.fields if self.greeting is not None else {}
        version = fields.get("version")
        features = fields.get("features")
        return (type(version) is int and version >= 2 and isinstance(features, list)  # noqa: E721
                and TRAILER_FEATURE in features)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.hash_thread is not None:
            self.hash_thread.shutdown(wait=False)
            self.hash_thread = None

    def abort(self) -> None:
        """Give up the connection at once (Ctrl-C): RST instead of FIN, so the bytes still queued
        in our send buffer are thrown away rather than delivered, and the server learns of it now,
        not after it has read them all (on a slow link that could be seconds, during which it still
        holds the upload)."""
        if self.sock is not None:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.close()

    def cut(self) -> None:
        """Stop mid-transfer like a client that crashed, but deterministically: send FIN
        (shutdown), then wait until the server closes its side too. Its EOF tells us the server
        has finished with the interrupted transfer (kept the .part), so a resume can follow at
        once. Reading until b'' is synchronising on the peer's state, not sleeping."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
        self.close()

    def __enter__(self) -> FtpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.sock is not None and self.conn.state.state in (State.READY, State.CONNECTED):
                self.quit()
        except (OSError, FtpError, ProtocolError, EOFError):
            pass
        self.close()

    # --- frames in and out --------------------------------------------------------------------

    def send(self, request: Request, body_size: int = 0) -> None:
        self.sock.sendall(self.conn.send(request, body_size=body_size))

    def next_event(self):
        while True:
            event = self.conn.next_event()
            if event is not NEED_DATA:
                return event
            buffer = self.control
            if self.conn.in_body and self.lender is not None:
                buffer = self.lender.buffer()       # hashed from there while we receive the next
            elif self.conn.in_body:
                if self.bulk is None:
                    self.bulk = memoryview(bytearray(CHUNK_SIZE))
                buffer = self.bulk
            n = self.sock.recv_into(buffer)
            self.conn.receive_data(buffer[:n])

    def read_reply(self) -> Reply:
        event = self.next_event()
        if not isinstance(event, Reply):
            raise ProtocolError(Code.SYNTAX_ERROR, f"expected a reply, got {event!r}")
        return event

    def request(self, request: Request, *, check: bool = True) -> Reply:
        """Send one request and return its final reply (FtpError for 4xx/5xx when ``check``)."""
        self.send(request)
        reply = self.read_reply()
        if reply.code == Code.SERVICE_UNAVAILABLE:
            self.close()
        if check and not reply.ok:
            raise FtpError(reply)
        return reply

    # --- logging in ---------------------------------------------------------------------------

    def login(self, user: str, password: str) -> Reply:
        """Challenge-response: the password itself never leaves this machine (see ftp/auth.py)."""
        cnonce = new_nonce()
        challenge = self.request(Login(user, cnonce))
        if challenge.get_str("kdf") != KDF_NAME:
            raise ProtocolError(Code.BAD_ARGUMENTS, f"unsupported kdf {challenge.fields.get('kdf')!r}")
        salt = bytes.fromhex(challenge.get_str("salt"))
        n, r, p = (challenge.get_int(k, low=1, high=1 << 30) for k in ("n", "r", "p"))
        snonce = challenge.get_str("snonce")
        salted = cached_salted_key(password, salt, n, r, p)
        welcome = self.request(Auth(client_proof(salted, user, cnonce, snonce)))
        # Mutual authentication: only a server that holds our verifier can compute this.
        expected = expected_server_signature(salted, user, cnonce, snonce)
        if welcome.get_str("server_signature", default="") != expected:
            self.close()
            raise FtpError(Reply(Code.NOT_LOGGED_IN, "the server's signature is wrong: not the real server?"))
        self.user = user
        return welcome

    # --- simple commands ----------------------------------------------------------------------

    def pwd(self) -> str:
        return self.request(Pwd()).get_str("path")

    def cd(self, path: str) -> str:
        return self.request(Cd(path)).get_str("path")

    def ls(self, path: str = ".", max_pages: int = 1000) -> list[dict]:
        """Every entry, page after page (a big directory does not fit one reply header)."""
        reply = self.request(Ls(path))
        entries = list(reply.fields.get("entries", []))
        for _ in range(max_pages):
            after = reply.fields.get("continue_after")
            if not reply.fields.get("truncated") or not isinstance(after, str):
                break
            reply = self.request(Ls(path, after=after))
            entries += reply.fields.get("entries", [])
        return entries

    def mkdir(self, path: str) -> Reply:
        return self.request(Mkdir(path))

    def rm(self, path: str) -> Reply:
        return self.request(Rm(path))

    def quota(self) -> dict:
        reply = self.request(Quota())
        return {k: reply.get_int(k) for k in ("used", "reserved", "limit", "free")}

    def help(self) -> dict:
        return dict(self.request(Help()).fields.get("commands", {}))

    def noop(self) -> Reply:
        return self.request(Noop())

    def quit(self) -> Reply:
        reply = self.request(Quit(), check=False)
        self.close()
        return reply

    # --- upload -----------------------------------------------------------------------------

    def put(self, local: str, remote: str | None = None, *, overwrite: bool = True,
            algo: str = DEFAULT_ALGORITHM, progress: Progress | None = None,
            cut_after: int | None = None, on_accept: Callable[[Reply], None] | None = None) -> Reply:
        """Upload ``local``; the server tells us where to start (0, or the end of an earlier part).
        ``on_accept(reply)`` sees the server's 350 (with its offset) before any file byte goes.

        Protocol 2 (the server's greeting offers "digest-trailer"): the file is read once, hashed
        while it is sent, and its digest follows the body in a trailer. Protocol 1: the digest
        goes in the put, so the file is hashed first and then sent (read twice)."""
        remote = remote or os.path.basename(local)
        with open(local, "rb") as f:                  # no local file: nothing was sent (no desync)
            size = os.fstat(f.fileno()).st_size
            if self.streams_digest:
                accepted = self.request(Put(remote, size, None, algo, overwrite, trailer=True))
                digest = self._stream_file(f, size, accepted, algo, progress, cut_after, on_accept)
            else:
                digest = hashlib.file_digest(f, algo).hexdigest()
                accepted = self.request(Put(remote, size, digest, algo, overwrite))
                offset = accepted.get_int("offset", high=size)
                if on_accept is not None:
                    on_accept(accepted)
                count = size - offset
                if cut_after is not None:
                    count = min(count, cut_after)
                self.send(PutData(offset), body_size=size - offset)
                sent = self._send_file(f, offset, count, size, progress)
                if cut_after is not None and sent < size - offset:
                    self.cut()              # FIN after `sent` bytes: the server keeps exactly those
                    raise TransferCut(sent)
        done = self.read_reply()
        if not done.ok:
            raise FtpError(done)
        if done.get_str("digest") != digest:
            raise FtpError(Reply(Code.LOCAL_ERROR,
                                 f"server stored digest {done.fields.get('digest')}, ours is {digest}"))
        return done

    def _stream_file(self, f, size: int, accepted: Reply, algo: str, progress: Progress | None,
                     cut_after: int | None, on_accept: Callable[[Reply], None] | None) -> str:
        """Protocol 2's one pass: each 1 MiB of the file (mapped, not copied) is hashed on a second
        thread while this one sends it with sendfile (hashlib and sendfile release the GIL: two
        cores work).
        A resume first hashes the bytes the server has and compares with its part_digest; if the
        part is not the start of our file, we send everything from 0. Returns the digest."""
        offset = accepted.get_int("offset", high=size)
        hasher = hashlib.new(algo)
        with FileMap(f, size) as view:
            if offset:
                for start in range(0, offset, STREAM_CHUNK):
                    hasher.update(view[start:min(offset, start + STREAM_CHUNK)])
                if hasher.hexdigest() != accepted.get_str("part_digest", default=""):
                    offset, hasher = 0, hashlib.new(algo)   # not our file's beginning: start over
            if on_accept is not None:
                on_accept(Reply(accepted.code, accepted.msg, {**accepted.fields, "offset": offset}))
            count = size - offset if cut_after is None else min(size - offset, cut_after)
            self.send(PutData(offset), body_size=size - offset)
            if progress:
                progress(offset, size)
            if self.hash_thread is None:
                self.hash_thread = ThreadPoolExecutor(1, thread_name_prefix="ftp-client-hash")
            hashing: deque = deque()             # (job, chunk) being hashed
            for start in range(offset, offset + count, STREAM_CHUNK):
                chunk = view[start:min(offset + count, start + STREAM_CHUNK)]
                hashing.append((self.hash_thread.submit(hasher.update, chunk), chunk))
                self._send_exactly(f, start, len(chunk))
                while len(hashing) > 1:          # the hash may lag one chunk behind the socket
                    _wait_and_release(*hashing.popleft())
                if progress:
                    progress(start + len(chunk), size)
            while hashing:
                _wait_and_release(*hashing.popleft())
            if cut_after is not None and count < size - offset:
                self.cut()                       # FIN after `count` bytes: the server keeps those
                raise TransferCut(count)
        digest = hasher.hexdigest()
        self.send(Trailer(digest))
        return digest

    def _send_exactly(self, f, offset: int, count: int) -> None:
        """``count`` bytes of the file from ``offset``, by sendfile: the kernel copies them from
        the page cache to the socket (the hash thread reads the same pages through the map)."""
        if self.sock.sendfile(f, offset, count) != count:
            raise ConnectionError("sendfile sent less than asked: the file shrank while it was sent?")

    def _send_file(self, f, offset: int, count: int, size: int, progress: Progress | None) -> int:
        """socket.sendfile in slices of a few MiB, so the progress bar can move."""
        sent, step = 0, 1024 * 1024 if progress else count
        if progress:
            progress(offset, size)
        while sent < count:
            n = self.sock.sendfile(f, offset + sent, min(step, count - sent))
            if n == 0:
                raise ConnectionError("sendfile sent nothing: the file shrank?")
            sent += n
            if progress:
                progress(offset + sent, size)
        return sent

    # --- download -----------------------------------------------------------------------------

    def get(self, remote: str, local: str | None = None, *, resume: bool = True,
            algo: str = DEFAULT_ALGORITHM, progress: Progress | None = None,
            cut_after: int | None = None) -> Reply:
        """Download into ``local`` via ``.<name>.part``; continue an earlier part if it matches."""
        local = local or os.path.basename(remote.rstrip("/")) or "download"
        part, sidecar = local_part_paths(local)
        offset, if_digest = (self._resumable(part, sidecar, remote, algo) if resume else (0, None))
        self.send(Get(remote, offset, algo, if_digest))
        opening = self.read_reply()
        if not opening.ok:
            raise FtpError(opening)
        size = opening.get_int("file_size")
        start = opening.get_int("offset", high=offset)   # the server may restart us at 0
        digest = opening.get_str("digest")
        with open(sidecar, "w", encoding="utf-8") as meta:
            json.dump({"path": remote, "file_size": size, "algo": algo, "digest": digest}, meta)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)
        hasher: PartHasher | None = None
        got: str | None = None
        try:
            os.ftruncate(fd, start)
            os.lseek(fd, start, os.SEEK_SET)
            # The bytes we already had count too: they are read back and hashed first. Then each
            # buffer is hashed on a second thread while this one receives into the next: receive
            # + write on one core, sha256 on the other (both release the GIL).
            hasher = PartHasher(part, algo, old=start,
                                threads=GET_HASH_THREADS if size - start >= HASH_IN_BACKGROUND else None)
            self.lender = hasher if hasher.lends_buffers else None
            received = self._receive_file(fd, hasher, start, size, progress, cut_after)
            os.fsync(fd)
            if start + received == size:
                got = hasher.finish()
        finally:
            self.lender = None
            if hasher is not None and got is None:
                hasher.stop()
            os.close(fd)
        if got is None:           # cut_after stopped it early: a crash on purpose (--cut-after)
            self.close()
            raise TransferCut(received)
        done = self.read_reply()
        if not done.ok:
            raise FtpError(done)
        if got != digest:
            os.unlink(part)
            os.unlink(sidecar)
            raise FtpError(Reply(Code.LOCAL_ERROR, f"{algo} mismatch: got {got}, "
                                 f"expected {digest}; the partial file was deleted"))
        os.replace(part, local)           # only a verified file gets the real name
        os.unlink(sidecar)
        fields = {**done.fields, **opening.fields, "local": local, "resumed_from": start}
        return Reply(done.code, done.msg, fields)

    @staticmethod
    def _resumable(part: str, sidecar: str, remote: str, algo: str) -> tuple[int, str | None]:
        try:
            with open(sidecar, encoding="utf-8") as f:
                meta = json.load(f)
            have = os.path.getsize(part)
        except (OSError, ValueError):
            return 0, None
        if not isinstance(meta, dict) or meta.get("algo") != algo or meta.get("path") != remote:
            return 0, None
        if not isinstance(meta.get("digest"), str) or have > meta.get("file_size", -1):
            return 0, None
        return have, meta["digest"]

    def _receive_file(self, fd: int, hasher: PartHasher, start: int, size: int, progress: Progress | None,
                      cut_after: int | None) -> int:
        received, limit = 0, cut_after if cut_after is not None else size
        if progress:
            progress(start, size)
        if size == start:
            return 0
        while True:
            event = self.next_event()
            if isinstance(event, EndOfBody):
                return received
            if not isinstance(event, Body):
                raise ProtocolError(Code.SYNTAX_ERROR, f"expected file bytes, got {event!r}")
            data = event.data[:limit - received]
            write_all(fd, data)
            hasher.advance(data)
            received += len(data)
            if progress:
                progress(start + received, size)
            if received >= limit and start + received < size:
                return received        # cut_after reached: stop reading, the caller closes


# ---------------------------------------------------------------------------------------------
# Progress bar (进度条): throttled to 10 updates a second, on stderr
# ---------------------------------------------------------------------------------------------

class ProgressBar:
    """``ProgressBar("put a.bin")`` is a progress callback. The seed redrew its bar for every
    8-byte recv: 130 000 terminal writes per MiB, slower than the transfer itself."""

    def __init__(self, label: str, stream=None, width: int = 24, interval: float = 0.1) -> None:
        self.label, self.stream, self.width, self.interval = label, stream or sys.stderr, width, interval
        self.started = time.monotonic()
        self.first: int | None = None
        self.last_draw = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = done            # a resume starts part-way: measure the rate from there
        if done < total and now - self.last_draw < self.interval:
            return
        self.last_draw = now
        fraction = done / total if total else 1.0
        filled = int(self.width * fraction)
        elapsed = max(now - self.started, 1e-6)
        rate = (done - self.first) / elapsed
        eta = (total - done) / rate if rate > 0 else 0
        line = (f"\r{self.label}  {fraction:4.0%} [{'#' * filled}{'.' * (self.width - filled)}]  "
                f"{human(done)} / {human(total)}  {human(rate)}/s  ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        self.stream.write(line + ("\n" if done >= total else ""))
        self.stream.flush()


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# The interactive shell: it explains a student's mistake and goes on, whatever it was
# ---------------------------------------------------------------------------------------------

SHELL_COMMANDS = ["ls", "cd", "pwd", "mkdir", "rm", "put", "get", "quota", "help", "quit"]
LOCAL_COMMANDS = [("lpwd", "this machine's current directory"),
                  ("lls [DIR]", "list a directory on this machine"),
                  ("lcd DIR", "change this machine's directory (where put reads, get writes)"),
                  ("open [HOST [PORT]]", "connect (again) and log in")]
MAX_LINE_BYTES = MAX_PATH_CHARS + 200     # a path argument plus a command and its options
LOGIN_ATTEMPTS = MAX_LOGIN_ATTEMPTS       # the server closes the session after this many


class LocalError(Exception):
    """Something on this machine is wrong (no such file, a folder we cannot write); nothing was sent."""


class Disconnected(Exception):
    """The server went away (or we cut the connection); the next command reconnects."""


BUSY_WAIT = 5.0   # seconds put waits for the server to let go of an upload we interrupted


class FtpShell(cmd.Cmd):
    """ls, cd, pwd, mkdir, rm, put, get, quota, help, quit; lpwd, lls, lcd, open on this machine.

    The shell keeps the login it was given, so when the connection is lost (the server restarted,
    a demonstration ``--cut-after``, a cancelled transfer) it reconnects and logs in again by
    itself, at the next command or on ``open``."""

    def __init__(self, client: FtpClient, *, show_progress: bool = True, password: str | None = None,
                 stdout=None) -> None:
        super().__init__(stdout=stdout)
        self.client = client
        self.host, self.port = client.host, client.port
        self.user = client.user
        self.password = password
        self.show_progress = show_progress
        self.failures = 0
        self.last_ok = True
        self.cwd = "/"
        self.interrupted = False           # we broke off a transfer: the server may still be closing it
        self.update_prompt()

    # --- the session ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.client.sock is not None and self.client.user is not None

    def update_prompt(self) -> None:
        if self.connected:
            try:
                self.cwd = self.client.pwd()
            except (FtpError, OSError, ProtocolError, EOFError):
                self.drop()
        state = "" if self.connected else " (disconnected)"
        self.prompt = f"ftp {self.user}:{self.cwd}{state}> "

    def drop(self) -> None:
        try:
            self.client.close()
        except OSError:
            pass
        self.client.sock = None

    def reconnect(self) -> None:
        """A new connection, the same login; and back to the directory we were in."""
        if self.password is None:
            raise Disconnected("not connected, and no password to log in again with; use open")
        self.drop()
        client = FtpClient(self.host, self.port)
        client.login(self.user, self.password)
        self.client = client
        if self.cwd != "/":
            try:
                client.cd(self.cwd)
            except FtpError:
                self.cwd = "/"
        print(f"(reconnected to {self.host}:{self.port} and logged in as {self.user} again)")

    # --- one command --------------------------------------------------------------------------

    def onecmd(self, line: str) -> bool:
        self.last_ok = False
        line = line.strip()
        if len(line.encode("utf-8", "surrogateescape")) > MAX_LINE_BYTES:
            print(f"that line is {len(line.encode('utf-8', 'surrogateescape'))} bytes; the server "
                  f"accepts paths of up to {MAX_PATH_CHARS} characters, so nothing was sent")
            self.failures += 1
            return False
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            print("that line is not valid UTF-8 (your terminal's encoding?); nothing was sent")
            self.failures += 1
            return False
        word = line.split()[0] if line else ""
        try:
            if word and word not in ("quit", "exit", "EOF", "open", "help", "?") \
                    and hasattr(self, f"do_{word}") and word not in ("lpwd", "lls", "lcd") \
                    and not self.connected:
                self.reconnect()
            stop = bool(super().onecmd(line))
            self.last_ok = True
            return stop
        except FtpError as exc:
            print(exc)
            if exc.code == Code.SERVICE_UNAVAILABLE or self.client.sock is None:
                self.drop()
                print("(the server closed the session; the next command reconnects)")
        except TransferCut as exc:
            print(f"{chr(10) if self.show_progress else ''}{exc} (a demonstration of a crash); "
                  "run the same command again to resume")
            self.interrupted = True
            self.drop()
            self._reconnect_quietly()
        except LocalError as exc:
            print(f"local error: {exc}; nothing was sent")
        except Disconnected as exc:
            print(exc)
        except _Failed:
            pass
        except KeyboardInterrupt:
            print("\ncancelled; the bytes so far are kept: run the same command again to resume")
            self.client.abort()
            self.interrupted = True
            self.drop()
            self._reconnect_quietly()
        except (ProtocolError, ValueError) as exc:
            print(f"error: {exc}")
        except (OSError, EOFError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
            print(f"the server went away ({reason}); the next command (or open) reconnects")
            self.drop()
        self.failures += 1
        return False

    def _reconnect_quietly(self) -> None:
        try:
            self.reconnect()
        except (FtpError, OSError, ProtocolError, EOFError, Disconnected) as exc:
            print(f"(could not reconnect yet: {exc}; the next command tries again)")

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> bool:
        print(f"unknown command {line.split()[0]!r}; type help for the list")
        raise _Failed

    def completenames(self, text, *ignored):
        return [n for n in [*SHELL_COMMANDS, "lpwd", "lls", "lcd", "open"] if n.startswith(text)]

    def _progress(self, label: str, seen: list[int]) -> Progress:
        bar = ProgressBar(label) if self.show_progress else None

        def progress(done: int, total: int) -> None:
            if not seen:
                seen.append(done)          # the first call says where the transfer starts
            if bar is not None:
                bar(done, total)
        return progress

    def cmdloop_safely(self, intro: str) -> None:
        """cmd.Cmd.cmdloop, plus: Ctrl-C at the prompt asks, a second one leaves; no traceback."""
        print(intro)
        interrupted = False
        while True:
            try:
                line = input(self.prompt)
            except EOFError:
                line = "EOF"
            except KeyboardInterrupt:
                if interrupted:
                    print()
                    self.do_quit("")
                    return
                print("\n(Ctrl-C again or quit to leave)")
                interrupted = True
                continue
            except UnicodeDecodeError:
                print("that line is not valid UTF-8; nothing was sent")
                continue
            interrupted = False
            if self.onecmd(line):
                return
            self.update_prompt()

    # --- the commands -------------------------------------------------------------------------

    def do_ls(self, arg: str) -> None:
        for e in self.client.ls(arg.strip() or "."):
            size = str(e.get("size", 0))
            if e["type"] == "partial":        # an unfinished upload: bytes so far / announced size
                size += f"/{e.get('file_size')}"
            print(f"{e['type']:<8} {size:>14}  {e['name']}{'/' if e['type'] == 'dir' else ''}")

    def do_cd(self, arg: str) -> None:
        self.cwd = self.client.cd(arg.strip() or "/")
        print(self.cwd)

    def do_pwd(self, arg: str) -> None:
        print(self.client.pwd())

    def do_mkdir(self, arg: str) -> None:
        print(self.client.mkdir(_one_path("mkdir", arg)))

    def do_rm(self, arg: str) -> None:
        print(self.client.rm(_one_path("rm", arg)))

    def do_quota(self, arg: str) -> None:
        q = self.client.quota()
        print(f"used {human(q['used'])} + reserved {human(q['reserved'])} of {human(q['limit'])}; "
              f"free {human(q['free'])}")

    def do_put(self, arg: str) -> None:
        """put LOCAL [REMOTE] [-n] [--cut-after N]"""
        args = _transfer_args("put", arg)
        try:                                   # check the local file before saying anything
            with open(args.source, "rb"):
                pass
        except OSError as exc:
            raise LocalError(f"cannot read {args.source!r} here ({os.getcwd()}): {exc.strerror}; "
                             "lls lists this machine's files") from None
        if os.path.isdir(args.source):
            raise LocalError(f"{args.source!r} is a directory; put sends one file")
        seen: list[int] = []

        def accepted(reply: Reply) -> None:
            if reply.fields.get("offset"):
                print(reply)                   # 350 send ... bytes from offset N: a resume

        # Right after we broke off an upload, the server's old session may not have read to the end
        # of it yet and still holds the file (450): wait for it a little, bounded, then say so.
        deadline = time.monotonic() + (BUSY_WAIT if self.interrupted else 0)
        while True:
            try:
                reply = self.client.put(args.source, args.dest, overwrite=not args.no_clobber,
                                        progress=self._progress(f"put {args.source}", seen),
                                        cut_after=args.cut_after, algo=args.algo, on_accept=accepted)
                break
            except FtpError as exc:
                if exc.code != Code.FILE_BUSY or time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
        self.interrupted = False
        print(reply)

    def do_get(self, arg: str) -> None:
        """get REMOTE [LOCAL] [--restart] [--cut-after N]"""
        args = _transfer_args("get", arg)
        local = _writable_destination(args.source, args.dest)
        seen: list[int] = []
        done = self.client.get(args.source, local, resume=not args.restart,
                               progress=self._progress(f"get {args.source}", seen),
                               cut_after=args.cut_after, algo=args.algo)
        start = done.fields.get("resumed_from")
        resumed = f" (resumed from byte {start})" if start else ""
        print(f"{done}{resumed} -> {done.fields['local']}")

    def do_lpwd(self, arg: str) -> None:
        print(os.getcwd())

    def do_lls(self, arg: str) -> None:
        try:
            for name in sorted(os.listdir(arg.strip() or ".")):
                print(name)
        except OSError as exc:
            raise LocalError(f"cannot list {arg.strip() or '.'!r}: {exc.strerror}") from None

    def do_lcd(self, arg: str) -> None:
        target = os.path.expanduser(arg.strip() or "~")
        try:
            os.chdir(target)
        except OSError as exc:
            raise LocalError(f"cannot change to {target!r}: {exc.strerror}") from None
        print(os.getcwd())

    def do_open(self, arg: str) -> None:
        words = arg.split()
        if words:
            self.host = words[0]
        if len(words) > 1:
            try:
                self.port = int(words[1])
            except ValueError:
                raise ValueError(f"usage: open [HOST [PORT]] (port {words[1]!r} is not a number)") from None
        if self.password is None:
            self.password = ask_password(self.user)
        self.cwd = "/"
        self.reconnect()

    def do_help(self, arg: str) -> None:
        for op in SHELL_COMMANDS:
            usage, text = COMMANDS[op]
            print(f"  {usage:<20} {text}")
        for usage, text in LOCAL_COMMANDS:
            print(f"  {usage:<20} {text}")

    def do_quit(self, arg: str) -> bool:
        if self.client.sock is not None:
            try:
                print(self.client.quit())
            except (OSError, FtpError, ProtocolError, EOFError):
                pass
        self.drop()
        return True

    do_exit = do_quit

    def do_EOF(self, arg: str) -> bool:  # noqa: N802 - cmd.Cmd's name for Ctrl-D
        print()
        return self.do_quit(arg)


class _Failed(Exception):
    """A command that explained its own failure (unknown command)."""


def _one_path(command: str, arg: str) -> str:
    path = arg.strip()
    if not path:
        raise ValueError(f"usage: {COMMANDS[command][0]}")
    return path


def _writable_destination(remote: str, local: str | None) -> str:
    """Where a download goes: LOCAL, else the remote name in the current directory, or in /tmp
    when the current directory is read-only (and we say so)."""
    name = local or os.path.basename(remote.rstrip("/")) or "download"
    folder = os.path.dirname(os.path.abspath(name))
    if os.access(folder, os.W_OK):
        return name
    if local:
        raise LocalError(f"cannot write into {folder}: read-only here; lcd to a folder you can write")
    fallback = os.path.join(tempfile.gettempdir(), os.path.basename(name))
    print(f"({folder} is read-only: downloading to {fallback}; lcd to choose another folder)")
    return fallback


def _transfer_args(command: str, arg: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=command, add_help=False, exit_on_error=False)
    parser.add_argument("source")
    parser.add_argument("dest", nargs="?")
    parser.add_argument("--cut-after", type=int, help="fault injection: close after N body bytes")
    parser.add_argument("--algo", default=DEFAULT_ALGORITHM, choices=sorted(DIGEST_ALGORITHMS))
    parser.add_argument("-n", "--no-clobber", action="store_true", help="put: refuse to replace a file")
    parser.add_argument("--restart", action="store_true", help="get: ignore a local .part")
    try:
        return parser.parse_args(shlex.split(arg))
    except (argparse.ArgumentError, SystemExit) as exc:
        raise ValueError(f"usage: {COMMANDS[command][0]} [--cut-after N] ({exc})") from None


def ask_password(user: str) -> str:
    return getpass.getpass(f"password for {user}: ")


def interactive_login(host: str, port: int, user: str, password: str | None) -> tuple[FtpClient, str]:
    """Connect and log in; a wrong password asks again (the server allows LOGIN_ATTEMPTS per session)."""
    client = FtpClient(host, port)
    print(client.greeting)
    attempts = 0
    while True:
        secret = password if password is not None else ask_password(user)
        try:
            print(client.login(user, secret))
            return client, secret
        except FtpError as exc:
            print(exc)
            wrong = exc.code == Code.NOT_LOGGED_IN
            closed = exc.code == Code.SERVICE_UNAVAILABLE or client.sock is None
            if password is not None or not (wrong or closed):
                raise                              # a password from the command line: no prompt
            attempts += 1
            if closed or attempts >= LOGIN_ATTEMPTS:
                client.close()
                client = FtpClient(host, port)     # the server closes after 3: a new session
                print(f"(the server allows {LOGIN_ATTEMPTS} tries per session: connected again; "
                      "Ctrl-C to give up)")
                attempts = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="FTP exercise client (interactive, or -c for scripts)")
    parser.add_argument("--host", default="ftp-server")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--user", default=os.environ.get("FTP_USER", "alice"))
    parser.add_argument("--password", default=os.environ.get("FTP_PASSWORD"),
                        help="default: $FTP_PASSWORD, else ask (a wrong one asks again)")
    parser.add_argument("-c", "--commands", help='run "cmd; cmd; ..." and exit; stops at the first '
                        "failed command, with exit status 1")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for stream in (sys.stdin, sys.stdout):     # a stray non-UTF-8 byte is explained, not a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    try:
        client, password = interactive_login(args.host, args.port, args.user, args.password)
    except KeyboardInterrupt:
        print()
        return 130
    except (FtpError, OSError, ProtocolError, EOFError) as exc:
        print(f"cannot log in to {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    shell = FtpShell(client, show_progress=not args.no_progress and sys.stderr.isatty(), password=password)
    if args.commands is None:
        shell.show_progress = not args.no_progress
        try:
            shell.cmdloop_safely(f"logged in as {args.user}; type help")
        except KeyboardInterrupt:
            print()
        shell.drop()
        return 0
    for line in (c.strip() for c in args.commands.split(";")):
        if not line:
            continue
        print(f"{shell.prompt}{line}")
        stop = shell.onecmd(line)
        if not shell.last_ok:
            shell.do_quit("")
            return 1
        if stop:
            break
        shell.update_prompt()
    shell.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
