"""Lesson loops: 连接循环 / 通信循环, recv() == b'' and "Address already in use" (seed §2.4).

The first two scenarios talk to the lesson's running server. The others start their own copy of
the server under test (or of ``loops/reuse.py``) on a spare port of the server machine
(20011-20019), because they stop and restart it: a restart must happen *inside the same
machine* (same network namespace), where the old connection's TIME_WAIT lives.
"""
from __future__ import annotations

import errno
import shlex

from ..contract import Contract, RoleContract
from ..diagnose import unreachable
from ..scenario import LessonRun, Node, Outcome, ProbeResult, RunResult, scenario, wait_listening

CONTRACT = Contract("loops", (
    RoleContract("server", "python3 my_server.py --port N", (
        "take the port from `--port N` and listen on TCP port N on every interface (`'0.0.0.0'`);",
        "connection loop: serve one client after another, forever, with one process;",
        "communication loop: each `recv()` is one message (the check sends short UTF-8 text, no "
        "newline, and waits for the answer before sending again); answer each with the same text "
        "reversed (`'hello'` → `'olleh'`), with one `sendall()`;",
        "when a message is `quit`, close the connection; when `recv()` returns `b''` (the client "
        "closed), close it too and go back to `accept()` — without spinning;",
        "set `SO_REUSEADDR` on the listening socket before `bind()`, so it can be restarted on the "
        "same port at once after it closed a connection first.",
    ), (
        "serve one client at a time (the lesson's iterative server) or several at once;",
        "exit in any way on SIGTERM;",
        "print anything.",
    )),
), ("The seed's server (`tests/negative/loops_seed_server.py`) fails `client-gone` (it spins on "
    "`b''`) and `restart-after-quit` (`[Errno 98]`: no `SO_REUSEADDR`).",))

# (who closes first, SO_REUSEADDR on the old listener, on the new one, errno of the new bind)
REUSE_MATRIX = [
    ("client", False, False, 0),
    ("server", False, False, errno.EADDRINUSE),
    ("server", False, True, errno.EADDRINUSE),
    ("server", True, False, errno.EADDRINUSE),
    ("server", True, True, 0),
]


# --- helpers shared with the socketserver scenarios --------------------------------------------

def in_workdir(run: LessonRun, argv: list[str]) -> list[str]:
    return run.in_workdir(argv)


def reuse_tool(run: LessonRun, node: Node, *args: str, timeout: float = 30) -> ProbeResult:
    """Run ``loops/reuse.py`` (the experiment students also run by hand) on a node."""
    argv = in_workdir(run, [run.python, "loops/reuse.py", *args])
    return ProbeResult.parse(node.run(argv, timeout=timeout))


def free_ports(run: LessonRun, count: int = 1) -> list[int]:
    """Spare ports on the server machine with no socket at all on them (TIME_WAIT counts as taken)."""
    found = run.tool(run.server, "free-port", "--first", str(run.port() + 1),
                       "--last", str(run.port() + 9), "--count", str(count))
    if not found.ok:
        raise RuntimeError("no free port on the server machine: " + " ".join(found.transcript))
    return [int(p) for p in found.observed["ports"]]


def start_server(run: LessonRun, name: str, port: int, timeout: float = 10) -> ProbeResult:
    """Start the server under test in the background on ``port``; wait until it listens or dies."""
    run.server.spawn(name, in_workdir(run, [*run.server_cmd, "--port", str(port)]))
    return run.tool(run.server, "wait-listen", "--port", str(port), "--pid-file", f"/tmp/{name}.pid",
                      "--timeout", str(timeout), timeout=timeout + 10)


def start_watched(run: LessonRun, name: str, port: int, timeout: float = 10) -> ProbeResult:
    """Like start_server, but a small shell stays the server's parent and writes its exit status
    to /tmp/<name>.exit (stop it with stop_watched). The server's own pid is /tmp/<name>-server.pid.

    The server runs in a process group of its own (``setsid``), so that stop_watched stops the
    whole server, like Ctrl-C in its terminal: a ForkingTCPServer's children too, which would
    otherwise keep the idle clients' connections (and an inherited listening socket) open."""
    workdir = shlex.quote(run.workdir)
    server = shlex.join([*run.server_cmd, "--port", str(port)])
    script = (f"rm -f /tmp/{name}.exit; cd {workdir} || exit 1; "
              f"if command -v setsid >/dev/null; then s=setsid; else s=; fi; "
              f"$s env PYTHONPATH={workdir} {server} & "
              f"echo $! >/tmp/{name}-server.pid; wait $!; echo $? >/tmp/{name}.exit")
    run.server.spawn(name, ["sh", "-c", script])
    return run.tool(run.server, "wait-listen", "--port", str(port), "--pid-file",
                      f"/tmp/{name}-server.pid", "--timeout", str(timeout), timeout=timeout + 10)


