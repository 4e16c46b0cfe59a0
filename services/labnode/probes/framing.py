"""Lesson framing, probes: what the demo and `lab.py check framing` do from the client machine.

    python3 -m labnode.probes.framing recv-sizes      --host framing-server --port 20030
    python3 -m labnode.probes.framing trickle         --host framing-server --port 20030
    python3 -m labnode.probes.framing pipelined       --host framing-server --port 20030
    python3 -m labnode.probes.framing big-body        --host framing-server --port 20030 [--size 8388608]
    python3 -m labnode.probes.framing truncated       --host framing-server --port 20030
    python3 -m labnode.probes.framing oversize-header --host framing-server --port 20030
    python3 -m labnode.probes.framing bad-input       --host framing-server --port 20030
    python3 -m labnode.probes.framing grade-client    --host framing-server --port 20030 \
                              --client-cmd "python3 my_client.py"

They judge only what a server does on the wire (the reference server or a student's), reading
with the lesson's own decoder (codec.py). Where a probe must know that bytes are already
queued it asks the kernel (ioctl FIONREAD, recv with MSG_PEEK) instead of sleeping.

Each probe prints one observation per line, then `RESULT {"ok": ..., "observed": {...}}`.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import resource
import shlex
import socket
import struct
import subprocess
import sys
import termios
import time

from framing.codec import (
    HEADER_LENGTH,
    NEED_DATA,
    Data,
    EndOfFrame,
    Frame,
    FrameDecoder,
    FramingError,
    Header,
    HeaderTooLarge,
    TruncatedFrame,
    encode_frame,
    encode_header,
    header_size_from_prefix,
    parse_header,
)
from framing.sockio import read_frame, recv_exact, send_frame
from labnode.report import result

TIMEOUT = 10.0


# ------------------------------------------------------------------------------- helpers



def connect(host: str, port: int, timeout: float = TIMEOUT) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def request(sock: socket.socket, command: str, mode: str = "normal", body: bytes = b"") -> None:
    send_frame(sock, {"cmd": command, "mode": mode}, body)


def preview(data: bytes | bytearray, width: int = 40) -> str:
    return repr(bytes(data[:width])) + ("..." if len(data) > width else "")


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def queued(sock: socket.socket) -> int:
    """Bytes waiting in the socket's receive buffer (what the next recv() can take at once)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


