"""The FTP exercise's server: many users, homes, quotas, resume, a queue.Queue thread pool (seed §3).

    python3 -m ftp.server --port 20060 --root /srv/ftp
    listening on 0.0.0.0:20060

How it is built (read top to bottom):

    main thread:   accept() ──► a free slot? ──yes──► lobby: 220, login→331, auth→230 (selector, no worker)
                                    │                      │ first command, wrong password, junk, or 1 s
                                    │                      ▼
                                    │            jobs (queue.Queue) ──► worker 1..N: Session.run()
                                    no──► refusals (queue.Queue) ──► refuser thread: "421 too many sessions"

* **The pool** (线程池) is N worker threads that take sessions from a ``queue.Queue`` — the
  follow-up homework forbids socketserver and asks for exactly this. N is ``--max-sessions``
  (最大并发数): a semaphore counts admitted sessions, and a connection that finds no free slot
  is not left waiting but told so at once (421) and closed.
* **The lobby** is the accept thread's selector: it greets each new connection and answers its
  login (331) and a correct proof (230) without blocking, so a burst of logins does not wake
  hundreds of workers that fight over the GIL for three small messages each. A session leaves
  the lobby for a worker with its first real command (or a wrong password, junk, after 1 s): the
  worker applies every rule and deadline as if it had served the session from the start.
* **A Session** is one connection: it reads frames through the sans-IO ``FtpConnection``
  (ftp/protocol.py), asks the state machine (ftp/state.py) whether the op is allowed, and
  answers every request with exactly one reply. Bad input gets an error reply; bytes that
  cannot be trusted (a broken frame) get one last 500 and a close. Nothing a client sends
  can stop the other sessions.
* **Files** go through ftp/paths.py (confinement to the home) and ftp/storage.py (quotas,
  ``.part`` files, atomic rename). An OS error there (a name through a file, a full disk, a
  path too long) comes back as a reply through the one table in ftp/oserrors.py.
* **Deadlines** (all in the greeting's ``limits``): a session must log in within
  ``login_deadline``; between requests it may idle ``idle_timeout``; a started header must be
  complete within ``header_deadline``; a body must not stall for ``stall_timeout`` and must
  average ``min_body_rate`` bytes/s over every ``rate_window`` (a trickle is cut too). Each ends
  with a 421 and a clean close. Password guessing across sessions is slowed down per account
  and per address by ftp/throttle.py.
* **Streaming, O(1) memory**: an upload is read with ``recv_into`` into four reused 512 KiB
  buffers in turn and written with ``os.write`` as it comes, while a second thread hashes the
  same buffers (ftp/storage.py PartHasher: two cores, the GIL released by both); a download goes out
  with ``socket.sendfile`` (the kernel copies file → socket; no Python loop, no buffer).
* **Protocol 2's trailer**: a ``put`` with ``"trailer": true`` carries no digest; the digest
  comes in a ``trailer`` frame right after the body, and the 226 (or 451) answers both, so a
  client reads its file once. Version-1 puts (digest up front) are served as before.

Fault injection for the resume demo: ``--drop-after-bytes N`` cuts every download that starts
at offset 0 after N body bytes (a resumed download is not cut, so the demo ends).

On a root without users.json, the demo users alice, bob and alice2 are created (see the guide);
``--no-demo-users`` prevents that.
"""
from __future__ import annotations

import argparse
import os
import queue
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

from framing.codec import NEED_DATA
from ftp.auth import fake_verifier, new_nonce, server_signature, verify_proof
from ftp.oserrors import os_errors_as_replies, reply_for_os_error
from ftp.paths import Home
from ftp.protocol import (
    CHUNK_SIZE,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_PORT,
    DIGEST_ALGORITHMS,
    HEADER_DEADLINE,
    IDLE_TIMEOUT,
    LOGIN_DEADLINE,
    LOGIN_FAILURE_DELAY,
    MAX_LOGIN_ATTEMPTS,
    MIN_BODY_RATE,
    RATE_WINDOW,
    STALL_TIMEOUT,
    Abort,
    Auth,
    Body,
    Cd,
    Code,
    EndOfBody,
    FatalProtocolError,
    FtpConnection,
    Get,
    Help,
    Invalid,
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
    greeting,
    help_reply,
    listing_page,
    reply,
)
from ftp.storage import Allowance, Storage, StorageError, Upload
from ftp.throttle import LoginThrottle, ThrottlePolicy
from ftp.users import UserDb, ensure_demo_users, home_dir, server_secret


@dataclass
class ServerConfig:
    root: str
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    max_sessions: int = DEFAULT_MAX_SESSIONS
    idle_timeout: float = IDLE_TIMEOUT
    header_deadline: float = HEADER_DEADLINE
    stall_timeout: float = STALL_TIMEOUT
    login_deadline: float = LOGIN_DEADLINE
    min_body_rate: int = MIN_BODY_RATE
    rate_window: float = RATE_WINDOW
    login_delay: float = LOGIN_FAILURE_DELAY
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    drop_after_bytes: int | None = None
    demo_users: bool = True
    verbose: bool = True


@dataclass
class Stats:
    """Counters the tests and the benchmark read (``FtpServer.stats``)."""

    sessions: int = 0
    refused: int = 0
    logins: int = 0
    lobby_logins: int = 0          # of which the lobby answered without a worker (the fast path)
    failed_logins: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    uploads: int = 0
    downloads: int = 0
    throttled_logins: int = 0
    timeouts: int = 0
    internal_errors: int = 0
    errors: dict = field(default_factory=dict)


