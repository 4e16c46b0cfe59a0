"""The framing codec (services/framing/codec.py) and recv_exact, without Docker."""
from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from framing.codec import (
    HEADER_LENGTH,
    MAX_HEADER_SIZE,
    NEED_DATA,
    BadHeader,
    BodyTooLarge,
    ChecksumMismatch,
    Data,
    EndOfFrame,
    Frame,
    FrameAssembler,
    FrameDecoder,
    FramingError,
    Header,
    HeaderTooLarge,
    TruncatedFrame,
    decode_frames,
    encode_frame,
    encode_header,
    parse_header,
)
from framing.sockio import read_frame, recv_exact, send_frame

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-2**62, 2**62) | st.text(max_size=20)
header_fields = st.dictionaries(st.text(max_size=10).filter(lambda k: k not in ("size", "sha256")),
                                json_scalars, max_size=4)
frames = st.tuples(header_fields, st.binary(max_size=300))


def feed(decoder: FrameDecoder, chunks: list[bytes]) -> list[Frame]:
    """Feed chunks one by one, draining events after each; return the frames decoded."""
    out: list[Frame] = []
    assembler = FrameAssembler()
    for chunk in chunks:
        decoder.receive_data(chunk)
        while (frame := assembler.next_frame(decoder)) is not NEED_DATA:
            out.append(frame)
    decoder.end_of_stream()
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# ------------------------------------------------------------------------------ encoding

def test_wire_format_is_network_order_length_then_json_then_body():
    frame = encode_frame({"cmd": "echo"}, b"hello")
    (n,) = struct.unpack("!I", frame[:4])
    header = json.loads(frame[4:4 + n])
    assert frame[:4] == n.to_bytes(4, "big")
    assert header == {"cmd": "echo", "size": 5, "sha256": hashlib.sha256(b"hello").hexdigest()}
    assert frame[4 + n:] == b"hello"


def test_native_i_differs_from_network_order():
    assert struct.pack("!I", 1) == b"\x00\x00\x00\x01"
    assert HEADER_LENGTH.pack(1) == b"\x00\x00\x00\x01"


def test_encode_header_without_checksum_has_no_sha256():
    raw = encode_header({"a": 1}, body_size=3)
    assert json.loads(raw[4:]) == {"a": 1, "size": 3}
    assert "sha256" not in decode_frames(encode_frame({}, b"xyz", checksum=False))[0].header


# ---------------------------------------------------------------------------- round trip

@SETTINGS
@given(st.lists(frames, min_size=1, max_size=5))
def test_round_trip(messages):
    stream = b"".join(encode_frame(fields, body) for fields, body in messages)
    decoded = decode_frames(stream)
    assert [f.body for f in decoded] == [body for _, body in messages]
    for frame, (fields, body) in zip(decoded, messages, strict=True):
        assert frame.header == dict(fields, size=len(body), sha256=hashlib.sha256(body).hexdigest())


@SETTINGS
@given(st.lists(frames, min_size=1, max_size=5), st.lists(st.integers(0, 10_000), max_size=30))
def test_any_split_decodes_identically(messages, cuts):
    stream = b"".join(encode_frame(fields, body) for fields, body in messages)
    assert feed(FrameDecoder(), split_at(stream, cuts)) == decode_frames(stream)


@SETTINGS
@given(st.lists(frames, min_size=1, max_size=3))
def test_one_byte_at_a_time(messages):
    stream = b"".join(encode_frame(fields, body) for fields, body in messages)
    chunks = [stream[i:i + 1] for i in range(len(stream))]
    assert feed(FrameDecoder(), chunks) == decode_frames(stream)


@SETTINGS
@given(st.lists(frames, min_size=1, max_size=4), st.lists(st.integers(0, 5000), max_size=20),
       st.integers(1, 4))
def test_several_receive_data_calls_between_next_events(messages, cuts, drain_every):
    """Chunks queued while a body is in progress (zero-copy path) keep their order."""
    stream = b"".join(encode_frame(fields, body) for fields, body in messages)
    decoder, events = FrameDecoder(), []

    def drain() -> list:
        return [bytes(e.data) if isinstance(e, Data) else e for e in iter(decoder.next_event, NEED_DATA)]

    for i, chunk in enumerate(split_at(stream, cuts)):
        decoder.receive_data(chunk)
        if i % drain_every == 0:
            events += drain()
    events += drain()
    decoder.end_of_stream()
    bodies, body = [], b""
    for event in events:
        if isinstance(event, bytes):
            body += event
        elif isinstance(event, EndOfFrame):
            bodies, body = bodies + [body], b""
    assert bodies == [body for _, body in messages]


def test_body_chunk_is_passed_through_without_copy():
    decoder = FrameDecoder()
    decoder.receive_data(encode_header({}, body_size=10))
    assert isinstance(decoder.next_event(), Header)
    chunk = b"0123456789" + encode_frame({}, b"next")
    decoder.receive_data(chunk)
    event = decoder.next_event()
    assert isinstance(event, Data) and isinstance(event.data, memoryview)
    assert event.data.obj is chunk and bytes(event.data) == b"0123456789"
    assert decoder.body_remaining == 0
    assert isinstance(decoder.next_event(), EndOfFrame)
    assert decoder.next_event().fields["size"] == 4  # the rest began the next frame


