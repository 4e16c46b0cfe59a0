"""Lesson framing: a '!I' length, a JSON header (size, sha256) and a body make replies exact.

A student's SERVER is graded with hostile clients made by the probes themselves (requests one byte
per send, several requests in one segment, clients vanishing mid-frame, broken frames); it needs
no test modes. The reference server's sending modes (trickle, pipeline, truncate, corrupt, oversize) show
the phenomena in the demo, and grade a student's CLIENT: the client scenario runs it in one-shot
mode (``--command ... --mode ...``) against the reference server once per mode.
Negative controls: tests/negative/framing_seed_server.py and framing_seed_client.py.
"""
from __future__ import annotations

import shlex

from ..contract import Contract, RoleContract
from ..diagnose import unreachable
from ..scenario import LessonRun, Outcome, scenario

FRAME = ("a frame is a 4-byte big-endian length (`struct.pack('!I', n)`), then a UTF-8 JSON header "
         "object of n bytes, then the body; the header's `size` is the body's length in bytes and "
         "`sha256` its hex digest")
CONTRACT = Contract("framing", (
    RoleContract("server", "python3 my_server.py --port 20030", (
        "take the port from `--port N`; listen on every interface (`'0.0.0.0'`);",
        f"speak frames both ways: {FRAME} (a request without a body has `size` 0);",
        "read each request exactly, however it arrives: a frame split over many `recv()`s (even one "
        "byte at a time), or several frames in one `recv()`; answer them in order on the same "
        "connection, which stays open for the next request;",
        "answer `echo TEXT` with the body `TEXT`, `lines N` with N lines of text, `big N` with a body "
        "of exactly N bytes (N up to 8 MiB), and `hash` (a request with a body of up to 8 MiB) with the "
        "header fields `body_size` and `body_sha256` of the body it received;",
        "reply with a frame whose header holds `\"ok\": true`, `size` and `sha256` of the reply body;",
        "answer a bad frame — a header length of 0 or over 64 KiB, a header that is not UTF-8, not JSON, "
        "not an object, or nested deeper than 32, a missing or non-string `cmd`, an unknown command, a "
        "body whose sha256 does not match, huge or NaN sizes — with a frame `{\"ok\": false, \"error\": "
        "\"...\"}` (then it may close that connection), without reading a huge announced length first "
        "(a client that sends a body shorter than announced and then closes may get an error frame or just "
        "a close);",
        "keep serving everyone else: a client that sends nothing, or vanishes mid-frame, must not "
        "stop the server or block other clients (threads, `socketserver`, `selectors` or `asyncio`).",
    ), (
        "ignore the request header's `mode` (only the reference server uses it, to test clients);",
        "end an `echo` body with a newline.",
    )),
    RoleContract("client", "python3 my_client.py --host framing-server --port 20030 --command CMD "
                           "[--command CMD2] [--mode MODE]", (
        f"send each `--command` as a request frame ({FRAME}; header `{{\"cmd\": CMD, \"mode\": MODE, "
        "\"size\": 0, \"sha256\": ...}`, default mode `normal`) and read its reply;",
        "write each reply body to stdout exactly (every frame of it: a reply whose header says "
        "`\"more\": true` is followed by another frame that belongs to it);",
        "read exactly, whatever the sending mode: replies trickled one byte per send, two frames in "
        "one segment (`pipeline`);",
        "verify every body against the header's `size` and `sha256` (`corrupt` sends a body whose "
        "sha256 does not match);",
        "exit 0 only when every reply was complete, verified and ok (a reply `{\"ok\": false, \"error\": "
        "...}`, such as the answer to an unknown command, is not ok); otherwise write a message to "
        "stderr and exit non-zero, promptly: a reply cut short (`truncate`) or a header length of "
        "2³²−1 (`oversize`: the server then sends nothing more and keeps the connection open) must not "
        "make it hang or allocate 4 GiB: refuse a header length over a limit (e.g. 64 KiB) right after "
        "reading the 4 prefix bytes, within a few seconds.",
    ), ("print anything it likes to stderr.",)),
), ("The seed-style `tests/negative/framing_seed_server.py` and `framing_seed_client.py` fail; run "
    "them with `SEED_HEADER_FORMAT='!I'` to fix only the byte order, and they still fail "
    "(`trickled-request`, `pipelined-requests`, `bad-input`; the client: trickle, pipeline, truncate, corrupt, "
    "refused).",))


