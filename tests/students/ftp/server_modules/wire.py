"""Frames (§1): 4-byte !I header length, strict JSON header, body of header['size'] bytes."""
import asyncio
import hashlib
import json
import math
import re
import struct

MAX_HEADER = 65536
MAX_DEPTH = 32
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def _no_constant(name):
    raise ValueError(f"{name} is not allowed in a header")


def _parse_float(s):
    f = float(s)
    if math.isinf(f) or math.isnan(f):
        raise ValueError(f"number {s[:30]} is out of range")
    return f


def _parse_int(s):
    digits = s.lstrip("-")
    if len(digits) > 20:
        raise ValueError("integer longer than 20 digits")
    return int(s)


def _pairs(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _depth(text):
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
            if depth > best:
                best = depth
                if best > MAX_DEPTH:
                    return best
        elif ch in "]}":
            depth -= 1
    return best


def parse_header(raw):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the header is not UTF-8")
    if _depth(text) > MAX_DEPTH:
        raise ValueError(f"the header nests deeper than {MAX_DEPTH} levels")
    try:
        h = json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant,
                       parse_float=_parse_float, parse_int=_parse_int)
    except RecursionError:
        raise ValueError("the header nests too deep")
    except ValueError as e:
        raise ValueError(f"the header is not strict JSON: {e}")
    if not isinstance(h, dict):
        raise ValueError("the header is not a JSON object")
    size = h.get("size", 0)
    if size is None:
        size = 0
    if type(size) is not int or size < 0:
        raise ValueError("'size' must be a non-negative integer")
    if "sha256" in h and h["sha256"] is not None:
        if not isinstance(h["sha256"], str) or not HEX64.match(h["sha256"]):
            raise ValueError("'sha256' must be 64 hex digits")
    elif "sha256" in h:
        del h["sha256"]
    return h


class Reply(Exception):
    """An error reply; the session goes on (unless close=True)."""

    def __init__(self, code, msg, close=False, **fields):
        super().__init__(msg)
        self.code, self.msg, self.close, self.fields = code, msg, close, fields


def check_body_sum(h, body):
    if "sha256" in h and hashlib.sha256(body).hexdigest() != h["sha256"].lower():
        raise Reply(500, "body checksum (sha256) does not match", close=True)


def encode(h, body_size=0):
    h = dict(h)
    h["size"] = body_size
    raw = json.dumps(h, ensure_ascii=False).encode("utf-8")
    return struct.pack("!I", len(raw)) + raw


async def send(writer, h, body_size=0):
    writer.write(encode(h, body_size))
    await writer.drain()


async def close_gracefully(reader, writer):
    """Reply already sent: FIN, read away <= 1 s / 1 MiB, close (§1)."""
    try:
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.0
        got = 0
        while got < 1 << 20:
            left = end - loop.time()
            if left <= 0:
                break
            try:
                b = await asyncio.wait_for(reader.read(65536), left)
            except (asyncio.TimeoutError, TimeoutError):
                break
            if not b:
                break
            got += len(b)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except Exception:
            pass


def _size(h):
    return len(encode(h))


def fit_page(entries, make):
    """Largest prefix of entries whose reply header fits in MAX_HEADER, never splitting a name."""
    whole = make(entries, False, None)
    if _size(whole) <= MAX_HEADER:
        return entries, False
    # estimate per entry, then correct
    base = _size(make([], True, "x" * 1))
    budget = MAX_HEADER - base - 4096
    n = 0
    used = 0
    for e in entries:
        used += len(json.dumps(e, ensure_ascii=False).encode("utf-8")) + 2
        if used > budget:
            break
        n += 1
    # do not end between two entries of the same name
    while 0 < n < len(entries) and entries[n]["name"] == entries[n - 1]["name"]:
        n -= 1
    while n > 0:
        page = entries[:n]
        if _size(make(page, True, page[-1]["name"])) <= MAX_HEADER:
            return page, True
        n -= 1
        while 0 < n < len(entries) and entries[n]["name"] == entries[n - 1]["name"]:
            n -= 1
    return entries[:1], True