class CountingSocket:
    """Wraps a socket to count recv() calls and remember what each returned."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sizes: list[int] = []

    def recv(self, n: int) -> bytes:
        data = self.sock.recv(n)
        self.sizes.append(len(data))
        return data


def read_reply(sock: socket.socket | CountingSocket, decoder: FrameDecoder,
               recv_size: int = 65536) -> list[Frame]:
    """The frames of one reply: a frame whose header says "more": true is followed by another."""
    frames = [read_frame(sock, decoder, recv_size)]  # type: ignore[arg-type]
    while frames[-1].header.get("more") is True:
        frames.append(read_frame(sock, decoder, recv_size))  # type: ignore[arg-type]
    return frames


def checked(frame: Frame) -> bool:
    """The reply is a success and carries a sha256 (which read_frame has already verified)."""
    return frame.header.get("ok") is True and "sha256" in frame.header


def summary(header: dict) -> str:
    shown = {k: (v[:12] + "..." if k == "sha256" and isinstance(v, str) else v) for k, v in header.items()}
    return json.dumps(shown, ensure_ascii=False)


# ----------------------------------------------------------------------------- recv-sizes

def recv_sizes(host: str, port: int, command: str = "lines 300",
               sizes: tuple[int, ...] = (1, 5, 4096)) -> bool:
    """The same reply read with recv(1), recv(5), recv(4096): identical bodies, hash verified."""
    with connect(host, port) as sock:
        request(sock, command)
        print(f"sent {command!r} as a frame; reading the reply step by step with recv_exact:")
        prefix = recv_exact(sock, HEADER_LENGTH.size)
        header_size = header_size_from_prefix(prefix)
        print(f"  1. recv_exact(4) -> {prefix.hex(' ')} -> struct.unpack('!I') -> "
              f"header length {header_size}")
        raw_header = recv_exact(sock, header_size)
        header = parse_header(raw_header)
        print(f"  2. recv_exact({header_size}) -> {raw_header[:90].decode('utf-8', 'replace')}"
              f"{'...' if header_size > 90 else ''}")
        body = recv_exact(sock, header["size"])
        print(f"  3. recv_exact({header['size']}) -> body {preview(body)}")
        digest_ok = hashlib.sha256(body).hexdigest() == header.get("sha256")
        print(f"  4. sha256(body) == header['sha256']: {digest_ok}")

        decoder = FrameDecoder()
        bodies, calls, verified = [], [], []
        for size in sizes:
            request(sock, command)
            counting = CountingSocket(sock)
            frame = read_frame(counting, decoder, size)  # type: ignore[arg-type]   # raises on bad sha256
            bodies.append(frame.body)
            calls.append(len(counting.sizes))
            verified.append(checked(frame))
            print(f"recv({size}): {len(counting.sizes)} recv calls, first returned {counting.sizes[0]} "
                  "bytes -> "
                  f"body {len(frame.body)} bytes, sha256 {'verified' if verified[-1] else 'MISSING'}")
    identical = all(b == body for b in bodies)
    print(f"all {len(sizes)} bodies identical to the first read: {identical}. Where recv() cuts the stream "
          "does not matter once the reader counts bytes instead of trusting recv()")
    ok = identical and all(verified) and digest_ok and len(body) > 0
    return result(ok, command=command, prefix_hex=prefix.hex(), header_length=header_size, header=header,
                  recv_sizes=list(sizes), recv_calls=calls, body_sizes=[len(b) for b in bodies],
                  identical=identical, sha256_ok=all(verified) and digest_ok)


# -------------------------------------------------------------------------------- trickle

def trickle(host: str, port: int, text: str = "trickled both ways", pause: float = 0.005) -> bool:
    """Request sent 1 byte per send(); reply trickled by the server: recv(4) returns fewer than 4."""
    with connect(host, port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frame = encode_frame({"cmd": f"echo {text}", "mode": "trickle"})
        print(f"sending the {len(frame)}-byte request one byte per send(), {pause * 1000:.0f} ms apart, "
              "TCP_NODELAY on: the server's reads see it in pieces")
        for i in range(len(frame)):
            if i:
                time.sleep(pause)
            sock.sendall(frame[i:i + 1])
        prefix_sizes, prefix = [], b""
        while len(prefix) < HEADER_LENGTH.size:
            chunk = sock.recv(HEADER_LENGTH.size - len(prefix))
            if not chunk:
                raise EOFError(f"server closed after {len(prefix)} prefix bytes")
            prefix_sizes.append(len(chunk))
            prefix += chunk
        print(f"reply prefix: recv(4) returned {prefix_sizes[0]} byte(s); {len(prefix_sizes)} recv calls "
              f"{prefix_sizes} to collect 4")
        if len(prefix_sizes) > 1:
            print(f"  the seed's struct.unpack('i', recv(4)) would have raised struct.error: unpack "
                  f"requires a buffer of 4 bytes (it got {prefix_sizes[0]})")
        decoder = FrameDecoder()
        decoder.receive_data(prefix)
        counting = CountingSocket(sock)
        reply = read_frame(counting, decoder, 4096)  # type: ignore[arg-type]
    print(f"header + body took {len(counting.sizes)} more recv calls; header {summary(reply.header)}; "
          f"body {reply.body!r}")
    split = len(prefix_sizes) > 1
    if not split:
        print("the prefix arrived in one piece: the server did not trickle "
              "(does it implement mode 'trickle'?)")
    body_ok = reply.body == text.encode() and checked(reply)
    ok = body_ok and split
    return result(ok, request_sends=len(frame), prefix_recv_sizes=prefix_sizes, prefix_split=split,
                  reply_recv_calls=len(counting.sizes) + len(prefix_sizes),
                  reply_body=reply.body.decode("utf-8", "replace"), reply_ok=body_ok)


# ------------------------------------------------------------------------------ pipelined

def wait_for_frames(sock: socket.socket, count: int, timeout: float = 5.0) -> bytes:
    """Poll the kernel (FIONREAD, then MSG_PEEK) until ``count`` whole frames are queued; return them."""
    deadline = time.monotonic() + timeout
    while True:
        have = queued(sock)
        peeked = sock.recv(have, socket.MSG_PEEK) if have else b""
        decoder, complete = FrameDecoder(), 0
        decoder.receive_data(peeked)
        while (event := decoder.next_event()) is not NEED_DATA:
            complete += isinstance(event, EndOfFrame)
        if complete >= count:
            return peeked
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {complete} complete frame(s) ({have} bytes) queued after {timeout} s; "
                               f"expected {count} (does the server implement mode 'pipeline'?)")
        time.sleep(0.002)


def seed_overread(stream: bytes, recv_size: int = 1024) -> tuple[int, int]:
    """What the seed's reader takes for the first body when everything is already queued.

    Returns (bytes it reads as "the body", how many of those belong to the next frame).
    """
    header_size = header_size_from_prefix(stream[:4])
    size = parse_header(stream[4:4 + header_size])["size"]
    pos = got = 4 + header_size
    while got - pos < size and got < len(stream):      # while recv_size < total_size: recv(1024)
        got = min(got + recv_size, len(stream))
    return got - pos, got - pos - size


def pipelined(host: str, port: int, body_size: int = 1500) -> bool:
    """Two requests in one sendall, and two reply frames in one recv: each comes out exactly."""
    upload = bytes(range(256)) * (body_size // 256) + bytes(body_size % 256)
    with connect(host, port) as sock:
        first, second = encode_frame({"cmd": "hash"}, upload), encode_frame({"cmd": "echo 0123456789"})
        sock.sendall(first + second)
        print(f"sent TWO requests in one sendall: 'hash' with a {body_size}-byte body ({len(first)} bytes "
              f"framed), then 'echo 0123456789' ({len(second)} bytes). A server that reads the body with "
              f"recv(1024) until it has {body_size} bytes also eats the next request")
        decoder = FrameDecoder()
        hash_reply, echo_reply = read_frame(sock, decoder), read_frame(sock, decoder)
        hash_ok = (checked(hash_reply) and hash_reply.header.get("body_size") == body_size
                   and hash_reply.header.get("body_sha256") == hashlib.sha256(upload).hexdigest())
        echo_ok = checked(echo_reply) and echo_reply.body == b"0123456789"
        print(f"  reply 1: {summary(hash_reply.header)} -> server saw exactly our {body_size} bytes: "
              f"{hash_ok}")
        print(f"  reply 2: body {echo_reply.body!r} -> second request intact: {echo_ok}")

        request(sock, f"big {body_size}", mode="pipeline")
        print(f"sent 'big {body_size}' with mode 'pipeline': the server answers with two frames "
              "in one sendall")
        peeked = wait_for_frames(sock, 2)
        print(f"FIONREAD/MSG_PEEK: {len(peeked)} bytes queued, both frames back to back")
        data = sock.recv(65536)
        print(f"one recv(65536) -> {len(data)} bytes: both frames, whole, in one piece")
        taken, over = seed_overread(data)
        print(f"  the seed's body loop (recv(1024) while received < {body_size}) would take {taken} bytes as "
              f"the body: {over} of them belong to frame 2 (its prefix, header and body), and the next read "
              "would wait forever for a frame that was already eaten")
        decoder = FrameDecoder()
        decoder.receive_data(data)
        frames, body = [], bytearray()
        while (event := decoder.next_event()) is not NEED_DATA:
            if isinstance(event, Data):
                body += event.data
            elif isinstance(event, EndOfFrame):
                frames.append(bytes(body))
                body = bytearray()
        sizes = [len(f) for f in frames]
        print(f"FrameDecoder on the same bytes: {len(frames)} frames, bodies of {sizes} bytes, "
              f"{queued(sock)} bytes still queued")
    ok = hash_ok and echo_ok and len(frames) == 2 and sizes[0] == body_size
    return result(ok, requests_pipelined_ok=hash_ok and echo_ok, hash_reply_ok=hash_ok, echo_reply_ok=echo_ok,
                  one_recv_bytes=len(data), frames_in_one_recv=len(frames), body_sizes=sizes,
                  seed_body_bytes=taken, seed_overread_bytes=over)


# ------------------------------------------------------------------------------- big-body

def big_body(host: str, port: int, size: int = 8 * 2**20) -> bool:
    """An 8 MiB reply and an 8 MiB request, both streamed: time grows linearly with size."""
    with connect(host, port, timeout=30) as sock:
        request(sock, f"big {size}")
        counting = CountingSocket(sock)
        started = time.monotonic()
        reply = read_frame(counting, FrameDecoder(), 65536)  # type: ignore[arg-type]
        down = time.monotonic() - started
        down_ok = checked(reply) and len(reply.body) == size
        print(f"download 'big {size}': {len(reply.body)} bytes in {len(counting.sizes)} recv calls, "
              f"{down:.2f} s ({size / max(down, 1e-9) / 2**20:.0f} MiB/s), sha256 verified: {down_ok}")
        chunks = size // 1024
        copied = chunks * chunks // 2 * 1024 / 2**30
        print(f"  the seed's `total_data += recv(1024)` on bytes copies everything so far on each of "
              f"~{chunks} calls: ~{copied:.0f} GiB of copying for {size // 2**20} MiB (quadratic)")

        upload = (b"framing" * (size // 7 + 1))[:size]
        started = time.monotonic()
        send_frame(sock, {"cmd": "hash"}, upload)
        answer = read_frame(sock, FrameDecoder())
        up = time.monotonic() - started
        up_ok = (checked(answer) and answer.header.get("body_size") == size
                 and answer.header.get("body_sha256") == hashlib.sha256(upload).hexdigest())
        print(f"upload {size} bytes with 'hash': the server counted {answer.header.get('body_size')} bytes, "
              f"sha256 matches: {up_ok}; {up:.2f} s ({size / max(up, 1e-9) / 2**20:.0f} MiB/s)")
    return result(down_ok and up_ok, size=size, download_bytes=len(reply.body),
                  download_seconds=round(down, 3),
                  download_recv_calls=len(counting.sizes), download_sha256_ok=down_ok,
                  upload_bytes=size, upload_seconds=round(up, 3),
                  upload_server_size=answer.header.get("body_size"), upload_sha256_match=up_ok)


# ------------------------------------------------------------------------------ truncated

def truncated(host: str, port: int, size: int = 100_000) -> bool:
    """The server announces a body, sends half, closes: a clear TruncatedFrame, no hang."""
    announced, received, error = None, 0, None
    with connect(host, port) as sock:
        request(sock, f"big {size}", mode="truncate")
        print(f"sent 'big {size}' with mode 'truncate': the server announces {size} bytes, sends fewer, "
              "closes")
        decoder = FrameDecoder()
        try:
            while True:
                event = decoder.next_event()
                if event is NEED_DATA:
                    data = sock.recv(65536)
                    if not data:
                        print(f"recv() -> b'' after {received} body bytes: the server closed the connection")
                        decoder.end_of_stream()
                        raise EOFError("the server closed between frames")
                    decoder.receive_data(data)
                elif isinstance(event, Header):
                    announced = event.fields["size"]
                    print(f"header: {summary(event.fields)}")
                elif isinstance(event, Data):
                    received += len(event.data)
                else:
                    print("the whole body arrived: the server did not truncate "
                          "(does it implement 'truncate'?)")
                    break
        except EOFError as exc:          # TruncatedFrame is an EOFError too
            error = exc
    if error is not None:
        print(f"decoder.end_of_stream() -> {error_text(error)}")
        print("the seed's loop `while recv_size < total_size: total_data += recv(1024)` would spin forever "
              "here: recv() returns b'' at once, again and again, and recv_size never grows")
    ok = isinstance(error, TruncatedFrame) and announced is not None and received < announced
    return result(ok, announced_size=announced, received_body_bytes=received,
                  missing_bytes=None if announced is None else announced - received,
                  error_type=type(error).__name__ if error else None, error=str(error) if error else None)


# ------------------------------------------------------------------------ oversize-header

def oversize_header(host: str, port: int) -> bool:
    """The server announces a 4 GiB header: the decoder refuses after 4 bytes, allocating nothing."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seen, error = b"", None
    with connect(host, port) as sock:
        request(sock, "echo hi", mode="oversize")
        print("sent 'echo hi' with mode 'oversize'; reading the reply ONE byte per recv() to see when the "
              "decoder gives up")
        decoder = FrameDecoder()
        try:
            while True:
                byte = sock.recv(1)
                if not byte:
                    decoder.end_of_stream()
                    raise EOFError("the server closed the connection")
                seen += byte
                decoder.receive_data(byte)
                while (event := decoder.next_event()) is not NEED_DATA:
                    if isinstance(event, Header):
                        print(f"header accepted: {summary(event.fields)} (the server sent a normal reply)")
                    elif isinstance(event, EndOfFrame):
                        raise EOFError("a normal frame arrived: does the server implement mode 'oversize'?")
        except (FramingError, EOFError) as exc:
            error = exc
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    (announced,) = HEADER_LENGTH.unpack(seen[:4].ljust(4, b"\0"))
    (signed,) = struct.unpack("!i", seen[:4].ljust(4, b"\0"))
    print(f"bytes read: {seen[:8].hex(' ')} -> announced header length {announced} "
          f"(as the seed's signed 'i' it would be {signed})")
    print(f"after {len(seen)} bytes: {error_text(error) if error else 'no error'}")
    print(f"peak memory grew by {grown} KiB. The seed's client would call recv({announced}) "
          "(CPython allocates a buffer of that size before asking the kernel), or with 'i', "
          f"recv({signed}): ValueError: negative buffersize in recv")
    if announced != 2**32 - 1:
        print(f"the server announced {announced}, not 4294967295: it did not send the 'oversize' reply")
    ok = isinstance(error, HeaderTooLarge) and len(seen) == HEADER_LENGTH.size and announced == 2**32 - 1
    return result(ok, announced_header_length=announced, signed_value=signed,
                  bytes_read_before_error=len(seen),
                  error_type=type(error).__name__ if error else None, error=str(error) if error else None,
                  maxrss_growth_kib=grown)


