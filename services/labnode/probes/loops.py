"""Lesson loops, probes: what the demo and `lab.py check loops` do.

From the client machine:

    python3 -m labnode.probes.loops many-clients --host loops-server --port 20010
    python3 -m labnode.probes.loops iterative    --host loops-server --port 20010
    python3 -m labnode.probes.loops exchange     --host loops-server --port 20011 --leave close
    python3 -m labnode.probes.loops close-order  --host loops-server --port 20019 --closer server

On the server machine (it reads that machine's /proc):

    python3 -m labnode.probes.loops cpu --port 20011 --window 1

Each probe prints what it sees, one observation per line, then one line
`RESULT {"ok": ..., "observed": {...}}` for the lab to grade. Every socket has a timeout.
"""
import argparse
import socket
import sys
import time

from labnode.kernel import (
    busiest_thread_state,
    connection_state,
    cpu_seconds,
    pid_listening_on,
    sockets_to_port,
    wait_until,
)
from labnode.report import emit_result, say


def reversed_text(text: str) -> str:
    return text[::-1]


def connect(host: str, port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    return sock


def ask(sock: socket.socket, message: str) -> bytes:
    sock.sendall(message.encode("utf-8"))
    return sock.recv(1024)


def wait_for_eof(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when recv() returns b'': the server closed its side."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1024) == b""
    except (TimeoutError, ConnectionError):
        return False


def many_clients(host: str, port: int, clients: int) -> int:
    """The connection loop: N clients one after another, each served, each with its own port."""
    ports, served, closed_after_quit, bytes_reversed = [], 0, 0, 0
    for i in range(1, clients + 1):
        # UTF-8 text, not only ASCII: 'é' and 'ö' are two bytes each
        message = f"client {i} says héllo wörld"
        with connect(host, port) as sock:
            ports.append(sock.getsockname()[1])
            try:
                raw = ask(sock, message)
                reply = raw.decode("utf-8", "replace")
            except TimeoutError:
                raw, reply = b"", "(no reply within 5 s)"
            good = reply == reversed_text(message)
            if not good and raw == message.encode("utf-8")[::-1]:
                bytes_reversed += 1
                reply += " (its BYTES reversed: not valid UTF-8)"
            served += good
            sock.sendall(b"quit")
            eof = wait_for_eof(sock)
            closed_after_quit += eof
            say(f"client {i} from port {ports[-1]}: sent {message!r}, got {reply!r} "
                f"{'(correct)' if good else '(WRONG)'}; after 'quit' the server closed: {eof}")
    distinct = len(set(ports)) == len(ports)
    say(f"{served}/{clients} clients served by the same server process: the connection loop "
        "went back to accept() after each one")
    return emit_result(served == clients, {"clients": clients, "served": served, "client_ports": ports,
                                           "ports_distinct": distinct,
                                           "closed_after_quit": closed_after_quit,
                                           "bytes_reversed": bytes_reversed})


def iterative(host: str, port: int, wait: float, a_leaves: str) -> int:
    """B connects while A is being served: the handshake completes, the reply does not come."""
    a = connect(host, port)
    a_reply = ask(a, "abc").decode("utf-8", "replace")
    say(f"A {a.getsockname()[1]}: sent 'abc', got {a_reply!r}; A stays connected")

    b = connect(host, port)
    b_addr = b.getsockname()
    b_state = connection_state(b_addr, b.getpeername())
    say(f"B {b_addr[1]}: connect() returned at once; the kernel says B's connection is {b_state}: "
        "the server's kernel finished the handshake and queued it (listen backlog)")
    b.sendall(b"x")
    b.settimeout(wait)
    started = time.monotonic()
    early, b_timed_out = None, False
    try:
        early = b.recv(1024)
        say(f"B: recv() -> {early!r} while A is still connected (this server is not iterative)")
    except TimeoutError:
        b_timed_out = True
        say(f"B: sent 'x'; recv() timed out after {time.monotonic() - started:.1f} s: the server is still "
            "inside A's communication loop and has not accept()ed B yet")

    if a_leaves == "quit":
        a.sendall(b"quit")
        a_gone = wait_for_eof(a)
    else:
        a_gone = True
    a.close()
    left_at = time.monotonic()
    say(f"A: {'sent quit and saw the server close' if a_leaves == 'quit' else 'closed its socket'}")

    b.settimeout(5)
    try:
        b_reply = (b.recv(1024) if early is None else early).decode("utf-8", "replace")
    except TimeoutError:
        b_reply = ""
    b_wait = time.monotonic() - left_at
    say(f"B: recv() -> {b_reply!r} {b_wait:.2f} s after A left: the server accept()ed B and read the "
        "'x' that had waited in B's receive queue")
    if b_reply:
        b.sendall(b"quit")    # leave politely too (a seed-style server would spin on a bare close)
        wait_for_eof(b, 2)
    b.close()
    ok = a_reply == "cba" and b_timed_out and b_reply == "x" and b_state == "ESTABLISHED"
    return emit_result(ok, {"a_reply": a_reply, "b_state_while_waiting": b_state, "b_timed_out": b_timed_out,
                            "b_wait_timeout": wait, "b_reply_after_a_left": b_reply,
                            "b_reply_seconds_after_a_left": round(b_wait, 3), "a_left_cleanly": a_gone})


def exchange(host: str, port: int, message: str, leave: str, timeout: float) -> int:
    """One client: send a message, read the reply, then leave by 'quit' or by just closing."""
    try:
        sock = connect(host, port, timeout)
    except OSError as e:
        say(f"connect to {host}:{port} failed: {e}")
        return emit_result(False, {"connected": False, "error": str(e)})
    with sock:
        client_port = sock.getsockname()[1]
        try:
            reply = ask(sock, message).decode("utf-8", "replace")
        except TimeoutError:
            reply = None
        say(f"client {client_port}: sent {message!r}, got "
            + (f"{reply!r}" if reply is not None else f"no reply within {timeout} s"))
        server_closed = answered_quit = None
        if reply is None:
            say("giving up on this client: the server never answered")
        elif leave == "quit":
            sock.sendall(b"quit")
            sock.settimeout(timeout)
            try:
                after_quit = sock.recv(1024)
            except (TimeoutError, ConnectionError) as e:
                after_quit = f"({type(e).__name__})"
            server_closed = after_quit == b""
            if server_closed or not isinstance(after_quit, bytes):
                say(f"sent 'quit': the server closed the connection first: {server_closed}")
            else:
                answered_quit = after_quit.decode("utf-8", "replace")
                say(f"sent 'quit': the server answered {answered_quit!r} instead of closing the connection "
                    "(closed the connection first: False)")
        else:
            say("closing without 'quit': the server's recv() will return b''")
    served = reply == reversed_text(message)
    return emit_result(served and server_closed is not False,
                       {"connected": True, "reply": reply, "served": served, "client_port": client_port,
                        "server_closed_after_quit": server_closed, "answered_quit": answered_quit})


def close_order(host: str, port: int, closer: str) -> int:
    """One connection to reuse.py's old listener; close in the order asked; see who keeps TIME_WAIT."""
    with connect(host, port) as sock:
        me, peer = sock.getsockname(), sock.getpeername()
        reply = ask(sock, "hello")
        if closer == "server":
            eof = wait_for_eof(sock)
            say(f"client {me[1]}: got {reply!r}, then recv() -> b'' (the server's FIN came first): {eof}")
        else:
            say(f"client {me[1]}: got {reply!r}; the client calls close() first")
    # After close() the kernel finishes the goodbye by itself. Wait for it to settle.
    if closer == "client":
        wait_until(lambda: connection_state(me, peer) == "TIME_WAIT", 3.0)
    else:
        wait_until(lambda: connection_state(me, peer) is None, 3.0)
    state = connection_state(me, peer)
    say(f"client side of {me[1]} -> {peer[1]} now: {state or 'gone (no socket left on the client)'}")
    others = sorted({s.state for s in sockets_to_port(port)})
    expected = "TIME_WAIT" if closer == "client" else None
    return emit_result(state == expected, {"closer": closer, "client_port": me[1], "client_state": state,
                                           "client_states_to_port": others})


def cpu(port: int, window: float, pid: int | None) -> int:
    """On the server machine: does the server burn CPU while nobody talks to it?"""
    pid = pid or pid_listening_on(port)
    if pid is None:
        say(f"no process listens on port {port} on this machine")
        return emit_result(False, {"pid": None})
    before = cpu_seconds(pid)
    states = []
    # Measuring a *rate* needs an interval: sample the process state ten times across the window.
    for _ in range(10):
        time.sleep(window / 10)
        states.append(busiest_thread_state(pid))
    used = cpu_seconds(pid) - before
    percent = round(100 * used / window)
    say(f"pid {pid}: used {used:.2f} s of CPU in {window:.1f} s ({percent}% of one core); "
        f"process state samples {''.join(states)} (S = sleeping in accept()/recv(), R = running)")
    # Either sign is enough. On a busy machine a spinning loop gets only a slice of a core, so its
    # CPU share can be low - but it is still never asleep: R (running, or waiting for a CPU).
    spinning = used > window / 10 or states.count("R") >= 5
    if spinning:
        say("it is spinning: a loop that never blocks, e.g. recv() returning b'' forever unchecked")
    return emit_result(not spinning, {"pid": pid, "cpu_seconds": round(used, 3), "window": window,
                                      "cpu_percent": percent, "state_samples": "".join(states)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=["many-clients", "iterative", "exchange", "close-order", "cpu"])
    parser.add_argument("--host", default="loops-server")
    parser.add_argument("--port", type=int, default=20010)
    parser.add_argument("--clients", type=int, default=10, help="many-clients: how many")
    parser.add_argument("--wait", type=float, default=1.0, help="iterative: how long B waits while A stays")
    parser.add_argument("--a-leaves", choices=["quit", "close"], default="quit")
    parser.add_argument("--message", default="hello loops", help="exchange: what to send")
    parser.add_argument("--leave", choices=["quit", "close"], default="quit", help="exchange: how to leave")
    parser.add_argument("--timeout", type=float, default=5.0, help="exchange: how long to wait for a reply")
    parser.add_argument("--closer", choices=["server", "client"], default="server")
    parser.add_argument("--window", type=float, default=1.0, help="cpu: seconds to measure")
    parser.add_argument("--pid", type=int, help="cpu: the process (default: whoever listens on --port)")
    args = parser.parse_args(argv)
    try:
        if args.probe == "many-clients":
            return many_clients(args.host, args.port, args.clients)
        if args.probe == "iterative":
            return iterative(args.host, args.port, args.wait, args.a_leaves)
        if args.probe == "exchange":
            return exchange(args.host, args.port, args.message, args.leave, args.timeout)
        if args.probe == "close-order":
            return close_order(args.host, args.port, args.closer)
        return cpu(args.port, args.window, args.pid)
    except OSError as e:
        say(f"{type(e).__name__}: {e}")
        return emit_result(False, {"error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    sys.exit(main())
