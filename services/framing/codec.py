"""Length-prefixed frames with a JSON header (报头): a sans-IO codec.

TCP is a byte stream: it keeps the order of the bytes but not the boundaries of your
``send()`` calls (粘包, "sticky packets"). So every message says how long it is::

    +----------------+---------------------------------+----------------------+
    | 4 bytes  "!I"  | header: UTF-8 JSON object       | body: header["size"] |
    | header length  | {"size": 1500, "sha256": "..."} | bytes, maybe none    |
    +----------------+---------------------------------+----------------------+

* ``"!I"`` is ``struct`` for "network byte order (big-endian), unsigned 32-bit". The seed's
  ``struct.pack('i', n)`` is *native* order (little-endian on x86) and *signed*: another
  machine may read it backwards, and 2**31 and above come out negative.
* ``"size"`` is the number of body bytes (0 or absent: no body). ``"sha256"``, when present,
  is the hex digest of the body; the decoder checks it.

"Sans-IO" (as in h11): this module never touches a socket. You push bytes in with
``receive_data()`` and pull events out with ``next_event()``::

    decoder = FrameDecoder()
    while True:
        event = decoder.next_event()
        if event is NEED_DATA:
            data = sock.recv(65536)
            if not data:                 # b'' means the peer closed the connection
                decoder.end_of_stream()  # raises TruncatedFrame if we were mid-frame
                break
            decoder.receive_data(data)
        elif isinstance(event, Header):  # ... event.fields
        elif isinstance(event, Data):    # ... a chunk of the body, event.data
        elif isinstance(event, EndOfFrame):  # body complete (and its sha256 checked)

The same object serves a blocking client, a threaded server, tests that feed it one byte at
a time, and fuzzers. Limits are enforced before anything is allocated: a peer that announces
a 4 GiB header is refused as soon as its 4 prefix bytes arrive.

Errors: every problem with the bytes raises a ``FramingError`` (a ``ValueError``):
``HeaderTooLarge``, ``BadHeader``, ``BodyTooLarge``, ``TruncatedFrame`` (also an ``EOFError``)
or ``ChecksumMismatch``. Nothing else escapes the decoder, whatever the input. After a
``ChecksumMismatch`` the stream is still in step (the whole frame was consumed) and the
decoder carries on with the next frame; after any other error the stream cannot be trusted,
so the decoder refuses to continue (it raises the same error again) and you should close the
connection.
"""
from __future__ import annotations

import enum
import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FrameAssembler",
    "HEADER_LENGTH", "MAX_HEADER_SIZE", "MAX_SIZE",
    "FramingError", "HeaderTooLarge", "BadHeader", "BodyTooLarge", "TruncatedFrame", "ChecksumMismatch",
    "Header", "Data", "EndOfFrame", "NEED_DATA", "NeedData", "Event", "Frame", "FrameDecoder",
    "header_size_from_prefix", "parse_header", "encode_header", "encode_frame", "decode_frames",
]

# The one definition of the prefix: 4 bytes, network byte order ("!"), unsigned ("I").
HEADER_LENGTH = struct.Struct("!I")

MAX_HEADER_SIZE = 64 * 1024   # default limit on the JSON header; real headers are ~100 bytes
MAX_SIZE = 2**63 - 1          # largest "size" anyone can mean (a file offset fits in 63 bits)
MAX_DEPTH = 32                # nesting limit for header JSON ({"a": {"b": ...}})
MAX_INT_DIGITS = 20           # enough for any 64-bit number; longer integers are refused

# When the buffer's consumed prefix grows beyond this, it is cut off (see _ReceiveBuffer).
_COMPACT_THRESHOLD = 64 * 1024


# --------------------------------------------------------------------------------- errors

class FramingError(ValueError):
    """The bytes do not form a valid frame."""


class HeaderTooLarge(FramingError):
    """The length prefix announces a header above the limit (checked before reading it)."""


