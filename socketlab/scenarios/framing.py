"""Lesson framing: a '!I' length, a JSON header (size, sha256) and a body make replies exact.

Server scenarios run ``framing.probes`` on the client machine against the server under test
(services/framing/server.py, or a student's server with the same protocol and sending modes).
The client scenario runs the client under test in one-shot mode (``--command ... --mode ...``)
against the reference server, once per sending mode, and compares what it prints with the
reply. Negative controls: tests/negative/framing_seed_server.py and framing_seed_client.py.
"""
from __future__ import annotations

import shlex

from ..scenario import LessonRun, Outcome, scenario


@scenario("recv-sizes", "the same reply read with recv(1), recv(5), recv(4096) is identical, sha256 verified")
def recv_sizes(run: LessonRun) -> Outcome:
    probe = run.probe("recv-sizes")
    o = probe.observed
    return Outcome.from_probe(probe, f"prefix {o.get('prefix_hex')} -> header of {o.get('header_length')} bytes; "
                          f"body sizes {o.get('body_sizes')} with recv sizes {o.get('recv_sizes')} "
                          f"({o.get('recv_calls')} recv calls)")


@scenario("trickle", "bytes sent one per send(): recv(4) returns fewer than 4; recv_exact gets the frame")
def trickle(run: LessonRun) -> Outcome:
    probe = run.probe("trickle")
    o = probe.observed
    return Outcome.from_probe(probe, f"request in {o.get('request_sends')} one-byte sends; reply prefix came as "
                          f"{o.get('prefix_recv_sizes')}; body {o.get('reply_body')!r}")


@scenario("pipelined", "two frames back to back are cut apart exactly; the seed over-reads")
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
    return Outcome.from_probe(probe, f"download {o.get('download_bytes')} bytes in {o.get('download_seconds')} s, "
                          f"upload {o.get('upload_bytes')} bytes in {o.get('upload_seconds')} s")


@scenario("truncated", "a reply cut short ends in a clear TruncatedFrame (EOFError), not a hang")
def truncated(run: LessonRun) -> Outcome:
    probe = run.probe("truncated")
    o = probe.observed
    return Outcome.from_probe(probe, f"{o.get('received_body_bytes')} of {o.get('announced_size')} body bytes, "
                          f"then {o.get('error_type')}")


@scenario("oversize-header", "a header length of 2**32-1 is refused after 4 bytes, before any allocation")
def oversize_header(run: LessonRun) -> Outcome:
    probe = run.probe("oversize-header")
    o = probe.observed
    return Outcome.from_probe(probe, f"announced {o.get('announced_header_length')}; {o.get('error_type')} after "
                          f"{o.get('bytes_read_before_error')} bytes")


@scenario("bad-input", "bad frames get a framed error; an idle client blocks nobody; the server survives")
def bad_input(run: LessonRun) -> Outcome:
    probe = run.probe("bad-input", timeout=180)
    o = probe.observed
    rejected, cases = o.get("rejected_with_error") or [], o.get("cases") or []
    return Outcome.from_probe(probe, f"{len(rejected)}/{len(cases)} bad frames answered with an error; served while "
                          f"another idles: {o.get('served_while_another_idles')}; "
                          f"still serves: {o.get('still_serves')}")


@scenario("client", "the client prints exact replies when trickled or pipelined, and stops with an error "
                    "on truncated or oversized frames", roles=("client",))
def client(run: LessonRun) -> Outcome:
    probe = run.probe("grade-client", "--client-cmd", shlex.join(run.client_cmd), timeout=180)
    passed = probe.observed.get("passed") or {}
    failed = [name for name, good in passed.items() if not good]
    return Outcome.from_probe(probe, f"{sum(passed.values())}/{len(passed)} cases passed"
                          + (f"; failed: {', '.join(failed)}" if failed else ""))
