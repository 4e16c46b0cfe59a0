"""The FTP exercise's sans-IO parts without sockets: messages, state machine, auth, paths."""
from __future__ import annotations

import os
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framing.codec import NEED_DATA, encode_header
from ftp import auth
from ftp.paths import Home, PathError, is_internal_name, virtual_path
from ftp.protocol import (
    COMMANDS,
    MAX_FILE_SIZE,
    MAX_HEADER_SIZE,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    TRAILER_FEATURE,
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
    Rm,
    Role,
    Trailer,
    greeting,
    parse_request,
    reply,
)
from ftp.state import SequenceError, SessionState, State

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIGEST = "ab" * 32
LOGGED_IN_OPS = [("login", 331), ("auth", 230)]


def events(conn: FtpConnection, data: bytes) -> list:
    conn.receive_data(data)
    out = []
    while (event := conn.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def logged_in_pair() -> tuple[FtpConnection, FtpConnection]:
    """A client and a server connection whose state machines went through a login."""
    client, server = FtpConnection(Role.CLIENT), FtpConnection(Role.SERVER)
    for request, code in ((Login("alice", "00" * 16), 331), (Auth("11" * 32), 230)):
        events(server, client.send(request))
        events(client, server.send(reply(code, "ok")))
    assert client.state.state is server.state.state is State.READY
    return client, server


# --- messages --------------------------------------------------------------------------------

ALL_REQUESTS = [Login("alice", "0123456789abcdef"), Auth("ff" * 32), Pwd(), Cd("docs"), Ls(), Ls("a/b"),
                Mkdir("new"), Rm("old.txt"), Quota(), Put("a.bin", 10, DIGEST),
                Put("m.bin", 0, "cd" * 16, "md5", True), Put("t.bin", 7, None, "sha256", True, True),
                Trailer(DIGEST),
                Get("a.bin"), Get("a.bin", 5, "sha256", DIGEST), Noop(), Help(), Quit()]


@pytest.mark.parametrize("request_", ALL_REQUESTS, ids=lambda r: r.op)
def test_every_request_round_trips_through_its_header(request_):
    assert parse_request(request_.to_header()) == request_


def test_every_op_has_help_and_a_type():
    assert set(COMMANDS) == set(REQUEST_TYPES)


def test_a_request_travels_as_one_frame_and_comes_out_typed():
    client, server = logged_in_pair()
    put = Put("dir/a.bin", 3, DIGEST, overwrite=True)
    assert events(server, client.send(put)) == [put]
    events(client, server.send(reply(350, "send", offset=0)))
    data = client.send(PutData(0), body_size=3) + b"xyz"
    got = events(server, data)
    assert got[0] == PutData(0) and b"".join(bytes(e.data) for e in got if isinstance(e, Body)) == b"xyz"
    assert isinstance(got[-1], EndOfBody)


def test_reply_with_a_body_gives_body_events_then_the_final_reply():
    client, server = logged_in_pair()
    events(server, client.send(Get("a")))
    wire = (server.send(Reply(150, "sending", {"file_size": 4}), body_size=4) + b"data"
            + server.send(reply(226, "done")))
    got = events(client, wire)
    assert [type(e).__name__ for e in got] == ["Reply", "Body", "EndOfBody", "Reply"]
    assert client.state.state is State.READY


@pytest.mark.parametrize("fields, code", [
    ({}, 500), ({"op": 7}, 500), ({"op": "rmrf"}, 500),
    ({"op": "cd"}, 501), ({"op": "cd", "path": 5}, 501), ({"op": "cd", "path": ""}, 501),
    ({"op": "cd", "path": "a\x00b"}, 553), ({"op": "cd", "path": "a\nb"}, 553),
    ({"op": "cd", "path": "x" * 2000}, 501), ({"op": "cd", "path": "\ud800"}, 501),
    ({"op": "get", "path": "a", "offset": -1}, 501), ({"op": "get", "path": "a", "offset": True}, 501),
    ({"op": "get", "path": "a", "offset": 1.0}, 501), ({"op": "get", "path": "a", "offset": "1"}, 501),
    ({"op": "put", "path": "a", "file_size": MAX_FILE_SIZE + 1, "digest": DIGEST}, 501),
    ({"op": "put", "path": "a", "file_size": 1, "digest": "xyz"}, 501),
    ({"op": "put", "path": "a", "file_size": 1, "digest": DIGEST, "algo": "crc"}, 501),
    ({"op": "put", "path": "a", "file_size": 1, "digest": DIGEST, "overwrite": 1}, 501),
    ({"op": "put", "path": "a", "file_size": 1, "digest": "ab" * 16, "algo": "md5"}, None),
    ({"op": "login", "user": "Alice", "cnonce": "00" * 8}, 501),
    ({"op": "login", "user": "a", "cnonce": "0"}, 501),
    ({"op": "auth", "proof": "00"}, 501),
])
def test_fields_are_validated_with_the_right_code(fields, code):
    if code is None:
        parse_request(fields)
        return
    with pytest.raises(ProtocolError) as info:
        parse_request(fields)
    assert info.value.code == code


def test_paths_are_normalised_to_nfc():
    nfd = unicodedata.normalize("NFD", "café")
    assert parse_request({"op": "cd", "path": nfd}).path == unicodedata.normalize("NFC", "café")


def test_invalid_message_keeps_the_session_in_step_and_skips_its_body():
    client, server = logged_in_pair()
    server.receive_data(encode_header({"op": "noop"}, 5) + b"12345" + encode_header({"op": "pwd"}))
    first = server.next_event()
    assert isinstance(first, Invalid) and first.error.code == 501
    server.send(reply(first.error.code, first.error.msg))      # the server answers before reading on
    assert server.next_event() == Pwd()


def test_op_out_of_sequence_is_refused_with_530_or_503():
    server = FtpConnection(Role.SERVER)
    [event] = events(server, encode_header({"op": "ls"}))
    assert isinstance(event, Invalid) and event.error.code == 530
    server.send(reply(530, "log in"))
    [event] = events(server, encode_header({"op": "data", "offset": 0}, 3) + b"abc")
    assert event.error.code == 503 and server.state.state is State.CONNECTED


@pytest.mark.parametrize("wire", [
    b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x00\x00\x00\x02\xff\xfe", b"\x00\x00\x00\x05hello",
    b"\x00\x00\x00\x03[1]", b'\x00\x00\x00\x1a{"op": "noop", "x": NaN}  ',
    b'\x00\x00\x00\x19{"op":"noop","op":"quit"}',
])
def test_framing_violations_are_fatal(wire):
    with pytest.raises(FatalProtocolError):
        events(FtpConnection(Role.SERVER), wire)


def test_eof_between_messages_is_clean_and_mid_frame_is_fatal():
    server = FtpConnection(Role.SERVER)
    events(server, encode_header({"op": "noop"}))
    server.receive_data(b"")
    with pytest.raises(EOFError):
        server.next_event()
    cut = FtpConnection(Role.SERVER)
    cut.receive_data(encode_header({"op": "noop"})[:6])
    cut.receive_data(b"")
    with pytest.raises(FatalProtocolError):
        cut.next_event()


def test_a_client_cannot_send_out_of_turn():
    client = FtpConnection(Role.CLIENT)
    with pytest.raises(SequenceError):
        client.send(Get("x"))
    client.send(Noop())
    with pytest.raises(SequenceError):        # no pipelining: wait for the reply first
        client.send(Noop())


@SETTINGS
@given(st.dictionaries(st.text(max_size=8),
                       st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                       | st.text(max_size=30) | st.lists(st.integers(), max_size=3), max_size=6),
       st.sampled_from(sorted(REQUEST_TYPES)))
def test_any_header_parses_or_raises_protocol_error(fields, op):
    fields = {**fields, "op": op}
    try:
        request = parse_request(fields)
    except ProtocolError as exc:
        assert 500 <= exc.code < 600
    else:
        assert request.op == op


@SETTINGS
@given(st.lists(st.sampled_from([r for r in ALL_REQUESTS[2:] if r.op != "trailer"]), min_size=1, max_size=5),
       st.data())
def test_a_stream_of_requests_decodes_the_same_whatever_the_split(requests, data):
    wire = b"".join(encode_header(r.to_header()) for r in requests)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    server = FtpConnection(Role.SERVER)
    server.state.state = State.READY
    got, last = [], 0
    for cut in [*cuts, len(wire)]:
        if cut > last:                           # (receive_data(b"") would mean EOF)
            server.receive_data(wire[last:cut])
        last = max(last, cut)
        while (event := server.next_event()) is not NEED_DATA:
            got.append(event)
            server.state.pending = None          # as if the server had replied
            server.state.state = State.READY
    assert got == requests


# --- the state machine ------------------------------------------------------------------------

@pytest.mark.parametrize("steps, final", [
    ([("login", 331)], State.AUTHENTICATING),
    ([("login", 331), ("auth", 530)], State.CONNECTED),
    ([*LOGGED_IN_OPS], State.READY),
    ([*LOGGED_IN_OPS, ("put", 350)], State.UPLOADING),
    ([*LOGGED_IN_OPS, ("put", 552)], State.READY),
    ([*LOGGED_IN_OPS, ("put", 350), ("data", 226)], State.READY),
    ([*LOGGED_IN_OPS, ("put", 350), ("data", 451)], State.READY),
    ([*LOGGED_IN_OPS, ("put", 350), ("abort", 226)], State.READY),
    ([*LOGGED_IN_OPS, ("put", 350), ("data", None), ("trailer", 226)], State.READY),
    ([*LOGGED_IN_OPS, ("put", 350), ("data", None), ("trailer", 451)], State.READY),
    ([*LOGGED_IN_OPS, ("get", 150)], State.DOWNLOADING),
    ([*LOGGED_IN_OPS, ("get", 150), (None, 226)], State.READY),
    ([*LOGGED_IN_OPS, ("quit", 221)], State.CLOSED),
    ([("login", 331), ("auth", 421)], State.CLOSED),
])
def test_state_transitions(steps, final):
    machine = SessionState()
    for op, code in steps:
        if op:
            machine.on_request(op)
        if code is not None:               # data + trailer: one request, one reply
            machine.on_reply(code)
    assert machine.state is final


@pytest.mark.parametrize("state, op, code", [
    (State.CONNECTED, "ls", 530), (State.CONNECTED, "auth", 503), (State.READY, "login", 503),
    (State.READY, "data", 503), (State.UPLOADING, "ls", 503), (State.DOWNLOADING, "noop", 503),
    (State.READY, "trailer", 503), (State.UPLOADING, "trailer", 503), (State.CONNECTED, "trailer", 503),
])
def test_ops_not_allowed_in_a_state(state, op, code):
    machine = SessionState()
    machine.state = state
    with pytest.raises(SequenceError) as info:
        machine.on_request(op)
    assert info.value.code == code and machine.state is state


# --- authentication ---------------------------------------------------------------------------

FAST = {"n": 1 << 10, "r": 8, "p": 1}


def test_challenge_response_accepts_the_password_and_only_it():
    verifier = auth.make_verifier("s3cret", **FAST)
    salted = auth.salted_key("s3cret", verifier.salt, **FAST)
    proof = auth.client_proof(salted, "alice", "c1", "s1")
    assert auth.verify_proof(verifier, proof, "alice", "c1", "s1")
    assert not auth.verify_proof(verifier, proof, "alice", "c1", "s2")           # replay with a new nonce
    wrong = auth.client_proof(auth.salted_key("guess", verifier.salt, **FAST), "alice", "c1", "s1")
    assert not auth.verify_proof(verifier, wrong, "alice", "c1", "s1")
    assert auth.server_signature(verifier, "alice", "c1", "s1") == auth.expected_server_signature(
        salted, "alice", "c1", "s1")


def test_a_stolen_verifier_is_not_a_password():
    verifier = auth.make_verifier("s3cret", **FAST)
    # Someone with users.json tries the stored key itself as the client key: rejected.
    fake = bytes(a ^ b for a, b in zip(verifier.stored_key, auth._hmac(verifier.stored_key, b"u,c,s"))).hex()
    assert not auth.verify_proof(verifier, fake, "u", "c", "s")


def test_unknown_users_get_a_stable_fake_that_matches_nothing():
    secret = os.urandom(32)
    a, b = auth.fake_verifier(secret, "mallory"), auth.fake_verifier(secret, "mallory")
    assert a == b and len(a.salt) == 16 and a.salt != auth.fake_verifier(secret, "eve").salt
    assert not auth.verify_proof(a, "00" * 32, "mallory", "c", "s")


def test_hostile_kdf_parameters_are_refused_by_the_client():
    with pytest.raises(ProtocolError):
        auth.salted_key("pw", b"salt" * 4, n=1 << 30)


# --- paths ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cwd, arg, expected", [
    ("/", "a", "/a"), ("/docs", "../a", "/a"), ("/docs", "/etc/passwd", "/etc/passwd"),
    ("/a/b", "./c/../d", "/a/b/d"), ("/", "a//b/", "/a/b"), ("/a", "..", "/"),
])
def test_virtual_paths(cwd, arg, expected):
    assert virtual_path(cwd, arg) == expected


