"""Lesson socketserver: ThreadingTCPServer, allow_reuse_address, clean shutdown (seed §2.7).

The lesson directory ``services/socketserver/`` is deliberately not a package (a package named
``socketserver`` on PYTHONPATH could hide the standard library module); its probes are
``labnode.probes.socketserver``, like every lesson's.
"""
from __future__ import annotations

from ..contract import Contract, RoleContract
from ..scenario import LessonRun, Node, Outcome, ProbeResult, scenario
from .loops import (
    exit_note,
    free_ports,
    in_workdir,
    indent,
    log_lines,
    parse_log,
    start_server,
    start_watched,
    stop_watched,
)

PROBES = "labnode.probes.socketserver"

CONTRACT = Contract("socketserver", (
    RoleContract("server", "python3 my_server.py --port N", (
        "take the port from `--port N` and listen on TCP port N on every interface (`'0.0.0.0'`);",
        "read lines (each request ends with `\\n`) and answer each with the same line in upper case, "
        "ending with `\\n` (`abc\\n` → `ABC\\n`); a client may send many lines on one connection "
        "and may stay connected, idle, for as long as it likes;",
        "serve many clients at the same time: one idle client must not delay another "
        "(`socketserver.ThreadingTCPServer`, or threads of your own);",
        "restart on the same port at once after it was stopped with a client connected: set "
        "`allow_reuse_address = True` as a class attribute (or `SO_REUSEADDR` before `bind()`).",
    ), (
        "handle SIGTERM or not (`clean-shutdown` reports what happens; it is advice);",
        "print anything.",
    )),
), ("The seed's server (`tests/negative/socketserver_seed_server.py`) passes the concurrency "
    "scenarios and fails `restart-same-port` (`[Errno 98]`): its `allow_reuse_address` is set on the "
    "instance, after `bind()`.",))


def probe(run: LessonRun, name: str, *args: str, node: Node | None = None, host: str | None = None,
          port: int | None = None, timeout: float = 60) -> ProbeResult:
    return run.probe(name, *args, node=node, host=host, port=port, timeout=timeout, module=PROBES)


ONE_LINE_FIX = ("the server closed the connection after answering its first line: the handler returns after "
                "one line. Loop until the client closes: for line in self.rfile: "
                "self.wfile.write(line.upper())")
NEWLINE_FIX = "end each reply with \\n ('abc\\n' -> 'ABC\\n'): the client reads the reply up to the newline"


def reply_fix(o: dict) -> str:
    """What to change when a reply line was wrong (None when the replies were fine)."""
    hows = {o.get("a_how"), o.get("b_how"), o.get("a_again_how"), o.get("first_reply_how")}
    if o.get("closed_after_first_line"):
        return ONE_LINE_FIX
    if "timeout" in hows and any(o.get(k) for k in ("a_reply", "b_reply", "a_again", "first_reply")):
        return NEWLINE_FIX
    return "answer each line with the same line in upper case, ending with \\n ('abc\\n' -> 'ABC\\n')"


@scenario("b-while-a-idles", "ThreadingTCPServer: client B is answered at once while client A sits idle")
def b_while_a_idles(run: LessonRun) -> Outcome:
    clients = probe(run, "b-while-a-idles", "--wait", "1")
    threads = probe(run, "threads", "--clients", "3", node=run.server, host="127.0.0.1")
    t = threads.observed
    observed = {**clients.observed, **{k: t.get(k) for k in ("threads_idle", "threads_with_clients",
                                                              "children_idle", "children_with_clients")}}
    transcript = ["client machine:", *indent(clients.transcript),
                  "server machine, threads and child processes of the server process:", *indent(threads.transcript)]
    o = observed
    fix = ""
    if not clients.ok:
        if o.get("error"):
            fix = "the server must accept connections on --port and answer each line (see the transcript)"
        elif o.get("a_how") == "line" and o.get("b_reply") is None:
            fix = ("B waited while A sat idle: serve each client in its own thread "
                   "(socketserver.ThreadingTCPServer, not TCPServer)")
        else:
            fix = reply_fix(o)
    if o.get("error"):
        summary = f"the probe failed: {o['error']}"
    elif o.get("a_how") != "line":
        summary = f"A's first line 'a is here' got {o.get('a_reply')!r} ({o.get('a_how')}), no reply line"
    else:
        summary = f"B got {o.get('b_reply')!r} in {o.get('b_seconds')} s while A idled"
        if o.get("b_reply") == "ABC":
            summary += f"; A's second line got {o.get('a_again')!r}"
        if t.get("threads_idle") is not None:
            summary += (f"; threads {t.get('threads_idle')} -> {t.get('threads_with_clients')}, child processes "
                        f"{t.get('children_idle')} -> {t.get('children_with_clients')} with 3 clients")
    return Outcome(clients.ok, summary, observed, transcript, fix)