# ----------------------------------------------------------------------------- totality

@SETTINGS
@given(st.binary(max_size=400), st.lists(st.integers(0, 500), max_size=10))
def test_arbitrary_bytes_raise_only_framing_errors(data, cuts):
    decoder = FrameDecoder(max_body_size=10_000)
    try:
        feed(decoder, split_at(data, cuts))
    except FramingError:
        pass


def header_prefixed(raw: bytes) -> bytes:
    return HEADER_LENGTH.pack(len(raw)) + raw


@SETTINGS
@given(st.recursive(json_scalars | st.floats(), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=20))
def test_arbitrary_json_headers_raise_only_framing_errors(value):
    raw = json.dumps(value).encode()
    try:
        decode_frames(header_prefixed(raw))
    except FramingError:
        pass


def strict_reference(raw: bytes) -> dict:
    """parse_header as it was before its fast path: every integer's digits counted, the nesting
    always walked. The fast path must agree with it on every input."""
    from framing import codec
    fields = codec._STRICT.decode(raw.decode("utf-8"))
    if not isinstance(fields, dict):
        raise BadHeader("not an object")
    codec._check_depth(fields)
    return fields


digit_heavy = st.text(alphabet="0123456789ab{[", max_size=30)
tricky_scalars = (st.none() | st.booleans() | st.integers(-10**25, 10**25) | digit_heavy
                  | st.floats(allow_nan=False, allow_infinity=False))


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@SETTINGS
@example(nested(31))          # with the outer object: 32 levels, the limit
@example(nested(32))          # 33 levels: refused
@example(10**20)              # 21 digits: refused
@example(-(10**19))           # 20 digits and a sign: fine
@example("1" * 30)            # a long digit run in a string: fine (the strict path runs)
@given(st.recursive(tricky_scalars, lambda inner: st.lists(inner, max_size=2)
                    | st.dictionaries(st.sampled_from("abcd"), inner, max_size=3), max_leaves=40))
def test_the_fast_path_accepts_and_refuses_exactly_what_the_strict_parser_does(value):
    raw = json.dumps({"v": value}).encode()
    try:
        expected = strict_reference(raw)
    except (BadHeader, RecursionError):
        expected = None
    try:
        got = parse_header(raw)
        got.pop("size")
    except BadHeader:
        got = None
    assert got == expected


