"""A hypothesis fuzzer over the FTP request stream: "a reply or a clean close, never a silent drop".

Each example opens a session (logged in or not), sends a random stream of frames (requests with
random field values, bodies of any size, garbage bytes), half-closes, and reads to the end:

* the server answers with well-formed frames only, and never hangs (every socket has a timeout);
* the connection ends with a FIN, never a RST;
* a stream of well-formed frames gets one final reply per frame, unless a reply closed the session
  (221, 421, 500); a stream with garbage in it ends with 421 or 500;
* no session ever dies of an exception in the server (``stats.internal_errors``).
"""
from __future__ import annotations

import hashlib
import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framing.codec import encode_header
from ftp.throttle import ThrottlePolicy
from tests.hostile.test_ftp_server import CLEAN_CLOSE_CODES, HostileLab, Raw

OPS = ["login", "auth", "pwd", "cd", "ls", "mkdir", "rm", "quota", "put", "data", "abort", "get", "noop",
       "help", "quit", "bogus"]
NAMES = st.sampled_from(["a", "b.txt", "d", "d/e", "..", "../x", "/", "", ".a.part", "漢字", "x" * 300,
                         "a/", "a\\b", "a\x00b", "d/../../x"])
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 2 ** 41), st.floats(allow_nan=False, allow_infinity=False),
                   st.text(max_size=20), NAMES, st.sampled_from(["00" * 32, "AB" * 16, "zz", "0" * 64]),
                   st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                          max_size=2))
FIELDS = st.sampled_from(["path", "user", "cnonce", "proof", "offset", "file_size", "digest", "algo",
                          "overwrite", "if_digest", "after"])


@st.composite
def request_frame(draw) -> tuple[bytes, bool]:
    """(bytes, well_formed): a request header with random fields and maybe a body."""
    header = {"op": draw(st.sampled_from(OPS))} if draw(st.integers(0, 9)) else {}
    for name in draw(st.lists(FIELDS, max_size=4, unique=True)):
        header[name] = draw(VALUES)
    if header.get("op") == "login" and draw(st.booleans()):
        header.update(user="alice", cnonce=os.urandom(8).hex())
    if header.get("op") == "put" and draw(st.booleans()):
        data = draw(st.binary(max_size=64))
        header.update(path=draw(NAMES), file_size=len(data), digest=hashlib.sha256(data).hexdigest())
    body = draw(st.binary(max_size=300)) if draw(st.integers(0, 4)) == 0 else b""
    checksum = None
    if body and draw(st.booleans()):
        checksum = hashlib.sha256(body).hexdigest() if draw(st.booleans()) else "0" * 64
    return encode_header(header, len(body), checksum) + body, checksum != "0" * 64


GARBAGE = st.one_of(st.binary(min_size=1, max_size=40),
                    st.sampled_from([b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x00\x00\x00\x05{\"op\"",
                                     b"\x00\x00\x00\x02[]", b"\x00\x00"]))
FRAME = st.one_of(request_frame(), request_frame(), request_frame(), GARBAGE.map(lambda g: (g, False)))


def read_to_the_end(raw: Raw) -> tuple[list[dict], str]:
    """All replies until the server closes: (replies, how it ended: "fin" or "rst")."""
    replies = []
    while True:
        try:
            answer = raw.reply()
        except ConnectionResetError:
            return replies, "rst"
        if answer is None:
            return replies, "fin"
        replies.append(answer)


@pytest.fixture(scope="module")
def fuzz_lab(tmp_path_factory):
    lab = HostileLab(tmp_path_factory.mktemp("fuzz") / "root", idle_timeout=2.0, header_deadline=0.3,
                     stall_timeout=0.5, login_deadline=3.0, max_sessions=8, login_delay=0.0,
                     throttle=ThrottlePolicy(account_free=10 ** 6, address_free=10 ** 6))
    yield lab
    lab.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])
@given(logged_in=st.booleans(), frames=st.lists(FRAME, min_size=1, max_size=12))
def test_every_request_stream_gets_replies_or_a_clean_close(fuzz_lab, logged_in, frames):
    raw = fuzz_lab.raw("alice" if logged_in else None)
    stream = b"".join(data for data, _ in frames)
    well_formed = all(ok for _, ok in frames)
    try:
        raw.sock.sendall(stream)
        raw.sock.shutdown(socket.SHUT_WR)          # our EOF: the server must end the session too
    except (BrokenPipeError, ConnectionResetError):
        pass                                       # it already closed (a 500 or 421 is waiting)
    replies, ending = read_to_the_end(raw)
    raw.close()
    assert ending == "fin", replies
    final = [r for r in replies if r["code"] >= 200]
    assert all(100 <= r["code"] <= 599 and isinstance(r.get("msg"), str) for r in replies)
    closed_by_server = bool(final) and final[-1]["code"] in CLEAN_CLOSE_CODES
    if well_formed:
        assert closed_by_server or len(final) == len(frames), (len(final), len(frames), final[-3:])
    else:
        assert closed_by_server, final[-3:]
    assert fuzz_lab.server.stats.internal_errors == 0


def test_the_server_still_serves_after_the_fuzzing(fuzz_lab):
    fuzz_lab.assert_alive()