def stop_group_script(name: str) -> list[str]:
    """SIGTERM the server's process group (its own pid alone where setsid was missing), wait up to
    5 s for the server to end, then SIGKILL whatever is left of the group."""
    return ["sh", "-c",
            f"p=$(cat /tmp/{name}.pid 2>/dev/null) || exit 0; "
            f"kill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null; "
            f"for i in $(seq 50); do grep -qs '^State:[[:space:]]*[^Z]' /proc/$p/status || break; sleep 0.1; done; "
            f"kill -KILL -$p 2>/dev/null || kill -KILL $p 2>/dev/null; exit 0"]


def stop_watched(run: LessonRun, name: str) -> int | None:
    """SIGTERM the server started by start_watched (its whole process group: a forking server's
    children too); return its exit status (143 = killed by SIGTERM)."""
    run.server.run(stop_group_script(f"{name}-server"), timeout=15)
    run.tool(run.server, "wait-exit", "--pid-file", f"/tmp/{name}.pid")
    status = run.server.read_file(f"/tmp/{name}.exit").strip()
    return int(status) if status.isdigit() else None


def exit_note(status: int | None) -> str:
    if status is None:
        return "exit status unknown"
    if status == 128 + 9:
        return (f"exit status {status}: still running 5 s after SIGTERM, so the lab killed it (SIGKILL) - a "
                "SIGTERM handler that hangs (e.g. server.shutdown() called in the thread that runs "
                "serve_forever(), or threads it waits for) or none that ends the program")
    if status > 128:
        return f"exit status {status}: killed by signal {status - 128} (no handler for it ended the program itself)"
    return f"exit status {status}"


def parse_log(node: Node, name: str) -> ProbeResult:
    """The RESULT of a probe that ran in the background (spawned as ``name``)."""
    return ProbeResult.parse(RunResult(0, node.read_file(f"/tmp/{name}.log").decode("utf-8", "replace"), ""))


def log_lines(node: Node, name: str, last: int = 8) -> list[str]:
    return node.read_file(f"/tmp/{name}.log").decode("utf-8", "replace").splitlines()[-last:]


def indent(lines: list[str], prefix: str = "    ") -> list[str]:
    return [prefix + line for line in lines]


# --- scenarios against the lesson's running server ---------------------------------------------

@scenario("many-clients", "the connection loop: one server process serves 10 clients, one after another")
def many_clients(run: LessonRun) -> Outcome:
    probe = run.probe("many-clients", "--clients", "10")
    o = probe.observed
    served = o.get("served")
    if probe.ok:
        return Outcome.from_probe(probe, f"{served}/10 sequential clients served, each from a new client port")
    if o.get("error") and not served:
        what, fix = unreachable(run)
        return Outcome(False, f"{o['error']}; {what}", o, probe.transcript, fix)
    if o.get("bytes_reversed"):
        return Outcome(False, f"{served or 0}/10 sequential clients got their message reversed; "
                              f"{o['bytes_reversed']} got its UTF-8 bytes reversed ('héllo' is 6 bytes: "
                              "reversed bytes are not text)", o, probe.transcript,
                       "reverse the text, not the bytes: data.decode('utf-8')[::-1].encode('utf-8')")
    return Outcome(False, f"{served or 0}/10 sequential clients got their message reversed", o, probe.transcript,
                   "answer each recv() with the text reversed, then after 'quit' close and accept() the next "
                   "client (see the transcript for what came back)")


@scenario("iterative", "B connects while A is served: the handshake completes, "
                       "but B's reply waits until A leaves", advisory=True)
def iterative(run: LessonRun) -> Outcome:
    probe = run.probe("iterative", "--wait", "1")
    o = probe.observed
    if o.get("b_timed_out") is False:
        return Outcome(False, f"B was answered {o.get('b_reply_after_a_left')!r} while A was still connected: "
                              "this server serves clients at the same time (allowed; the lesson's iterative "
                              "server makes B wait)", o, probe.transcript)
    return Outcome.from_probe(probe, f"B {o.get('b_state_while_waiting')}, recv timed out: "
                                     f"{o.get('b_timed_out')}; after A left B got "
                                     f"{o.get('b_reply_after_a_left')!r}")


# --- scenarios that start (and stop) their own server ------------------------------------------

