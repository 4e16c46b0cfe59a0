"""Lesson socketserver, probes: what the demo and `lab.py check socketserver` do.

Run this file by its path (the lesson directory is not a package, so that it cannot hide the
standard library's ``socketserver``):

    python3 -m labnode.probes.socketserver b-while-a-idles --host socketserver-server --port 20050
    python3 -m labnode.probes.socketserver twenty-parallel --host socketserver-server --port 20050
    python3 -m labnode.probes.socketserver hold            --host socketserver-server --port 20051
    python3 -m labnode.probes.socketserver refused         --host socketserver-server --port 20051

On the server machine (no network needed, or the machine's own /proc):

    python3 -m labnode.probes.socketserver sockopt
    python3 -m labnode.probes.socketserver threads --port 20050

Each probe prints what it sees, one observation per line, then one line
`RESULT {"ok": ..., "observed": {...}}` for the lab to grade. Every socket has a timeout.
"""
import argparse
import errno
import os
import re
import select
import socket
import socketserver  # the standard library's: this directory has no __init__.py
import sys
import threading
import time

from labnode.kernel import pid_listening_on
from labnode.report import emit_result, say


def ask(sock: socket.socket, line: str) -> str:
    """Send one line, read until the newline of the reply (TCP may deliver it in pieces)."""
    return exchange(sock, line)[0]


def exchange(sock: socket.socket, line: str) -> tuple[str, str]:
    """Send one line, read the reply line; also say how the reading ended:
    "line" (a newline came), "eof" (the server closed first), "timeout" or "reset"."""
    sock.sendall(line.encode("utf-8") + b"\n")
    reply = bytearray()
    how = "line"
    try:
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                how = "eof"     # the server closed before finishing the line
                break
            reply += chunk
    except TimeoutError:
        how = "timeout"
    except ConnectionResetError:
        how = "reset"
    return reply.decode("utf-8", "replace").rstrip("\n"), how


def describe(reply: str, how: str) -> str:
    """What a reply was, in words a student can act on."""
    if how == "line":
        return repr(reply)
    if how == "eof":
        return (f"{reply!r} and then EOF: the server closed the connection" if reply
                else "no reply, EOF: the server had closed this connection")
    if how == "reset":
        return "no reply: the connection was reset (RST)"
    return (f"{reply!r} but no newline after it (waited until the timeout)" if reply
            else "no reply before the timeout")


def closed_by_server(sock: socket.socket) -> bool:
    """Has the server already closed this (idle) connection? (a b'' is waiting to be read)"""
    readable, _, _ = select.select([sock], [], [], 0.05)   # a socket with a timeout ignores MSG_DONTWAIT
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def b_while_a_idles(host: str, port: int, wait: float) -> int:
    """A connects and goes quiet; B must still be answered, at once."""
    b_reply = b_seconds = a_again = None
    b_how = a_again_how = None
    with socket.create_connection((host, port), timeout=5) as a:
        a_reply, a_how = exchange(a, "a is here")
        if a_how != "line":
            say(f"A {a.getsockname()[1]}: sent 'a is here', got {describe(a_reply, a_how)}")
            return emit_result(False, {"a_reply": a_reply, "a_how": a_how, "b_reply": None, "b_seconds": None,
                                       "b_wait_limit": wait, "a_still_connected": None})
        say(f"A {a.getsockname()[1]}: sent 'a is here', got {a_reply!r}; "
            "now A says nothing and stays connected")
        with socket.create_connection((host, port), timeout=wait) as b:
            started = time.monotonic()
            b_reply, b_how = exchange(b, "abc")
            b_seconds = time.monotonic() - started
            if b_how == "timeout" and not b_reply:
                b_reply = None
                say(f"B {b.getsockname()[1]}: sent 'abc', no reply within {wait} s: the server is busy "
                    "with A (an iterative server, like lesson loops)")
            else:
                say(f"B {b.getsockname()[1]}: sent 'abc', got {describe(b_reply, b_how)} after {b_seconds:.3f} s, "
                    "while A is still connected" + (": B is served at the same time" if b_how == "line" else ""))
        a_again, a_again_how = exchange(a, "still here")
        if a_again_how == "line" and a_again == "STILL HERE":
            say(f"A: sent a second line, 'still here', got {a_again!r}: A's connection was never disturbed")
        elif a_again_how in ("eof", "reset") and not a_again:
            say(f"A: sent a second line, 'still here', on the same connection: got {describe(a_again, a_again_how)} "
                "after its first line")
        else:
            say(f"A: sent a second line, 'still here', got {describe(a_again, a_again_how)}")
    ok = a_reply == "A IS HERE" and b_reply == "ABC" and a_again == "STILL HERE"
    return emit_result(ok, {"a_reply": a_reply, "a_how": a_how, "b_reply": b_reply, "b_how": b_how,
                            "b_seconds": round(b_seconds, 3), "b_wait_limit": wait,
                            "a_again": a_again, "a_again_how": a_again_how,
                            "a_still_connected": a_again == "STILL HERE",
                            "closed_after_first_line": a_again_how in ("eof", "reset") and not a_again})


