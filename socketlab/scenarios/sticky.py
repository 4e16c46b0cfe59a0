"""Lesson sticky: one recv() is not one message; TCP_NODELAY does not change that; framing does.

Server scenarios drive the fake shell (services/sticky/server.py, or a student's server with the
same commands) from the client machine. The client scenario runs the client under test in its
scripted mode (``--command ...``) and compares every reply it prints with the server's reply.
The reference client is ``sticky/client.py`` (the framed one); ``sticky/naive_client.py`` and
``tests/negative/sticky_seed_client.py`` are the seed's client and must fail it.
"""
from __future__ import annotations

import shlex

from ..scenario import LessonRun, Outcome, scenario


@scenario("leftover", "with recv(1024), the reply to 'echo hi' is the leftover of the 5120-byte reply "
                      "before it")
def leftover(run: LessonRun) -> Outcome:
    probe = run.probe("leftover")
    o = probe.observed
    return Outcome.from_probe(probe, f"recv(1024) got {o.get('r1_len')} of 5120 bytes; the next command's "
                                     f"recv started with {o.get('r2_head', '')[:12]!r}, not 'hi'")


@scenario("coalesce", "two sendall() calls already queued come out of one recv(1024) as b'helloworld'")
def coalesce(run: LessonRun) -> Outcome:
    probe = run.probe("coalesce")
    o = probe.observed
    return Outcome.from_probe(probe, f"{o.get('coalesced')}/{o.get('rounds')} recvs returned b'helloworld'; "
                                     f"0.2 s apart they read as {o.get('paced_recvs')}")


@scenario("nodelay-no-cure", "TCP_NODELAY on both ends: the two sends still read as one "
                             "(Nagle is not the cause)")
def nodelay_no_cure(run: LessonRun) -> Outcome:
    probe = run.probe("coalesce", "--nodelay")
    o = probe.observed
    return Outcome.from_probe(probe, f"TCP_NODELAY=1 on client and server; still {o.get('coalesced')}/"
                                     f"{o.get('rounds')} recvs returned b'helloworld'")


@scenario("framed", "a 4-byte '!I' length before each reply cuts pipelined replies apart exactly")
def framed(run: LessonRun) -> Outcome:
    probe = run.probe("framed")
    sizes = probe.observed.get("sizes")
    return Outcome.from_probe(probe, f"3 replies queued together, read back as {sizes} bytes")


@scenario("client-exact-replies", "the client prints each reply exactly (big 5120, echo hi, ... big 100000)",
          roles=("client",))
def client_exact_replies(run: LessonRun) -> Outcome:
    probe = run.probe("grade-client", "--client-cmd", shlex.join(run.client_cmd))
    o = probe.observed
    exact = o.get("exact") or []
    return Outcome.from_probe(probe, f"{sum(exact)}/{len(exact)} replies printed exactly (printed sizes "
                                     f"{o.get('printed_bytes')}, expected {o.get('expected_bytes')})")