@scenario("client-gone", "recv() == b'' ends the communication loop: no spinning, the next client is served")
def client_gone(run: LessonRun) -> Outcome:
    [port] = free_ports(run)
    name = "loops-client-gone"
    started = start_server(run, name, port)
    try:
        first = run.probe("exchange", "--leave", "close", "--message", "first client", port=port)
        load = run.probe("cpu", "--window", "1", node=run.server, host="127.0.0.1", port=port)
        second = run.probe("exchange", "--leave", "quit", "--message", "second client", "--timeout", "3",
                           port=port)
    finally:
        run.server.stop(name)     # a spinning seed-style server dies here too (SIGTERM, then SIGKILL)
        server_log = log_lines(run.server, name)
    said_gone = any("gone" in line.lower() or "b''" in line for line in server_log)
    cpu = load.observed
    observed = {"port": port, "first_served": first.observed.get("served"),
                "cpu_seconds": cpu.get("cpu_seconds"), "cpu_percent": cpu.get("cpu_percent"),
                "cpu_window": cpu.get("window"), "state_samples": cpu.get("state_samples"),
                "next_client_served": second.observed.get("served"), "server_log_says_gone": said_gone,
                "server_log": server_log}
    transcript = [f"server under test started on port {port}",
                  "client machine, first client leaves WITHOUT 'quit':", *indent(first.transcript),
                  "server machine, CPU used by the server afterwards:", *indent(load.transcript),
                  "client machine, the next client:", *indent(second.transcript),
                  "server log:", *indent(server_log)]
    passed = started.ok and first.ok and load.ok and second.ok
    fix = ""
    if not started.ok:
        fix = f"the server did not listen on --port {port} within 10 s: take the port from --port"
    elif not load.ok:
        fix = ("after a client closes, recv() returns b'' at once, forever: check `if not data: break` "
               "and close that connection instead of spinning in the loop")
    elif first.ok and second.observed.get("served") and second.observed.get("answered_quit") is not None:
        fix = (f"the message 'quit' was answered ({second.observed['answered_quit']!r}) and the connection "
               "kept open: when the message is 'quit', close the connection instead of answering it")
    elif not (first.ok and second.ok):
        fix = ("answer each message reversed, and after a client closes (recv() == b'') go back to "
               "accept() for the next one")
    summary = (f"after the client left: {observed['cpu_percent']}% CPU, next client served: "
               f"{observed['next_client_served']}")
    if second.observed.get("server_closed_after_quit") is False:
        summary += "; after its 'quit' the server did not close the connection"
    return Outcome(passed, summary, observed, transcript, fix)


@scenario("restart-after-quit", "the server restarts on the same port right after it closed a "
                                "connection first")
def restart_after_quit(run: LessonRun) -> Outcome:
    [port] = free_ports(run)
    first, second = "loops-before-restart", "loops-after-restart"
    started = start_watched(run, first, port)
    try:
        quit_probe = run.probe("exchange", "--leave", "quit", "--message", "see you", port=port)
        holders = run.tool(run.server, "sockets", "--port", str(port))
    finally:
        status = stop_watched(run, first)
    restarted = start_server(run, second, port, timeout=5)
    try:
        again = run.probe("exchange", "--leave", "quit", "--message", "back again", port=port) \
            if restarted.ok else None
    finally:
        run.server.stop(second)
        second_log = log_lines(run.server, second, 4)
    states = holders.observed.get("states", [])
    observed = {"port": port, "server_closed_first": quit_probe.observed.get("server_closed_after_quit"),
                "server_states_before_restart": states, "time_wait_on_server": "TIME_WAIT" in states,
                "exit_status_on_sigterm": status, "restarted": restarted.ok,
                "served_after_restart": bool(again and again.observed.get("served")),
                "restart_log": second_log}
    transcript = [f"server under test started on port {port}",
                  "client machine: one exchange, then 'quit' (the server closes first):",
                  *indent(quit_probe.transcript),
                  "server machine, after the goodbye:", *indent(holders.transcript),
                  f"server stopped with SIGTERM ({exit_note(status)}) and started again on the same port:",
                  *indent(restarted.transcript), *indent(second_log)]
    if again:
        transcript += ["client machine, after the restart:", *indent(again.transcript)]
    if not restarted.ok:
        transcript.append("the new server could not bind: the old connection's TIME_WAIT still holds the "
                          "port. Set SO_REUSEADDR on the listening socket before bind(), from the first "
                          "run on.")
    passed = started.ok and quit_probe.ok and restarted.ok and observed["served_after_restart"]
    verdict = "OK" if restarted.ok else "FAILED"
    fix = ""
    if not quit_probe.ok:
        fix = "answer the message reversed, and close the connection when the message is 'quit'"
    elif not restarted.ok:
        fix = ("set SO_REUSEADDR on the listening socket before bind(): "
               "server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)")
    elif not passed:
        fix = "after a restart the server must serve again: answer the message reversed"
    return Outcome(passed, f"TIME_WAIT on the server: {observed['time_wait_on_server']}; "
                           f"restart on port {port}: {verdict}", observed, transcript, fix)