class SessionTimeout(TimeoutError):
    """A deadline of the session passed; ``str()`` is the sentence of the 421 that follows."""


class ReaderStalled(Exception):
    """A download's reader made no room for stall_timeout: close (no reply can follow mid-body)."""


class BodyPace:
    """The minimum rate of a body: at least ``rate × window`` bytes (or the rest of the body) in
    every window. A 60 s stall timeout alone lets a client keep a worker for ever by trickling
    one byte every 59 s; this does not."""

    def __init__(self, remaining: int, rate: int, window: float) -> None:
        self.rate, self.window = rate, window
        self._new_window(remaining)

    def _new_window(self, remaining: int) -> None:
        self.started = time.monotonic()
        self.got = 0
        self.need = min(remaining, max(1, int(self.rate * self.window)))

    def deadline(self) -> float:
        return self.started + self.window

    def count(self, n: int, remaining: int) -> None:
        """``n`` bytes arrived; ``remaining`` are still to come. SessionTimeout if too slow."""
        self.got += n
        if self.got >= self.need:
            self._new_window(remaining)
        elif time.monotonic() > self.deadline():
            self.too_slow()

    def too_slow(self) -> None:
        raise SessionTimeout(f"too slow: {self.got} bytes in {self.window:g} s, at least {self.need} needed "
                             f"({self.rate} bytes/s); closing (an upload keeps its part)")


CONTROL_BUFFER_SIZE = 16 * 1024
LISTEN_BACKLOG = 1024             # connections the kernel keeps waiting for accept()
LOBBY_PATIENCE = 1.0               # seconds a new connection may stay in the lobby before a worker takes it
GOODBYE_DRAIN = 1.0                 # seconds a closing session reads away what the client still sends
GOODBYE_DRAIN_BYTES = 1024 * 1024   # ... and at most this much

# ---------------------------------------------------------------------------------------------
# One session
# ---------------------------------------------------------------------------------------------