@pytest.mark.parametrize("cwd, arg", [("/", ".."), ("/docs", "../.."), ("/", "a/../../b"), ("/", "a\\..\\b"),
                                       ("/", "x\x00"), ("/", ".a.part"), ("/", "d/.a.part.json"),
                                       ("/", "n" * 256)])
def test_paths_that_are_refused(cwd, arg):
    with pytest.raises(PathError) as info:
        virtual_path(cwd, arg)
    assert info.value.code == Code.NAME_NOT_ALLOWED


def test_internal_names():
    assert is_internal_name(".a.part") and is_internal_name(".a.part.json")
    assert not is_internal_name("a.part") and not is_internal_name(".bashrc")


def test_symlinks_out_and_sibling_prefix_homes_are_refused(tmp_path):
    homes = tmp_path / "home"
    (homes / "alice" / "docs").mkdir(parents=True)
    (homes / "alice2").mkdir()
    (homes / "alice2" / "secret").write_text("x")
    (homes / "alice" / "to-etc").symlink_to("/etc")
    (homes / "alice" / "to-sibling").symlink_to(homes / "alice2")    # /home/alice2 starts with /home/alice
    (homes / "alice" / "inside").symlink_to(homes / "alice" / "docs")
    home = Home(str(homes / "alice"))
    for arg in ("to-etc", "to-etc/passwd", "to-sibling/secret", "to-sibling"):
        with pytest.raises(PathError):
            home.resolve("/", arg)
    assert home.resolve("/", "inside").real.endswith("alice/inside")
    assert home.resolve("/", "/etc/passwd").real == str(homes / "alice" / "etc" / "passwd")


