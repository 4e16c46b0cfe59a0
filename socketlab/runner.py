"""Running a lesson's scenarios: for `demo` (narrated) and `check` (graded, JSON report).

`check` never touches the student's running lab: it starts a throw-away instance of the lesson
(own project name, own network), with the student's file baked into a small overlay image in
place of the reference program, runs every scenario, and removes it all again.
"""
from __future__ import annotations

import hashlib
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker

from .deploy import Instance, LabManager, Override
from .docker_nodes import ContainerNode
from .errors import LabError
from .images import ImageBuilder
from .scenario import LessonRun, Outcome, Scenario
from .scenarios import for_lesson
from .topology import Lesson, Topology

STUDENT_DIR = "/lab/student"


@dataclass
class ScenarioReport:
    scenario: str
    shows: str
    passed: bool
    summary: str
    seconds: float
    observed: dict = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)


@dataclass
class LessonReport:
    lesson: str
    server: str
    client: str
    scenarios: list[ScenarioReport]

    @property
    def passed(self) -> bool:
        return bool(self.scenarios) and all(s.passed for s in self.scenarios)

    def as_dict(self) -> dict:
        return {"lesson": self.lesson, "server": self.server, "client": self.client, "passed": self.passed,
                "scenarios": [asdict(s) for s in self.scenarios]}


def lesson_run(lesson: Lesson, nodes: dict, server_cmd: list[str] | None = None,
               client_cmd: list[str] | None = None) -> LessonRun:
    command = lesson.service("server").command or []
    return LessonRun(lesson=lesson.id, nodes=nodes, server_host=lesson.service("server").name,
                     ports=dict(lesson.ports), server_cmd=server_cmd or lesson.server_program,
                     client_cmd=client_cmd or lesson.reference_client,
                     server_args=command[len(lesson.server_program):])


def run_scenarios(run: LessonRun, scenarios: list[Scenario],
                  on_result: Callable[[Scenario, ScenarioReport], None] | None = None) -> list[ScenarioReport]:
    reports = []
    for sc in scenarios:
        started = time.monotonic()
        try:
            outcome = sc(run)
        except Exception as exc:  # a broken scenario or student program must not stop the others
            outcome = Outcome(False, f"scenario crashed: {type(exc).__name__}: {exc}", {},
                              traceback.format_exc().splitlines()[-6:])
        report = ScenarioReport(sc.name, sc.shows, outcome.passed, outcome.summary,
                                round(time.monotonic() - started, 2), outcome.observed, outcome.transcript)
        reports.append(report)
        if on_result:
            on_result(sc, report)
    return reports


def select(scenarios: list[Scenario], server: bool, client: bool) -> list[Scenario]:
    """With only --client given, grade the client; with only --server, the server; else all."""
    if client and not server:
        return [s for s in scenarios if "client" in s.roles]
    if server and not client:
        return [s for s in scenarios if "server" in s.roles]
    return scenarios


def nodes_of(manager: LabManager, lesson: Lesson) -> dict[str, ContainerNode]:
    return {role: ContainerNode(c) for role, c in manager.containers(lesson.id).items()}


def student_overlay(builder: ImageBuilder, lesson: Lesson, server: Path | None,
                    client: Path | None) -> tuple[str | None, list[str] | None, list[str] | None]:
    """Bake the student's files into an overlay image; return (image, server_cmd, client_cmd)."""
    files: dict[str, bytes] = {}
    for role, path in (("server", server), ("client", client)):
        if path is None:
            continue
        if not path.is_file():
            raise LabError(f"{path} is not a file", f"give the path of your {role} program, e.g. my_{role}.py")
        files[f"{role}.py"] = path.read_bytes()
    if not files:
        return None, None, None
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()[:12]
    tag = f"socketlab/check-{lesson.id}:{digest}"
    builder.build_overlay(tag, files, owner="check")
    server_cmd = ["python3", f"{STUDENT_DIR}/server.py"] if server else None
    client_cmd = ["python3", f"{STUDENT_DIR}/client.py"] if client else None
    return tag, server_cmd, client_cmd


class Checker:
    """`lab.py check`: a throw-away lesson instance, the scenarios, a report, then clean-up."""

    def __init__(self, client: docker.DockerClient, topology: Topology, say: Callable[[str], None],
                 project: str = "socketlab") -> None:
        self.client = client
        self.topology = topology
        self.say = say
        self.project = project   # the check's own instance is named <project>-check-<random>

    def check(self, lesson_id: str, server: Path | None = None, client: Path | None = None,
              on_result: Callable[[Scenario, ScenarioReport], None] | None = None) -> LessonReport:
        lesson = self.topology.lesson(lesson_id)
        builder = ImageBuilder(self.client, self.say)
        image_id = builder.ensure_all()
        overlay, server_cmd, client_cmd = student_overlay(builder, lesson, server, client)
        manager = LabManager(self.client, self.topology, Instance.throwaway("check", self.project))
        overrides = {}
        if overlay:
            overrides = {s.role: Override(image=overlay) for s in lesson.services}
            if server_cmd:
                command = lesson.service("server").command or []
                overrides["server"] = Override(image=overlay,
                                               command=server_cmd + command[len(lesson.server_program):])
        try:
            manager.up(lesson, image_id, overrides)
            run = lesson_run(lesson, nodes_of(manager, lesson), server_cmd, client_cmd)
            scenarios = select(for_lesson(lesson.id), server is not None, client is not None)
            reports = run_scenarios(run, scenarios, on_result)
        except LabError as exc:
            # the student's server may never start listening: that is a failed check, not a crash
            reports = [ScenarioReport("start", "the server starts and listens", False, exc.message, 0.0)]
        finally:
            manager.down()
            if overlay:
                try:
                    self.client.images.remove(overlay, force=True)
                except docker.errors.APIError:
                    pass
        return LessonReport(lesson.id, str(server or "reference"), str(client or "reference"), reports)