@scenario("recv-sizes", "the same reply read with recv(1), recv(5), recv(4096) is identical, sha256 verified")
def recv_sizes(run: LessonRun) -> Outcome:
    probe = run.probe("recv-sizes")
    o = probe.observed
    if not probe.ok:
        problem = o.get("probe_error") or o.get("error") or "bodies differ or sha256 missing"
        return Outcome(False, f"reading 'lines 300' three times: {problem}", o, probe.transcript,
                       "reply with one frame: the '!I' length of the header, a JSON header with size and "
                       "sha256 of the body, then the body")
    return Outcome.from_probe(probe, f"prefix {o.get('prefix_hex')} -> header of {o.get('header_length')} bytes; "
                          f"body sizes {o.get('body_sizes')} with recv sizes {o.get('recv_sizes')} "
                          f"({o.get('recv_calls')} recv calls)")


@scenario("trickle", "bytes sent one per send(): recv(4) returns fewer than 4; recv_exact gets the frame",
          roles=())
def trickle(run: LessonRun) -> Outcome:
    probe = run.probe("trickle")
    o = probe.observed
    return Outcome.from_probe(probe, f"request in {o.get('request_sends')} one-byte sends; reply prefix came as "
                          f"{o.get('prefix_recv_sizes')}; body {o.get('reply_body')!r}")


@scenario("pipelined", "two frames back to back are cut apart exactly; the seed over-reads", roles=())
def pipelined(run: LessonRun) -> Outcome:
    probe = run.probe("pipelined")
    o = probe.observed
    return Outcome.from_probe(probe, f"two pipelined requests answered correctly: {o.get('requests_pipelined_ok')}; "
                          f"one recv held {o.get('frames_in_one_recv')} frames {o.get('body_sizes')}; "
                          f"the seed's loop would over-read {o.get('seed_overread_bytes')} bytes")


@scenario("big-body", "an 8 MiB body each way streams through in linear time, sha256 verified")
def big_body(run: LessonRun) -> Outcome:
    probe = run.probe("big-body", timeout=120)
    o = probe.observed
    if not probe.ok:
        return Outcome(False, f"8 MiB each way: {o.get('probe_error') or 'wrong size or sha256'}", o,
                       probe.transcript, "send the whole 'big N' body with sendall() (send() may take only "
                                         "part of it), and read a request body of `size` bytes in a loop "
                                         "before hashing it")
    return Outcome.from_probe(probe, f"download {o.get('download_bytes')} bytes in {o.get('download_seconds')} s, "
                          f"upload {o.get('upload_bytes')} bytes in {o.get('upload_seconds')} s")


@scenario("truncated", "a reply cut short ends in a clear TruncatedFrame (EOFError), not a hang", roles=())
def truncated(run: LessonRun) -> Outcome:
    probe = run.probe("truncated")
    o = probe.observed
    return Outcome.from_probe(probe, f"{o.get('received_body_bytes')} of {o.get('announced_size')} body bytes, "
                          f"then {o.get('error_type')}")


@scenario("oversize-header", "a header length of 2**32-1 is refused after 4 bytes, before any allocation",
          roles=())
def oversize_header(run: LessonRun) -> Outcome:
    probe = run.probe("oversize-header")
    o = probe.observed
    return Outcome.from_probe(probe, f"announced {o.get('announced_header_length')}; {o.get('error_type')} after "
                          f"{o.get('bytes_read_before_error')} bytes")


@scenario("trickled-request", "a request arriving one byte per send() is read whole and answered")
def trickled_request(run: LessonRun) -> Outcome:
    probe = run.probe("trickled-request")
    o = probe.observed
    if probe.ok:
        return Outcome.from_probe(probe, f"a {o['request_bytes']}-byte request in {o['request_bytes']} sends "
                                         f"was answered {o['reply_body']!r}")
    if o.get("error") and not o.get("answered") and "closed" not in str(o.get("problem")):
        what, fix = unreachable(run)
        return Outcome(False, f"{o['error']}; {what}", o, probe.transcript, fix)
    detail = o.get("error") or o.get("probe_error") or o.get("reply_body")
    return Outcome(False, f"a request sent one byte per send() was {o.get('problem') or 'not answered'}"
                          + (f": {detail!r}" if detail else ""), o, probe.transcript,
                   "recv(4) may return 1, 2 or 3 bytes: loop until you have all 4 prefix bytes, then all n "
                   "header bytes, then all `size` body bytes (a recv_exact helper); MSG_WAITALL is no "
                   "substitute, on a socket with a timeout it returns short")