@SETTINGS
@given(st.lists(st.sampled_from(["a", "b", ".", "/", "..", "\\", "\x00", "é", "to-etc"]), max_size=12)
       .map("".join))
def test_no_path_resolves_outside_the_home(tmp_path_factory, arg):
    root = tmp_path_factory.mktemp("home")
    (root / "a").mkdir()
    (root / "to-etc").symlink_to("/etc")
    home = Home(str(root))
    try:
        resolved = home.resolve("/", arg)
    except PathError:
        return
    assert os.path.commonpath([str(root), resolved.real]) == str(root)


def test_header_limit_is_shared_with_the_codec():
    from framing.codec import MAX_HEADER_SIZE as CODEC_LIMIT
    assert MAX_HEADER_SIZE <= CODEC_LIMIT


def test_abort_and_help_and_quit_have_no_fields():
    for req in (Abort(), Help(), Quit(), Quota(), Pwd(), Noop()):
        assert req.to_header() == {"op": req.op}


# --- listing pages, the cnonce as sent, name limits, login throttling (issue 9) ---------------

def test_a_listing_page_is_measured_as_sent_and_pages_cover_everything():
    from framing.codec import encode_header
    from ftp.protocol import listing_page
    for name_of in (lambda i: f"{i:05d}" + "x" * 40, lambda i: f"{i:04d}" + "漢" * 80):
        entries = sorted(({"name": name_of(i), "type": "dir", "size": 0, "mtime": 1_700_000_000}
                          for i in range(2000)), key=lambda e: e["name"])
        seen, after = [], None
        while True:
            page = listing_page("/a/b", entries, after)
            assert len(encode_header(page.to_header())) - 4 <= MAX_HEADER_SIZE
            assert page.fields["total"] == 2000
            seen += page.fields["entries"]
            if not page.fields["truncated"]:
                break
            after = page.fields["continue_after"]
        assert seen == entries


