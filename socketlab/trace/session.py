"""`lab.py trace`: a lesson's scenarios with the call log and the packet capture on.

Like `check`, a trace never touches the student's running lab: it starts a throw-away instance of
the lesson (own project, own network), with

* the server (and any helper such as the udp relay) started as ``env SOCKETLAB_TRACE=... <its
  compose command>``, so services/sitecustomize.py logs its socket calls;
* every command a scenario runs on a node given the same variable (``TracedNode``), so probes,
  clients and programs a scenario spawns are logged too;
* the capture sidecar in the server's network namespace (capture.py).

Then it runs the scenarios one by one, noting each one's time window, collects the call logs,
the pcap and the datagrams any udp relay dropped (its log, relaylog.py), and removes everything
again.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import docker

from ..deploy import Instance, LabManager, Override
from ..engine import LABEL_LESSON, LABEL_OWNER, LABEL_PROJECT, LABEL_ROLE, LABEL_VERSION
from ..errors import LabError
from ..images import ImageBuilder
from ..runner import ScenarioReport, lesson_run, lesson_session, nodes_of, run_each
from ..scenario import LessonRun, Node, RunResult, Scenario
from ..scenarios import for_lesson
from ..topology import Lesson, Topology
from .callog import ENV, NODE_LOG, Call, read_calls
from .capture import Capture
from .extra import for_trace
from .ladder import Ladder, merge
from .notes import annotate
from .relaylog import Drop, read_drops
from .wire import Segment, read_pcap

Say = Callable[[str], None]


class TracedNode:
    """A node whose every command runs with SOCKETLAB_TRACE set (``env VAR=... argv``).

    A wrapper rather than a change to the Node interface: the scenario code stays exactly what
    `demo` and `check` run, and ``env`` works on containers and SSH machines alike.
    """

    def __init__(self, node: Node, role: str) -> None:
        self.node = node
        self.name = node.name
        self.log = NODE_LOG.format(role=role)
        self.spawned: list[str] = []      # background programs, whose logs may hold a relay's drops

    def traced(self, argv: Sequence[str]) -> list[str]:
        return ["env", f"{ENV}={self.log}", *argv]

    def run(self, argv: Sequence[str], *, timeout: float = 30) -> RunResult:
        return self.node.run(self.traced(argv), timeout=timeout)

    def spawn(self, name: str, argv: Sequence[str]) -> None:
        if name not in self.spawned:
            self.spawned.append(name)
        self.node.spawn(name, self.traced(argv))

    def stop(self, name: str, signal: str = "TERM") -> None:
        self.node.stop(name, signal)

    def read_file(self, path: str) -> bytes:
        return self.node.read_file(path)

    def __getattr__(self, item):          # e.g. ContainerNode.container
        return getattr(self.node, item)


@dataclass
class ScenarioTrace:
    report: ScenarioReport
    start: int
    end: int
    ladder: Ladder | None = None

    def as_dict(self) -> dict:
        return {"scenario": self.report.scenario, "shows": self.report.shows, "passed": self.report.passed,
                "summary": self.report.summary, "start": self.start, "end": self.end,
                **(self.ladder.as_dict() if self.ladder else {})}


@dataclass
class TraceResult:
    lesson: str
    scenarios: list[ScenarioTrace]
    calls: list[Call]
    segments: list[Segment]
    node_ips: dict[str, str]
    pcap: bytes = b""
    drops: list[Drop] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.scenarios) and all(s.report.passed for s in self.scenarios)

    def as_dict(self) -> dict:
        return {"lesson": self.lesson, "nodes": self.node_ips,
                "scenarios": [s.as_dict() for s in self.scenarios]}


def ladders(result: TraceResult, show_acks: bool = False) -> TraceResult:
    """Cut the merged records into one annotated ladder per scenario (by its time window)."""
    for st in result.scenarios:
        title = f"{result.lesson} / {st.report.scenario}: {st.report.shows}"
        st.ladder = annotate(merge(result.calls, result.segments, result.node_ips, (st.start, st.end), title,
                                   show_acks, result.drops), result.lesson)
    return result


def select(scenarios: list[Scenario], names: Sequence[str] | None, lesson: str) -> list[Scenario]:
    if not names:
        return scenarios
    known = {s.name: s for s in scenarios}
    missing = [n for n in names if n not in known]
    if missing:
        raise LabError(f"lesson {lesson} has no scenario {', '.join(map(repr, missing))}",
                       f"scenarios of {lesson}: {', '.join(known)}", 2)
    return [known[n] for n in names]


def traced_overrides(lesson: Lesson, overrides: dict[str, Override] | None = None) -> dict[str, Override]:
    """The services' commands (or the overrides' commands, e.g. a student's server) run under
    ``env SOCKETLAB_TRACE=...``; the client's ``sleep infinity`` is left alone."""
    out = dict(overrides or {})
    for spec in lesson.services:
        given = out.get(spec.role)
        command = (given.command if given and given.command else spec.command) or []
        if command and command[0] != "sleep":
            out[spec.role] = Override(image=given.image if given else None,
                                      command=["env", f"{ENV}={NODE_LOG.format(role=spec.role)}", *command])
    return out