# ------------------------------------------------------------------------------ bad-input

def prefixed(raw_header: bytes) -> bytes:
    """A frame with a hand-made (possibly broken) header: only the length prefix is right."""
    return HEADER_LENGTH.pack(len(raw_header)) + raw_header


def bad_checksum_frame() -> bytes:
    frame = bytearray(encode_frame({"cmd": "hash"}, b"0123456789"))
    frame[-1] ^= 1
    return bytes(frame)


# name -> (bytes sent, whether to shut down our sending side afterwards, follow-up expected on
# the same connection: a valid request that must still be answered because the stream is in step)
BAD_INPUTS: list[tuple[str, bytes, bool]] = [
    ("not-json", prefixed(b"hello, server"), False),
    ("not-utf8", prefixed(b'{"cmd": "echo \xff\xfe"}'), False),
    ("not-an-object", prefixed(b'["echo", "hi"]'), False),
    ("length-zero", b"\x00\x00\x00\x00", False),
    ("length-2**32-1", b"\xff\xff\xff\xff", False),
    ("negative-if-signed", b"\x80\x00\x00\x00", False),
    ("nan-size", prefixed(b'{"cmd": "echo x", "size": NaN}'), False),
    ("huge-number", prefixed(b'{"cmd": "echo x", "size": 1' + b"0" * 400 + b"}"), False),
    ("size-is-string", prefixed(b'{"cmd": "echo x", "size": "5"}'), False),
    ("deep-nesting", prefixed(b'{"cmd": "echo x", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"), False),
    ("missing-cmd", prefixed(b'{"size": 0}'), False),
    ("cmd-not-a-string", prefixed(b'{"cmd": 42, "size": 0}'), False),
    ("unknown-command", encode_frame({"cmd": "rm -rf /"}), False),
    ("bad-checksum", bad_checksum_frame(), False),
    ("body-longer-than-announced", encode_header({"cmd": "hash"}, 10) + b"x" * 50, False),
    ("body-shorter-then-close", encode_header({"cmd": "hash"}, 1000) + b"x" * 10, True),
]
RECOVERABLE = {"missing-cmd", "cmd-not-a-string", "unknown-command", "bad-checksum"}
CLOSE_IS_ENOUGH = {"body-shorter-then-close"}


def collect_replies(sock: socket.socket, timeout: float, wanted: int | None) -> tuple[list[dict], str]:
    """Read reply frames until ``wanted`` arrived, or the server closes or stays silent.

    Returns (the headers, how the connection ended).
    """
    sock.settimeout(timeout)
    decoder, headers = FrameDecoder(), []
    try:
        while wanted is None or len(headers) < wanted:
            headers.append(read_frame(sock, decoder).header)
        return headers, "open (the stream is still in step)"
    except TruncatedFrame as exc:
        return headers, f"cut mid-frame ({exc})"
    except EOFError:
        return headers, "closed"
    except TimeoutError:
        return headers, "left open"
    except FramingError as exc:
        return headers, f"unreadable reply ({error_text(exc)})"
    except OSError as exc:
        return headers, f"reset ({error_text(exc)})"


def try_bad_input(sock: socket.socket, name: str, data: bytes, half_close: bool, timeout: float) -> dict:
    with sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)     # "then close": we can still read the reply
            elif name in RECOVERABLE:
                request(sock, "echo still in step")
        except OSError as exc:                    # the server reset the connection while we sent
            return {"case": name, "sent_bytes": len(data), "replies": 0, "error": None, "continued": False,
                    "ended": f"reset while sending ({error_text(exc)})"}
        headers, ended = collect_replies(sock, timeout, 2 if name in RECOVERABLE else None)
    errors = [h.get("error") for h in headers if h.get("ok") is False]
    # the follow-up request is answered when an ok reply comes after the error (the contract does not
    # ask reply headers to repeat the command, so the reply is not looked up by its "cmd")
    continued = len(headers) >= 2 and headers[0].get("ok") is False and headers[-1].get("ok") is True
    return {"case": name, "sent_bytes": len(data), "replies": len(headers),
            "error": str(errors[0])[:200] if errors else None, "continued": continued, "ended": ended}


def still_serves(host: str, port: int, text: str, timeout: float = 5.0) -> bool:
    """A fresh client's 'echo TEXT' gets TEXT back (a trailing newline is fine)."""
    try:
        with connect(host, port, timeout) as sock:
            request(sock, f"echo {text}")
            reply = read_frame(sock, FrameDecoder())
    except (OSError, EOFError, FramingError) as exc:
        print(f"  a fresh 'echo {text}' got no reply: {error_text(exc)}")
        return False
    if not echo_body_ok(reply, text):
        print(f"  a fresh 'echo {text}' was answered, but with {summary(reply.header)} body {preview(reply.body)}")
        return False
    return True


def server_gone(host: str, port: int, timeout: float, tries: int = 3) -> str | None:
    """Why nobody answers any more (a connection refused...), or None while the server lives.

    A server that is being killed (out of memory, say) may still have its listening socket for a
    moment: the kernel completes a connection nobody will ever accept. So a connection that is
    made but not answered is tried again, a little later.
    """
    for attempt in range(tries):
        if attempt:
            time.sleep(0.5)
        try:
            sock = connect(host, port, timeout)
        except OSError as exc:
            return error_text(exc)
        try:
            with sock:
                request(sock, "echo are you there")
                read_frame(sock, FrameDecoder())
            return None
        except (OSError, EOFError, FramingError):
            continue
    return None        # connections are made but not answered: alive, if unwell (other checks say so)


def bad_input(host: str, port: int, timeout: float = 3.0) -> bool:
    """Garbage frames: each gets a framed error; an idle client blocks nobody; the server survives."""
    cases, silent_from, died_after, refused = [], None, None, None
    for name, data, half_close in BAD_INPUTS:
        if silent_from is not None or died_after is not None:
            cases.append({"case": name, "error": None, "tried": False,
                          "ended": f"not tried: server silent since {silent_from}" if silent_from
                          else f"not tried: server gone since {died_after}"})
            continue
        try:
            sock = connect(host, port, timeout)
        except OSError as exc:            # nobody listens any more: the previous case killed the server
            refused = error_text(exc)
            died_after = cases[-1]["case"] if cases else "(before the first case)"
            print(f"{name:<27} could not connect ({refused}): the server stopped after the case "
                  f"{died_after!r}")
            cases.append({"case": name, "error": None, "tried": False,
                          "ended": f"not tried: could not connect ({refused})"})
            continue
        case = try_bad_input(sock, name, data, half_close, timeout)
        case["tried"] = True
        cases.append(case)
        note = (f"framed error {case['error']!r}" if case["error"] else "NO framed error")
        if name in RECOVERABLE:
            answered = "was" if case["continued"] else "was NOT"
            note += f"; the next request on the same connection {answered} answered"
        print(f"{name:<27} {preview(data, 24):<34} -> {note}; connection {case['ended']}")
        if case["ended"] == "left open" and not case["error"]:
            silent_from = name             # the server stopped answering: do not wait on every case
        elif not case["error"] and not (name in CLOSE_IS_ENOUGH and case["ended"] == "closed"):
            gone = server_gone(host, port, timeout)     # did this frame kill the server?
            if gone:
                refused, died_after = gone, name
                print(f"  ... and then nobody answered a new connection ({gone}): the server stopped on {name!r}")
    # a client that vanished mid-body cannot be told much: a clean close is as good as an error frame
    rejected = [c["case"] for c in cases if c.get("error") or (c["case"] in CLOSE_IS_ENOUGH
                                                                   and c.get("ended") == "closed")]
    tried = [c["case"] for c in cases if c.get("tried")]
    died_bytes = None
    if died_after is not None:
        died_bytes = next((preview(d, 24) for n, d, _ in BAD_INPUTS if n == died_after), None)
        print(f"the server stopped accepting connections after {died_after!r} ({died_bytes}): "
              f"{len(cases) - len(tried)} later cases not tried")
        others_served = alive = False
    else:
        # An idle client must not stop others being served (an iterative server waits in its recv).
        try:
            with connect(host, port, timeout):
                others_served = still_serves(host, port, "served while another client idles")
            print(f"a client connected and sent nothing; a second client was served meanwhile: {others_served}")
            alive = still_serves(host, port, "still serving")
            print(f"after all that, a fresh connection gets an answer: {alive}")
        except OSError as exc:        # the last case killed the server
            refused, died_after = error_text(exc), cases[-1]["case"]
            died_bytes = preview(BAD_INPUTS[-1][1], 24)
            print(f"after the last case {died_after!r}, a new connection failed ({refused}): the server "
                  "stopped")
            others_served = alive = False
    ok = len(rejected) == len(cases) and others_served and alive
    return result(ok, cases=cases, tried=tried, rejected_with_error=rejected,
                  not_rejected=[c for c in tried if c not in rejected],
                  not_tried=[c["case"] for c in cases if not c.get("tried")],
                  server_died_after=died_after, server_died_after_bytes=died_bytes, refused=refused,
                  silent_from=silent_from,
                  continued_after_recoverable=[c["case"] for c in cases if c.get("continued")],
                  served_while_another_idles=others_served, still_serves=alive)


# --------------------------------------------------------------------------- grade-client

# name -> (client options, expectation): "body" = stdout must be the reply body; "error" =
# the client must stop with a non-zero exit and a message, promptly, without printing a body.
CLIENT_CASES: list[tuple[str, list[str], str]] = [
    ("big", ["--command", "big 100000"], "body"),
    ("trickle", ["--command", "echo a trickled reply", "--mode", "trickle"], "body"),
    ("pipeline", ["--command", "big 1500", "--mode", "pipeline"], "body"),
    ("truncate", ["--command", "big 100000", "--mode", "truncate"], "error"),
    ("corrupt", ["--command", "big 1000", "--mode", "corrupt"], "error"),
    ("refused", ["--command", "no-such-command"], "error"),
    ("oversize", ["--command", "echo hi", "--mode", "oversize"], "error"),
]
# a case's time limit when it is not case_timeout: "oversize" keeps the connection open after the
# 4-byte prefix, so a client that tries to read the announced 4 GiB waits until it is killed
CASE_TIMEOUTS = {"oversize": 5.0}
# why a client that exited 0 (or hung) in an "error" case is wrong, in words a student can act on
ACCEPTED = {
    "truncate": "exit 0 although the connection closed before `size` body bytes arrived",
    "corrupt": "exit 0 although the body's sha256 does not match the header's sha256 (never verified)",
    "refused": 'exit 0 although the reply header said "ok": false (the "ok" field was never checked)',
    "oversize": "exit 0 after a header length of 4294967295",
}
HUNG = {
    "oversize": ("hung: the server announced a header of 4294967295 bytes and kept the connection open; "
                 "the client was still trying to read that header when killed (no limit on the header length)"),
}


def expected_body(host: str, port: int, options: list[str]) -> bytes:
    """What the server really sends for these options, read with the lesson's decoder."""
    command = options[options.index("--command") + 1]
    # Only "pipeline" changes the bytes of the bodies; the other modes change how they travel.
    mode = "pipeline" if "pipeline" in options else "normal"
    with connect(host, port) as sock:
        request(sock, command, mode)
        return b"".join(frame.body for frame in read_reply(sock, FrameDecoder()))


def without_newlines(data: bytes) -> bytes:
    return data.replace(b"\r", b"").replace(b"\n", b"")


def body_mismatch(out: bytes, want: bytes) -> str:
    """Why stdout is not the body, in words a student can act on ('' when it is exact)."""
    if out == want:
        return ""
    if without_newlines(out) == without_newlines(want):
        return (f"printed {len(out) - len(want)} newline(s) more than the body (print() adds one): "
                "write the bytes with sys.stdout.buffer.write(body)")
    if want.startswith(out):
        return f"printed only the first {len(out)} of {len(want)} body bytes"
    at = next((i for i, (a, b) in enumerate(zip(out, want)) if a != b), min(len(out), len(want)))
    return f"printed {len(out)} bytes that differ from the body from byte {at} on"


def grade_client(host: str, port: int, client_cmd: str, case_timeout: float = 15.0) -> bool:
    """Run the client under test in one-shot mode against each sending mode; compare what it prints."""
    graded: dict[str, dict] = {}
    for name, options, expect in CLIENT_CASES:
        want = expected_body(host, port, options) if expect == "body" else b""
        argv = [*shlex.split(client_cmd), "--host", host, "--port", str(port), *options]
        limit = CASE_TIMEOUTS.get(name, case_timeout)
        started = time.monotonic()
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=limit)
            code, out, err, timed_out = proc.returncode, proc.stdout, proc.stderr, False
        except subprocess.TimeoutExpired as exc:
            code, out, err, timed_out = None, exc.stdout or b"", exc.stderr or b"", True
        seconds = round(time.monotonic() - started, 2)
        last_err = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        if expect == "body":
            mismatch = body_mismatch(out, want)
            passed = code == 0 and not mismatch
            verdict = (f"printed {len(out)} bytes, expected {len(want)}: "
                       + ("exact" if not mismatch else f"WRONG, {mismatch}")
                       + ("" if code == 0 else f"; exit {code} although the reply was fine"))
        else:
            allocated = b"MemoryError" in err
            passed = not timed_out and code not in (0, None) and bool(err.strip()) and not allocated
            verdict = "stopped with an error" if passed else "did NOT stop cleanly with an error"
            if passed:
                mismatch = ""
            elif timed_out:
                mismatch = HUNG.get(name, f"hung: killed after {limit:.0f} s")
            elif allocated:
                mismatch = "MemoryError: it tried to allocate the announced size instead of refusing it"
            elif code is not None and code < 0:
                mismatch = f"killed by signal {-code}" + (
                    " (SIGKILL: out of memory, most likely: it allocated a buffer of the announced size "
                    "instead of refusing it)" if code == -9 else "")
            elif code == 0:
                mismatch = ACCEPTED.get(name, "exit 0 although the reply was bad")
            else:
                mismatch = f"exit {code} without a message on stderr"
        how = f"killed after {limit:.0f} s" if timed_out else f"exit {code}"
        print(f"{name:<9} $ {shlex.join(argv)}")
        print(f"          {how} in {seconds} s; {verdict}; stdout: {preview(out, 30)}; "
              f"stderr: {last_err[0][:160]!r}")
        graded[name] = {"passed": passed, "why": mismatch, "exit_code": code, "timed_out": timed_out,
                        "seconds": seconds,
                        "printed_bytes": len(out), "expected_bytes": len(want) if expect == "body" else None}
    ok = all(g["passed"] for g in graded.values())
    return result(ok, cases=list(graded), passed={k: g["passed"] for k, g in graded.items()},
                  why={k: g["why"] for k, g in graded.items() if g["why"]},
                  exit_codes={k: g["exit_code"] for k, g in graded.items()},
                  timed_out={k: g["timed_out"] for k, g in graded.items()},
                  printed_bytes={k: g["printed_bytes"] for k, g in graded.items()},
                  expected_bytes={k: g["expected_bytes"] for k, g in graded.items()},
                  seconds={k: g["seconds"] for k, g in graded.items()}, all_passed=ok)



