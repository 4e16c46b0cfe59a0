"""Scenarios: what a lesson must show, written once, run anywhere.

A scenario is a function ``(LessonRun) -> Outcome``. It talks to the lesson's machines only
through the small ``Node`` interface, so the same function runs

* in containers started by ``lab.py demo`` / ``lab.py check`` (``socketlab.docker_nodes``),
* in containers started by the pytest suite (testcontainers), and
* on classroom machines over SSH (``socketlab.classroom``).

Client-side work happens in ``services/<lesson>/probes.py`` (stdlib, runs on the client node);
the scenario function arranges the hosts, runs probes and judges what they saw.
"""
from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

RESULT_PREFIX = "RESULT "


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Node(Protocol):
    """One machine of a lesson: a container or a lab machine reached over SSH."""

    name: str

    def run(self, argv: Sequence[str], *, timeout: float = 30) -> RunResult:
        """Run argv to completion and return its exit code and output."""

    def spawn(self, name: str, argv: Sequence[str]) -> None:
        """Start argv in the background; its output goes to /tmp/<name>.log."""

    def stop(self, name: str, signal: str = "TERM") -> None:
        """Signal the background process started as ``name`` and wait for it to end."""

    def read_file(self, path: str) -> bytes:
        """Return the content of a file on the node."""


def spawn_script(name: str, argv: Sequence[str]) -> list[str]:
    """The shell line both node kinds use to start a process in the background.

    All three standard streams are redirected, otherwise ``docker exec`` and ``ssh`` keep the
    session open until the process ends. The pid goes to /tmp/<name>.pid for ``stop``.
    """
    cmd = " ".join(shlex.quote(a) for a in argv)
    return ["sh", "-c", f"{cmd} >/tmp/{name}.log 2>&1 </dev/null & echo $! >/tmp/{name}.pid"]


def stop_script(name: str, signal: str = "TERM") -> list[str]:
    """Signal the process in /tmp/<name>.pid and wait (up to 5 s) until it is gone."""
    return ["sh", "-c",
            f"p=$(cat /tmp/{name}.pid 2>/dev/null) || exit 0; kill -{signal} $p 2>/dev/null; "
            # a zombie (exited, not yet reaped) counts as gone
            f"for i in $(seq 50); do grep -qs '^State:[[:space:]]*[^Z]' /proc/$p/status || exit 0; sleep 0.1; done; "
            f"kill -KILL $p 2>/dev/null; exit 0"]


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    observed: dict
    transcript: list[str]
    exit_code: int
    stderr: str = ""

    @classmethod
    def parse(cls, result: RunResult) -> ProbeResult:
        observed: dict = {}
        ok = reported = False
        transcript = []
        for line in result.stdout.splitlines():
            if line.startswith(RESULT_PREFIX):
                reported = True
                try:
                    payload = json.loads(line[len(RESULT_PREFIX):])
                    ok, observed = bool(payload.get("ok")), dict(payload.get("observed", {}))
                except (ValueError, AttributeError):
                    transcript.append(line)
            else:
                transcript.append(line)
        if not reported:
            tail = result.stderr.strip().splitlines()[-5:]
            transcript += [f"(probe crashed, exit {result.exit_code})", *tail]
        return cls(ok and result.exit_code == 0, observed, transcript, result.exit_code,
                   result.stderr)


@dataclass
class Outcome:
    passed: bool
    summary: str
    observed: dict = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)

    @classmethod
    def from_probe(cls, probe: ProbeResult, summary: str, passed: bool | None = None) -> Outcome:
        """The common case; a probe that could not finish puts its error in the summary."""
        error = None if probe.ok else (probe.observed.get("probe_error") or probe.observed.get("error"))
        return cls(probe.ok if passed is None else passed, f"probe stopped: {error}" if error else summary,
                   probe.observed, list(probe.transcript))


@dataclass
class LessonRun:
    """Everything a scenario may touch: the nodes, how to reach the server, what to run."""

    lesson: str
    nodes: dict[str, Node]
    server_host: str
    ports: dict[str, int]
    server_cmd: list[str]
    client_cmd: list[str]
    python: str = "python3"
    workdir: str = "/lab"
    server_args: list[str] = field(default_factory=list)   # the options the server runs with

    def server_option(self, name: str, default: str) -> str:
        """The value of the server's ``--name`` option (e.g. where its files live on that node)."""
        args = self.server_args
        return args[args.index(name) + 1] if name in args[:-1] else default

    @property
    def server(self) -> Node:
        return self.nodes["server"]

    @property
    def client(self) -> Node:
        return self.nodes["client"]

    def port(self, role: str = "server") -> int:
        return self.ports[role]

    def probe(self, probe: str, *args: str, node: Node | None = None, module: str | None = None,
              host: str | None = None, port: int | None = None, timeout: float = 60) -> ProbeResult:
        argv = [self.python, "-m", module or f"{self.lesson}.probes", probe,
                "--host", host or self.server_host, "--port", str(port or self.port())]
        result = (node or self.client).run(
            ["sh", "-c", f"cd {self.workdir} && exec " + " ".join(shlex.quote(a) for a in argv + list(args))],
            timeout=timeout)
        return ProbeResult.parse(result)


ScenarioFn = Callable[[LessonRun], Outcome]


@dataclass(frozen=True)
class Scenario:
    name: str
    shows: str
    fn: ScenarioFn
    roles: tuple[str, ...] = ("server",)   # which programs under test it exercises

    def __call__(self, run: LessonRun) -> Outcome:
        return self.fn(run)


def scenario(name: str, shows: str, roles: tuple[str, ...] = ("server",)) -> Callable[[ScenarioFn], Scenario]:
    """Register a scenario in the calling module's ``SCENARIOS`` list (in definition order)."""
    def register(fn: ScenarioFn) -> Scenario:
        sc = Scenario(name, shows, fn, roles)
        module = __import__(fn.__module__, fromlist=["SCENARIOS"])
        module.__dict__.setdefault("SCENARIOS", []).append(sc)
        return sc
    return register


_LISTEN_CHECK = """
import sys, time
port, proto, deadline = int(sys.argv[1]), sys.argv[2], time.monotonic() + float(sys.argv[3])
state = '0A' if proto == 'tcp' else '07'
def bound():
    for table in ('/proc/net/%s' % proto, '/proc/net/%s6' % proto):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        if any(int(r.split()[1].rsplit(':', 1)[1], 16) == port and r.split()[3] == state for r in rows):
            return True
while not bound():
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.05)
"""


def wait_listening(node: Node, port: int, proto: str = "tcp", timeout: float = 10) -> bool:
    """Wait until something on ``node`` listens on ``port`` (reads the kernel's tables; no connect)."""
    result = node.run(["python3", "-c", _LISTEN_CHECK, str(port), proto, str(timeout)], timeout=timeout + 5)
    return result.ok
