"""The reference framing server's sending modes that grade a student's client: `corrupt` and `oversize`."""
from __future__ import annotations

import hashlib
import socket
import threading

import pytest

from framing import server
from framing.codec import ChecksumMismatch, FrameDecoder
from framing.sockio import read_frame, recv_exact


@pytest.mark.parametrize("data", [b"hello, corrupt world", b""])
def test_corrupt_mode_sends_a_body_that_does_not_match_its_sha256(data):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert server.send_reply(ours, {"ok": True, "cmd": "x"}, server.Body.of(data), "corrupt")
        ours.close()
        theirs.settimeout(5)
        with pytest.raises(ChecksumMismatch):
            read_frame(theirs, FrameDecoder())


def test_corrupt_mode_keeps_the_size_and_flips_one_byte():
    data = b"x" * 100_000
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sender = threading.Thread(target=server.send_reply,
                                  args=(ours, {"ok": True}, server.Body.of(data), "corrupt"))
        sender.start()
        theirs.settimeout(5)
        frame = read_frame(theirs, FrameDecoder(verify=False))
        sender.join(5)
    assert frame.header["sha256"] == hashlib.sha256(data).hexdigest() and len(frame.body) == len(data)
    assert sum(a != b for a, b in zip(frame.body, data)) == 1


def test_oversize_mode_keeps_the_connection_open_after_the_prefix(monkeypatch):
    """No EOF after ff ff ff ff: a client that tries to read the announced 4 GiB waits, it is not let off."""
    monkeypatch.setattr(server, "OVERSIZE_HOLD", 5.0)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sender = threading.Thread(target=server.send_reply,
                                  args=(ours, {"ok": True}, server.Body.of(b"hi"), "oversize"))
        sender.start()
        theirs.settimeout(5)
        assert recv_exact(theirs, 4) == b"\xff\xff\xff\xff"
        theirs.recv(65536)                          # the start of a header that never ends
        theirs.settimeout(0.5)
        with pytest.raises(TimeoutError):           # no EOF: the server is still there, silent
            theirs.recv(65536)
        theirs.close()                              # the client gives up: the server lets go at once
        sender.join(5)
        assert not sender.is_alive()