# ------------------------------------------------ hostile clients (grading a student's server)
# A student's server is graded with what real clients do to it: requests that arrive in pieces,
# several requests in one segment, clients that vanish mid-frame. It needs no test modes.

def echo_body_ok(frame: Frame, text: str) -> bool:
    """An echo reply carries the text (a trailing newline is allowed; the contract does not ban it)."""
    return frame.header.get("ok") is True and frame.body.rstrip(b"\r\n") == text.encode()


def trickled_request(host: str, port: int, text: str = "trickled request", pause: float = 0.003) -> bool:
    """The request arrives one byte per send(): a server that trusts recv(4) breaks here."""
    frame = encode_frame({"cmd": f"echo {text}"})
    with connect(host, port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(frame)):
            sock.sendall(frame[i:i + 1])
            time.sleep(pause)        # each byte its own segment, so each recv() of the server sees one
        print(f"sent the {len(frame)}-byte request 'echo {text}' one byte per send(), TCP_NODELAY on")
        try:
            reply = read_frame(sock, FrameDecoder())
        except EOFError as exc:
            print(f"the server closed the connection instead of answering ({error_text(exc)})")
            return result(False, request_bytes=len(frame), answered=False, problem="closed",
                          error=error_text(exc))
    good = echo_body_ok(reply, text)
    print(f"reply {summary(reply.header)} body {reply.body!r}: {'correct' if good else 'WRONG'}")
    return result(good, request_bytes=len(frame), answered=True, reply_header=reply.header,
                  reply_body=reply.body.decode("utf-8", "replace"), problem="" if good else "wrong reply")