@pytest.mark.parametrize("raw, message", [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"hello", "not JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"size": NaN}', "NaN"),
    (b'{"size": Infinity}', "Infinity"),
    (b'{"x": 1e999}', "out of range"),
    (b'{"size": 1, "size": 2}', "twice"),
    (b'{"x": ' + b"[" * 50 + b"]" * 50 + b"}", "nested"),
    (b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested"),
    (b'{"size": -1}', "non-negative"),
    (b'{"size": true}', "non-negative"),
    (b'{"size": "10"}', "non-negative"),
    (b'{"size": 1.5}', "non-negative"),
    (b'{"size": ' + b"9" * 5000 + b"}", "too large"),
    (b'{"size": 99999999999999999999}', "non-negative"),
    (b'{"size": 0, "sha256": "abc"}', "sha256"),
    (b'{"size": 0, "sha256": "' + b"g" * 64 + b'"}', "sha256"),
    # the checks that parse_header skips when the text cannot need them must still run when it can
    (b'{"x": 123456789012345678901}', "21 digits"),
    (b'{"a": 1, "b": 2, "b": 3}', "'b' twice"),
    (b'{"x": {"k": 1, "k": 2}}', "'k' twice"),
    (b'{"x": ' + b"[" * 32 + b"]" * 32 + b"}", "nested"),
])
def test_bad_headers(raw, message):
    with pytest.raises(BadHeader, match=message):
        decode_frames(header_prefixed(raw))


def test_long_digit_runs_in_strings_and_20_digit_numbers_are_fine():
    raw = b'{"id": "123456789012345678901234567890", "n": 12345678901234567890, "x": ' + b"[" * 31 + b"]" * 31 + b"}"
    [frame] = decode_frames(header_prefixed(raw))
    assert frame.header["id"] == "123456789012345678901234567890" and frame.header["n"] == 12345678901234567890


def test_length_prefix_zero_is_a_bad_header():
    with pytest.raises(BadHeader, match="length is 0"):
        decode_frames(b"\x00\x00\x00\x00")


def test_absent_size_means_no_body():
    assert decode_frames(header_prefixed(b'{"cmd": "x"}')) == [Frame({"cmd": "x", "size": 0}, b"")]


def test_errors_are_sticky_after_a_fatal_error():
    decoder = FrameDecoder()
    decoder.receive_data(header_prefixed(b"nope") + encode_frame({}, b"ok"))
    for _ in range(2):
        with pytest.raises(BadHeader):
            decoder.next_event()


# ------------------------------------------------------------------------------- limits

@pytest.mark.parametrize("prefix", [b"\xff\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x01\x00\x01"])
def test_oversized_header_length_rejected_after_just_the_prefix(prefix):
    decoder = FrameDecoder()
    decoder.receive_data(prefix)          # only 4 bytes: nothing else has been sent
    with pytest.raises(HeaderTooLarge, match="refused before reading"):
        decoder.next_event()


def test_signed_and_little_endian_hints():
    decoder = FrameDecoder()
    decoder.receive_data(struct.pack("i", 20))   # native little-endian, as the seed does
    with pytest.raises(HeaderTooLarge, match="little-endian it would be 20"):
        decoder.next_event()
    with pytest.raises(HeaderTooLarge, match="signed int .* -1"):
        decode_frames(b"\xff\xff\xff\xff")


def test_limit_is_configurable():
    frame = encode_frame({"pad": "x" * 200})
    with pytest.raises(HeaderTooLarge):
        decode_frames(frame, max_header_size=100)
    assert len(decode_frames(frame)) == 1
    assert MAX_HEADER_SIZE == 64 * 1024


def test_body_too_large_is_refused_before_the_body():
    decoder = FrameDecoder(max_body_size=1000)
    decoder.receive_data(encode_header({}, body_size=1001))
    with pytest.raises(BodyTooLarge):
        decoder.next_event()


def test_big_body_streams_in_chunks():
    """8 MiB through the decoder in 64 KiB and 1 KiB pieces: linear, so it just runs."""
    body = bytes(range(256)) * (8 * 2**20 // 256)
    frame = encode_frame({"cmd": "big"}, body)
    for step in (65536, 1024):
        decoder = FrameDecoder()
        digest, total, largest = hashlib.sha256(), 0, 0
        for i in range(0, len(frame), step):
            decoder.receive_data(frame[i:i + step])
            while (event := decoder.next_event()) is not NEED_DATA:
                if isinstance(event, Data):
                    digest.update(event.data)
                    total += len(event.data)
                    largest = max(largest, len(event.data))
        assert total == len(body) and digest.digest() == hashlib.sha256(body).digest()
        assert largest <= step              # handed out as it arrived, never buffered whole


# --------------------------------------------------------------------- truncation, checksum

@pytest.mark.parametrize("cut, message", [
    (2, "2 of the 4 length-prefix bytes"),
    (10, "header bytes"),
    (-3, "3 missing"),
])
def test_truncated_stream(cut, message):
    frame = encode_frame({"cmd": "x"}, b"0123456789")
    with pytest.raises(TruncatedFrame, match=message):
        decode_frames(frame[:cut])


def test_truncated_frame_is_also_an_eof_error():
    assert issubclass(TruncatedFrame, EOFError) and issubclass(TruncatedFrame, ValueError)


def test_checksum_mismatch_then_stream_continues():
    bad = bytearray(encode_frame({}, b"hello"))
    bad[-1] ^= 1
    decoder = FrameDecoder()
    decoder.receive_data(bytes(bad) + encode_frame({}, b"next"))
    assert isinstance(decoder.next_event(), Header)
    assert isinstance(decoder.next_event(), Data)
    with pytest.raises(ChecksumMismatch):
        decoder.next_event()
    assert decoder.next_event().fields["size"] == 4     # in step: the next frame decodes


def test_verify_false_skips_the_checksum():
    bad = bytearray(encode_frame({}, b"hello"))
    bad[-1] ^= 1
    assert decode_frames(bytes(bad), verify=False)[0].body == b"helln"


# --------------------------------------------------------------------------- socket side

def trickle(sock: socket.socket, data: bytes) -> None:
    for i in range(len(data)):
        sock.sendall(data[i:i + 1])
        time.sleep(0.001)
    sock.close()


def test_recv_exact_with_a_trickling_sender():
    a, b = socket.socketpair()
    a.settimeout(10)
    sender = threading.Thread(target=trickle, args=(b, b"0123456789" * 10))
    sender.start()
    try:
        assert recv_exact(a, 4) == b"0123"
        assert recv_exact(a, 90) == (b"0123456789" * 10)[4:94]
        with pytest.raises(EOFError, match="6 of 10 bytes .4 missing"):
            recv_exact(a, 10)
    finally:
        sender.join()
        a.close()


@pytest.mark.parametrize("recv_size", [1, 5, 4096])
def test_read_frame_any_recv_size_and_pipelined(recv_size):
    a, b = socket.socketpair()
    a.settimeout(10)
    with a, b:
        send_frame(b, {"n": 1}, b"x" * 1500)
        send_frame(b, {"n": 2}, b"0123456789")
        b.close()
        decoder = FrameDecoder()
        assert read_frame(a, decoder, recv_size).body == b"x" * 1500
        assert read_frame(a, decoder, recv_size) == Frame(
            {"n": 2, "size": 10, "sha256": hashlib.sha256(b"0123456789").hexdigest()}, b"0123456789")
        with pytest.raises(EOFError, match="between frames"):
            read_frame(a, decoder, recv_size)
