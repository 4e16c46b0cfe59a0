"""Protocol 2's digest trailer under attack (issue 11): put {"trailer": true}, data + body, then
trailer {digest}. A wrong, missing, truncated, malformed or misplaced trailer gets a clear reply
(or a clean close); the "invisible until verified" rule holds (no final file unless the digest
matched); a resume after any cut ends with the right sha256; a fresh client is served after.
"""
from __future__ import annotations

import os
import random
import socket
import time

import pytest

from framing.codec import encode_header
from ftp.client import TransferCut
from ftp.protocol import PROTOCOL_VERSION, TRAILER_FEATURE, Code, reply
from tests.hostile.test_ftp_server import HostileLab, Raw, sha

MiB = 1024 * 1024


@pytest.fixture
def lab(tmp_path):
    running = HostileLab(tmp_path / "root")
    yield running
    running.stop()


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def announce(raw: Raw, path: str, data: bytes, **extra) -> dict:
    return raw.ask({"op": "put", "path": path, "file_size": len(data), "trailer": True, "overwrite": True,
                    **extra})


def send_body(raw: Raw, accepted: dict, data: bytes) -> None:
    raw.send({"op": "data", "offset": accepted["offset"]}, data[accepted["offset"]:])


def files(lab: HostileLab) -> dict[str, int]:
    home = lab.home()
    return {p.name: p.stat().st_size for p in home.iterdir()}


def test_the_greeting_says_protocol_2_and_offers_the_trailer(lab):
    raw = lab.raw(user=None)
    assert raw.greeting["version"] == PROTOCOL_VERSION == 2
    assert TRAILER_FEATURE in raw.greeting["features"]
    raw.close()


def test_a_trailer_upload_is_stored_once_its_digest_matches(lab):
    data = payload(300_000)
    raw = lab.raw()
    accepted = announce(raw, "t.bin", data)
    assert accepted["code"] == 350 and accepted["offset"] == 0 and accepted["trailer"] is True
    send_body(raw, accepted, data)
    assert "t.bin" not in files(lab)               # the body is in, the digest is not: invisible
    done = raw.ask({"op": "trailer", "digest": sha(data)})
    assert done["code"] == 226 and done["digest"] == sha(data) and done["received"] == len(data)
    assert (lab.home() / "t.bin").read_bytes() == data
    assert not [n for n in files(lab) if n.startswith(".")]
    raw.close()
    lab.assert_alive()


def test_a_wrong_digest_in_the_trailer_gets_451_and_leaves_nothing(lab):
    data = payload(400_000)
    raw = lab.raw()
    send_body(raw, announce(raw, "w.bin", data), data)
    done = raw.ask({"op": "trailer", "digest": "0" * 64})
    assert done["code"] == Code.LOCAL_ERROR and "mismatch" in done["msg"]
    assert files(lab) == {}                        # neither the final name nor a part
    assert raw.ask({"op": "noop"})["code"] == 200   # the session goes on
    raw.close()
    lab.assert_alive()


def test_another_request_instead_of_the_trailer_ends_the_upload_with_501(lab):
    data = payload(200_000)
    raw = lab.raw()
    send_body(raw, announce(raw, "m.bin", data), data)
    answer = raw.ask({"op": "noop"})               # taken as the (bad) trailer
    assert answer["code"] == Code.BAD_ARGUMENTS and "trailer" in answer["msg"]
    assert "m.bin" not in files(lab) and files(lab)[".m.bin.part"] == len(data)   # kept for a resume
    assert raw.ask({"op": "noop"})["code"] == 200   # in step
    raw.close()
    lab.assert_alive()


def test_a_trailer_that_never_comes_gets_421_within_the_header_deadline(lab):
    data = payload(150_000)
    raw = lab.raw()
    send_body(raw, announce(raw, "s.bin", data), data)
    started = time.monotonic()
    answer = raw.final()
    assert answer["code"] == Code.SERVICE_UNAVAILABLE and "trailer" in answer["msg"]
    assert time.monotonic() - started < 5
    assert raw.closed()
    assert files(lab)[".s.bin.part"] == len(data)
    lab.assert_alive()