OVERREAD_FIX = ("a body read that asks for more than the remaining body bytes (a fixed recv(1024)) reads into "
                "the next frame: ask for min(remaining, n) until exactly `size` body bytes are in, and keep "
                "any bytes after the frame in a buffer for the next request")


@scenario("pipelined-requests", "requests back to back in ONE segment, with and without a body before the "
                                "next: every reply, in order")
def pipelined_requests(run: LessonRun) -> Outcome:
    probe = run.probe("pipelined-requests")
    o = probe.observed
    if probe.ok:
        return Outcome.from_probe(probe, "4 requests sent in one sendall() got 4 correct replies in order; a 'hash' "
                                         "with a 2999-byte body and 2 echoes right behind it, in one sendall(), "
                                         "got 3")
    if o.get("probe_error"):
        return Outcome(False, f"requests sent back to back in one sendall(): {o['probe_error']}", o,
                       probe.transcript, "keep the server listening and answer every request in order")
    parts = []
    if not o.get("part1_ok"):
        parts.append(f"3 echoes and a 'hash' with a body, in one sendall(): {o.get('problem') or 'wrong replies'} "
                     f"(echoes correct: {o.get('echoes_ok')}, hash correct: {o.get('hash_ok')})")
    if not o.get("part2_ok"):
        seen, sent = o.get("body_first_server_body_size"), o.get("body_first_sent_size")
        parts.append(f"a 'hash' with a {sent}-byte body followed by 2 echoes in the same sendall(): "
                     f"{o.get('body_first_problem') or 'wrong replies'} (hash correct: "
                     f"{o.get('body_first_hash_ok')}" + (f", the server counted {seen} body bytes" if seen is not None
                                                         and seen != sent else "")
                     + f"; echoes after the body correct: {o.get('after_body_echoes_ok')})")
    fixes = []
    if not o.get("part1_ok"):
        fixes.append("one recv() may hold several frames: keep the bytes after the end of a frame in a buffer "
                     "and start the next request from them")
    if not o.get("part2_ok"):
        fixes.append(OVERREAD_FIX)
    return Outcome(False, "; ".join(parts), o, probe.transcript, "; ".join(fixes))


@scenario("client-vanishes", "clients that leave mid-prefix, mid-header and mid-body leave the server serving")
def client_vanishes(run: LessonRun) -> Outcome:
    probe = run.probe("client-vanishes")
    if probe.ok:
        return Outcome.from_probe(probe, "three clients vanished mid-frame; a fresh client was served")
    return Outcome(False, "after clients vanished mid-frame, a fresh client was not served", probe.observed,
                   probe.transcript, "recv() returning b'' mid-frame means the client left: close that "
                                     "connection only (catch the error per client), and keep accepting")


# what to change when the server stopped (nobody listening afterwards) right after this bad frame
DIED_FIX = {
    "length-2**32-1": "check the announced header length against a limit (e.g. 64 KiB) right after reading the "
                      "4 prefix bytes, before reading or allocating the header, and refuse a larger one with an "
                      "error frame {\"ok\": false, \"error\": ...}",
    "negative-if-signed": "unpack the prefix with '!I' (unsigned), check the length against a limit (e.g. 64 KiB) "
                          "before reading the header, and refuse a larger one with an error frame",
    "length-zero": "refuse a header length of 0 with an error frame before reading anything",
    "deep-nesting": "catch RecursionError from json.loads (and refuse headers nested deeper than 32) with an "
                    "error frame",
    "huge-number": "check `size` (an int, not a bool, 0 to 8 MiB) before reading the body; int('1' + 400 "
                   "zeros) and float('nan') must be refused with an error frame",
    "nan-size": "check that `size` is an int (not a float, NaN or bool) before using it; refuse with an error frame",
}


