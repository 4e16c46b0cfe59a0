"""The FTP exercise's protocol, sans-IO: messages, reply codes, limits, validation (seed §3).

This module never touches a socket. It turns bytes into typed events and typed messages into
bytes, exactly like h11 does for HTTP, so that the threaded server, the blocking client, the
tests and the benchmark all share ONE copy of the rules:

    bytes from the network ──► FtpConnection.receive_data() ──► next_event() ──► Login, Put, Reply, Body ...
    Login(...), Reply(...) ──► FtpConnection.send() ──► bytes for sendall()

Every message is one frame of the framing lesson (services/framing/codec.py):

    !I header length | UTF-8 JSON object header | exactly header["size"] body bytes

A request header carries "op" and the request's fields; a reply header carries "code" (RFC 959
style: 1xx preliminary, 2xx done, 3xx send more, 4xx try again later, 5xx permanent error) and
"msg". File bytes travel as frame *bodies*, never inside JSON. The keys "size" and "sha256" belong
to the framing layer (body length and body checksum), so a file's size and digest are called
"file_size" and "digest" here. docs/ftp-protocol.md is the contract written out for humans.

Who may send what, and when, is decided by the state machine in ftp/state.py.
"""
from __future__ import annotations

import enum
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from framing.codec import (
    NEED_DATA,
    BadHeader,
    BodyTooLarge,
    ChecksumMismatch,
    Data,
    EndOfFrame,
    FrameDecoder,
    FramingError,
    Header,
    HeaderTooLarge,
    encode_header,
)
from ftp.state import Role, SequenceError, SessionState, State

# ---------------------------------------------------------------------------------------------
# Constants: every limit and default of the protocol, defined once.
# ---------------------------------------------------------------------------------------------

PROTOCOL_VERSION = 2                # 2 adds the digest trailer of uploads; every version-1 message is still valid
SERVER_NAME = "socketlab-ftp"
DEFAULT_PORT = 20060

MAX_HEADER_SIZE = 64 * 1024         # a header longer than this is refused before it is read
MAX_PATH_CHARS = 1024               # a path argument, in characters
NAME_MAX = 255                      # the longest name Linux file systems store, in bytes
MAX_FILE_SIZE = 1 << 40             # 1 TiB: keeps quota arithmetic in plain, exact ints
MAX_USER_CHARS = 32
USER_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
HEX_RE = re.compile(r"[0-9a-fA-F]*")

MAX_LOGIN_ATTEMPTS = 3              # wrong proofs per session, then 421 and close
LOGIN_FAILURE_DELAY = 1.0           # seconds the server waits before answering a failed login
LOGIN_DEADLINE = 60.0               # seconds from connecting to a successful login, noop or not
IDLE_TIMEOUT = 300.0                # seconds without a request before the server hangs up
HEADER_DEADLINE = 10.0              # seconds a started header may take to arrive completely
STALL_TIMEOUT = 60.0                # seconds a body may go without a single byte arriving
MIN_BODY_RATE = 1024                # bytes per second a body must average over every RATE_WINDOW...
RATE_WINDOW = 30.0                  # ...seconds (a 1-byte-per-20-s trickle never stalls, but is cut)
DEFAULT_MAX_ENTRIES = 1000          # files + directories per user (quota counts entries, not just bytes)
DEFAULT_MAX_SESSIONS = 100          # worker threads in the server's pool
CHUNK_SIZE = 256 * 1024             # the reusable receive buffer of both sides

NONCE_BYTES = 16                    # login nonces (client's and server's), in bytes
SALT_BYTES = 16
KDF_NAME = "scrypt"
KDF_N, KDF_R, KDF_P = 1 << 14, 8, 1  # 16 MiB of memory and ~50 ms per guess: slow on purpose
KDF_MAX_N, KDF_MAX_R, KDF_MAX_P = 1 << 16, 16, 4  # a client refuses a server asking for more
KEY_BYTES = 32