@pytest.mark.parametrize("cut", ["in the prefix", "in the header"])
def test_a_truncated_trailer_keeps_the_part_and_the_resume_ends_with_the_right_hash(lab, cut):
    data = payload(500_000, seed=3)
    raw = lab.raw()
    send_body(raw, announce(raw, "c.bin", data), data)
    trailer = encode_header({"op": "trailer", "digest": sha(data)})
    raw.sock.sendall(trailer[:2] if cut == "in the prefix" else trailer[:len(trailer) // 2])
    raw.sock.shutdown(socket.SHUT_WR)
    answer = raw.final()
    assert answer is None or answer["code"] == Code.SYNTAX_ERROR
    raw.close()
    for _ in range(100):                           # the server notices the EOF and keeps the part
        if files(lab).get(".c.bin.part") == len(data) and not lab.server.storage.space("alice").uploads:
            break
        time.sleep(0.02)
    assert "c.bin" not in files(lab) and files(lab)[".c.bin.part"] == len(data)
    again = lab.raw()
    accepted = announce(again, "c.bin", data)
    assert accepted["offset"] == len(data) and accepted["part_digest"] == sha(data)
    send_body(again, accepted, data)               # an empty body: the server has every byte
    done = again.ask({"op": "trailer", "digest": sha(data)})
    assert done["code"] == 226 and done["received"] == 0
    assert sha((lab.home() / "c.bin").read_bytes()) == sha(data)
    again.close()
    lab.assert_alive()


def test_a_trailer_on_a_protocol_1_upload_gets_503(lab):
    data = payload(10_000)
    raw = lab.raw()
    accepted = raw.ask({"op": "put", "path": "v1.bin", "file_size": len(data), "digest": sha(data)})
    assert accepted["code"] == 350 and "trailer" not in accepted
    done = raw.ask({"op": "data", "offset": 0}, data)
    assert done["code"] == 226                     # protocol 1: the reply comes right after the body
    late = raw.ask({"op": "trailer", "digest": sha(data)})
    assert late["code"] == Code.BAD_SEQUENCE and "trailer" in late["msg"]
    assert raw.ask({"op": "noop"})["code"] == 200
    raw.close()


@pytest.mark.parametrize("logged_in", [False, True])
def test_a_trailer_without_an_upload_gets_503(lab, logged_in):
    raw = lab.raw(user="alice" if logged_in else None)
    answer = raw.ask({"op": "trailer", "digest": "0" * 64})
    assert answer["code"] in (Code.BAD_SEQUENCE, Code.NOT_LOGGED_IN) and "trailer" in answer["msg"]
    assert raw.ask({"op": "noop"})["code"] == 200
    raw.close()


@pytest.mark.parametrize("trailer, body", [({"op": "trailer", "digest": "zz" * 32}, b""),
                                           ({"op": "trailer"}, b""),
                                           ({"op": "trailer", "digest": "ab" * 16}, b""),   # md5-sized
                                           ({"op": "trailer", "digest": "ab" * 32}, b"x" * 100)])
def test_a_malformed_trailer_gets_501_keeps_the_part_and_stays_in_step(lab, trailer, body):
    data = payload(100_000)
    raw = lab.raw()
    send_body(raw, announce(raw, "b.bin", data), data)
    answer = raw.ask(trailer, body)
    assert answer["code"] == Code.BAD_ARGUMENTS, answer
    assert "b.bin" not in files(lab) and files(lab)[".b.bin.part"] == len(data)
    assert raw.ask({"op": "noop"})["code"] == 200
    raw.close()
    lab.assert_alive()


def test_a_put_with_both_trailer_and_digest_is_refused(lab):
    raw = lab.raw()
    answer = raw.ask({"op": "put", "path": "x", "file_size": 1, "trailer": True, "digest": "0" * 64})
    assert answer["code"] == Code.BAD_ARGUMENTS and "trailer" in answer["msg"]
    answer = raw.ask({"op": "put", "path": "x", "file_size": 1, "trailer": "yes"})
    assert answer["code"] == Code.BAD_ARGUMENTS
    assert raw.ask({"op": "noop"})["code"] == 200
    raw.close()


def test_a_restart_from_0_is_only_for_trailer_uploads(lab):
    data = payload(300_000)
    raw = lab.raw()
    accepted = raw.ask({"op": "put", "path": "r.bin", "file_size": len(data), "digest": sha(data)})
    raw.sock.sendall(encode_header({"op": "data", "offset": 0}, len(data)) + data[:100_000])
    raw.close()                                    # cut: 100 000 bytes kept
    for _ in range(100):
        if not lab.server.storage.space("alice").uploads:
            break
        time.sleep(0.02)
    raw = lab.raw()
    accepted = raw.ask({"op": "put", "path": "r.bin", "file_size": len(data), "digest": sha(data)})
    assert accepted["offset"] == 100_000
    answer = raw.ask({"op": "data", "offset": 0}, data)   # protocol 1: the 350's offset, nothing else
    assert answer["code"] == Code.BAD_ARGUMENTS
    raw.close()


@pytest.mark.parametrize("cut", [1, 65_536, MiB, 2 * MiB - 1])
def test_a_protocol_2_put_cut_anywhere_resumes_to_the_right_hash(lab, tmp_path, cut):
    local = tmp_path / "big.bin"
    local.write_bytes(data := payload(2 * MiB, seed=cut))
    with lab.client() as ftp:
        assert ftp.streams_digest
        with pytest.raises(TransferCut):
            ftp.put(str(local), "big.bin", cut_after=cut)
    offsets = []
    with lab.client() as ftp:
        done = ftp.put(str(local), "big.bin", on_accept=lambda r: offsets.append(r.fields["offset"]))
    assert offsets == [cut] and done.fields["received"] == len(data) - cut
    assert sha((lab.home() / "big.bin").read_bytes()) == sha(data)


def test_a_part_of_another_file_is_not_resumed_the_client_starts_again(lab, tmp_path):
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(payload(MiB, seed=10))
    second.write_bytes(data := payload(MiB, seed=11))    # same size, other bytes
    with lab.client() as ftp:
        with pytest.raises(TransferCut):
            ftp.put(str(first), "same.bin", cut_after=300_000)
    offsets = []
    with lab.client() as ftp:
        done = ftp.put(str(second), "same.bin", on_accept=lambda r: offsets.append(r.fields["offset"]))
    assert offsets == [0] and done.fields["received"] == len(data)      # part_digest differed
    assert sha((lab.home() / "same.bin").read_bytes()) == sha(data)


def test_the_client_falls_back_to_protocol_1_with_a_version_1_server(lab, tmp_path):
    old = lab.server.greeting
    lab.server.greeting = reply(Code.SERVICE_READY, "a version-1 server", server="student", version=1,
                                features=["scram-scrypt", "sha256", "resume-put"], limits={})
    try:
        local = tmp_path / "v1.bin"
        local.write_bytes(data := payload(700_000))
        with lab.client() as ftp:
            assert not ftp.streams_digest
            done = ftp.put(str(local), "v1.bin")
        assert done.fields["digest"] == sha(data) == sha((lab.home() / "v1.bin").read_bytes())
    finally:
        lab.server.greeting = old


def test_a_client_that_vanishes_mid_body_of_a_trailer_upload_frees_the_upload(lab):
    data = payload(3 * MiB)
    raw = lab.raw()
    accepted = announce(raw, "gone.bin", data)
    raw.sock.sendall(encode_header({"op": "data", "offset": accepted["offset"]}, len(data)) + data[:MiB])
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    raw.close()                                    # RST
    for _ in range(200):
        if not lab.server.storage.space("alice").uploads:
            break
        time.sleep(0.02)
    assert not lab.server.storage.space("alice").uploads
    assert "gone.bin" not in files(lab)
    assert os.path.getsize(lab.home() / ".gone.bin.part") <= MiB
    lab.assert_alive()