def send_and_read(host: str, port: int, data: bytes, wanted: int,
                  timeout: float = 5.0) -> tuple[list[Frame], str]:
    """Send ``data`` in one sendall() on a fresh connection; read up to ``wanted`` reply frames.

    Returns (the frames read, what went wrong: '' when all ``wanted`` arrived).
    """
    with connect(host, port) as sock:
        decoder, replies = FrameDecoder(), []
        sock.settimeout(timeout)
        try:
            sock.sendall(data)
            for _ in range(wanted):
                replies.append(read_frame(sock, decoder))
        except TimeoutError:
            return replies, f"only {len(replies)} of {wanted} replies within {timeout:.0f} s"
        except EOFError as exc:
            return replies, f"the server closed after {len(replies)} of {wanted} replies ({error_text(exc)})"
        except FramingError as exc:
            return replies, f"reply {len(replies) + 1} of {wanted} was not a valid frame ({error_text(exc)})"
        except OSError as exc:             # reset: the server closed with our bytes still unread
            return replies, f"the server reset the connection after {len(replies)} of {wanted} replies " \
                            f"({error_text(exc)})"
    return replies, ""


def hash_reply_ok(frame: Frame | None, body: bytes) -> bool:
    return (frame is not None and frame.header.get("ok") is True
            and frame.header.get("body_size") == len(body)
            and frame.header.get("body_sha256") == hashlib.sha256(body).hexdigest())