class BadHeader(FramingError):
    """The header is not a UTF-8 JSON object with a valid "size" (and "sha256")."""


class BodyTooLarge(FramingError):
    """The header announces a body above the decoder's max_body_size."""


class TruncatedFrame(FramingError, EOFError):
    """The stream ended in the middle of a frame."""


class ChecksumMismatch(FramingError):
    """The body's sha256 differs from the header's "sha256"."""


# --------------------------------------------------------------------------------- events

@dataclass(frozen=True)
class Header:
    """A frame's header. ``fields["size"]`` is always present (an int) after decoding."""
    fields: dict


@dataclass(frozen=True)
class Data:
    """A chunk of the current frame's body, handed out as soon as it arrives.

    ``data`` may be a memoryview of the very buffer passed to ``receive_data`` (no copy).
    If you pass a buffer that you later overwrite (``recv_into``), use the chunk first.
    """
    data: bytes | memoryview


@dataclass(frozen=True)
class EndOfFrame:
    """The body is complete (and, when the header had one, its sha256 matched)."""


class NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData.NEED_DATA
"""Returned by ``next_event()`` when more bytes must be received first."""

Event = Header | Data | EndOfFrame


@dataclass(frozen=True)
class Frame:
    """A whole frame, for small messages (see ``decode_frames`` and ``sockio.read_frame``)."""
    header: dict
    body: bytes


# ------------------------------------------------------------------------- header checks

def _describe_prefix(prefix: bytes) -> str:
    """Explain a suspicious prefix: seed-style code packs with native, signed 'i'."""
    (big_endian,) = HEADER_LENGTH.unpack(prefix)
    (signed,) = struct.unpack("!i", prefix)
    (little_endian,) = struct.unpack("<I", prefix)
    hints = [f"prefix {prefix.hex(' ')}"]
    if signed < 0:
        hints.append(f"read as a signed int ('i') it would be {signed}")
    if little_endian <= MAX_HEADER_SIZE < big_endian:
        hints.append(f"read little-endian it would be {little_endian}: was it packed with native "
                     f"struct.pack('i') instead of network order '!I'?")
    return "; ".join(hints)


def header_size_from_prefix(prefix: bytes, max_header_size: int = MAX_HEADER_SIZE) -> int:
    """Decode the 4-byte length prefix and enforce the header limit before anything is read."""
    (size,) = HEADER_LENGTH.unpack(prefix)
    if size > max_header_size:
        raise HeaderTooLarge(f"header length {size} exceeds the limit of {max_header_size} bytes "
                             f"({_describe_prefix(prefix)}); refused before reading it")
    if size == 0:
        raise BadHeader("header length is 0: a frame needs a JSON object header, at least b'{}'")
    return size


def _reject_constant(name: str) -> Any:
    raise BadHeader(f"header contains {name}, which is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):          # json turns 1e999 into inf without complaint
        raise BadHeader(f"header number {text[:30]} is out of range")
    return value


def _parse_int(text: str) -> int:
    # Without this, json would happily build a 4000-digit int (and the 4300-digit limit
    # of int() raises a plain ValueError, not ours).
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BadHeader(f"header integer with {len(text)} digits is too large")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    # json keeps the last of duplicate keys; two "size" keys would let two readers disagree.
    fields = dict(pairs)
    if len(fields) != len(pairs):          # some key came twice: find it, to name it
        seen: set = set()
        for key, _ in pairs:
            if key in seen:
                raise BadHeader(f"header has the key {key!r} twice")
            seen.add(key)
    return fields


# Two decoders, built once (json.loads(text, hook=...) builds a new JSONDecoder at every call).
# Both refuse NaN/Infinity, duplicate keys and non-finite floats. _STRICT also counts the digits
# of every integer; _DIGITS_OK leaves integers to the C scanner and is used only when no run of
# digits in the text is longer than MAX_INT_DIGITS (then no integer can be either).
_STRICT = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_reject_constant,
                           parse_float=_parse_float, parse_int=_parse_int)