TAG = re.compile(r"\bCLIENT-\d\d\b")   # a client's tag, upper-cased, as a whole word


def payload_for(i: int) -> str:
    """A line only client i sends: its tag, repeated so lines differ in length (30 B to ~3 kB)."""
    tag = f"client-{i:02d}"
    return " ".join([tag] * (3 + (i * 37) % 250))


def twenty_parallel(host: str, port: int, clients: int) -> int:
    """N clients connected at the same time, then all sending at once; replies must not mix."""
    # Phase 1, one after another: connect and get a first answer. Each client then STAYS
    # connected, so an iterative server would get stuck on client 0 and never answer client 1.
    # (Connecting one by one also keeps within the listen backlog: ThreadingTCPServer's
    # request_queue_size is 5, and 20 SYNs at the very same moment can overflow it.)
    socks: list[socket.socket] = []
    try:
        for i in range(clients):
            sock = socket.create_connection((host, port), timeout=5)
            socks.append(sock)
            hello = f"hello from client-{i:02d}"
            answer, how = exchange(sock, hello)
            if answer != hello.upper() or how != "line":
                say(f"client {i}: sent {hello!r}, got {describe(answer, how)} instead of {hello.upper()!r}")
                if how == "timeout" and not answer and i > 0:
                    say(f"clients 0..{i - 1} are still connected: this server handles one client at a time")
                return emit_result(False, {"clients": clients, "connected_at_once": i, "correct": 0,
                                           "mixed": 0, "errors": {}, "first_reply": answer,
                                           "first_reply_how": how,
                                           "one_at_a_time": how == "timeout" and not answer and i > 0})
        closed_early = [i for i, sock in enumerate(socks) if closed_by_server(sock)]
        if closed_early:
            say(f"{clients} clients connected and each got its first reply; then the server closed "
                f"{len(closed_early)} of these connections (EOF waiting to be read), although the clients "
                "stayed connected and meant to send more lines")
        else:
            say(f"{clients} clients connected and answered one by one; all {clients} connections are open "
                f"now (client ports: {len({s.getsockname()[1] for s in socks})} distinct)")

        # Phase 2, all at once: every client sends its own line (30 B to 3 kB) at the same moment.
        go = threading.Barrier(clients)
        results: dict[int, dict] = {}

        def one_client(i: int) -> None:
            line = payload_for(i)
            want = line.upper()
            outcome = {"reply_ok": False, "others_seen": [], "error": None, "how": None, "kind": None}
            try:
                go.wait(timeout=10)
                reply, how = exchange(socks[i], line)
                outcome["how"] = how
                outcome["reply_ok"] = reply == want and how == "line"
                outcome["others_seen"] = sorted({w for w in TAG.findall(reply) if w != f"CLIENT-{i:02d}"})
                if outcome["reply_ok"]:
                    outcome["kind"] = "ok"
                elif outcome["others_seen"]:
                    outcome["kind"] = "mixed"
                elif how in ("eof", "reset") and not reply:
                    outcome["kind"] = "closed"
                elif how == "timeout" and not reply:
                    outcome["kind"] = "silent"
                elif reply and all(part.strip() in want for part in reply.split("\n")):
                    outcome["kind"] = "piece"      # its own line, cut where recv() returned
                else:
                    outcome["kind"] = "other"
                outcome["reply_start"] = reply[:40]
                outcome["reply_newlines"] = reply.count("\n")
                outcome["reply_length"] = len(reply)
                outcome["line_length"] = len(line)
            except (OSError, threading.BrokenBarrierError) as e:
                outcome["error"] = type(e).__name__
            results[i] = outcome

        started = time.monotonic()
        threads = [threading.Thread(target=one_client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        seconds = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    correct = sum(r["reply_ok"] for r in results.values())
    mixed = sum(bool(r["others_seen"]) for r in results.values())
    kinds = {k: sum(r["kind"] == k for r in results.values())
             for k in ("closed", "piece", "silent", "other") if any(r["kind"] == k for r in results.values())}
    errors = {i: r["error"] for i, r in sorted(results.items()) if r["error"]}
    say(f"then all {clients} sent a line at the same moment: {correct}/{clients} replies were exactly "
        f"their own line in upper case, {mixed} contained another client's words, "
        f"{len(errors)} failed {errors or ''}")
    words = {"closed": "got no reply: the server had closed the connection",
             "piece": "got back their own line in pieces: cut where a recv() returned, with a newline "
                      "inserted at the cut or the rest missing",
             "silent": "got no reply line before the timeout",
             "other": "got something else"}
    for kind, count in kinds.items():
        example = next(i for i, r in sorted(results.items()) if r["kind"] == kind)
        r = results[example]
        say(f"  {count} {words[kind]}; e.g. client {example} sent {r['line_length']} characters + '\\n', "
            f"got {r['reply_length']} characters with {r['reply_newlines']} newline(s) inside: {r['reply_start']!r}...")
    if correct == clients:
        say(f"{clients} open connections served side by side in {seconds:.2f} s")
    return emit_result(correct == clients and mixed == 0,
                       {"clients": clients, "connected_at_once": clients, "correct": correct, "mixed": mixed,
                        "closed_after_first_line": len(closed_early), **kinds,
                        "errors": errors, "seconds": round(seconds, 3)})


def hold(host: str, port: int, timeout: float) -> int:
    """Connect, get one reply, then sit idle until the server closes the connection."""
    with socket.create_connection((host, port), timeout=5) as sock:
        reply = ask(sock, "waiting for the server to stop")
        say(f"client {sock.getsockname()[1]}: got {reply!r}; idle now")
        say("READY")
        sock.settimeout(timeout)
        started = time.monotonic()
        try:
            eof = sock.recv(1024) == b""
        except TimeoutError:
            eof = False
        except ConnectionResetError:
            eof = False
            say("the connection was reset (RST) instead of closed (FIN)")
        seconds = time.monotonic() - started
    say(f"recv() -> b'' after {seconds:.2f} s: the server closed our connection (we close too)" if eof
        else f"no EOF within {timeout} s")
    return emit_result(eof, {"reply": reply, "eof": eof, "seconds_idle": round(seconds, 3)})


def refused(host: str, port: int) -> int:
    """Nobody listens any more: the server machine's kernel answers our SYN with RST."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            code = sock.connect_ex((host, port))
        except TimeoutError:
            code = errno.ETIMEDOUT
    name = errno.errorcode.get(code, "OK") if code else "OK"
    say(f"connect_ex(({host!r}, {port})) -> {code} ({name})")
    return emit_result(code == errno.ECONNREFUSED, {"errno": code, "errno_name": name})


def sockopt() -> int:
    """allow_reuse_address: set on the instance after construction (seed) vs as a class attribute."""
    class Quiet(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            pass

    seed = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Quiet)
    seed.allow_reuse_address = True            # too late: __init__ already called server_bind()
    seed_value = seed.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    seed.server_close()
    say("server = ThreadingTCPServer(addr, H); server.allow_reuse_address = True   (the seed)")
    say(f"  -> getsockopt(SOL_SOCKET, SO_REUSEADDR) = {seed_value}: bind() ran inside the constructor, "
        "before this line")

    class ReusingServer(socketserver.ThreadingTCPServer):
        allow_reuse_address = True             # read by server_bind() during __init__

    good = ReusingServer(("127.0.0.1", 0), Quiet)
    good_value = good.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    good.server_close()
    say("class ReusingServer(ThreadingTCPServer): allow_reuse_address = True   (a class attribute)")
    say(f"  -> getsockopt(SOL_SOCKET, SO_REUSEADDR) = {good_value}")
    return emit_result(seed_value == 0 and good_value == 1,
                       {"instance_attribute_after_init": seed_value, "class_attribute": good_value})


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("Threads:")))


def child_count(pid: int) -> int:
    """Processes whose parent is pid (a ForkingTCPServer's handlers)."""
    count = 0
    for other in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{other}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            count += 1
    return count


def threads(port: int, clients: int) -> int:
    """On the server machine: how many threads (or child processes) with N idle clients?"""
    pid = pid_listening_on(port)
    if pid is None:
        say(f"no process listens on port {port} on this machine")
        return emit_result(False, {"pid": None})
    idle, idle_children = thread_count(pid), child_count(pid)
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(clients)]
    try:
        replies = []
        for i, s in enumerate(socks):       # each one is being handled now
            reply, how = exchange(s, f"hello {i}")
            replies.append(reply if how == "line" else "")
            if how != "line":
                say(f"client {i}: sent 'hello {i}', got {describe(reply, how)}")
                break
        busy, busy_children = thread_count(pid), child_count(pid)
    finally:
        for s in socks:
            s.close()
    how = ("one handler thread per client" if busy >= idle + clients
           else "one child process per client" if busy_children >= idle_children + clients
           else "neither one thread nor one child process per client")
    say(f"pid {pid}: {idle} threads and {idle_children} child processes with no client; {busy} threads and "
        f"{busy_children} child processes with {clients} clients connected (/proc): {how}")
    return emit_result(all(replies) and (busy >= idle + clients or busy_children >= idle_children + clients),
                       {"pid": pid, "threads_idle": idle, "threads_with_clients": busy,
                        "children_idle": idle_children, "children_with_clients": busy_children, "clients": clients})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=["b-while-a-idles", "twenty-parallel", "hold", "refused", "sockopt",
                                          "threads"])
    parser.add_argument("--host", default="socketserver-server")
    parser.add_argument("--port", type=int, default=20050)
    parser.add_argument("--wait", type=float, default=1.0, help="b-while-a-idles: B's reply deadline")
    parser.add_argument("--clients", type=int, default=20, help="twenty-parallel / threads: how many")
    parser.add_argument("--timeout", type=float, default=20.0, help="hold: how long to wait for EOF")
    args = parser.parse_args(argv)
    try:
        if args.probe == "b-while-a-idles":
            return b_while_a_idles(args.host, args.port, args.wait)
        if args.probe == "twenty-parallel":
            return twenty_parallel(args.host, args.port, args.clients)
        if args.probe == "hold":
            return hold(args.host, args.port, args.timeout)
        if args.probe == "refused":
            return refused(args.host, args.port)
        if args.probe == "sockopt":
            return sockopt()
        return threads(args.port, args.clients)
    except OSError as e:
        say(f"{type(e).__name__}: {e}")
        return emit_result(False, {"error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    sys.exit(main())