DIGEST_ALGORITHMS = {"sha256": 64, "md5": 32}   # name -> hex length; md5 only for the seed's clients
DEFAULT_ALGORITHM = "sha256"

FEATURES = ["scram-scrypt", "sha256", "md5", "resume-put", "resume-get", "quota", "if-digest", "digest-trailer"]
TRAILER_FEATURE = "digest-trailer"  # protocol 2: put {"trailer": true}, data + body, then trailer {digest}

#: The internal names of unfinished uploads. They live next to the final file, hidden, and no
#: path argument may name them (553), so a client cannot read or clobber another upload's bytes.
PART_SUFFIX = ".part"
SIDECAR_SUFFIX = ".part.json"
#: One path component, in UTF-8 bytes. Not 255: an upload of NAME also needs ``.NAME.part.json``
#: (11 bytes more) in the same directory, and that name must fit in NAME_MAX too.
MAX_NAME_BYTES = NAME_MAX - len(".") - len(SIDECAR_SUFFIX)


class Code(enum.IntEnum):
    """Reply codes, with the meaning RFC 959 gives their digits."""

    OPENING_TRANSFER = 150      # 1xx: a positive preliminary reply; the final one follows
    OK = 200
    HELP = 214
    SERVICE_READY = 220
    CLOSING = 221
    TRANSFER_COMPLETE = 226
    LOGGED_IN = 230
    FILE_ACTION_OK = 250
    PATH_CREATED = 257          # mkdir and pwd answer with a path
    NEED_PROOF = 331            # 3xx: "user name okay, now prove you know the password"
    SEND_DATA = 350             # "requested file action pending further information": send the body
    SERVICE_UNAVAILABLE = 421   # 4xx: transient; 421 always comes with the connection closing
    TRANSFER_ABORTED = 426
    FILE_BUSY = 450
    LOCAL_ERROR = 451           # e.g. the uploaded bytes did not match the announced digest
    INSUFFICIENT_STORAGE = 452  # the disk itself is full
    SYNTAX_ERROR = 500          # 5xx: permanent; the same request will fail again
    BAD_ARGUMENTS = 501
    BAD_SEQUENCE = 503
    NOT_LOGGED_IN = 530
    UNAVAILABLE = 550           # no such file or directory, or it exists and may not be replaced
    QUOTA_EXCEEDED = 552
    NAME_NOT_ALLOWED = 553      # the path leaves the home directory, or names an internal file


#: Shell-style usage and one line of help per operation: the server's `help` reply and the
#: client's shell help are both made from this table.
COMMANDS: dict[str, tuple[str, str]] = {
    "login": ("login USER", "start logging in; the server answers with a challenge (331)"),
    "auth": ("auth PROOF", "finish logging in with the proof computed from the password"),
    "pwd": ("pwd", "print the current directory (/ is your home)"),
    "cd": ("cd PATH", "change directory anywhere inside your home"),
    "ls": ("ls [PATH]", "list a directory (name, type, size, mtime), in pages if it is big"),
    "mkdir": ("mkdir PATH", "create a directory"),
    "rm": ("rm PATH", "remove a file, an empty directory, or an unfinished upload"),
    "quota": ("quota", "show used, reserved and free bytes of your quota"),
    "put": ("put LOCAL [REMOTE]", "upload; resumes an interrupted upload of the same file"),
    "data": ("data", "(after 350) the file bytes of an upload"),
    "trailer": ("trailer", "(protocol 2, right after a data body) the whole file's digest"),
    "abort": ("abort", "(after 350) give up the upload; the bytes so far stay for a resume"),
    "get": ("get REMOTE [LOCAL]", "download; resumes from a local .part of the same file"),
    "noop": ("noop", "do nothing; keeps an idle session alive"),
    "help": ("help", "this list"),
    "quit": ("quit", "say goodbye (221) and close"),
}


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

class ProtocolError(Exception):
    """The peer broke the protocol. ``code`` is the reply the server sends about it."""

    def __init__(self, code: int, msg: str, *, fatal: bool = False) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.fatal = int(code), msg, fatal


