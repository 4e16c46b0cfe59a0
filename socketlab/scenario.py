"""Scenarios: what a lesson must show, written once, run anywhere.

A scenario is a function ``(LessonRun) -> Outcome``. It talks to the lesson's machines only
through the small ``Node`` interface, so the same function runs

* in containers started by ``lab.py demo`` / ``lab.py check`` (``socketlab.docker_nodes``),
* in containers started by the pytest suite (testcontainers), and
* on classroom machines over SSH (``socketlab.classroom``).

Client-side work happens in ``services/labnode/probes/<lesson>.py`` (stdlib, runs on the client node);
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


class ShellNode:
    """What every node kind shares: background processes and files, built on its own ``run``.

    A subclass (container, SSH machine, this machine) only says how to run argv to completion;
    starting, stopping and supervising background programs is done here, the same way on all.
    """

    name: str

    def run(self, argv: Sequence[str], *, timeout: float = 30) -> RunResult:
        raise NotImplementedError

    def spawn(self, name: str, argv: Sequence[str]) -> None:
        result = self.run(spawn_script(name, argv), timeout=15)
        if not result.ok:
            raise RuntimeError(f"could not start {name} on {self.name}: {result.stderr.strip()}")

    def stop(self, name: str, signal: str = "TERM") -> None:
        self.run(stop_script(name, signal), timeout=15)

    def read_file(self, path: str) -> bytes:
        result = self.run(["cat", path], timeout=30)
        return result.stdout.encode("utf-8", "surrogateescape") if result.ok else b""


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
    """What a scenario saw. ``summary`` says what the program did (and, on a failure, what was
    expected); ``fix`` says what to change. Both are shown to the student, so both must be true."""

    passed: bool
    summary: str
    observed: dict = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)
    fix: str = ""

    @property
    def explanation(self) -> str:
        return self.summary if self.passed or not self.fix else f"{self.summary}. Fix: {self.fix}"

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

    def in_workdir(self, argv: Sequence[str]) -> list[str]:
        return in_workdir(self.workdir, argv)

    def tool(self, node: Node, *args: str, timeout: float = 30) -> ProbeResult:
        """``python3 -m labnode ARGS`` on a node (see services/labnode/__main__.py)."""
        return node_tool(node, *args, workdir=self.workdir, python=self.python, timeout=timeout)

    def probe(self, probe: str, *args: str, node: Node | None = None, module: str | None = None,
              host: str | None = None, port: int | None = None, timeout: float = 60) -> ProbeResult:
        argv = [self.python, "-m", module or f"labnode.probes.{self.lesson}", probe,
                "--host", host or self.server_host, "--port", str(port or self.port()), *args]
        return ProbeResult.parse((node or self.client).run(self.in_workdir(argv), timeout=timeout))


ScenarioFn = Callable[[LessonRun], Outcome]


@dataclass(frozen=True)
class Scenario:
    """One thing a lesson must show.

    ``roles`` names the programs under test it grades (``()``: the demo only, run with the
    reference). An ``advisory`` scenario checks something the lesson's contract does not require:
    `check` reports it and never fails the grade on it.
    """

    name: str
    shows: str
    fn: ScenarioFn
    roles: tuple[str, ...] = ("server",)
    advisory: bool = False

    def __call__(self, run: LessonRun) -> Outcome:
        return self.fn(run)


def scenario(name: str, shows: str, roles: tuple[str, ...] = ("server",),
             advisory: bool = False) -> Callable[[ScenarioFn], Scenario]:
    """Register a scenario in the calling module's ``SCENARIOS`` list (in definition order)."""
    def register(fn: ScenarioFn) -> Scenario:
        sc = Scenario(name, shows, fn, roles, advisory)
        module = __import__(fn.__module__, fromlist=["SCENARIOS"])
        module.__dict__.setdefault("SCENARIOS", []).append(sc)
        return sc
    return register


def in_workdir(workdir: str, argv: Sequence[str]) -> list[str]:
    """argv run from the lessons directory (/lab in containers), which is also its import path.

    ``exec`` replaces the shell (and ``env`` replaces itself), so a background process keeps the
    pid that ``spawn`` wrote down.
    """
    return ["sh", "-c", f"cd {shlex.quote(workdir)} && exec env PYTHONPATH={shlex.quote(workdir)} "
                        f"{shlex.join(argv)}"]


def node_tool(node: Node, *args: str, workdir: str = "/lab", python: str = "python3",
              timeout: float = 30) -> ProbeResult:
    """Run ``python3 -m labnode ARGS`` (services/labnode: kernel tables, waits) on a node."""
    return ProbeResult.parse(node.run(in_workdir(workdir, [python, "-m", "labnode", *args]), timeout=timeout))


def wait_listening(node: Node, port: int, proto: str = "tcp", timeout: float = 10) -> bool:
    """Wait until something on ``node`` listens on ``port`` (reads the kernel's tables; no connect).

    Every node kind has the lessons directory on PYTHONPATH, so ``-m labnode`` needs no ``cd``.
    """
    argv = ["python3", "-m", "labnode", "wait-listen", "--port", str(port), "--proto", proto,
            "--timeout", str(timeout)]
    return ProbeResult.parse(node.run(argv, timeout=timeout + 10)).ok
