"""Lesson basic: connect/accept, a new socket per client, bytes, ECONNREFUSED, 127.0.0.1 is local."""
from __future__ import annotations

from ..contract import Contract, RoleContract
from ..diagnose import unreachable
from ..scenario import LessonRun, Outcome, scenario, wait_listening

CONTRACT = Contract("basic", (
    RoleContract("server", "python3 my_server.py --port 20000", (
        "take the port from `--port N`;",
        "listen on TCP port N on every interface (bind `'0.0.0.0'`), so the client machine reaches it;",
        "serve clients one after another: `accept()`, `recv()` once (the check sends `b'hello'`, "
        "5 bytes with no newline), reply with at least one byte, and go back to `accept()` for the "
        "next client (closing the old connection, or after the client closed it).",
    ), (
        "reply in its own words (the reference names the client's address; that is shown when present);",
        "print anything.",
    )),
), ("The seed's server (`tests/negative/basic_seed_server.py`) fails: it binds `127.0.0.1` and serves "
    "one client.",))


@scenario("accept-new-socket", "accept() returns a new socket per client; the client port differs each time")
def accept_new_socket(run: LessonRun) -> Outcome:
    probe = run.probe("accept-new-socket")
    o = probe.observed
    if probe.ok:
        named = o.get("server_seen_ports") == o.get("client_ports")
        return Outcome.from_probe(probe, f"{o['served']} connections from client ports {o['client_ports']}, "
                                         "each answered on its own accepted socket"
                                  + ("; the replies name those ports" if named else ""))
    problem = o.get("problem") or o.get("error") or "the probe stopped"
    if not o.get("served"):
        what, fix = unreachable(run)
        if "no reply" in problem:
            what, fix = (f"{problem}: the connection was accepted but nothing came back",
                         "reply after one recv() (do not wait for a newline or for the client to close)")
        return Outcome(False, f"{problem}; {what}", o, probe.transcript, fix)
    return Outcome(False, f"{o['served']} of {o['connections']} connections served; {problem}", o,
                   probe.transcript, "put accept() in a loop: one listening socket, a new connection "
                                     "socket for every client")


@scenario("bytes-not-str", "sockets carry bytes: send('str') raises TypeError, recv() returns bytes")
def bytes_not_str(run: LessonRun) -> Outcome:
    probe = run.probe("bytes-not-str")
    if probe.ok:
        return Outcome.from_probe(probe, "send('hello') raised TypeError; the encoded bytes got a bytes reply")
    error = str(probe.observed.get("error"))
    if "refused" in error.lower() or "unreachable" in error.lower():
        what, fix = unreachable(run)
        return Outcome(False, f"could not connect: {error}; {what}", probe.observed, probe.transcript, fix)
    return Outcome(False, f"the server did not answer b'hello': {error}",
                   probe.observed, probe.transcript, "recv() the bytes and sendall() a reply")


@scenario("connect-ex-refused", "connect_ex to a port where nothing listens returns ECONNREFUSED (111)",
          roles=())
def connect_ex_refused(run: LessonRun) -> Outcome:
    closed = run.port() + 1
    probe = run.probe("connect-ex", port=closed)
    return Outcome.from_probe(probe, f"connect_ex to port {closed} -> {probe.observed.get('errno_name')}")


@scenario("loopback-unreachable", "a server bound to 127.0.0.1 cannot be reached from another machine",
          roles=())
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