def pipelined_requests(host: str, port: int) -> bool:
    """Several requests in ONE send(): a server that reads recv(1024) as one request loses some.

    Part 1: three echo requests and a 'hash' with a body, last. Part 2: a 'hash' whose body is
    followed in the same sendall() by more requests: a body loop that always asks for recv(1024)
    reads past the body into them (a body of 2999 bytes: a prime, so no fixed recv size but 1
    ends exactly on it).
    """
    texts = ["first", "second", "third"]
    upload = b"x" * 3000
    data = b"".join(encode_frame({"cmd": f"echo {t}"}) for t in texts) + encode_frame({"cmd": "hash"}, upload)
    replies, problem = send_and_read(host, port, data, 4)
    print(f"part 1: sent 3 echo requests and a 'hash' with a 3000-byte body in one sendall() ({len(data)} bytes)")
    for frame in replies:
        print(f"  reply {summary(frame.header)} body {preview(frame.body)}")
    if problem:
        print(f"  {problem}")
    echoes = [echo_body_ok(f, t) for f, t in zip(replies[:3], texts)]
    echoes += [False] * (3 - len(echoes))
    hashed = hash_reply_ok(replies[3] if len(replies) > 3 else None, upload)
    part1_ok = not problem and all(echoes) and hashed

    body = bytes(range(256)) * 11 + bytes(range(183))        # 2999 bytes
    after = ["after the body", "and one more"]
    data = encode_frame({"cmd": "hash"}, body) + b"".join(encode_frame({"cmd": f"echo {t}"}) for t in after)
    replies2, problem2 = send_and_read(host, port, data, 3)
    print(f"part 2: sent a 'hash' with a {len(body)}-byte body, then 2 echo requests right behind it, in one "
          f"sendall() ({len(data)} bytes)")
    for frame in replies2:
        print(f"  reply {summary(frame.header)} body {preview(frame.body)}")
    if problem2:
        print(f"  {problem2}")
    body_hashed = hash_reply_ok(replies2[0] if replies2 else None, body)
    seen_size = replies2[0].header.get("body_size") if replies2 else None
    after_ok = [echo_body_ok(f, t) for f, t in zip(replies2[1:], after)]
    after_ok += [False] * (2 - len(after_ok))
    part2_ok = not problem2 and body_hashed and all(after_ok)
    overread = not part2_ok
    if overread:
        counted = (f" (the server counted a body of {seen_size} bytes; we sent {len(body)})"
                   if seen_size is not None and seen_size != len(body) else "")
        print(f"  the body or the requests right behind it were not answered correctly{counted}: a body loop "
              "that asks recv(1024) when fewer body bytes remain reads past the body into the next frame")
    ok = part1_ok and part2_ok
    return result(ok, replies=len(replies), echoes_ok=echoes, hash_ok=hashed, problem=problem,
                  part1_ok=part1_ok, body_first_replies=len(replies2), body_first_problem=problem2,
                  body_first_hash_ok=body_hashed, body_first_server_body_size=seen_size,
                  body_first_sent_size=len(body), after_body_echoes_ok=after_ok, part2_ok=part2_ok)