def test_a_listing_page_does_not_split_a_name():
    from ftp.protocol import listing_page
    entries = []
    for i in range(3000):
        entries.append({"name": f"{i:05d}" + "y" * 30, "type": "file", "size": 1, "mtime": 0})
        entries.append({"name": f"{i:05d}" + "y" * 30, "type": "partial", "size": 1, "file_size": 2})
    page = listing_page("/", entries)
    chosen = page.fields["entries"]
    assert page.fields["truncated"] and chosen[-1]["type"] == "partial"
    assert entries[len(chosen)]["name"] != chosen[-1]["name"]


def test_the_cnonce_is_kept_as_sent_and_digests_are_lower_cased():
    request = parse_request({"op": "login", "user": "alice", "cnonce": "ABCDEF0123456789"})
    assert request.cnonce == "ABCDEF0123456789"
    put = parse_request({"op": "put", "path": "a", "file_size": 1, "digest": "AB" * 32})
    assert put.digest == "ab" * 32


def test_the_name_limit_leaves_room_for_the_sidecar():
    from ftp.protocol import MAX_NAME_BYTES, NAME_MAX, SIDECAR_SUFFIX
    assert len(f".{'n' * MAX_NAME_BYTES}{SIDECAR_SUFFIX}") == NAME_MAX
    virtual_path("/", "n" * MAX_NAME_BYTES)
    with pytest.raises(PathError):
        virtual_path("/", "n" * (MAX_NAME_BYTES + 1))


