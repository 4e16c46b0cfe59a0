"""Scenarios only `lab.py trace` runs: things a guide wants seen on the wire that no check grades.

They are built from the lessons' own probes and tools (nothing new runs on a node), and are
listed after the lesson's graded scenarios, so `trace <lesson>` without --scenario shows them too.
"""
from __future__ import annotations

from ..scenario import LessonRun, Outcome, Scenario

EXTRA: dict[str, list[Scenario]] = {}


def extra(lesson: str, name: str, shows: str):
    def register(fn) -> Scenario:
        sc = Scenario(name, shows, fn, roles=())
        EXTRA.setdefault(lesson, []).append(sc)
        return sc
    return register


def for_trace(lesson: str, graded: list[Scenario]) -> list[Scenario]:
    return [*graded, *EXTRA.get(lesson, [])]


@extra("loops", "closed-port", "connect() to a port where nothing listens: the server's kernel answers the "
                               "SYN with RST, the client gets ECONNREFUSED")
def closed_port(run: LessonRun) -> Outcome:
    from ..scenarios.loops import free_ports
    [port] = free_ports(run)
    probe = run.probe("exchange", "--message", "anyone there?", port=port)
    error = probe.observed.get("error", "")
    refused = probe.observed.get("connected") is False and "refused" in error.lower()
    return Outcome(refused, f"connect to port {port}, where nothing listens: {error or 'it connected?!'}",
                   probe.observed, list(probe.transcript))