def client_vanishes(host: str, port: int) -> bool:
    """Clients that leave mid-prefix, mid-header and mid-body: the server survives and serves on."""
    frame = encode_frame({"cmd": "hash"}, b"y" * 1000)
    cuts = {"mid-prefix": 2, "mid-header": 10, "mid-body": len(frame) - 500}
    for name, cut in cuts.items():
        with connect(host, port) as sock:
            sock.sendall(frame[:cut])
        print(f"{name}: sent {cut} of {len(frame)} bytes, then closed")
    alive = still_serves(host, port, "after three clients vanished")
    print(f"a fresh client is served afterwards: {alive}")
    return result(alive, cuts=cuts, still_serves=alive)


# ---------------------------------------------------------------------------------- main

# each probe by name, called with the parsed command line
PROBES = {
    "recv-sizes": lambda a: recv_sizes(a.host, a.port, a.command, tuple(int(s) for s in a.sizes.split(","))),
    "trickle": lambda a: trickle(a.host, a.port),
    "pipelined": lambda a: pipelined(a.host, a.port),
    "big-body": lambda a: big_body(a.host, a.port, a.size),
    "truncated": lambda a: truncated(a.host, a.port),
    "oversize-header": lambda a: oversize_header(a.host, a.port),
    "bad-input": lambda a: bad_input(a.host, a.port),
    "trickled-request": lambda a: trickled_request(a.host, a.port),
    "pipelined-requests": lambda a: pipelined_requests(a.host, a.port),
    "client-vanishes": lambda a: client_vanishes(a.host, a.port),
    "grade-client": lambda a: grade_client(a.host, a.port, a.client_cmd),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=PROBES)
    parser.add_argument("--host", default="framing-server")
    parser.add_argument("--port", type=int, default=20030)
    parser.add_argument("--command", default="lines 300", help="recv-sizes: the command to read")
    parser.add_argument("--sizes", default="1,5,4096", help="recv-sizes: comma-separated recv sizes")
    parser.add_argument("--size", type=int, default=8 * 2**20, help="big-body: bytes each way")
    parser.add_argument("--client-cmd", default="python3 framing/client.py", help="grade-client: the client")
    args = parser.parse_args(argv)
    try:
        ok = PROBES[args.probe](args)
    except (OSError, EOFError, FramingError) as exc:   # FramingError: the server's frames are broken
        print(f"could not complete the probe against {args.host}:{args.port}: {error_text(exc)}")
        ok = result(False, probe_error=error_text(exc))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