def test_login_throttle_backs_off_forgives_and_trusts_a_known_address():
    from ftp.throttle import LoginThrottle, ThrottlePolicy
    now = [1000.0]
    throttle = LoginThrottle(ThrottlePolicy(account_free=2, account_cap=8, address_free=4, address_cap=16,
                                            base_delay=1, forget_after=100), clock=lambda: now[0])
    assert throttle.begin_attempt("alice", "10.0.0.1") == 0
    throttle.succeeded("alice", "10.0.0.1")                 # her usual address
    assert [throttle.begin_attempt("alice", "10.0.0.9") for _ in range(2)] == [0, 0]
    wait = throttle.begin_attempt("alice", "10.0.0.9")
    assert wait == 1                                        # the third attempt waits; it is not counted
    assert throttle.begin_attempt("alice", "10.0.0.9") == 1
    assert throttle.retry_after("alice", "10.0.0.1") == 0   # trusted address: no account wait
    now[0] += 1
    assert throttle.begin_attempt("alice", "10.0.0.9") == 0    # counted: 3 failures
    assert throttle.retry_after("alice", "10.0.0.9") == 2      # doubled
    for _ in range(10):                                     # hammering while throttled changes nothing
        throttle.begin_attempt("alice", "10.0.0.9")
    assert throttle.retry_after("alice", "10.0.0.9") == 2
    for _ in range(6):                                      # the wait is capped
        now[0] += 20
        throttle.begin_attempt("alice", "10.0.0.9")
    assert throttle.retry_after("alice", "10.0.0.7") <= 8
    now[0] += 101                                           # forgotten after a quiet period
    assert throttle.retry_after("alice", "10.0.0.9") == 0