@scenario("twenty-parallel", "20 clients connected at the same time, all sending at once: every reply is "
                             "its own line, none mixed")
def twenty_parallel(run: LessonRun) -> Outcome:
    result = probe(run, "twenty-parallel", "--clients", "20")
    o = result.observed
    if o.get("connected_at_once", 0) < o.get("clients", 20) and not o.get("error"):
        summary = (f"client {o.get('connected_at_once')}'s first line got {o.get('first_reply')!r} "
                   f"({o.get('first_reply_how')})")
    else:
        summary = f"{o.get('correct')}/{o.get('clients')} correct, {o.get('mixed')} mixed"
        extra = [f"{o[k]} {k}" for k in ("closed", "piece", "silent", "other") if o.get(k)]
        if extra:
            summary += " (" + ", ".join(extra) + ")"
    outcome = Outcome.from_probe(result, summary)
    if not result.ok:
        if o.get("error"):
            outcome.fix = "the server must accept 20 connections on --port and answer each line"
        elif o.get("one_at_a_time"):
            outcome.fix = ("serve clients at the same time: one handler thread per client "
                           "(socketserver.ThreadingTCPServer, not TCPServer)")
        elif o.get("closed_after_first_line") or o.get("closed"):
            outcome.fix = ONE_LINE_FIX
        elif o.get("mixed"):
            outcome.fix = ("replies contained another client's words: keep each client's data in its own handler "
                           "(no shared buffer, global socket or class attribute)")
        elif o.get("piece"):
            outcome.fix = ("a reply held only the first part of the client's own line: one recv() is not one "
                           "line (a 3 kB line arrives in pieces, two lines may arrive together). Read whole "
                           "lines: StreamRequestHandler's self.rfile (for line in self.rfile), or buffer "
                           "recv() data until b'\\n'")
        else:
            outcome.fix = reply_fix({**o, "first_reply_how": o.get("first_reply_how")})
    return outcome


@scenario("allow-reuse-address", "allow_reuse_address works as a class attribute; set on the instance after "
                                 "construction (the seed) it is a no-op: SO_REUSEADDR 0 vs 1", roles=())
def allow_reuse_address(run: LessonRun) -> Outcome:
    result = probe(run, "sockopt", node=run.server, host="127.0.0.1")
    o = result.observed
    return Outcome.from_probe(result, f"instance attribute after __init__: SO_REUSEADDR="
                                      f"{o.get('instance_attribute_after_init')}; class attribute: "
                                      f"{o.get('class_attribute')}")


def stop_with_idle_client(run: LessonRun, name: str, port: int) -> tuple[dict, list[str], bool]:
    """Server under test on ``port`` with one idle client; SIGTERM it; what does everyone see?"""
    started = start_watched(run, name, port)
    holder = f"{name}-client"
    transcript = [f"server under test started on port {port}: "
                  f"{'listening' if started.ok else 'NOT listening'}"]
    if not started.ok:
        status = stop_watched(run, name)
        return ({"started": False, "exit_status": status},
                transcript + indent(log_lines(run.server, name)), False)
    try:
        run.client.spawn(holder, in_workdir(run, [run.python, "-m", PROBES, "hold", "--host", run.server_host,
                                                  "--port", str(port), "--timeout", "15"]))
        ready = run.tool(run.client, "wait-text", "--file", f"/tmp/{holder}.log", "--text", "READY")
    finally:
        status = stop_watched(run, name)   # SIGTERM, then SIGKILL after 5 s
    finished = run.tool(run.client, "wait-exit", "--pid-file", f"/tmp/{holder}.pid", "--timeout", "10")
    still_open = []
    if not finished.ok:
        still_open = run.tool(run.server, "sockets", "--port", str(port), "--settle", "0").transcript
        run.client.stop(holder)
    held = parse_log(run.client, holder)
    held_lines = held.transcript
    if not finished.ok:
        held_lines = [line for line in held_lines if not line.startswith("(probe crashed")]
        held_lines += ["no EOF within 10 s after the server was stopped: its connection was still open, "
                       "held by a process that outlived the server's process group; the lab closed this "
                       "client then. The server machine's sockets at that moment:", *indent(still_open)]
    after = probe(run, "refused", port=port)
    holders = run.tool(run.server, "sockets", "--port", str(port))
    server_log = log_lines(run.server, name, 6)
    states = holders.observed.get("states", [])
    observed = {"port": port, "started": True, "idle_client_ready": ready.ok,
                "idle_client_got_eof": held.observed.get("eof"),
                "eof_after_seconds": held.observed.get("seconds_idle"),
                "exit_status": status, "connect_after_errno": after.observed.get("errno"),
                "connect_after_errno_name": after.observed.get("errno_name"),
                "server_states_after_stop": states, "time_wait_on_server": "TIME_WAIT" in states,
                "server_log": server_log}
    transcript += ["client machine, an idle client:", *indent(held_lines),
                   f"server stopped with SIGTERM, {exit_note(status)}; its log:", *indent(server_log),
                   "client machine, a new connection:", *indent(after.transcript),
                   "server machine, who holds the port now:", *indent(holders.transcript)]
    return observed, transcript, ready.ok


