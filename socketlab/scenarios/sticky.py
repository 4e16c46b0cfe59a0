"""Lesson sticky: one recv() is not one message; TCP_NODELAY does not change that; framing does.

Server scenarios drive the fake shell (services/sticky/server.py, or a student's server with the
same commands) from the client machine. The client scenario runs the client under test in its
scripted mode (``--command ...``) and compares every reply it prints with the server's reply.
The reference client is ``sticky/client.py`` (the framed one); ``sticky/naive_client.py`` and
``tests/negative/sticky_seed_client.py`` are the seed's client and must fail it.
"""
from __future__ import annotations

import shlex

from ..contract import Contract, RoleContract
from ..scenario import LessonRun, Outcome, scenario

CONTRACT = Contract("sticky", (
    RoleContract("client", "python3 my_client.py --host sticky-server --port 20020 --command CMD "
                           "[--command CMD ...]", (
        "take `--host`, `--port` and one or more `--command` options; connect once and run the commands "
        "in order on that one connection;",
        "send each command as one line (the command, then `\\n`);",
        "print each reply to stdout whole and exactly as the server sent it, then the line "
        "`--- end of reply ---` on a line of its own (when a reply does not end with a newline, print "
        "one first: one extra newline after a reply is allowed);",
        "exit 0 when every reply was printed, within 60 s.",
    ), (
        "use `frame COMMAND` (the server puts a 4-byte `!I` length before the reply) or any other way to "
        "know where each reply ends;",
        "print other lines to stderr.",
    )),
), ("The seed's client (`naive_client.py`, `tests/negative/sticky_seed_client.py`) fails: one "
    "`recv(1024)` per command prints 1024 of the 5120 bytes of `big 5120`, then the leftovers.",))


@scenario("leftover", "with recv(1024), the reply to 'echo hi' is the leftover of the 5120-byte reply "
                      "before it", roles=())
def leftover(run: LessonRun) -> Outcome:
    probe = run.probe("leftover")
    o = probe.observed
    return Outcome.from_probe(probe, f"recv(1024) got {o.get('r1_len')} of 5120 bytes; the next command's "
                                     f"recv started with {o.get('r2_head', '')[:12]!r}, not 'hi'")


@scenario("coalesce", "two sendall() calls already queued come out of one recv(1024) as b'helloworld'",
          roles=())
def coalesce(run: LessonRun) -> Outcome:
    probe = run.probe("coalesce")
    o = probe.observed
    return Outcome.from_probe(probe, f"{o.get('coalesced')}/{o.get('rounds')} recvs returned b'helloworld'; "
                                     f"0.2 s apart they read as {o.get('paced_recvs')}")


@scenario("nodelay-no-cure", "TCP_NODELAY on both ends: the two sends still read as one "
                             "(Nagle is not the cause)", roles=())
def nodelay_no_cure(run: LessonRun) -> Outcome:
    probe = run.probe("coalesce", "--nodelay")
    o = probe.observed
    return Outcome.from_probe(probe, f"TCP_NODELAY=1 on client and server; still {o.get('coalesced')}/"
                                     f"{o.get('rounds')} recvs returned b'helloworld'")


@scenario("framed", "a 4-byte '!I' length before each reply cuts pipelined replies apart exactly", roles=())
def framed(run: LessonRun) -> Outcome:
    probe = run.probe("framed")
    sizes = probe.observed.get("sizes")
    return Outcome.from_probe(probe, f"3 replies queued together, read back as {sizes} bytes")


READ_BY_LENGTH = ("a reply ends where its 4-byte length says: struct.unpack('!I', four_bytes) (network byte order; "
                  "'i' is the machine's own, little-endian here, and reads a huge wrong length), then exactly "
                  "that many bytes - a recv() that returns less than asked (or exactly 1024) says nothing about "
                  "the end")


@scenario("client-exact-replies", "the client prints each reply exactly (big 5120, echo hi, ... big 100000)",
          roles=("client",))
def client_exact_replies(run: LessonRun) -> Outcome:
    probe = run.probe("grade-client", "--client-cmd", shlex.join(run.client_cmd))
    o = probe.observed
    exact = o.get("exact") or []
    if probe.ok:
        return Outcome.from_probe(probe, f"{sum(exact)}/{len(exact)} replies printed exactly as the server sent "
                                         f"them ({o.get('expected_bytes')} bytes)")
    wrong = [c for c, good in zip(o.get("commands") or [], exact) if not good]
    commands, printed = o.get("commands") or [], o.get("replies_printed", 0)
    error, refused = o.get("client_error") or "", o.get("server_refused") or {}
    if o.get("client_exit") not in (0, None) and not wrong:
        fix = "exit 0 once every reply is printed (and finish within 60 s)"
        summary = f"every reply was right, but the client exited with {o.get('client_exit')}"
    elif refused:
        command, said = next(iter(refused.items()))
        fix = (f"the server refused {command!r} as the client sent it ({said!r}): send each command as one "
               "line, the command then '\\n' (e.g. sock.sendall(('frame ' + command + '\\n').encode()))")
        summary = f"the server answered {len(refused)} command(s) with an error, first {command!r}: {said!r}"
    elif o.get("timed_out"):
        fix = f"the client waits for bytes that never come: {READ_BY_LENGTH}, nor when the server goes quiet"
        summary = f"the client did not finish within 60 s; it printed {printed} of {len(commands)} replies"
    elif error and printed < len(commands):
        fix = f"the client crashed after {printed} of {len(commands)} replies ({error})"
        if ("Timeout" in error or "timed out" in error) and printed == 0:
            fix += (": no reply could be read at all. The server answers a command only once its line has "
                    f"ended (send the command, then '\\n'); and {READ_BY_LENGTH}")
        elif "Timeout" in error or "timed out" in error:
            fix += f": it waited for more bytes than the server sent - {READ_BY_LENGTH}"
        elif "struct.error" in error or "unpack requires" in error:
            fix += (": it got fewer than 4 bytes where it expected a length - loop until all 4 bytes of the "
                    "prefix are in, and stop when recv() returns b'' (the server closed)")
        summary = f"the client exited with {o.get('client_exit')} after {printed} of {len(commands)} replies: {error}"
    elif printed < len(commands) and not any(exact):
        fix = "print the line '--- end of reply ---' after each reply"
        summary = (f"found {o.get('replies_printed')} '--- end of reply ---' lines for "
                   f"{len(o.get('commands') or [])} commands")
    elif o.get("printed_before_reply"):
        fix = ("print only the reply: the 4-byte length (or anything else) printed before it is not part of "
               "the reply")
        summary = (f"{sum(exact)}/{len(exact)} replies printed exactly; before the replies to "
                   f"{', '.join(o['printed_before_reply'])} the client printed extra bytes")
    else:
        fix = ("one recv() is not one reply: read until the whole reply is in (send 'frame CMD' and read "
               "the 4-byte length first, then exactly that many bytes)")
        summary = (f"{sum(exact)}/{len(exact)} replies printed exactly; wrong: {', '.join(wrong)} "
                   f"(printed {o.get('printed_bytes')} bytes, the server sent {o.get('expected_bytes')})")
    return Outcome(False, summary, o, probe.transcript, fix)