@scenario("address-in-use", "Address already in use (Errno 98): TIME_WAIT sits on the side that closed "
                            "first; a rebind needs SO_REUSEADDR on the old AND the new listener", roles=())
def address_in_use(run: LessonRun) -> Outcome:
    ports = free_ports(run, len(REUSE_MATRIX))
    rows, transcript = [], []
    if max(ports) > run.port() + 9:
        transcript.append(f"(some of ports {run.port() + 1}-{run.port() + 9} are still in TIME_WAIT from a "
                          f"run less than 60 s ago, so this run uses {ports})")
    for port, (closer, old_reuse, new_reuse, expected) in zip(ports, REUSE_MATRIX):
        row, lines = reuse_experiment(run, port, closer, old_reuse, new_reuse)
        row["expected_errno"] = expected
        rows.append(row)
        transcript += lines
    matches = all(r["errno"] == r["expected_errno"] for r in rows)
    server_first = [r for r in rows if r["closer"] == "server"]
    client_first = [r for r in rows if r["closer"] == "client"]
    tw_server = all("TIME_WAIT" in r["server_states"] and r["client_state"] is None for r in server_first)
    tw_client = all(r["client_state"] == "TIME_WAIT" and "TIME_WAIT" not in r["server_states"]
                    for r in client_first)
    only_new = next(r for r in rows if r["closer"] == "server" and not r["old_reuse"] and r["new_reuse"])
    observed = {"matrix": rows, "matches_expected": matches,
                "time_wait_on_server_when_server_closed_first": tw_server,
                "time_wait_on_client_when_client_closed_first": tw_client,
                "only_new_listener_reuse_errno": only_new["errno"],
                "inherited_reuse": [r["inherited_reuse"] for r in rows]}
    table = ["", "closer  old SO_REUSEADDR  new SO_REUSEADDR  rebind"]
    yes_no = {True: "yes", False: "no"}
    table += [f"{r['closer']:<7} {yes_no[r['old_reuse']]:<17} {yes_no[r['new_reuse']]:<17} "
              f"{r['error'] or 'OK'}" for r in rows]
    passed = matches and tw_server and tw_client
    return Outcome(passed, "rebind OK only when the client closed first or BOTH listeners set SO_REUSEADDR; "
                           f"only-new-listener -> errno {only_new['errno']}", observed, transcript + table)


def reuse_experiment(run: LessonRun, port: int, closer: str, old_reuse: bool,
                     new_reuse: bool) -> tuple[dict, list[str]]:
    """One row of the matrix: old listener, one connection closed by `closer`, then a new bind()."""
    name = f"loops-old-listener-{port}"
    old_args = ["old-listener", "--port", str(port), "--closer", closer] + (["--reuse"] if old_reuse else [])
    run.server.spawn(name, in_workdir(run, [run.python, "loops/reuse.py", *old_args]))
    exited = False
    try:
        wait_listening(run.server, port, timeout=5)
        client = run.probe("close-order", "--closer", closer, port=port)
        # it exits by itself after its one connection; wait for that so its log is complete
        exited = run.tool(run.server, "wait-exit", "--pid-file", f"/tmp/{name}.pid").ok
    finally:
        if not exited:
            run.server.stop(name)
    old = parse_log(run.server, name)
    new_args = ["rebind", "--port", str(port)] + (["--reuse"] if new_reuse else [])
    rebind = reuse_tool(run, run.server, *new_args)
    row = {"port": port, "closer": closer, "old_reuse": old_reuse, "new_reuse": new_reuse,
           "inherited_reuse": old.observed.get("inherited_reuse"),
           "errno": rebind.observed.get("errno"), "error": rebind.observed.get("error"),
           "server_states": rebind.observed.get("states", []),
           "client_state": client.observed.get("client_state")}
    lines = [f"--- port {port}: {closer} closes first; old listener SO_REUSEADDR={int(old_reuse)}, "
             f"new listener SO_REUSEADDR={int(new_reuse)}",
             "server machine, old server:", *indent(old.transcript),
             "client machine:", *indent(client.transcript),
             "server machine, new server:", *indent(rebind.transcript)]
    return row, lines
