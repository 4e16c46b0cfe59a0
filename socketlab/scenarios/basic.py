"""Lesson basic: connect/accept, a new socket per client, bytes, ECONNREFUSED, 127.0.0.1 is local."""
from __future__ import annotations

from ..scenario import LessonRun, Outcome, scenario, wait_listening


@scenario("accept-new-socket", "accept() returns a new socket per client; the client port differs each time")
def accept_new_socket(run: LessonRun) -> Outcome:
    probe = run.probe("accept-new-socket")
    return Outcome.from_probe(probe, "3 connections, 3 different client ports, each seen by the server")


@scenario("bytes-not-str", "sockets carry bytes: send('str') raises TypeError, recv() returns bytes")
def bytes_not_str(run: LessonRun) -> Outcome:
    return Outcome.from_probe(run.probe("bytes-not-str"), "str must be encoded before sending")


@scenario("connect-ex-refused", "connect_ex to a port where nothing listens returns ECONNREFUSED (111)")
def connect_ex_refused(run: LessonRun) -> Outcome:
    closed = run.port() + 1
    probe = run.probe("connect-ex", port=closed)
    return Outcome.from_probe(probe, f"connect_ex to port {closed} -> {probe.observed.get('errno_name')}")


@scenario("loopback-unreachable", "a server bound to 127.0.0.1 cannot be reached from another machine")
def loopback_unreachable(run: LessonRun) -> Outcome:
    port = run.port() + 5
    run.server.spawn("loopback-server", [*run.server_cmd, "--host", "127.0.0.1", "--port", str(port)])
    try:
        listening = wait_listening(run.server, port)
        remote = run.probe("connect-ex", port=port)
        local = run.probe("connect-ex", "--expect", "OK", node=run.server, host="127.0.0.1", port=port)
    finally:
        run.server.stop("loopback-server")
    transcript = [f"server started with --host 127.0.0.1 --port {port} on {run.server.name}: "
                  f"{'listening' if listening else 'NOT listening'}",
                  "from the client machine:", *remote.transcript,
                  "from the server machine itself:", *local.transcript,
                  "127.0.0.1 is the loopback interface: only programs on the same machine can use it. "
                  "Bind 0.0.0.0 (or the machine's own address) to accept connections from the network."]
    passed = listening and remote.observed.get("errno_name") == "ECONNREFUSED" and local.ok
    return Outcome(passed, "bound to 127.0.0.1: refused from the client container, reachable locally",
                   {"listening": listening, "remote_errno": remote.observed.get("errno"),
                    "remote_errno_name": remote.observed.get("errno_name"),
                    "local_errno_name": local.observed.get("errno_name")}, transcript)