def test_a_success_forgives_an_address_its_failures_on_that_account_only():
    from ftp.throttle import LoginThrottle, ThrottlePolicy
    throttle = LoginThrottle(ThrottlePolicy(account_free=5, address_free=10), clock=lambda: 50.0)
    for run in range(8):         # `lab.py check ftp` again and again: wrong proofs, then the right one
        for user in ("mallory", "alice", "alice", "alice", "alice"):
            assert throttle.begin_attempt(user if run < 4 else "alice", "10.0.0.5") == 0
        throttle.succeeded("alice", "10.0.0.5")
    assert throttle.retry_after("alice", "10.0.0.5") == 0   # 4 mallory failures remain, 10 are free
    spray = LoginThrottle(ThrottlePolicy(account_free=5, address_free=10), clock=lambda: 50.0)
    for k in range(9):           # guesses at nine accounts, then a login to one's own
        assert spray.begin_attempt(f"user{k}", "10.0.0.6") == 0
    assert spray.begin_attempt("me", "10.0.0.6") == 0
    spray.succeeded("me", "10.0.0.6")
    assert spray._addresses["10.0.0.6"].failures == 9          # the guesses at others stay
    assert spray.begin_attempt("user9", "10.0.0.6") == 0
    assert spray.retry_after("user10", "10.0.0.6") > 0


# --- protocol 2: the digest trailer ----------------------------------------------------------

def test_a_protocol_2_upload_is_put_data_body_trailer_and_one_reply():
    client, server = logged_in_pair()
    put = Put("t.bin", 3, None, trailer=True, overwrite=True)
    assert put.to_header() == {"op": "put", "path": "t.bin", "file_size": 3, "algo": "sha256",
                               "overwrite": True, "trailer": True}
    assert events(server, client.send(put)) == [put]
    events(client, server.send(reply(350, "send", offset=0, trailer=True)))
    wire = client.send(PutData(0), body_size=3) + b"xyz" + client.send(Trailer(DIGEST))
    got = events(server, wire)
    assert got[0] == PutData(0) and isinstance(got[-2], EndOfBody) and got[-1] == Trailer(DIGEST)
    assert server.state.pending == client.state.pending == "trailer"
    events(client, server.send(reply(226, "stored")))
    assert client.state.state is server.state.state is State.READY


@pytest.mark.parametrize("fields", [{"trailer": True, "digest": DIGEST}, {"trailer": 1}, {"trailer": "true"}])
def test_a_put_with_a_trailer_takes_no_digest_and_a_real_bool(fields):
    with pytest.raises(ProtocolError) as info:
        parse_request({"op": "put", "path": "a", "file_size": 1, **fields})
    assert info.value.code == 501


def test_a_protocol_1_put_still_needs_its_digest():
    with pytest.raises(ProtocolError) as info:
        parse_request({"op": "put", "path": "a", "file_size": 1})
    assert info.value.code == 501 and "digest" in info.value.msg
    assert parse_request({"op": "put", "path": "a", "file_size": 1, "digest": DIGEST, "trailer": False}) \
        == Put("a", 1, DIGEST)


def test_the_greeting_announces_protocol_2_and_the_trailer():
    hello = greeting(3)
    assert hello.fields["version"] == PROTOCOL_VERSION == 2 and TRAILER_FEATURE in hello.fields["features"]