class FatalProtocolError(ProtocolError):
    """A framing violation: the byte stream can no longer be trusted, so the connection ends.
    ``checksum`` says the frame's body did not match its "sha256" (its bytes must be dropped)."""

    def __init__(self, msg: str, *, checksum: bool = False) -> None:
        super().__init__(Code.SYNTAX_ERROR, msg, fatal=True)
        self.checksum = checksum


# ---------------------------------------------------------------------------------------------
# Field validation: JSON gives us str, int, float, bool, None, list, dict. Trust none of them.
# ---------------------------------------------------------------------------------------------

def _field(header: dict, name: str, default: Any = ...) -> Any:
    if name in header:
        return header[name]
    if default is ...:
        raise ProtocolError(Code.BAD_ARGUMENTS, f"missing field {name!r}")
    return default


def field_int(header: dict, name: str, *, low: int = 0, high: int = MAX_FILE_SIZE, default: Any = ...) -> int:
    """An integer in [low, high]. bool is not an int here, nor is 1.0, NaN or 1e400."""
    value = _field(header, name, default)
    if type(value) is not int:   # noqa: E721 - isinstance(True, int) is True, and we refuse bools
        raise ProtocolError(Code.BAD_ARGUMENTS, f"field {name!r} must be an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise ProtocolError(Code.BAD_ARGUMENTS, f"field {name!r} must be in [{low}, {high}], got {value}")
    return value


def field_bool(header: dict, name: str, *, default: Any = ...) -> bool:
    value = _field(header, name, default)
    if type(value) is not bool:  # noqa: E721
        raise ProtocolError(Code.BAD_ARGUMENTS, f"field {name!r} must be true or false, got {_kind(value)}")
    return value


def field_str(header: dict, name: str, *, max_chars: int = MAX_PATH_CHARS, default: Any = ...) -> str:
    """A string that is valid Unicode (JSON allows lone surrogates like "\\ud800"; we do not)."""
    if name not in header and default is not ...:
        return default
    value = _field(header, name)
    if not isinstance(value, str):
        raise ProtocolError(Code.BAD_ARGUMENTS, f"field {name!r} must be a string, got {_kind(value)}")
    if len(value) > max_chars:
        raise ProtocolError(Code.BAD_ARGUMENTS, f"field {name!r} is longer than {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(Code.BAD_ARGUMENTS, f"field {name!r} is not valid Unicode") from None
    return value


def field_hex(header: dict, name: str, *, nbytes: int | None = None, low: int = 1, high: int = 64,
              default: Any = ..., as_sent: bool = False) -> str:
    """Hexadecimal of exactly ``nbytes`` bytes (or between low and high bytes), in lower case
    unless ``as_sent`` (a login's cnonce enters the auth message exactly as the client sent it)."""
    if name not in header and default is not ...:
        return default
    value = field_str(header, name, max_chars=2 * max(high, nbytes or 0))
    if not as_sent:
        value = value.lower()
    if nbytes:
        size_ok = len(value) == 2 * nbytes
    else:
        size_ok = low * 2 <= len(value) <= high * 2 and len(value) % 2 == 0
    if not size_ok or not HEX_RE.fullmatch(value):
        want = f"{nbytes} bytes" if nbytes else f"{low}..{high} bytes"
        raise ProtocolError(Code.BAD_ARGUMENTS, f"field {name!r} must be hexadecimal ({want})")
    return value


def field_path(header: dict, name: str, *, default: Any = ...) -> str:
    """A path argument. Shape only; whether it stays inside the home is ftp/paths.py's job."""
    if name not in header and default is not ...:
        return default
    value = field_str(header, name)
    if value == "":
        raise ProtocolError(Code.BAD_ARGUMENTS, f"field {name!r} is empty")
    if "\x00" in value:
        # open("a\x00b") raises ValueError; C would silently cut the name at the NUL.
        raise ProtocolError(Code.NAME_NOT_ALLOWED, f"field {name!r} contains a NUL byte")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ProtocolError(Code.NAME_NOT_ALLOWED, f"field {name!r} contains a control character")
    # One spelling per name: "é" may arrive as one code point (NFC) or as e + accent (NFD).
    return unicodedata.normalize("NFC", value)


def field_algorithm(header: dict, name: str = "algo") -> str:
    value = field_str(header, name, max_chars=16, default=DEFAULT_ALGORITHM)
    if value not in DIGEST_ALGORITHMS:
        raise ProtocolError(Code.BAD_ARGUMENTS, f"unknown digest algorithm {value!r}; "
                            f"use one of {sorted(DIGEST_ALGORITHMS)}")
    return value


def field_digest(header: dict, name: str, algorithm: str, *, default: Any = ...) -> str:
    return field_hex(header, name, nbytes=DIGEST_ALGORITHMS[algorithm] // 2, default=default)


def field_user(header: dict, name: str = "user") -> str:
    value = field_str(header, name, max_chars=MAX_USER_CHARS)
    if not USER_NAME_RE.fullmatch(value):
        raise ProtocolError(Code.BAD_ARGUMENTS, "user names are 1-32 characters: a-z, 0-9, _ and -")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return type(value).__name__ if value is not None else "null"


# ---------------------------------------------------------------------------------------------
# Requests (client → server). Each knows its op, its fields, and how to validate a header.
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    op: ClassVar[str] = ""
    has_body: ClassVar[bool] = False

    def to_header(self) -> dict:
        header = {"op": self.op}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                header[f.name] = value
        return header

    @classmethod
    def from_header(cls, header: dict) -> Request:
        return cls()


@dataclass(frozen=True)
class Login(Request):
    op = "login"
    user: str
    cnonce: str

    @classmethod
    def from_header(cls, header: dict) -> Login:
        return cls(field_user(header), field_hex(header, "cnonce", low=8, high=64, as_sent=True))


@dataclass(frozen=True)
class Auth(Request):
    op = "auth"
    proof: str

    @classmethod
    def from_header(cls, header: dict) -> Auth:
        return cls(field_hex(header, "proof", nbytes=KEY_BYTES))


@dataclass(frozen=True)
class Pwd(Request):
    op = "pwd"


@dataclass(frozen=True)
class Cd(Request):
    op = "cd"
    path: str

    @classmethod
    def from_header(cls, header: dict) -> Cd:
        return cls(field_path(header, "path"))


@dataclass(frozen=True)
class Ls(Request):
    """List a directory. A listing too big for one reply header comes in pages: the reply says
    ``truncated`` and ``continue_after`` (a name); ask again with ``after`` = that name."""

    op = "ls"
    path: str = "."
    after: str | None = None

    @classmethod
    def from_header(cls, header: dict) -> Ls:
        return cls(field_path(header, "path", default="."), field_str(header, "after", default=None))


@dataclass(frozen=True)
class Mkdir(Request):
    op = "mkdir"
    path: str

    @classmethod
    def from_header(cls, header: dict) -> Mkdir:
        return cls(field_path(header, "path"))


@dataclass(frozen=True)
class Rm(Request):
    op = "rm"
    path: str

    @classmethod
    def from_header(cls, header: dict) -> Rm:
        return cls(field_path(header, "path"))


@dataclass(frozen=True)
class Quota(Request):
    op = "quota"


@dataclass(frozen=True)
class Put(Request):
    """Announce an upload. The server answers 350 {offset}: send the bytes from there on.

    Version 1: the file's ``digest`` comes up front (the client reads the file twice: once to
    hash it, once to send it). Version 2: ``trailer=True`` and no digest; the client hashes while
    it sends and names the digest in a Trailer after the body (it reads the file once).
    """

    op = "put"
    path: str
    file_size: int
    digest: str | None
    algo: str = DEFAULT_ALGORITHM
    overwrite: bool = False
    trailer: bool | None = None      # None: not sent (a version-1 put)

    @classmethod
    def from_header(cls, header: dict) -> Put:
        algo = field_algorithm(header)
        trailer = field_bool(header, "trailer", default=False)
        if trailer and "digest" in header:
            raise ProtocolError(Code.BAD_ARGUMENTS, "a put with \"trailer\": true sends its digest in the "
                                "trailer after the body, not here")
        digest = None if trailer else field_digest(header, "digest", algo)
        return cls(field_path(header, "path"), field_int(header, "file_size"), digest, algo,
                   field_bool(header, "overwrite", default=False), trailer or None)


@dataclass(frozen=True)
class PutData(Request):
    """The body of an upload, from ``offset`` to the end (the frame's size says how many bytes)."""

    op = "data"
    has_body = True
    offset: int

    @classmethod
    def from_header(cls, header: dict) -> PutData:
        return cls(field_int(header, "offset"))


@dataclass(frozen=True)
class Trailer(Request):
    """Protocol 2: the frame right after a data body, naming the digest of the whole file
    (the bytes already on the server + this body). The 226 (or 451) answers data + trailer."""

    op = "trailer"
    digest: str

    @classmethod
    def from_header(cls, header: dict) -> Trailer:
        return cls(field_hex(header, "digest", low=16, high=32))


@dataclass(frozen=True)
class Abort(Request):
    op = "abort"


@dataclass(frozen=True)
class Get(Request):
    """Ask for a file from ``offset`` on. With ``if_digest``, the offset is honoured only while the
    file still has that digest (like HTTP's If-Range); otherwise the server starts again at 0."""

    op = "get"
    path: str
    offset: int = 0
    algo: str = DEFAULT_ALGORITHM
    if_digest: str | None = None

    @classmethod
    def from_header(cls, header: dict) -> Get:
        algo = field_algorithm(header)
        return cls(field_path(header, "path"), field_int(header, "offset", default=0), algo,
                   field_digest(header, "if_digest", algo, default=None))


@dataclass(frozen=True)
class Noop(Request):
    op = "noop"


@dataclass(frozen=True)
class Help(Request):
    op = "help"


@dataclass(frozen=True)
class Quit(Request):
    op = "quit"


REQUEST_TYPES: dict[str, type[Request]] = {
    cls.op: cls for cls in (Login, Auth, Pwd, Cd, Ls, Mkdir, Rm, Quota, Put, PutData, Trailer, Abort, Get,
                            Noop, Help, Quit)
}
assert set(REQUEST_TYPES) == set(COMMANDS), "every op needs a help line and vice versa"


def parse_request(header: dict, body_size: int = 0) -> Request:
    """Turn a decoded frame header into a Request, or raise ProtocolError saying what is wrong."""
    op = header.get("op")
    if not isinstance(op, str):
        raise ProtocolError(Code.SYNTAX_ERROR, f"a request needs a string field 'op', got {_kind(op)}")
    cls = REQUEST_TYPES.get(op)
    if cls is None:
        shown = repr(op[:20]) + ("..." if len(op) > 20 else "")
        raise ProtocolError(Code.SYNTAX_ERROR, f"unknown op {shown}; try 'help'")
    request = cls.from_header(header)
    if body_size and not cls.has_body:
        raise ProtocolError(Code.BAD_ARGUMENTS, f"op {op!r} carries no body, got {body_size} bytes")
    return request


# ---------------------------------------------------------------------------------------------
# Replies (server → client)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    """``code`` + human ``msg`` + the reply's fields. ``body_size`` > 0 only on a 150 to a get."""

    code: int
    msg: str = ""
    fields: dict = field(default_factory=dict)
    body_size: int = 0

    @property
    def ok(self) -> bool:
        return self.code < 400

    @property
    def preliminary(self) -> bool:
        return 100 <= self.code < 200

    def to_header(self) -> dict:
        return {"code": int(self.code), "msg": self.msg, **self.fields}

    def get_int(self, name: str, *, low: int = 0, high: int = MAX_FILE_SIZE) -> int:
        """A client reads numbers from a reply through this: a lying server gets a clear error."""
        return field_int(self.fields, name, low=low, high=high)

    def get_str(self, name: str, default: Any = ...) -> str:
        return field_str(self.fields, name, default=default)

    def __str__(self) -> str:
        return f"{self.code} {self.msg}"


RESERVED_KEYS = ("size", "sha256")   # the framing layer's: body length and body checksum


def parse_reply(header: dict, body_size: int = 0) -> Reply:
    code = header.get("code")
    if type(code) is not int or not 100 <= code <= 599:  # noqa: E721
        raise FatalProtocolError(f"a reply needs an integer 'code' in 100..599, got {_kind(code)}")
    msg = header.get("msg", "")
    if not isinstance(msg, str):
        raise FatalProtocolError(f"a reply's 'msg' must be a string, got {_kind(msg)}")
    extra = {k: v for k, v in header.items() if k not in ("code", "msg", *RESERVED_KEYS)}
    return Reply(code, msg, extra, body_size)


def reply(code: int, msg: str, **fields_: Any) -> Reply:
    return Reply(int(code), msg, fields_)


def error(exc: ProtocolError) -> Reply:
    return Reply(exc.code, exc.msg)


# ---------------------------------------------------------------------------------------------
# Events that next_event() hands out besides Request and Reply
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Invalid:
    """A well-framed message whose content is wrong. The session is still in step: the server
    answers ``error`` and goes on (any body of that frame is skipped for it)."""

    error: ProtocolError
    op: str | None = None


@dataclass(frozen=True)
class Body:
    """A piece of the current frame's body (file bytes), in arrival order."""

    data: bytes | memoryview


@dataclass(frozen=True)
class EndOfBody:
    pass


Event = Request | Reply | Invalid | Body | EndOfBody


# ---------------------------------------------------------------------------------------------
# The connection: one side of one session, bytes in, events out, no I/O.
# ---------------------------------------------------------------------------------------------

class FtpConnection:
    """Sans-IO endpoint. ``role`` is Role.SERVER on the server, Role.CLIENT on the client.

    Typical server loop (the real one is ftp/server.py)::

        conn = FtpConnection(Role.SERVER)
        sock.sendall(conn.send(greeting))
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                conn.receive_data(sock.recv(65536))   # b"" = end of stream
                continue
            ...handle the event, sock.sendall(conn.send(reply))...
    """

    def __init__(self, role: Role, *, max_header_size: int = MAX_HEADER_SIZE) -> None:
        self.role = role
        self.state = SessionState(role)
        self._decoder = FrameDecoder(max_header_size=max_header_size)
        self._in_body = False         # between a header with a body and its end
        self._skipping_body = False   # the body belongs to an Invalid message: drop it
        self._eof = False

    # --- outgoing -------------------------------------------------------------------------------

    def send(self, message: Request | Reply, *, body_size: int = 0) -> bytes:
        """Bytes of ``message``'s frame header; the caller sends ``body_size`` body bytes after it.

        The state machine sees every message first, so a client that tries to send a command at
        the wrong time gets a LocalProtocolError here instead of confusing the server.
        """
        if isinstance(message, Request):
            self.state.on_request(message.op)
            header = message.to_header()
        else:
            self.state.on_reply(message.code)
            header = message.to_header()
            body_size = body_size or message.body_size
        return encode_header(header, body_size=body_size)

    # --- incoming -------------------------------------------------------------------------------

    def receive_data(self, data: bytes | memoryview) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed its side (EOF)."""
        if data:
            self._decoder.receive_data(data)
        else:
            self._eof = True

    @property
    def in_body(self) -> bool:
        return self._in_body

    @property
    def skipping_body(self) -> bool:
        """The body in progress belongs to an Invalid message: it is dropped on the way (the
        next next_event() reads past it), so nobody needs to read it."""
        return self._in_body and self._skipping_body

    @property
    def body_remaining(self) -> int:
        return self._decoder.body_remaining if self._in_body else 0

    def next_event(self) -> Event | type[NEED_DATA] | Any:
        """The next complete thing the peer said, or NEED_DATA.

        Raises FatalProtocolError for framing violations (oversized or truncated frames, a body
        checksum mismatch) and EOFError when the peer closed cleanly between two messages.
        """
        while True:
            try:
                event = self._decoder.next_event()
            except FramingError:
                # Whatever went wrong, no body is in progress any more: the caller must not
                # wait for the rest of one (a checksum mismatch is raised at the body's end).
                self._in_body = self._skipping_body = False
                self._raise_framing_error()
            if event is NEED_DATA:
                if self._eof:
                    return self._end_of_stream()
                return NEED_DATA
            if isinstance(event, Header):
                result = self._on_header(dict(event.fields))
                if result is not None:
                    return result
                continue
            if isinstance(event, Data):
                if self._skipping_body:
                    continue
                return Body(event.data)
            if isinstance(event, EndOfFrame):
                was_body, skipped = self._in_body, self._skipping_body
                self._in_body = self._skipping_body = False
                if was_body and not skipped:
                    return EndOfBody()
                continue
            raise FatalProtocolError(f"unexpected framing event {event!r}")  # pragma: no cover

    def _raise_framing_error(self) -> None:
        """Turn the codec's exception (being handled) into one FatalProtocolError."""
        try:
            raise
        except (HeaderTooLarge, BodyTooLarge) as exc:
            raise FatalProtocolError(f"frame refused: {exc}") from None
        except BadHeader as exc:
            # Not UTF-8, not JSON, not an object, NaN, 5000-digit numbers, duplicate keys...
            # The codec refuses to go on after this (a peer that sends such bytes may well
            # have lost count of its frames too), so: one clear 500, then close.
            raise FatalProtocolError(f"bad header: {exc}") from None
        except ChecksumMismatch as exc:
            # The stream is still in step here, but the body we already passed on (an upload
            # writes it to its .part as it arrives) is not what the peer meant. One rule for
            # every framing failure: 500, close; the server drops the bytes of that body.
            raise FatalProtocolError(f"frame body checksum: {exc}", checksum=True) from None
        except FramingError as exc:
            raise FatalProtocolError(str(exc)) from None

    def _end_of_stream(self) -> Any:
        try:
            self._decoder.end_of_stream()
        except FramingError as exc:
            self._in_body = self._skipping_body = False
            raise FatalProtocolError(f"connection closed in the middle of a frame: {exc}") from None
        raise EOFError("the peer closed the connection")

    def _on_header(self, header: dict) -> Event | None:
        body_size = header.get("size", 0)
        body_size = body_size if type(body_size) is int else 0  # noqa: E721 - the codec checked it
        self._in_body = body_size > 0
        if self.role is Role.CLIENT:
            message = parse_reply(header, body_size)
            self.state.on_reply(message.code)
            return message
        # Server side, in three steps, each with its own error reply:
        op = header.get("op")
        if not isinstance(op, str) or op not in REQUEST_TYPES:      # 1. is it a request at all?
            return self._invalid(parse_error(header, body_size), None)
        try:
            self.state.on_request(op)                               # 2. is it allowed now?
        except SequenceError as exc:
            return self._invalid(ProtocolError(exc.code, exc.msg), op)
        try:
            return parse_request(header, body_size)                 # 3. are its fields right?
        except ProtocolError as exc:
            # The op was accepted by the state machine, so the error reply (say 501 to a bad
            # "data") moves both sides' state machines the same way (back to "ready").
            return self._invalid(exc, op)

    def _invalid(self, exc: ProtocolError, op: str | None) -> Invalid:
        self._skipping_body = self._in_body   # its body (if any) is read and thrown away
        return Invalid(exc, op)


def parse_error(header: dict, body_size: int) -> ProtocolError:
    """The error parse_request raises for ``header`` (which is known to be invalid)."""
    try:
        parse_request(header, body_size)
    except ProtocolError as exc:
        return exc
    return ProtocolError(Code.SYNTAX_ERROR, "not a request")  # pragma: no cover


def greeting(max_sessions: int, **limits: Any) -> Reply:
    """The 220 every session starts with (or 421 when the server is full, see ftp/server.py)."""
    return reply(Code.SERVICE_READY, f"{SERVER_NAME} ready; log in with login/auth (SCRAM over scrypt)",
                 server=SERVER_NAME, version=PROTOCOL_VERSION, features=FEATURES,
                 limits={"max_header": MAX_HEADER_SIZE, "max_sessions": max_sessions,
                         "max_login_attempts": MAX_LOGIN_ATTEMPTS, "max_path_chars": MAX_PATH_CHARS,
                         "max_name_bytes": MAX_NAME_BYTES, "max_file_size": MAX_FILE_SIZE, **limits})


def help_reply() -> Reply:
    commands = {op: f"{usage} - {text}" for op, (usage, text) in COMMANDS.items()}
    return reply(Code.HELP, "commands", commands=commands)


def header_bytes(message: Reply) -> int:
    """The size of ``message``'s header exactly as ``send`` writes it (the codec's JSON), or
    MAX_HEADER_SIZE + 1 when it is too big to be sent at all."""
    try:
        return len(encode_header(message.to_header())) - 4
    except HeaderTooLarge:
        return MAX_HEADER_SIZE + 1


def _entry_bytes(entry: dict) -> int:
    # The codec's own encoding (ensure_ascii=False, default ", " and ": " separators), plus the
    # ", " that separates two list items. Names are valid Unicode here (see storage.describe).
    return len(json.dumps(entry, ensure_ascii=False).encode("utf-8")) + 2


def listing_page(path: str, entries: list[dict], after: str | None = None) -> Reply:
    """The 200 reply to ``ls``: as many entries (sorted by name, those after ``after``) as fit
    in one header. The size is measured the way the header is *sent*, then checked again.

    A page never ends between two entries of the same name (a file and an unfinished upload of
    a new version share it), so ``after`` = the last name of a page loses nothing.
    """
    total = len(entries)
    rest = [e for e in entries if after is None or e["name"] > after]

    def page(chosen: list[dict]) -> Reply:
        truncated = len(chosen) < len(rest)
        return reply(Code.OK, f"{len(chosen)} of {total} entries" + (" (truncated)" if truncated else ""),
                     path=path, entries=chosen, truncated=truncated, total=total,
                     continue_after=chosen[-1]["name"] if truncated and chosen else None)

    budget = MAX_HEADER_SIZE - header_bytes(page([])) - LISTING_RESERVE
    count = 0
    for entry in rest:
        budget -= _entry_bytes(entry)
        if budget < 0:
            break
        count += 1
    while True:
        cut = count
        while 0 < cut < len(rest) and rest[cut]["name"] == rest[cut - 1]["name"]:
            cut -= 1                   # do not split a name between two pages
        message = page(rest[:cut])
        if header_bytes(message) <= MAX_HEADER_SIZE or cut == 0:
            return message
        count = cut * 9 // 10          # the estimate was wrong (it is not): never send too much


#: Room kept free in a listing's header for "continue_after" (the last name, escaped).
LISTING_RESERVE = 4096


__all__ = [
    "NEED_DATA", "Role", "State", "SessionState", "SequenceError", "Code", "COMMANDS", "ProtocolError",
    "FatalProtocolError", "Request", "Login", "Auth", "Pwd", "Cd", "Ls", "Mkdir", "Rm", "Quota", "Put",
    "PutData", "Trailer", "Abort", "Get", "Noop", "Help", "Quit", "Reply", "Invalid", "Body", "EndOfBody",
    "FtpConnection", "parse_request", "parse_reply", "reply", "error", "greeting", "help_reply",
]