@scenario("bad-input", "bad frames get a framed error; an idle client blocks nobody; the server survives")
def bad_input(run: LessonRun) -> Outcome:
    probe = run.probe("bad-input", timeout=180)
    o = probe.observed
    rejected, cases, tried = o.get("rejected_with_error") or [], o.get("cases") or [], o.get("tried") or []
    died = o.get("server_died_after")
    if died:
        summary = (f"{len(rejected)} of the {len(tried)} bad frames tried were answered with an error frame, then "
                   f"the server died on '{died}' ({o.get('server_died_after_bytes')}): every later connection "
                   f"failed ({o.get('refused')}); {len(o.get('not_tried') or [])} cases not tried")
    elif o.get("probe_error") and not cases:
        summary = f"the bad-input check could not run: {o['probe_error']}"
    else:
        summary = (f"{len(rejected)}/{len(cases)} bad frames answered with an error frame; a second client "
                   f"served while another idles: {o.get('served_while_another_idles')}; a fresh client served "
                   f"afterwards: {o.get('still_serves')}")
        if o.get("silent_from"):
            summary += (f"; the server went silent on '{o['silent_from']}' (no reply, connection left open), "
                        "so the rest were not tried")
    if probe.ok:
        return Outcome.from_probe(probe, summary)
    fixes = []
    if died:
        fixes.append(DIED_FIX.get(died, f"catch the error that '{died}' raises and answer it with an error "
                                        "frame") + "; an error in one connection must only close that "
                                                   "connection, never stop the server")
    not_rejected = [c for c in o.get("not_rejected") or [] if c != died]
    if not_rejected:
        fixes.append(f"answer each bad frame ({', '.join(not_rejected[:6])}) with "
                     "{\"ok\": false, \"error\": ...} before closing; check the length prefix against a limit "
                     "before reading the header, and catch every parse error (ValueError, UnicodeDecodeError, "
                     "RecursionError)")
    if o.get("silent_from") and o["silent_from"] not in not_rejected:
        fixes.append(f"answer '{o['silent_from']}' with an error frame instead of waiting for more bytes")
    if not died and o.get("served_while_another_idles") is False:
        fixes.append("serve each client in its own thread (or with selectors/asyncio) so an idle client "
                     "blocks nobody")
    if not died and o.get("still_serves") is False:
        fixes.append("keep the server alive: an error in one connection must only close that connection")
    return Outcome(False, summary, o, probe.transcript, "; ".join(fixes) or "see the transcript")


@scenario("client", "the client prints exact replies when trickled or pipelined, and stops with an error "
                    "on truncated, corrupt, refused or oversized replies", roles=("client",))
def client(run: LessonRun) -> Outcome:
    probe = run.probe("grade-client", "--client-cmd", shlex.join(run.client_cmd), timeout=180)
    passed = probe.observed.get("passed") or {}
    failed = [name for name, good in passed.items() if not good]
    advice = {"trickle": "read the 4-byte prefix, the header and the body with a recv_exact loop",
              "pipeline": "a reply with \"more\": true is followed by another frame: keep leftover bytes "
                          "and read the next frame from them",
              "truncate": "when recv() returns b'' before `size` body bytes, stop with an error (non-zero exit)",
              "corrupt": "compute hashlib.sha256(body).hexdigest() and compare it with the header's sha256; on "
                         "a mismatch write an error to stderr and exit non-zero",
              "refused": "look at the reply header's \"ok\": when it is not true, write its \"error\" to "
                             "stderr and exit non-zero",
              "oversize": "check the header length against a limit (e.g. 64 KiB) right after reading the 4 prefix "
                          "bytes and refuse a larger one (error to stderr, exit non-zero), before reading the "
                          "header: the server keeps the connection open, so reading 4 GiB never ends",
              "big": "read the body in a loop until `size` bytes are in, write them all, and exit 0"}
    why = probe.observed.get("why") or {}
    fix = "; ".join(f"{name}: {why[name]}" if "print()" in why.get(name, "") else advice.get(name, name)
                    for name in failed)
    return Outcome(bool(passed) and not failed and probe.ok,
                   f"{sum(passed.values())}/{len(passed)} sending modes handled"
                   + (f"; failed: {', '.join(f'{n} ({why[n]})' if n in why else n for n in failed)}"
                      if failed else ""),
                   probe.observed, probe.transcript, fix)