_DIGITS_OK = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_reject_constant,
                              parse_float=_parse_float)
# And two encoders, built once too (json.dumps(obj, option=...) builds one per call).
_UTF8_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_ASCII_JSON = json.JSONEncoder(allow_nan=False)
_LONG_DIGIT_RUN = re.compile(rf"\d{{{MAX_INT_DIGITS + 1}}}")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def _check_depth(value: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH (iteratively: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadHeader(f"header JSON is nested deeper than {MAX_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def parse_header(raw: bytes, max_body_size: int | None = None) -> dict:
    """Turn header bytes into a dict, or raise BadHeader / BodyTooLarge.

    Checks: UTF-8, strict JSON (no NaN/Infinity, no duplicate keys, no huge numbers, limited
    nesting), an object at the top, "size" a non-negative int (absent means 0; stored back
    as 0), "sha256" (if present) 64 hex digits.
    """
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadHeader(f"header is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        fields = (_STRICT if _LONG_DIGIT_RUN.search(text) else _DIGITS_OK).decode(text)
    except RecursionError:
        raise BadHeader("header JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise BadHeader(f"header is not JSON: {exc.msg} at char {exc.pos}: {text[:60]!r}") from None
    if not isinstance(fields, dict):
        raise BadHeader(f"header must be a JSON object, got {type(fields).__name__}")
    if text.count("{") + text.count("[") > MAX_DEPTH:   # fewer brackets cannot nest deeper
        _check_depth(fields)
    size = fields.setdefault("size", 0)
    # bool is a subclass of int in Python: {"size": true} must not mean 1.
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
        raise BadHeader(f'header "size" must be a non-negative integer, got {size!r}')
    if max_body_size is not None and size > max_body_size:
        raise BodyTooLarge(f"body of {size} bytes exceeds the limit of {max_body_size} bytes")
    digest = fields.get("sha256")
    if digest is not None and not _is_sha256_hex(digest):
        raise BadHeader(f'header "sha256" must be 64 hex digits, got {str(digest)[:80]!r}')
    return fields


def _is_sha256_hex(value: Any) -> bool:
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


# ------------------------------------------------------------------------ receive buffer

class _ReceiveBuffer:
    """Bytes received but not yet consumed: a bytearray plus a read offset.

    Why not ``buf = buf[n:]`` or ``data += chunk`` on bytes? Each of those copies everything
    still buffered, so a peer that sends a frame in many small pieces makes us do O(n**2)
    work for n bytes: a cheap denial of service (the seed's ``total_data += recv(1024)`` spends
    seconds on 8 MiB). Here appending is amortised O(1) (bytearray grows in place), consuming
    just moves ``_start``, and the consumed prefix is cut off only when it is large and
    more than half the buffer, so every byte is moved a bounded number of times: O(n) total.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0

    def __len__(self) -> int:
        return len(self._data) - self._start

    def append(self, data: bytes | bytearray | memoryview) -> None:
        self._data += data

    def take(self, n: int) -> bytes:
        """Remove and return the next n bytes (the caller checked len(self) >= n)."""
        end = self._start + n
        with memoryview(self._data) as view:
            chunk = bytes(view[self._start:end])
        self._start = end
        if self._start == len(self._data):
            self._data.clear()
            self._start = 0
        elif self._start > _COMPACT_THRESHOLD and self._start * 2 > len(self._data):
            del self._data[:self._start]
            self._start = 0
        return chunk


# ------------------------------------------------------------------------------- decoder

class _State(enum.Enum):
    PREFIX = "waiting for the 4-byte length prefix"
    HEADER = "waiting for the header"
    BODY = "receiving the body"
    ERROR = "broken by an earlier error"


class FrameDecoder:
    """Bytes in (``receive_data``), events out (``next_event``). One per connection."""

    def __init__(self, max_header_size: int = MAX_HEADER_SIZE, max_body_size: int | None = None,
                 verify: bool = True) -> None:
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self.verify = verify
        self.body_remaining = 0       # body bytes of the current frame not yet handed out
        self._buffer = _ReceiveBuffer()
        # A chunk received while a body is in progress and the buffer is empty is kept as is
        # and handed out as memoryview slices: no copy. Invariant: at most one of
        # _passthrough and _buffer holds bytes.
        self._passthrough: memoryview | None = None
        self._state = _State.PREFIX
        self._header_size = 0
        self._body_size = 0
        self._hasher: Any = None
        self._expected_sha256: str | None = None
        self._error: FramingError | None = None

    # -- input

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. ``b''`` is ignored: call ``end_of_stream()`` for EOF."""
        if not data:
            return
        if (self._state is _State.BODY and self.body_remaining > 0
                and self._passthrough is None and not self._buffer):
            self._passthrough = memoryview(data).cast("B")
            return
        if self._passthrough is not None:          # keep the order: old chunk first
            self._buffer.append(self._passthrough)
            self._passthrough = None
        self._buffer.append(data)

    def end_of_stream(self) -> None:
        """The peer closed the connection. Raise TruncatedFrame unless we are between frames.

        Call it after ``next_event()`` returned NEED_DATA (so every complete frame was taken).
        """
        if self._error is not None:
            raise self._error
        available = self._available()
        between_frames = self._state is _State.PREFIX or (
            self._state is _State.BODY and self.body_remaining == 0)  # EndOfFrame not yet taken
        if between_frames and available == 0:
            return
        if self._state is _State.PREFIX and available < HEADER_LENGTH.size:
            what = f"after {available} of the {HEADER_LENGTH.size} length-prefix bytes"
        elif between_frames:
            what = (f"with {available} bytes of a further frame received but not decoded "
                    f"(take every event before calling end_of_stream)")
        elif self._state is _State.HEADER:
            what = f"after {available} of {self._header_size} header bytes"
        else:
            got = self._body_size - self.body_remaining + min(available, self.body_remaining)
            what = (f"after {got} of {self._body_size} body bytes "
                    f"({self._body_size - got} missing)")
        self._fail(TruncatedFrame(f"connection closed mid-frame, {what}"))

    # -- output

    def next_event(self) -> Event | NeedData:
        """Return the next Header, Data or EndOfFrame, or NEED_DATA."""
        if self._state is _State.PREFIX:
            if self._available() < HEADER_LENGTH.size:
                return NEED_DATA
            self._read_prefix()
        if self._state is _State.HEADER:
            if self._available() < self._header_size:
                return NEED_DATA
            return self._read_header()
        if self._state is _State.BODY:
            if self.body_remaining == 0:
                return self._finish_frame()
            chunk = self._take_body_chunk()
            return NEED_DATA if chunk is None else Data(chunk)
        raise self._error  # type: ignore[misc]   # _State.ERROR

    # -- steps of the state machine

    def _read_prefix(self) -> None:
        prefix = self._buffer.take(HEADER_LENGTH.size)
        try:
            self._header_size = header_size_from_prefix(prefix, self.max_header_size)
        except FramingError as exc:
            self._fail(exc)
        self._state = _State.HEADER

    def _read_header(self) -> Header:
        raw = self._buffer.take(self._header_size)
        try:
            fields = parse_header(raw, self.max_body_size)
        except FramingError as exc:
            self._fail(exc)
        self._body_size = self.body_remaining = fields["size"]
        self._expected_sha256 = fields.get("sha256") if self.verify else None
        self._hasher = hashlib.sha256() if self._expected_sha256 else None
        self._state = _State.BODY
        return Header(fields)

    def _take_body_chunk(self) -> bytes | memoryview | None:
        if self._passthrough is not None:
            view = self._passthrough
            chunk = view[:self.body_remaining]
            rest = view[len(chunk):]
            # Bytes beyond this body start the next frame: they go to the (empty) buffer.
            self._passthrough = None
            if rest:
                self._buffer.append(rest)
        elif self._buffer:
            chunk = self._buffer.take(min(len(self._buffer), self.body_remaining))
        else:
            return None
        self.body_remaining -= len(chunk)
        if self._hasher is not None:
            self._hasher.update(chunk)
        return chunk

    def _finish_frame(self) -> EndOfFrame:
        expected, hasher = self._expected_sha256, self._hasher
        self._state, self._hasher, self._expected_sha256 = _State.PREFIX, None, None
        if hasher is not None and hasher.hexdigest() != expected.lower():  # type: ignore[union-attr]
            # The whole frame was consumed, so the stream is still in step: not fatal.
            raise ChecksumMismatch(f"body sha256 {hasher.hexdigest()} differs from the header's "
                                   f"{expected} ({self._body_size} bytes)")
        return EndOfFrame()

    def _available(self) -> int:
        return len(self._buffer) + (len(self._passthrough) if self._passthrough is not None else 0)

    def _fail(self, error: FramingError) -> Any:
        self._state, self._error = _State.ERROR, error
        raise error

    def __repr__(self) -> str:
        return (f"<FrameDecoder {self._state.value}, {self._available()} bytes buffered, "
                f"body_remaining={self.body_remaining}>")


# ------------------------------------------------------------------------------ encoders

def encode_header(fields: dict, body_size: int = 0, sha256: str | None = None) -> bytes:
    """Return prefix + JSON header for a body of ``body_size`` bytes (sets "size")."""
    if not isinstance(body_size, int) or isinstance(body_size, bool) or not 0 <= body_size <= MAX_SIZE:
        raise BadHeader(f"body_size must be a non-negative int, got {body_size!r}")
    header = dict(fields, size=body_size)
    if sha256 is not None:
        header["sha256"] = sha256
    try:      # readable UTF-8 on the wire (报头 stays 报头) ...
        raw = _UTF8_JSON.encode(header).encode("utf-8")
    except UnicodeEncodeError:  # ... unless a lone surrogate forces \\u escapes
        raw = _ASCII_JSON.encode(header).encode("ascii")
    if len(raw) > MAX_HEADER_SIZE:
        raise HeaderTooLarge(f"header of {len(raw)} bytes exceeds {MAX_HEADER_SIZE} bytes")
    return HEADER_LENGTH.pack(len(raw)) + raw


def encode_frame(fields: dict, body: bytes = b"", checksum: bool = True) -> bytes:
    """Return one whole frame: prefix, header (with "size" and, if checksum, "sha256"), body."""
    digest = hashlib.sha256(body).hexdigest() if checksum else None
    return encode_header(fields, len(body), digest) + bytes(body)


class FrameAssembler:
    """Events back into whole frames, body in memory: for small frames (tools, tests).

    Streaming code (an FTP upload) handles ``Data`` events itself instead; this is the
    convenience for everything else. Keep one per decoder: a frame may span many calls.
    """

    def __init__(self) -> None:
        self.header: dict = {}
        self.body = bytearray()

    def next_frame(self, decoder: FrameDecoder) -> Frame | NeedData:
        """The next whole frame, or NEED_DATA when the decoder needs more bytes first."""
        while (event := decoder.next_event()) is not NEED_DATA:
            if isinstance(event, Header):
                self.header, self.body = event.fields, bytearray()
            elif isinstance(event, Data):
                self.body += event.data
            else:                                   # EndOfFrame: body complete and verified
                return Frame(self.header, bytes(self.body))
        return NEED_DATA


def decode_frames(data: bytes, **decoder_options: Any) -> list[Frame]:
    """Decode a complete byte string of small frames (raises TruncatedFrame if it ends mid-frame)."""
    decoder = FrameDecoder(**decoder_options)
    decoder.receive_data(data)
    assembler = FrameAssembler()
    frames: list[Frame] = []
    while (frame := assembler.next_frame(decoder)) is not NEED_DATA:
        frames.append(frame)
    decoder.end_of_stream()
    return frames
