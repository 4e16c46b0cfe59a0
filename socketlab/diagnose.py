"""Why a program under test did not answer: facts from the server machine, turned into a fix.

Scenarios call these when a probe could not reach the server, so the report names the mistake
("it listens on 127.0.0.1") instead of a bare "connection refused".
"""
from __future__ import annotations

from .scenario import LessonRun

LOOPBACK = {"127.0.0.1", "::1"}


def unreachable(run: LessonRun, port: int | None = None, proto: str = "tcp") -> tuple[str, str]:
    """(what the server machine shows, what to change) for a server the client could not reach."""
    port = port or run.port()
    seen = run.tool(run.server, "listeners", "--port", str(port), "--proto", proto).observed
    addresses, others = seen.get("addresses") or [], seen.get("other_ports") or []
    if addresses and set(addresses) <= LOOPBACK:
        return (f"the server listens on {addresses[0]}:{port}, the loopback interface, so no other machine "
                f"can reach it", f"bind to '0.0.0.0' (every interface), not '{addresses[0]}'")
    if addresses:
        return (f"the server listens on {', '.join(addresses)} port {port}, yet the client machine got no "
                f"answer", "make sure the server keeps accepting (accept() in a loop) and answers each client")
    if others:
        return (f"nothing listens on {proto} port {port} of the server machine; something listens on "
                f"{', '.join(map(str, others))}", f"take the port from the command line (--port {port})")
    return (f"nothing listens on {proto} port {port} of the server machine any more (did the server exit?)",
            "keep the server running: accept connections in a loop, and catch errors of one client "
            "so they do not end the server")