class Session:
    """One client connection, from the 220 greeting to the close."""

    def __init__(self, server: FtpServer, sock: socket.socket, address: tuple) -> None:
        self.server, self.sock, self.address = server, sock, address
        self.config = server.config
        self.conn = FtpConnection(Role.SERVER)
        # Requests are small: a 16 KiB buffer serves them. The 256 KiB buffer that keeps uploads
        # fast exists only while a body streams in, so 300 idle sessions cost 5 MiB, not 75 MiB.
        self.control = memoryview(bytearray(CONTROL_BUFFER_SIZE))
        self.bulk: memoryview | None = None
        self.user: str | None = None
        self.home: Home | None = None
        self.cwd = "/"
        self.challenge: tuple | None = None   # (user, cnonce, snonce, verifier, known)
        self.failed_logins = 0
        self.checked_proof: tuple[str, bool] | None = None   # (proof, right): verified once
        self.upload: Upload | None = None
        self.pace: BodyPace | None = None
        self.trailer_due: float | None = None  # protocol 2: when the trailer after a body must be in
        self.greeted = False
        self.header_started: float | None = None   # the first byte of a header, seen in the lobby
        self.lobby_replies = 0            # the lobby answers one login, then one auth
        self.held: object = None          # an event (or exception) the lobby left for the worker
        self.connected_at = self.lobby_since = time.monotonic()
        self.who = f"{address[0]}:{address[1]}"

    # --- the loop ---------------------------------------------------------------------------

    def greet(self) -> None:
        self.sock.sendall(self.server.greeting_bytes())   # a 220 moves no state machine
        self.greeted = True

    def step_in_lobby(self) -> bool:
        """The lobby's part of a session (non-blocking, in the accept thread): read what has
        arrived and answer a ``login`` and a *correct* ``auth``. Returns True when the session
        must go on in a worker: any other request came (held for the worker to handle, with every
        rule and delay of the normal path: the first command after the login, a wrong password,
        help, junk), or the connection failed."""
        try:
            n = self.sock.recv_into(self.control)
        except BlockingIOError:
            return False
        except OSError as exc:
            self.held = exc
            return True
        if n and self.header_started is None:
            self.header_started = time.monotonic()     # the header deadline runs from here
        self.conn.receive_data(self.control[:n])       # n == 0: end of stream
        while True:
            try:
                event = self.conn.next_event()
            except (FatalProtocolError, EOFError) as exc:
                self.held = exc
                return True
            if event is NEED_DATA:
                return False
            self.header_started = None
            try:
                if isinstance(event, Login) and not self.lobby_replies:
                    self.lobby_replies += 1
                    self.handle(event)                   # 331: the challenge (or 530 throttled)
                    continue
                if isinstance(event, Auth) and self.proof_is_right(event):
                    self.handle(event)                   # 230: logged in; a worker takes the next request
                    self.server.stats.lobby_logins += self.user is not None
                    continue
            except Exception as exc:    # noqa: BLE001 - the worker reports it; the lobby goes on
                self.held = exc
                return True
            self.held = event          # a wrong proof (it waits login_delay), help, noop, quit, junk
            return True

    def proof_is_right(self, req: Auth) -> bool:
        if self.challenge is None:
            return False
        name, cnonce, snonce, verifier, known = self.challenge
        self.checked_proof = (req.proof, known and verify_proof(verifier, req.proof, name, cnonce, snonce))
        return self.checked_proof[1]

    def run(self) -> None:
        try:
            if not self.greeted:
                self.greet()
            held, self.held = self.held, None
            if isinstance(held, BaseException):      # what the lobby met: handled as if met here
                raise held
            if held is not None and self.conn.state.state is not State.CLOSED:
                self.handle(held)
            while self.conn.state.state is not State.CLOSED:
                self.handle(self.next_event())
            self.close_cleanly()                  # after 221, or 421 for the third failed login
        except EOFError:
            self.log("client closed the connection")
        except FatalProtocolError as exc:
            self.log(f"protocol violation: {exc.msg}")
            self.say_goodbye(Code.SYNTAX_ERROR, f"{exc.msg}; closing the connection")
        except ReaderStalled as exc:
            self.server.stats.timeouts += 1
            self.log(str(exc))
            self.close_cleanly()               # mid-body: a 421 frame would read as file bytes
        except SessionTimeout as exc:
            self.server.stats.timeouts += 1
            self.log(f"timed out: {exc}")
            self.say_goodbye(Code.SERVICE_UNAVAILABLE, str(exc))
        except TimeoutError:
            self.server.stats.timeouts += 1
            self.log("timed out")
            self.say_goodbye(Code.SERVICE_UNAVAILABLE, "idle or stalled for too long; closing")
        except OSError as exc:
            self.log(f"connection error: {exc}")
        finally:
            self.abandon_upload()

    def next_event(self):
        """The next event, receiving as needed, with the right deadline for where we are."""
        started, self.header_started = self.header_started, None   # when a header's first byte arrived
        while True:
            event = self.conn.next_event()
            if event is not NEED_DATA:
                return event
            if not self.conn.in_body:
                self.pace = None
            elif self.pace is None:
                self.pace = BodyPace(self.conn.body_remaining, self.config.min_body_rate, self.config.rate_window)
            deadline, why = self.deadline(started)
            left = deadline - time.monotonic()
            if left <= 0:
                raise SessionTimeout(why)
            self.sock.settimeout(left)
            buffer = self.receive_buffer()
            try:
                n = self.sock.recv_into(buffer)
            except TimeoutError:
                raise SessionTimeout(why) from None
            if self.pace is not None:
                self.pace.count(n, self.conn.body_remaining - n)
            elif n and started is None:
                started = time.monotonic()
            # The decoder may keep a view of the buffer (no copy): every Body event is used up
            # (written to the file) before the next recv_into overwrites the buffer.
            self.conn.receive_data(buffer[:n])

    def deadline(self, header_started: float | None) -> tuple[float, str]:
        """(monotonic time, the 421's sentence) of the nearest deadline that applies now."""
        now, c = time.monotonic(), self.config
        if self.pace is not None:                            # a body must keep moving, fast enough
            candidates = [(now + c.stall_timeout, f"no body byte for {c.stall_timeout:g} s; closing "
                                                  f"(an upload keeps its part)"),
                          (self.pace.deadline(), "")]
        elif self.trailer_due is not None:                   # the upload's trailer: promptly
            candidates = [(self.trailer_due, f"no trailer frame within {c.header_deadline:g} s of the "
                                             f"body's end; closing (the upload keeps its part)")]
        elif header_started is not None:                     # a header has started: hurry
            candidates = [(header_started + c.header_deadline,
                           f"a request header took longer than {c.header_deadline:g} s; closing")]
        else:                                                # between requests: be patient
            candidates = [(now + c.idle_timeout, f"idle for {c.idle_timeout:g} s; closing")]
        if self.user is None:                                # ... but not for ever before a login
            candidates.append((self.connected_at + c.login_deadline,
                               f"log in within {c.login_deadline:g} s of connecting; closing"))
        deadline, why = min(candidates, key=lambda item: item[0])
        if not why:
            try:
                self.pace.too_slow()
            except SessionTimeout as exc:
                why = str(exc)
        return deadline, why

    def receive_buffer(self) -> memoryview:
        """While a body streams in: a buffer lent by the upload's hash thread (it hashes
        the bytes straight from there), else our own bulk buffer; the small one between requests."""
        if self.conn.in_body:
            hasher = self.upload.hasher if self.upload is not None else None
            if hasher is not None and hasher.lends_buffers:
                return hasher.buffer()
            if self.bulk is None:
                self.bulk = memoryview(bytearray(CHUNK_SIZE))
            return self.bulk
        self.bulk = None   # the transfer is over: give the memory back
        return self.control

    def send(self, message: Reply, body_size: int = 0) -> None:
        self.sock.sendall(self.conn.send(message, body_size=body_size))

    def say_goodbye(self, code: int, msg: str) -> None:
        """Best effort: one last reply, then a *clean* close (the peer may be gone already).

        After sending, shut down our side (FIN) and read away what the client already sent, for
        at most GOODBYE_DRAIN seconds and bytes: close() with unread bytes answers with a RST,
        and a RST can make the client's kernel throw away the very reply it has not read yet.
        """
        try:
            self.sock.settimeout(2)
            self.sock.sendall(self.conn.send(reply(code, msg)))
        except Exception:   # noqa: BLE001 - whatever goes wrong here, the session is over anyway
            return
        self.close_cleanly()

    def close_cleanly(self) -> None:
        """FIN first, then read away what the client still sends (bounded), so that the final
        reply is not lost to a RST. An upload in progress ends first (its part kept): a client
        that sees our FIN may at once resume it from another session."""
        self.abandon_upload()
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline, drained = time.monotonic() + GOODBYE_DRAIN, 0
            while drained < GOODBYE_DRAIN_BYTES and (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                chunk = self.sock.recv_into(self.control)
                if not chunk:
                    break
                drained += chunk
        except Exception:   # noqa: BLE001 - whatever goes wrong here, the session is over anyway
            pass

    def log(self, text: str) -> None:
        self.server.log(f"[{self.user or '-'}@{self.who}] {text}")

    # --- dispatch ---------------------------------------------------------------------------

    def handle(self, event) -> None:
        if isinstance(event, Invalid):
            self.server.count_error(event.error.code)
            self.send(reply(event.error.code, event.error.msg))
            if event.op == "data":
                self.abandon_upload()          # 501 to 'data' ends the upload (both sides agree)
            return
        if isinstance(event, (Body, EndOfBody)):   # pragma: no cover - do_data reads bodies
            raise FatalProtocolError("unexpected body bytes")
        handler = self.HANDLERS.get(type(event))
        try:
            handler(self, event)
        except FatalProtocolError:            # the stream is broken: run() says 500 and closes
            raise
        except ProtocolError as exc:          # PathError, StorageError...: refuse, carry on
            self.server.count_error(exc.code)
            if self.conn.in_body:
                self.skip_body()
            self.send(reply(exc.code, exc.msg))

    # --- logging in -------------------------------------------------------------------------

    def throttled(self, name: str, wait: float) -> None:
        """530 without checking anything: this account or address must wait (ftp/throttle.py)."""
        self.server.stats.throttled_logins += 1
        self.log(f"login for {name!r} throttled for {wait:.1f} s")
        seconds = max(1, int(wait + 0.999))
        self.send(reply(Code.NOT_LOGGED_IN, f"too many failed logins for this account or address; "
                        f"try again in {seconds} s", retry_after=seconds))

    def do_login(self, req: Login) -> None:
        self.challenge = None
        wait = self.server.throttle.retry_after(req.user, self.address[0])
        if wait > 0:
            return self.throttled(req.user, wait)
        user = self.server.users.get(req.user)
        # Unknown user: a fake verifier with a stable salt, and later the same "530 login
        # incorrect" as a wrong password. Nothing tells an attacker which names exist.
        verifier = user.verifier if user else fake_verifier(self.server.secret, req.user)
        snonce = new_nonce()
        self.challenge = (req.user, req.cnonce, snonce, verifier, user is not None)
        self.send(reply(Code.NEED_PROOF, "prove you know the password", user=req.user, snonce=snonce,
                        **verifier.challenge_fields()))

    def do_auth(self, req: Auth) -> None:
        name, cnonce, snonce, verifier, known = self.challenge
        self.challenge = None                  # a challenge is good for one try only
        wait = self.server.throttle.begin_attempt(name, self.address[0])
        if wait > 0:
            return self.throttled(name, wait)
        checked, self.checked_proof = self.checked_proof, None      # the lobby may have checked it
        right = checked[1] if checked is not None and checked[0] == req.proof else \
            verify_proof(verifier, req.proof, name, cnonce, snonce)
        if right and known:
            self.server.throttle.succeeded(name, self.address[0])
            with os_errors_as_replies("your home directory"):   # a full disk: 452, not a drop
                self.home = self.server.home_of(name)
            self.user, self.cwd = name, "/"
            self.server.stats.logins += 1
            self.log("logged in")
            self.send(reply(Code.LOGGED_IN, f"welcome, {name}", user=name, home="/",
                            server_signature=server_signature(verifier, name, cnonce, snonce)))
            return
        self.failed_logins += 1
        self.server.stats.failed_logins += 1
        self.log(f"failed login for {name!r} ({self.failed_logins}/{MAX_LOGIN_ATTEMPTS})")
        # The delay makes guessing slow (3 guesses cost seconds, not microseconds).
        time.sleep(self.config.login_delay)
        if self.failed_logins >= MAX_LOGIN_ATTEMPTS:
            self.send(reply(Code.SERVICE_UNAVAILABLE, f"{MAX_LOGIN_ATTEMPTS} failed logins; closing"))
            return
        self.send(reply(Code.NOT_LOGGED_IN, "login incorrect",
                        attempts_left=MAX_LOGIN_ATTEMPTS - self.failed_logins))

    # --- navigation ---------------------------------------------------------------------------

    def allowance(self) -> Allowance:
        user = self.server.users.get(self.user or "")
        if user is None:
            raise StorageError(Code.NOT_LOGGED_IN, "your account was removed")
        return Allowance(user.quota, user.max_entries)

    def do_pwd(self, req: Pwd) -> None:
        self.send(reply(Code.PATH_CREATED, f'"{self.cwd}" is the current directory', path=self.cwd))

    def do_cd(self, req: Cd) -> None:
        target = self.home.resolve(self.cwd, req.path)
        self.server.storage.check_directory(target)
        self.cwd = target.virtual
        self.send(reply(Code.FILE_ACTION_OK, f"directory is now {self.cwd}", path=self.cwd))

    def do_ls(self, req: Ls) -> None:
        target = self.home.resolve(self.cwd, req.path)
        entries = self.server.storage.list_dir(self.home, target)
        self.send(listing_page(target.virtual, entries, req.after))

    def do_mkdir(self, req: Mkdir) -> None:
        target = self.home.resolve(self.cwd, req.path)
        self.server.storage.make_dir(self.user, self.home, self.allowance(), target)
        self.send(reply(Code.PATH_CREATED, f'"{target.virtual}" created', path=target.virtual))

    def do_rm(self, req: Rm) -> None:
        target = self.home.resolve(self.cwd, req.path, follow_last=False)   # a link goes, not its target
        what = self.server.storage.remove(self.user, target)
        self.send(reply(Code.FILE_ACTION_OK, f"removed {what} {target.virtual}", path=target.virtual))

    def do_quota(self, req: Quota) -> None:
        used, reserved, entries = self.server.storage.full_usage(self.user, self.home)
        allowance = self.allowance()
        limit = allowance.bytes
        self.send(reply(Code.OK, f"{used} of {limit} bytes used, {entries} of {allowance.entries} entries",
                        used=used, reserved=reserved, limit=limit, free=max(0, limit - used - reserved),
                        entries=entries, max_entries=allowance.entries))

    # --- upload: put → 350 {offset} → data + body → 226 -----------------------------------------

    def do_put(self, req: Put) -> None:
        target = self.home.resolve(self.cwd, req.path)
        upload = self.server.storage.begin_upload(self.user, self.home, self.allowance(), target,
                                                  req.file_size, req.algo, req.digest, req.overwrite,
                                                  trailer=bool(req.trailer))
        self.upload = upload
        extra = {}
        if upload.trailer:
            extra["trailer"] = True
            if upload.offset:          # protocol 2: the client checks that its file starts like the part
                with os_errors_as_replies(target.virtual):
                    extra["part_digest"] = upload.hash_prefix()
        verb = f"resuming at byte {upload.offset}" if upload.offset else "starting"
        self.log(f"put {target.virtual}: {req.file_size} bytes, {verb}")
        self.send(reply(Code.SEND_DATA,
                        f"send {req.file_size - upload.offset} bytes from offset {upload.offset}",
                        path=target.virtual, offset=upload.offset, file_size=req.file_size, **extra))

    def do_data(self, req: PutData) -> None:
        upload, body_size = self.upload, self.conn.body_remaining
        if upload.trailer and req.offset == 0 and upload.offset and body_size == upload.file_size:
            upload.restart()           # protocol 2: the part_digest did not match the client's file
        if req.offset != upload.offset or body_size != upload.remaining:
            self.skip_body()
            self.abandon_upload()
            raise StorageError(Code.BAD_ARGUMENTS, f"expected offset {upload.offset} and a body of "
                               f"{upload.remaining} bytes, got offset {req.offset} and {body_size} bytes")
        try:
            upload.open(self.server.storage.hash_threads)
        except OSError as exc:
            self.skip_body()
            if upload.trailer:
                self.receive_trailer(upload)
            raise self.disk_error(exc) from None
        # Socket trouble in here (EOF, reset, stall) propagates to run(), whose `finally`
        # keeps the part for a resume. Disk trouble is reported after the body was drained.
        try:
            write_error = self.receive_body(upload)
        except FatalProtocolError as exc:
            if exc.checksum:               # the frame's own sha256 failed: its bytes are not wanted
                try:
                    upload.drop_received()
                except OSError:
                    pass
            raise
        if upload.trailer:                 # protocol 2: the digest follows the body
            upload.digest = self.receive_trailer(upload)
        if write_error is not None:
            raise self.disk_error(write_error)
        try:
            digest = upload.commit()
        except StorageError:              # digest mismatch: the part is gone, start again
            self.upload = None
            self.server.storage.end_upload(upload)
            raise
        except OSError as exc:
            raise self.disk_error(exc) from None
        self.upload = None
        self.server.storage.end_upload(upload)
        self.server.storage.close_later(upload.let_go_of_replaced())
        self.server.storage.remember_digest(upload.target.real, upload.algo, digest)
        self.server.stats.uploads += 1
        path = upload.target.virtual
        self.log(f"put {path} complete: {upload.file_size} bytes, {upload.algo} {digest[:12]}...")
        self.send(reply(Code.TRANSFER_COMPLETE, f"{path} stored, {upload.algo} verified", path=path,
                        file_size=upload.file_size, algo=upload.algo, digest=digest, received=upload.written))

    def receive_trailer(self, upload: Upload) -> str:
        """Protocol 2: the frame after the body must be {"op": "trailer", "digest": hex}, within
        header_deadline (else 421). Anything else there ends the upload with 501 (bytes kept for a
        resume); that frame is taken as the bad trailer and gets no reply of its own."""
        self.trailer_due = time.monotonic() + self.config.header_deadline
        try:
            event = self.next_event()
        finally:
            self.trailer_due = None
        if isinstance(event, Trailer):
            if len(event.digest) == DIGEST_ALGORITHMS[upload.algo]:
                return event.digest
            problem = (f"its digest has {len(event.digest)} hex digits, {upload.algo} has "
                       f"{DIGEST_ALGORITHMS[upload.algo]}")
        elif isinstance(event, Invalid) and event.op == "trailer":
            problem = event.error.msg
        else:
            what = event.op if isinstance(event, Invalid) else getattr(event, "op", type(event).__name__)
            problem = f"got {what!r} instead"
        kept = self.abandon_upload()
        raise StorageError(Code.BAD_ARGUMENTS, f"the body must be followed by a trailer frame "
                           f'{{"op": "trailer", "digest": HEX}} (protocol 2): {problem}; the upload ends, '
                           f"{kept} bytes kept for a resume")

    def receive_body(self, upload: Upload) -> OSError | None:
        """Body events straight into the file: recv_into → os.write + hash, nothing kept.

        A write error (disk full) does not stop the reading: the rest of the body is drained so
        that the next frame starts in step, and the error is returned to be reported.
        """
        error = None
        if not self.conn.in_body:
            return None   # an empty body: a zero-byte file, or a resume that already has it all
        while True:
            event = self.next_event()
            if isinstance(event, EndOfBody):
                return error
            self.server.stats.bytes_in += len(event.data)
            if error is None:
                try:
                    upload.write(event.data)
                except OSError as exc:
                    error = exc

    def disk_error(self, exc: OSError) -> StorageError:
        path = self.upload.target.virtual if self.upload else "the upload"
        kept = self.abandon_upload()
        mapped = reply_for_os_error(exc, path)
        return StorageError(mapped.code, f"{mapped.msg}; {kept} bytes kept for a resume")

    def skip_body(self) -> None:
        """Read and drop the rest of the current body: the next frame must start in step."""
        while self.conn.in_body and not self.conn.skipping_body:
            event = self.next_event()
            if isinstance(event, EndOfBody):
                return

    def do_abort(self, req: Abort) -> None:
        kept = self.abandon_upload()
        self.send(reply(Code.TRANSFER_COMPLETE, f"upload abandoned; {kept} bytes kept for a resume",
                        kept=kept))

    def abandon_upload(self) -> int:
        """The upload stops here: fsync the part (for a later resume) and free the reservation."""
        upload, self.upload = self.upload, None
        if upload is None:
            return 0
        try:
            kept = upload.keep_for_resume()
            if kept == 0:
                upload.discard()       # nothing to resume from: no part, no sidecar
        except OSError:
            kept = 0
        self.server.storage.end_upload(upload)
        self.log(f"upload of {upload.target.virtual} interrupted; {kept} bytes kept in its .part")
        return kept

    # --- download: get → 150 {file_size, offset, digest} + body → 226 ----------------------------

    def do_get(self, req: Get) -> None:
        target = self.home.resolve(self.cwd, req.path)
        fd, st = self.server.storage.open_for_download(self.home, target)
        with os.fdopen(fd, "rb") as f:
            digest = self.server.storage.digest_of(fd, st, req.algo, target)
            offset = req.offset
            if req.if_digest is not None and req.if_digest != digest:
                offset = 0      # the file changed since the client's partial copy: start over
            if offset > st.st_size:
                raise StorageError(Code.BAD_ARGUMENTS,
                                   f"offset {offset} is beyond the end ({st.st_size} bytes)")
            count = st.st_size - offset
            self.log(f"get {target.virtual}: {count} of {st.st_size} bytes from offset {offset}")
            self.send(Reply(Code.OPENING_TRANSFER, f"sending {count} bytes", {
                "path": target.virtual, "file_size": st.st_size, "offset": offset, "algo": req.algo,
                "digest": digest}), body_size=count)
            self.sock.settimeout(self.config.stall_timeout)
            cut = self.config.drop_after_bytes
            if cut is not None and offset == 0 and cut < count:
                self.sock.sendfile(f, offset, cut)
                self.log(f"--drop-after-bytes: cutting the connection after {cut} of {count} bytes")
                self.sock.shutdown(socket.SHUT_RDWR)
                raise EOFError("connection cut on purpose (--drop-after-bytes)")
            # sendfile: the kernel copies from the page cache to the socket (zero copy). A client
            # that stops reading fills its window; after stall_timeout without room, it is cut.
            try:
                sent = self.sock.sendfile(f, offset, count) if count else 0
            except TimeoutError:
                raise ReaderStalled(f"get {target.virtual}: the client read nothing for "
                                    f"{self.config.stall_timeout:g} s; closing") from None
        self.server.stats.bytes_out += sent
        if sent != count:     # the file shrank under us: the frame is short, the stream is lost
            raise EOFError(f"{target.virtual} changed during the transfer; closing")
        self.server.stats.downloads += 1
        self.send(reply(Code.TRANSFER_COMPLETE, f"{target.virtual}: {sent} bytes sent", sent=sent))

    # --- the rest ---------------------------------------------------------------------------

    def do_help(self, req: Help) -> None:
        self.send(help_reply())

    def do_noop(self, req: Noop) -> None:
        self.send(reply(Code.OK, "ok"))

    def do_quit(self, req: Quit) -> None:
        self.abandon_upload()
        self.send(reply(Code.CLOSING, "goodbye"))

    HANDLERS: dict[type[Request], object] = {
        Login: do_login, Auth: do_auth, Pwd: do_pwd, Cd: do_cd, Ls: do_ls, Mkdir: do_mkdir, Rm: do_rm,
        Quota: do_quota, Put: do_put, PutData: do_data, Abort: do_abort, Get: do_get, Help: do_help,
        Noop: do_noop, Quit: do_quit,
    }


# ---------------------------------------------------------------------------------------------
# The server: listening socket, worker pool on queue.Queue, polite refusals
# ---------------------------------------------------------------------------------------------

class FtpServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._log_lock = threading.Lock()
        os.makedirs(os.path.join(config.root, "home"), exist_ok=True)
        self.users = UserDb(config.root)
        if config.demo_users and not self.users.exists():
            added = ensure_demo_users(self.users)
            self.log(f"no users yet: created the demo users {', '.join(added)} (see the guide for passwords)")
        self.secret = server_secret(config.root)
        self.storage = Storage()
        self.throttle = LoginThrottle(config.throttle)
        self.stats = Stats()
        self.jobs: queue.Queue = queue.Queue()
        self.refusals: queue.Queue = queue.Queue(maxsize=256)
        self.slots = threading.BoundedSemaphore(config.max_sessions)
        self._stopping = threading.Event()
        self._signalled = False         # set by stop_soon() from a signal handler: the loop ends, then shutdown()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Without SO_REUSEADDR a restart within ~60 s fails with "Address already in use"
        # (the old connections sit in TIME_WAIT); see the loops lesson.
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((config.host, config.port))
        # The kernel queues connections the accept loop has not taken yet; when the queue is full
        # it drops the SYN and the client retries after 1 s, then 3 s. The lobby shares its thread
        # with accept(), so a burst of logins needs a queue longer than the default 128.
        self.listener.listen(LISTEN_BACKLOG)
        self.address = self.listener.getsockname()
        c = config
        self.greeting = greeting(c.max_sessions, idle_timeout=c.idle_timeout, header_deadline=c.header_deadline,
                                 login_deadline=c.login_deadline, stall_timeout=c.stall_timeout,
                                 min_body_rate=c.min_body_rate, rate_window=c.rate_window)
        self._homes: dict[str, Home] = {}
        self._greeting_frame: tuple[Reply | None, bytes] = (None, b"")
        self.lobby: dict[socket.socket, Session] = {}   # greeted, no command yet, oldest first
        # Well before any deadline a worker would enforce (the header deadline is 1 s in tests).
        self.lobby_patience = min(LOBBY_PATIENCE, c.header_deadline / 2, c.login_deadline / 2,
                                  c.idle_timeout / 2)
        self.workers = [threading.Thread(target=self._worker, name=f"ftp-worker-{i}", daemon=True)
                        for i in range(config.max_sessions)]
        for worker in self.workers:
            worker.start()
        threading.Thread(target=self._refuser, name="ftp-refuser", daemon=True).start()

    def greeting_bytes(self) -> bytes:
        """The 220's frame, encoded once (the same for every session)."""
        if self._greeting_frame[0] is not self.greeting:
            self._greeting_frame = (self.greeting, FtpConnection(Role.SERVER).send(self.greeting))
        return self._greeting_frame[1]

    def home_of(self, user: str) -> Home:
        """The user's home (made on the first login), resolved once: os.path.realpath walks
        every component of the root, and a login should not pay for that again and again."""
        path = home_dir(self.config.root, user)
        home = self._homes.get(path)
        if home is None or not os.path.isdir(home.real):
            os.makedirs(path, exist_ok=True)
            home = self._homes[path] = Home(path)
        return home

    def log(self, text: str) -> None:
        if self.config.verbose:
            with self._log_lock:
                print(text, flush=True)

    def count_error(self, code: int) -> None:
        self.stats.errors[code] = self.stats.errors.get(code, 0) + 1

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """The accept loop (connection loop, 连接循环) and the lobby, on one selector.

        A new connection gets a slot (or 421), its greeting, and waits in the *lobby*: this
        thread answers its ``login`` (331) and a correct ``auth`` (230) without blocking, and
        hands the session to a worker (jobs queue) with its first command. Why: a login is three
        small messages; in a worker thread each one is a wake-up that must win the GIL from
        hundreds of other threads, and that costs more than the login itself (measured: 300
        logins took 3x pyftpdlib's time). Anything else (a wrong password, help, junk) goes to a
        worker at once, and so does every session still here after LOBBY_PATIENCE, with every
        deadline and delay of a normal session: the lobby is a fast path, not a second server.
        Every admitted session holds a slot, so a worker is always free for it.

        select() wakes up every ``poll_interval`` seconds even when nobody connects, like
        socketserver's serve_forever. Why: a signal (SIGTERM from `docker stop`) that arrives
        just *before* the thread blocks only sets a flag for Python to look at later; without a
        timeout, "later" would be the next connection. (Measured: about 1 SIGTERM in 30 was lost
        that way.)
        """
        with selectors.DefaultSelector() as selector:
            try:
                self.listener.setblocking(False)
                selector.register(self.listener, selectors.EVENT_READ, None)
            except (OSError, ValueError):   # stopped (the listener closed) before the loop began
                return
            self.log(f"listening on {self.address[0]}:{self.address[1]}")
            while not self._stopping.is_set() and not self._signalled:
                try:
                    ready = selector.select(self._lobby_timeout(poll_interval))
                except OSError:
                    break
                ready.sort(key=lambda item: item[0].data is not None)   # accept first: SYNs wait
                for key, _ in ready:
                    if key.data is None:
                        if not self._accept(selector):
                            break
                    elif key.data.step_in_lobby():
                        self._to_worker(selector, key.data)
                self._send_late_ones_to_workers(selector)
            for session in list(self.lobby.values()):   # stopping: nobody will serve them
                selector.unregister(session.sock)
                session.sock.close()
                self.slots.release()
            self.lobby.clear()

    def _accept(self, selector: selectors.BaseSelector) -> bool:
        """Accept every connection that is waiting. False when the listener is gone."""
        while True:
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                return True
            except OSError:
                if self._stopping.is_set() or self.listener.fileno() == -1:
                    return False  # the listener is closed: accept() would fail at once, forever
                time.sleep(0.05)  # e.g. EMFILE, or a connection reset before accept: keep serving,
                return True       # without spinning while the condition lasts
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # replies are small: no Nagle wait
            if not self.slots.acquire(blocking=False):
                self.stats.refused += 1
                try:
                    self.refusals.put_nowait(sock)
                except queue.Full:
                    sock.close()
                continue
            sock.setblocking(False)
            session = Session(self, sock, address)
            try:
                session.greet()     # a fresh socket's send buffer is empty: this never blocks
            except OSError as exc:
                session.held = exc
                self.jobs.put(session)
                continue
            self.lobby[sock] = session
            selector.register(sock, selectors.EVENT_READ, session)

    def _to_worker(self, selector: selectors.BaseSelector, session: Session) -> None:
        selector.unregister(session.sock)
        del self.lobby[session.sock]
        session.sock.settimeout(None)      # blocking again: the session sets its own timeouts
        self.jobs.put(session)

    def _send_late_ones_to_workers(self, selector: selectors.BaseSelector) -> None:
        """Sessions that stayed lobby_patience: a worker waits for them, with the session's own
        deadlines (the lobby is ordered by arrival, so only the front can be late)."""
        now = time.monotonic()
        while self.lobby:
            session = next(iter(self.lobby.values()))
            if now - session.lobby_since < self.lobby_patience:
                return
            self._to_worker(selector, session)

    def _lobby_timeout(self, poll_interval: float) -> float:
        if not self.lobby:
            return poll_interval
        oldest = next(iter(self.lobby.values()))
        return max(0.0, min(poll_interval, oldest.lobby_since + self.lobby_patience - time.monotonic()))

    def _worker(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            session = job
            self.stats.sessions += 1
            try:
                with session.sock:
                    session.run()
            except Exception as exc:   # a bug in one session must not kill the worker
                self.stats.internal_errors += 1
                self.log(f"[{session.who}] internal error: {exc!r}")
            finally:
                self.slots.release()

    def _refuser(self) -> None:
        """Say 421 and close, politely: send the reply, shut down our side (FIN after the 421),
        then read whatever the client already sent: close() on a socket with unread bytes
        answers with a RST instead of a FIN. It never waits for the client, so a flood of
        silent connections cannot pile up here."""
        conn = FtpConnection(Role.SERVER)
        message = conn.send(reply(Code.SERVICE_UNAVAILABLE,
                                  f"too many sessions ({self.config.max_sessions}); try again later",
                                  max_sessions=self.config.max_sessions))
        while True:
            sock = self.refusals.get()
            if sock is None:
                return
            with sock:
                try:
                    sock.settimeout(1.0)
                    sock.sendall(message)        # a fresh socket's send buffer is empty: no wait
                    sock.shutdown(socket.SHUT_WR)
                    sock.setblocking(False)
                    while sock.recv(65536):      # BlockingIOError once nothing more is queued
                        pass
                except OSError:
                    pass

    def stop_soon(self, *_signal) -> None:
        """A signal handler: the accept loop ends within its poll interval and serve_forever
        returns. Only a flag: an exception raised from a handler (KeyboardInterrupt) can land in
        the middle of queue.put() in this thread and leave the queue's lock held, and then
        shutdown()'s own put() waits for ever (seen once in CI: SIGTERM, no exit in 10 s)."""
        self._signalled = True

    def shutdown(self) -> None:
        self._stopping.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for _ in self.workers:
            self.jobs.put(None)
        self.refusals.put(None)


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default: every interface)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--root", default=os.environ.get("FTP_ROOT", "/srv/ftp"),
                        help="users.json, server.secret and home/<user>/ live here")
    parser.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS,
                        help="worker threads = sessions at once; one more gets 421 "
                             f"(default {DEFAULT_MAX_SESSIONS})")
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT)
    parser.add_argument("--header-deadline", type=float, default=HEADER_DEADLINE)
    parser.add_argument("--stall-timeout", type=float, default=STALL_TIMEOUT)
    parser.add_argument("--login-deadline", type=float, default=LOGIN_DEADLINE,
                        help="seconds from connecting to a successful login")
    parser.add_argument("--min-body-rate", type=int, default=MIN_BODY_RATE,
                        help="bytes per second an upload body must average over every --rate-window")
    parser.add_argument("--rate-window", type=float, default=RATE_WINDOW)
    parser.add_argument("--login-delay", type=float, default=LOGIN_FAILURE_DELAY,
                        help="seconds before answering a failed login")
    parser.add_argument("--drop-after-bytes", type=int, default=None,
                        help="fault injection: cut downloads that start at 0 after N body bytes")
    parser.add_argument("--demo-users", action="store_true",
                        help="add the demo users even when users.json exists")
    parser.add_argument("--no-demo-users", action="store_true", help="never create the demo users")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.max_sessions < 1:
        parser.error("--max-sessions must be at least 1")
    if args.demo_users:
        ensure_demo_users(UserDb(args.root))
    return ServerConfig(root=args.root, host=args.host, port=args.port, max_sessions=args.max_sessions,
                        idle_timeout=args.idle_timeout, header_deadline=args.header_deadline,
                        stall_timeout=args.stall_timeout, login_delay=args.login_delay,
                        login_deadline=args.login_deadline, min_body_rate=args.min_body_rate,
                        rate_window=args.rate_window,
                        drop_after_bytes=args.drop_after_bytes, demo_users=not args.no_demo_users,
                        verbose=not args.quiet)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    server = FtpServer(config)
    # docker stop sends SIGTERM, a terminal's Ctrl-C SIGINT: both end the accept loop, then we
    # close the listener and exit 0
    signal.signal(signal.SIGTERM, server.stop_soon)
    signal.signal(signal.SIGINT, server.stop_soon)
    server.serve_forever()
    server.shutdown()
    print("server stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
