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
import socket
import socketserver  # the standard library's: this directory has no __init__.py
import sys
import threading
import time

from labnode.kernel import pid_listening_on
from labnode.report import emit_result, say


def ask(sock: socket.socket, line: str) -> str:
    """Send one line, read until the newline of the reply (TCP may deliver it in pieces)."""
    sock.sendall(line.encode("utf-8") + b"\n")
    reply = bytearray()
    while not reply.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break      # the server closed before finishing the line
        reply += chunk
    return reply.decode("utf-8", "replace").rstrip("\n")


def b_while_a_idles(host: str, port: int, wait: float) -> int:
    """A connects and goes quiet; B must still be answered, at once."""
    with socket.create_connection((host, port), timeout=5) as a:
        a_reply = ask(a, "a is here")
        say(f"A {a.getsockname()[1]}: sent 'a is here', got {a_reply!r}; "
            "now A says nothing and stays connected")
        with socket.create_connection((host, port), timeout=wait) as b:
            started = time.monotonic()
            try:
                b_reply = ask(b, "abc")
            except TimeoutError:
                b_reply = None
            b_seconds = time.monotonic() - started
            if b_reply is None:
                say(f"B {b.getsockname()[1]}: sent 'abc', no reply within {wait} s: the server is busy "
                    "with A (an iterative server, like lesson loops)")
            else:
                say(f"B {b.getsockname()[1]}: sent 'abc', got {b_reply!r} after {b_seconds:.3f} s, "
                    "while A is still connected: B has its own handler thread")
        try:
            a_again = ask(a, "still here")
        except TimeoutError:
            a_again = None
        say(f"A: sent 'still here', got {a_again!r}: A's connection was never disturbed")
    ok = a_reply == "A IS HERE" and b_reply == "ABC" and a_again == "STILL HERE"
    return emit_result(ok, {"a_reply": a_reply, "b_reply": b_reply, "b_seconds": round(b_seconds, 3),
                            "b_wait_limit": wait, "a_still_connected": a_again == "STILL HERE"})


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
            try:
                answer = ask(sock, hello)
            except TimeoutError:
                answer = None
            if answer != hello.upper():
                say(f"client {i}: sent {hello!r}, got {answer!r} instead of {hello.upper()!r}")
                if answer is None and i > 0:
                    say(f"clients 0..{i - 1} are still connected: this server handles one client at a time")
                return emit_result(False, {"clients": clients, "connected_at_once": i, "correct": 0,
                                           "mixed": 0, "errors": {}})
        say(f"{clients} clients connected and answered one by one; all {clients} connections are open now "
            f"(client ports: {len({s.getsockname()[1] for s in socks})} distinct)")

        # Phase 2, all at once: every client sends its own line (30 B to 3 kB) at the same moment.
        go = threading.Barrier(clients)
        results: dict[int, dict] = {}

        def one_client(i: int) -> None:
            line = payload_for(i)
            outcome = {"reply_ok": False, "others_seen": [], "error": None}
            try:
                go.wait(timeout=10)
                reply = ask(socks[i], line)
                outcome["reply_ok"] = reply == line.upper()
                outcome["others_seen"] = sorted({w for w in reply.split() if w != f"CLIENT-{i:02d}"})
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
    errors = {i: r["error"] for i, r in sorted(results.items()) if r["error"]}
    say(f"then all {clients} sent a line at the same moment: {correct}/{clients} replies were exactly "
        f"their own line in upper case, {mixed} contained another client's words, "
        f"{len(errors)} failed {errors or ''}")
    if correct == clients:
        say(f"{clients} handler threads served {clients} open connections side by side in {seconds:.2f} s")
    return emit_result(correct == clients and mixed == 0,
                       {"clients": clients, "connected_at_once": clients, "correct": correct, "mixed": mixed,
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


def threads(port: int, clients: int) -> int:
    """On the server machine: how many threads does the server have with N idle clients?"""
    pid = pid_listening_on(port)
    if pid is None:
        say(f"no process listens on port {port} on this machine")
        return emit_result(False, {"pid": None})
    idle = thread_count(pid)
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(clients)]
    try:
        replies = [ask(s, f"hello {i}") for i, s in enumerate(socks)]   # each one is being handled now
        busy = thread_count(pid)
    finally:
        for s in socks:
            s.close()
    say(f"pid {pid}: {idle} threads with no client; {busy} threads with {clients} clients connected "
        "(/proc/PID/status): one handler thread per client")
    return emit_result(all(replies) and busy >= idle + clients,
                       {"pid": pid, "threads_idle": idle, "threads_with_clients": busy, "clients": clients})


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
