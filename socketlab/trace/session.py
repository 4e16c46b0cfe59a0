"""`lab.py trace`: a lesson's scenarios with the call log and the packet capture on.

Like `check`, a trace never touches the student's running lab: it starts a throw-away instance of
the lesson (own project, own network), with

* the server (and any helper such as the udp relay) started as ``env SOCKETLAB_TRACE=... <its
  compose command>``, so services/sitecustomize.py logs its socket calls;
* every command a scenario runs on a node given the same variable (``TracedNode``), so probes,
  clients and programs a scenario spawns are logged too;
* the capture sidecar in the server's network namespace (capture.py).

Then it runs the scenarios one by one, noting each one's time window, collects the logs and the
pcap, and removes everything again.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import docker

from ..deploy import Instance, LabManager, Override
from ..engine import LABEL_LESSON, LABEL_OWNER, LABEL_PROJECT, LABEL_ROLE, LABEL_VERSION
from ..errors import LabError
from ..images import ImageBuilder
from ..runner import ScenarioReport, lesson_run, nodes_of, run_scenarios
from ..scenario import Node, RunResult, Scenario
from ..scenarios import for_lesson
from ..topology import Topology
from .callog import ENV, NODE_LOG, Call, read_calls
from .capture import Capture
from .ladder import Ladder, merge
from .notes import annotate
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

    def traced(self, argv: Sequence[str]) -> list[str]:
        return ["env", f"{ENV}={self.log}", *argv]

    def run(self, argv: Sequence[str], *, timeout: float = 30) -> RunResult:
        return self.node.run(self.traced(argv), timeout=timeout)

    def spawn(self, name: str, argv: Sequence[str]) -> None:
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
                                   show_acks), result.lesson)
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


def trace_lesson(client: docker.DockerClient, topology: Topology, lesson_id: str,
                 scenario_names: Sequence[str] | None = None, say: Say = print,
                 project: str = "socketlab", show_acks: bool = False,
                 on_result: Callable[[Scenario, ScenarioReport], None] | None = None) -> TraceResult:
    lesson = topology.lesson(lesson_id)
    scenarios = select(for_lesson(lesson.id), scenario_names, lesson.id)
    builder = ImageBuilder(client, say)
    image_id = builder.ensure_all()
    capture_image = builder.ensure_capture()
    instance = Instance.throwaway("trace", project)
    manager = LabManager(client, topology, instance)
    overrides = {s.role: Override(command=["env", f"{ENV}={NODE_LOG.format(role=s.role)}", *s.command])
                 for s in lesson.services if s.command and s.command[0] != "sleep"}
    capture = None
    try:
        manager.up(lesson, image_id, overrides)
        containers = manager.containers(lesson.id)
        labels = {LABEL_PROJECT: instance.project, LABEL_OWNER: instance.owner, LABEL_VERSION: "trace",
                  LABEL_LESSON: lesson.id, LABEL_ROLE: "capture"}
        capture = Capture(client, capture_image, containers["server"], f"{instance.project}-{lesson.id}-capture",
                          labels).start()
        plain = {role: node for role, node in nodes_of(manager, lesson).items() if role != "capture"}
        nodes = {role: TracedNode(node, role) for role, node in plain.items()}
        run = lesson_run(lesson, nodes)
        traces = []
        for sc in scenarios:
            start = time.time_ns()
            report = run_scenarios(run, [sc], on_result)[0]
            traces.append(ScenarioTrace(report, start, time.time_ns()))
        sender = plain.get("client") or plain["server"]
        pcap = capture.stop(lambda token: sender.run(["python3", "-m", "labtrace", "mark", "--host",
                                                      run.server_host, "--token", token], timeout=10))
        calls = [c for role, node in plain.items()
                 for c in read_calls(role, node.read_file(NODE_LOG.format(role=role)))]
        node_ips = {}
        for role, c in containers.items():
            c.reload()
            node_ips[role] = c.attrs["NetworkSettings"]["Networks"][manager.network_name]["IPAddress"]
        result = TraceResult(lesson.id, traces, sorted(calls, key=lambda c: c.t), read_pcap(pcap), node_ips, pcap)
        return ladders(result, show_acks)
    finally:
        if capture:
            capture.remove()
        manager.down()