class Recorder:
    """Both recorders around scenarios run on a lesson instance that is already up (with
    ``traced_overrides``): the capture sidecar, traced nodes, a time window per scenario.

        with Recorder(client, manager, lesson, builder.ensure_capture()) as rec:
            with lesson_session(lesson_run(lesson, rec.nodes)) as run:    # once, around all of them
                for sc in scenarios:
                    rec.run(run, sc)
        rec.result          # TraceResult with one annotated ladder per scenario
    """

    def __init__(self, client: docker.DockerClient, manager: LabManager, lesson: Lesson, capture_image: str,
                 show_acks: bool = False) -> None:
        self.client, self.manager, self.lesson = client, manager, lesson
        self.capture_image = capture_image
        self.show_acks = show_acks
        self.traces: list[ScenarioTrace] = []
        self.result: TraceResult | None = None
        self.capture: Capture | None = None
        self.plain: dict[str, Node] = {}
        self.nodes: dict[str, TracedNode] = {}

    def __enter__(self) -> Recorder:
        instance = self.manager.instance
        self.containers = {r: c for r, c in self.manager.containers(self.lesson.id).items() if r != "capture"}
        labels = {LABEL_PROJECT: instance.project, LABEL_OWNER: instance.owner, LABEL_VERSION: "trace",
                  LABEL_LESSON: self.lesson.id, LABEL_ROLE: "capture"}
        self.capture = Capture(self.client, self.capture_image, self.containers["server"],
                               f"{instance.project}-{self.lesson.id}-capture", labels).start()
        self.plain = {role: node for role, node in nodes_of(self.manager, self.lesson).items() if role != "capture"}
        self.nodes = {role: TracedNode(node, role) for role, node in self.plain.items()}
        return self

    def run(self, run: LessonRun, sc: Scenario,
            on_result: Callable[[Scenario, ScenarioReport], None] | None = None) -> ScenarioTrace:
        start = time.time_ns()
        report = run_each(run, [sc], on_result)[0]          # inside the caller's lesson_session
        self.traces.append(ScenarioTrace(report, start, time.time_ns()))
        return self.traces[-1]

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self.result = self._collect()
        finally:
            if self.capture:
                self.capture.remove()

    def _collect(self) -> TraceResult:
        sender = self.plain.get("client") or self.plain["server"]
        host = self.lesson.service("server").name
        pcap = self.capture.stop(lambda token: sender.run(["python3", "-m", "labtrace", "mark", "--host", host,
                                                           "--token", token], timeout=10))
        calls = [c for role, node in self.plain.items()
                 for c in read_calls(role, node.read_file(NODE_LOG.format(role=role)))]
        node_ips = {}
        for role, c in self.containers.items():
            c.reload()
            node_ips[role] = c.attrs["NetworkSettings"]["Networks"][self.manager.network_name]["IPAddress"]
        result = TraceResult(self.lesson.id, self.traces, sorted(calls, key=lambda c: c.t), read_pcap(pcap),
                             node_ips, pcap, self._drops())
        return ladders(result, self.show_acks)

    def _drops(self) -> list[Drop]:
        """What relays dropped: a relay a scenario started logs to /tmp/<name>.log on its node, the
        lesson's own relay (compose) to its container's output."""
        drops = []
        for role, node in self.nodes.items():
            for name in node.spawned:
                drops += read_drops(role, self.plain[role].read_file(f"/tmp/{name}.log"))
            if role not in ("client", "server") and role in self.containers:
                drops += read_drops(role, self.containers[role].logs())
        return sorted(drops, key=lambda d: d.t)


def trace_lesson(client: docker.DockerClient, topology: Topology, lesson_id: str,
                 scenario_names: Sequence[str] | None = None, say: Say = print,
                 project: str = "socketlab", show_acks: bool = False,
                 on_result: Callable[[Scenario, ScenarioReport], None] | None = None) -> TraceResult:
    """`lab.py trace`: a throw-away instance of the lesson, its scenarios traced, then removed."""
    lesson = topology.lesson(lesson_id)
    scenarios = select(for_trace(lesson.id, for_lesson(lesson.id)), scenario_names, lesson.id)
    builder = ImageBuilder(client, say)
    image_id = builder.ensure_all()
    capture_image = builder.ensure_capture()
    manager = LabManager(client, topology, Instance.throwaway("trace", project))
    try:
        manager.up(lesson, image_id, traced_overrides(lesson))
        with Recorder(client, manager, lesson, capture_image, show_acks) as rec:
            say(f"  {', '.join(sorted(rec.containers))} up, call log and capture on; "
                f"running {len(scenarios)} scenario{'s' if len(scenarios) != 1 else ''}")
            with lesson_session(lesson_run(lesson, rec.nodes)) as run:
                for sc in scenarios:
                    rec.run(run, sc, on_result)
        return rec.result
    finally:
        manager.down()


def ladder_lines(result: TraceResult, scenario: str, colour: bool = False) -> list[str]:
    """The ladder of one traced scenario as text lines (e.g. for a failed check's transcript)."""
    from .ladder import render_text
    for st in result.scenarios:
        if st.report.scenario == scenario and st.ladder is not None:
            return render_text(st.ladder, colour).splitlines()
    return []