@scenario("clean-shutdown", "SIGTERM -> server.shutdown(): the idle client gets EOF, the process exits, "
                            "a new connect gets ECONNREFUSED", advisory=True)
def clean_shutdown(run: LessonRun) -> Outcome:
    [port] = free_ports(run)
    observed, transcript, _ = stop_with_idle_client(run, "socketserver-shutdown", port)
    passed = bool(observed.get("idle_client_got_eof") and observed.get("exit_status") == 0
                  and observed.get("connect_after_errno_name") == "ECONNREFUSED")
    return Outcome(passed, f"idle client got EOF: {observed.get('idle_client_got_eof')}; "
                           f"{exit_note(observed.get('exit_status'))}; new connect -> "
                           f"{observed.get('connect_after_errno_name')}", observed, transcript)


@scenario("restart-same-port", "after a stop with a client connected (TIME_WAIT on the server), the server "
                               "starts again on the same port at once")
def restart_same_port(run: LessonRun) -> Outcome:
    [port] = free_ports(run)
    observed, transcript, _ = stop_with_idle_client(run, "socketserver-before-restart", port)
    name = "socketserver-after-restart"
    restarted = start_server(run, name, port, timeout=5)
    try:
        again = probe(run, "b-while-a-idles", port=port) if restarted.ok else None
    finally:
        run.server.stop(name)
        restart_log = log_lines(run.server, name, 6)
    observed |= {"restarted": restarted.ok, "served_after_restart": bool(again and again.ok),
                 "restart_log": restart_log}
    transcript += ["server started again on the same port:", *indent(restarted.transcript),
                   *indent(restart_log)]
    if not restarted.ok:
        transcript.append("bind() failed: the TIME_WAIT connection (whose socket was accepted by a listener "
                          "WITHOUT SO_REUSEADDR) still holds the port. Make allow_reuse_address a class "
                          "attribute of your server class; set on the instance it comes too late.")
    passed = bool(observed.get("time_wait_on_server")) and restarted.ok and observed["served_after_restart"]
    fix = ""
    if not observed.get("started"):
        fix = f"the server did not listen on --port {port}: take the port from --port"
    elif not restarted.ok:
        fix = ("make allow_reuse_address a class attribute (class Server(socketserver.ThreadingTCPServer): "
               "allow_reuse_address = True); set on the instance after the constructor it comes after bind()")
    elif not observed["served_after_restart"]:
        fix = "after the restart: " + reply_fix(again.observed if again else {})
    elif not passed:
        if observed.get("idle_client_got_eof") is None:
            fix = ("stopping the server did not close the idle client's connection: no process of the server "
                   "may outlive it (no daemon, no setsid() in a child); then restart")
        else:
            fix = ("the stop left no TIME_WAIT on the server machine: close connections normally "
                   "(no SO_LINGER 0 / RST), so the restart is tested against a held port")
    return Outcome(passed, f"TIME_WAIT on the server: {observed.get('time_wait_on_server')}; restart on port "
                           f"{port}: {'OK' if restarted.ok else 'FAILED'}", observed, transcript, fix)
