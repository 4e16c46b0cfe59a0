"""Running a lesson's scenarios: for `demo` (narrated) and `check` (graded, JSON report).

`check` never touches the student's running lab: it starts a throw-away instance of the lesson
(own project name, own network), with the student's file baked into a small overlay image in
place of the reference program, runs every scenario, and removes it all again.
"""
from __future__ import annotations

import datetime
import hashlib
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker

from .contract import VERSION as CONTRACT_VERSION
from .contract import contract_of
from .deploy import Instance, LabManager, Override
from .docker_nodes import ContainerNode
from .errors import LabError
from .images import ImageBuilder
from .scenario import LessonRun, Node, Outcome, Scenario
from .scenarios import for_lesson, module_of
from .topology import Lesson, Topology

STUDENT_DIR = "/lab/student"
START_TIMEOUT = 15      # seconds a student's server gets to start listening
START_GRACE = 90        # more seconds for the engine to see it healthy, once it does listen


@dataclass
class ScenarioReport:
    scenario: str
    shows: str
    passed: bool
    summary: str
    seconds: float
    observed: dict = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)
    required: bool = True        # False: advisory, reported but never failing the grade
    fix: str = ""                # what to change, when it failed

    @property
    def explanation(self) -> str:
        return self.summary if self.passed or not self.fix else f"{self.summary}. Fix: {self.fix}"

    @property
    def verdict(self) -> str:
        if self.passed:
            return "pass"
        return "FAIL" if self.required else "advice"


@dataclass
class LessonReport:
    lesson: str
    server: str
    client: str
    scenarios: list[ScenarioReport]

    @property
    def required(self) -> list[ScenarioReport]:
        return [s for s in self.scenarios if s.required]

    @property
    def passed(self) -> bool:
        return bool(self.required) and all(s.passed for s in self.required)

    def as_dict(self) -> dict:
        return {"lesson": self.lesson, "server": self.server, "client": self.client, "passed": self.passed,
                "contract_version": CONTRACT_VERSION,
                "scenarios": [{**asdict(s), "explanation": s.explanation, "verdict": s.verdict}
                              for s in self.scenarios]}

    def lines(self) -> list[str]:
        """The human report after the table: every failure and every advice, explained."""
        out = []
        for s in self.scenarios:
            if s.passed:
                continue
            label = "FAIL" if s.required else "advice (not graded)"
            out += ["", f"{s.scenario} — {label}: {s.summary}"]
            if s.fix:
                out.append(f"   what to change: {s.fix}")
            marker = next((i for i, line in enumerate(s.transcript) if line.startswith("on the wire (lab.py")),
                          len(s.transcript))
            shown = s.transcript[:marker][-12:] + s.transcript[marker:]   # a traced ladder is shown whole
            out += [f"   {line}" for line in shown]
        graded = self.required
        out += ["", f"{self.lesson}: {'PASSED' if self.passed else 'FAILED'} "
                    f"({sum(s.passed for s in graded)}/{len(graded)} graded scenarios"
                    + (f"; {len(self.scenarios) - len(graded)} advisory" if len(graded) < len(self.scenarios)
                       else "") + ")"]
        return out


def lesson_run(lesson: Lesson, nodes: dict, server_cmd: list[str] | None = None,
               client_cmd: list[str] | None = None) -> LessonRun:
    command = lesson.service("server").command or []
    return LessonRun(lesson=lesson.id, nodes=nodes, server_host=lesson.service("server").name,
                     ports=dict(lesson.ports), server_cmd=server_cmd or lesson.server_program,
                     client_cmd=client_cmd or lesson.reference_client,
                     server_args=command[len(lesson.server_program):])


def lesson_session(run: LessonRun) -> AbstractContextManager[LessonRun]:
    """The lesson module's ``session(run)`` that wraps all of a run's scenarios (e.g. to start
    from a fresh state without touching the student's files), or the run as it is."""
    session = getattr(module_of(run.lesson), "session", None)
    return nullcontext(run) if session is None else session(run)


def run_scenarios(run: LessonRun, scenarios: list[Scenario],
                  on_result: Callable[[Scenario, ScenarioReport], None] | None = None) -> list[ScenarioReport]:
    """Run scenarios in order, all inside one ``lesson_session``."""
    with lesson_session(run) as prepared:
        return run_each(prepared, scenarios, on_result)


def server_exit(run: LessonRun) -> tuple[int, list[str]] | None:
    """(exit code, its last output lines) when the server container's program has ended, else None.

    On a lesson container the server program is the container's main process: when it ends, the
    container stops, every exec on it fails (409) and its name no longer resolves, so a scenario
    would otherwise report those symptoms instead of the student's own traceback."""
    container = getattr(run.server, "container", None)
    if container is None:                  # a lab machine over SSH, this machine: nothing to look at
        return None
    try:
        container.reload()
        if container.status == "running":
            return None
        state = container.attrs.get("State", {})
        since = _epoch(state.get("StartedAt", ""))       # this run's output, not that of a run before a restart
        output = container.logs(tail=12, **({"since": since} if since else {}))
    except docker.errors.APIError:
        return None
    return int(state.get("ExitCode", -1)), output.decode("utf-8", "replace").splitlines()


def _epoch(stamp: str) -> float | None:
    """The engine's RFC 3339 time with nanoseconds ('2026-12-07T23:30:01.123456789Z') in seconds."""
    head, _, fraction = stamp.rstrip("Z").partition(".")
    try:
        seconds = datetime.datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}+00:00").timestamp()
    except ValueError:
        return None
    return seconds if seconds > 0 else None       # '0001-01-01T00:00:00Z': never started


def restart_server(run: LessonRun) -> bool:
    """Start the ended server container again (its next scenario is graded on its own)."""
    try:
        run.server.container.start()
    except docker.errors.APIError:
        return False
    proto = "udp" if run.lesson == "udp" else "tcp"
    return run.tool(run.server, "wait-listen", "--port", str(run.port()), "--proto", proto, "--timeout", "15",
                    timeout=20).ok


def exited_outcome(outcome: Outcome, code: int, output: list[str]) -> Outcome:
    """The true story of a scenario during which the server program ended. A scenario that saw the
    death itself and named the input behind it (``observed["server_died_after"]``) keeps its words."""
    last = next((line.strip() for line in reversed(output) if line.strip()), "")
    said = f": {last}" if last else ""
    keep_serving = ("A server must keep serving: catch the errors of one client's exchange (OSError: a client "
                    "may leave at any time) so they end that connection, not the server")
    if code == 0:
        fix = (f"your server ended by itself (exit code 0{said}). A server must keep serving: accept() in a loop "
               "that does not end after a client, and keep the listening socket open")
    elif code == 137:
        fix = (f"your server was killed (exit code 137{said}: SIGKILL, most often the lab's memory limit): never "
               f"allocate what a peer announces before checking it against a limit. {keep_serving}")
    else:
        fix = f"your server ended (exit code {code}{said}). {keep_serving}"
    if "TypeError" in last and ("bytes-like" in last or "str" in last):
        fix += "; sockets carry bytes: encode text before send() (b'...' or text.encode())"
    ended = ["", "the server program ended; its last output:", *(f"   {line}" for line in output or ["(nothing)"])]
    if outcome.summary.startswith("scenario crashed"):          # its commands on the stopped container failed
        return Outcome(False, f"the server exited during this scenario (exit code {code}{said})", outcome.observed,
                       [*ended, "(what the scenario saw: its commands on the server machine failed: the "
                                "container had stopped)"], fix)
    if outcome.observed.get("server_died_after"):
        # the scenario saw the death itself and names the input that caused it: its words come first
        return Outcome(False, f"{outcome.summary} (the server exited with code {code}{said})", outcome.observed,
                       [*outcome.transcript, *ended], f"{outcome.fix}; {fix}" if outcome.fix else fix)
    return Outcome(False, f"the server exited during this scenario (exit code {code}{said})", outcome.observed,
                   [*outcome.transcript, *ended, f"(what the scenario saw: {outcome.summary})"], fix)


def run_each(run: LessonRun, scenarios: list[Scenario],
             on_result: Callable[[Scenario, ScenarioReport], None] | None) -> list[ScenarioReport]:
    reports = []
    for sc in scenarios:
        started = time.monotonic()
        try:
            outcome = sc(run)
        except Exception as exc:  # a broken scenario or student program must not stop the others
            outcome = Outcome(False, f"scenario crashed: {type(exc).__name__}: {exc}", {},
                              traceback.format_exc().splitlines()[-6:])
        ended = server_exit(run)
        if ended is not None:
            outcome = exited_outcome(outcome, *ended)
            outcome.transcript.append("(the lab started the server again for the next scenario)" if restart_server(run)
                                      else "(the lab could not start the server again for the next scenarios)")
        report = ScenarioReport(sc.name, sc.shows, outcome.passed, outcome.summary,
                                round(time.monotonic() - started, 2), outcome.observed, outcome.transcript,
                                required=not sc.advisory, fix=outcome.fix)
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


MAX_STUDENT_FILES = 200
MAX_STUDENT_BYTES = 20 * 2**20
SKIPPED = {"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache"}


def student_files(role: str, path: Path, entry: str | None) -> tuple[dict[str, bytes], str]:
    """A student's program as overlay files under ``<role>/``, and the path of its entry point.

    ``path`` is a file, or a folder with ``entry`` (default ``<role>.py``) inside it: code split
    into modules is graded as it is, the folder being the script's directory (its import path).
    """
    if path.is_file():
        return {f"{role}/{path.name}": path.read_bytes()}, f"{role}/{path.name}"
    if not path.is_dir():
        raise LabError(f"{path} does not exist", f"give the path of your {role} program (a .py file or a folder)")
    entry = entry or f"{role}.py"
    if not (path / entry).is_file():
        found = sorted(p.name for p in path.glob("*.py"))
        raise LabError(f"{path} is a folder without {entry}",
                       f"name the entry point with --entry (python files there: {', '.join(found) or 'none'})")
    files: dict[str, bytes] = {}
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path)
        if item.is_dir() or any(part in SKIPPED or part.startswith(".") for part in rel.parts):
            continue
        files[f"{role}/{rel.as_posix()}"] = item.read_bytes()
        if len(files) > MAX_STUDENT_FILES or sum(map(len, files.values())) > MAX_STUDENT_BYTES:
            raise LabError(f"{path} holds more than {MAX_STUDENT_FILES} files or "
                           f"{MAX_STUDENT_BYTES >> 20} MiB", "point --server/--client at the program's own folder")
    return files, f"{role}/{Path(entry).as_posix()}"


ProgramFiles = dict[str, tuple[dict[str, bytes], str]]   # role -> (overlay files, entry path), no prefix yet


def role_files(server: Path | None, client: Path | None, entry: str | None) -> ProgramFiles:
    """One submission's programs, read from disk (a LabError when one cannot be read)."""
    return {role: student_files(role, path, entry) for role, path in (("server", server), ("client", client))
            if path is not None}


def batch_overlay(builder: ImageBuilder, lesson: Lesson, programs: list[tuple[str, ProgramFiles]]
                  ) -> tuple[str | None, list[tuple[list[str] | None, list[str] | None]]]:
    """One overlay image holding every submission's files, each under its own prefix below
    /lab/student/ (``""`` for a single check: /lab/student/server/...); one build for all of them.
    Returns the image (None when nothing is the student's) and each submission's (server_cmd, client_cmd)."""
    files: dict[str, bytes] = {}
    commands = []
    for prefix, program in programs:
        cmds: dict[str, list[str]] = {}
        for role, (role_files_, entry_path) in program.items():
            files |= {prefix + name: data for name, data in role_files_.items()}
            cmds[role] = ["python3", f"{STUDENT_DIR}/{prefix}{entry_path}"]
        commands.append((cmds.get("server"), cmds.get("client")))
    if not files:
        return None, commands
    digest = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()[:12]
    # one tag per check: checks of the same files may run side by side, and each removes its own
    tag = f"socketlab/check-{lesson.id}:{digest}-{uuid.uuid4().hex[:6]}"
    builder.build_overlay(tag, files, owner="check")
    return tag, commands


def listens_reachably(lesson: Lesson, server: Node) -> bool:
    """Something listens on the lesson's port on an address other machines can reach (not 127.x)."""
    from .scenario import node_tool
    proto = "udp" if lesson.id == "udp" else "tcp"
    seen = node_tool(server, "listeners", "--port", str(lesson.ports.get("server", 0)), "--proto", proto).observed
    return any(not a.startswith("127.") and a != "::1" for a in seen.get("addresses") or [])


def start_failure(lesson: Lesson, message: str, server: Node | None, port: int,
                  started_as: list[str]) -> ScenarioReport:
    """The server under test never became ready: say what the server machine shows, and the fix."""
    facts, fix = message, "start listening on the port given with --port, and keep running"
    if server is not None:
        from .scenario import node_tool
        proto = "udp" if lesson.id == "udp" else "tcp"
        seen = node_tool(server, "listeners", "--port", str(port), "--proto", proto).observed
        others = seen.get("other_ports") or []
        if seen.get("addresses"):
            facts = f"the server listens on {seen['addresses'][0]}:{port} but was not ready in time"
        elif others:
            facts = (f"nothing listens on {proto} port {port}; your server listens on "
                     f"{', '.join(map(str, others))}")
            fix = f"read the port from --port (it was started as `{' '.join(started_as)}`)"
        else:
            facts = f"nothing listens on {proto} port {port} of the server machine; {message}"
    return ScenarioReport("start", f"the server starts (as `{' '.join(started_as)}`) and listens", False,
                          facts, 0.0, fix=fix)


@dataclass(frozen=True)
class Submission:
    """One thing to grade: a student's server and/or client (None: the lesson's reference), a file
    or a folder (``entry``: the file to run in a folder); ``only`` limits it to these scenarios."""

    server: Path | None = None
    client: Path | None = None
    entry: str | None = None
    only: tuple[str, ...] | None = None


def unreadable_report(lesson: Lesson, submission: Submission, error: LabError) -> LessonReport:
    """A program that could not even be read (no such file, a folder without its entry point)."""
    report = ScenarioReport("start", "the program can be read and started", False, error.message, 0.0,
                            fix=error.fix)
    return LessonReport(lesson.id, str(submission.server or "reference"), str(submission.client or "reference"),
                        [report])


class Checker:
    """`lab.py check`: a throw-away lesson instance, the scenarios, a report, then clean-up."""

    def __init__(self, client: docker.DockerClient, topology: Topology, say: Callable[[str], None],
                 project: str = "socketlab") -> None:
        self.client = client
        self.topology = topology
        self.say = say
        self.project = project   # the check's own instance is named <project>-check-<random>

    def check(self, lesson_id: str, server: Path | None = None, client: Path | None = None,
              on_result: Callable[[Scenario, ScenarioReport], None] | None = None,
              entry: str | None = None, only: list[str] | None = None, trace: bool = False) -> LessonReport:
        """One program (or the reference): a batch of one; a program that cannot be read is a LabError."""
        submission = Submission(server, client, entry, tuple(only) if only is not None else None)
        with self.batch(lesson_id, [submission], trace=trace) as batch:
            batch.open()
            if 0 in batch.unreadable:
                raise batch.unreadable[0]
            return batch.grade(0, on_result)

    def batch(self, lesson_id: str, submissions: list[Submission], trace: bool = False) -> Batch:
        """Many programs graded on one lesson instance (``check LESSON --server A.py B.py ...``)."""
        lesson = self.topology.lesson(lesson_id)
        contract = contract_of(lesson.id)
        for role in ("server", "client"):
            if any(getattr(s, role) is not None for s in submissions) and contract.role(role) is None:
                graded = " and ".join(f"--{r.role}" for r in contract.roles)
                raise LabError(f"lesson {lesson.id} does not grade a {role}: its contract covers {graded}",
                               f"python lab.py check {lesson.id} {graded.split(' and ')[0]} my_program.py")
        return Batch(self, lesson, submissions, trace)

    def _traced(self, builder: ImageBuilder, manager: LabManager, lesson: Lesson, scenarios: list[Scenario],
                server_cmd: list[str] | None, client_cmd: list[str] | None,
                on_result: Callable[[Scenario, ScenarioReport], None] | None) -> list[ScenarioReport]:
        """`check --trace`: every scenario recorded; a failed one carries its ladder (calls and packets)."""
        from .trace.session import Recorder, ladder_lines
        with Recorder(self.client, manager, lesson, builder.ensure_capture()) as rec:
            with lesson_session(lesson_run(lesson, rec.nodes, server_cmd, client_cmd)) as run:
                for sc in scenarios:
                    rec.run(run, sc)
        reports = [t.report for t in rec.traces]
        for report in reports:
            if not report.passed and rec.result is not None:
                ladder = ladder_lines(rec.result, report.scenario)
                report.transcript += ["", "on the wire (lab.py trace): your program's socket calls and the packets",
                                      *ladder] if ladder else []
        for sc, report in zip(scenarios, reports):
            if on_result:
                on_result(sc, report)
        return reports



class Batch:
    """Many programs of one lesson graded one after another on one lesson instance.

    What the programs share costs seconds each time and holds nothing of theirs: the lab's images,
    ONE overlay image with every program's files (each under /lab/student/<n>/; one build for all),
    and the instance's internal network. Before each program every container of the lesson is
    removed and created afresh from that image (``LabManager.remove_containers``), so nothing the
    previous program or its scenarios did can reach the next:

    * processes: a container's pid namespace dies with it, a daemon that escaped its process group
      included;
    * files: the root is read-only, what is written goes to tmpfs (``/tmp``, ftp's ``/srv/ftp``
      with the users' homes and ``.part`` files) and starts empty in the new container;
    * sockets and kernel state: each container has its own network namespace, so ports, TIME_WAIT
      and half-closed connections go with it (``restart-same-port`` and ``restart-after-quit``
      meet a fresh kernel table);
    * the reference programs too (the udp relay's per-flow loss, the ftp server's state): the whole
      lesson starts again, not only the program under test.

    Removing and creating two containers costs about 0.6 s (measured; a ``docker restart`` costs as
    much and cannot change the program); the fresh server's health check is probed by exec rather
    than waited for (``wait_healthy(probe=True)``), in a single check too. A program stopped in the
    middle (its deadline, an engine error) takes the whole instance with it (``discard``): the next
    one gets a new network.
    """

    def __init__(self, checker: Checker, lesson: Lesson, submissions: list[Submission], trace: bool = False) -> None:
        self.checker = checker
        self.lesson = lesson
        self.submissions = list(submissions)
        self.trace = trace
        self.builder = ImageBuilder(checker.client, checker.say)
        self.image_id: str | None = None
        self.overlay: str | None = None
        self.commands: list[tuple[list[str] | None, list[str] | None]] = []
        self.unreadable: dict[int, LabError] = {}     # index -> why that program could not be read
        self.manager: LabManager | None = None
        self.opened = False

    # -- the shared part ------------------------------------------------------------------------
    def open(self) -> None:
        """Images, every program's files in one overlay (idempotent: a batch opens once)."""
        if self.opened:
            return
        self.image_id = self.builder.ensure_all()
        programs: list[tuple[str, ProgramFiles]] = []
        for i, sub in enumerate(self.submissions):
            try:
                files = role_files(sub.server, sub.client, sub.entry)
            except LabError as exc:
                self.unreadable[i] = exc
                files = {}
            programs.append((self.prefix(i), files))
        try:
            self.overlay, self.commands = batch_overlay(self.builder, self.lesson, programs)
        except LabError as exc:
            if "parent" not in exc.message:
                raise
            # the lessons image was rebuilt under us (a lesson file changed meanwhile): once more, on the new one
            self.image_id = self.builder.ensure_all()
            self.overlay, self.commands = batch_overlay(self.builder, self.lesson, programs)
        self.opened = True

    def prefix(self, index: int) -> str:
        """Where a program's files are below /lab/student/: a single check's right there, as ever."""
        return "" if len(self.submissions) == 1 else f"{index + 1}/"

    def close(self) -> None:
        """Remove the instance and the overlay image (idempotent)."""
        self.discard()
        if self.overlay:
            try:
                self.checker.client.images.remove(self.overlay, force=True)
            except docker.errors.APIError:
                pass
            self.overlay = None

    def discard(self) -> int:
        """Remove the lesson instance now (containers and network); the next program gets a new one."""
        manager, self.manager = self.manager, None
        return manager.down() if manager is not None else 0

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one program ----------------------------------------------------------------------------
    def _fresh_instance(self) -> LabManager:
        """The lesson's instance with none of the previous program's containers left."""
        if self.manager is None:
            self.manager = LabManager(self.checker.client, self.checker.topology,
                                      Instance.throwaway("check", self.checker.project))
        else:
            self.manager.remove_containers(self.lesson.id)
        return self.manager

    def grade(self, index: int, on_result: Callable[[Scenario, ScenarioReport], None] | None = None) -> LessonReport:
        """Grade the index-th submission on a fresh set of the lesson's containers."""
        self.open()
        sub = self.submissions[index]
        if index in self.unreadable:
            return unreadable_report(self.lesson, sub, self.unreadable[index])
        try:
            return self._grade(sub, *self.commands[index], f"{STUDENT_DIR}/{self.prefix(index)}server/", on_result)
        except BaseException:
            self.discard()      # stopped half-way (a deadline, Ctrl-C, an engine error): nothing of it is reused
            raise
        finally:
            if len(self.submissions) == 1:
                self.discard()  # a single check removes its instance as soon as it is graded

    def _grade(self, sub: Submission, server_cmd: list[str] | None, client_cmd: list[str] | None, student_dir: str,
               on_result: Callable[[Scenario, ScenarioReport], None] | None) -> LessonReport:
        lesson = self.lesson
        overrides = {}
        if self.overlay:
            overrides = {s.role: Override(image=self.overlay) for s in lesson.services}
            if server_cmd:
                command = lesson.service("server").command or []
                overrides["server"] = Override(image=self.overlay,
                                               command=server_cmd + command[len(lesson.server_program):])
        if self.trace:
            from .trace.session import traced_overrides
            overrides = traced_overrides(lesson, overrides)
        manager = self._fresh_instance()
        try:
            # a student's server that never listens is a failed check, said in seconds, not a crash
            # probe: the health check is also run by exec, the same verdict up to an interval sooner
            manager.up(lesson, self.image_id, overrides, timeout=START_TIMEOUT if server_cmd else 90, probe=True)
            started = None
        except LabError as exc:
            if exc.exit_code == 130:
                raise           # interrupted (Ctrl-C while starting): not the program's failure
            node = nodes_of(manager, lesson).get("server")
            started = exc
            if node is not None and listens_reachably(lesson, node):
                # it listens; on a busy machine the engine's health checks are just slow: wait for them
                try:
                    manager.wait_healthy(list(manager.containers(lesson.id).values()), timeout=START_GRACE,
                                         probe=True)
                    started = None
                except LabError as late:
                    started = late
            if started is not None:
                started_as = (overrides.get("server").command if "server" in overrides
                              else lesson.service("server").command) or []
                reports = [start_failure(lesson, started.message, node, lesson.ports.get("server", 0),
                                         [a.replace(student_dir, "") for a in started_as])]
        if started is None:
            run = lesson_run(lesson, nodes_of(manager, lesson), server_cmd, client_cmd)
            scenarios = select(for_lesson(lesson.id), sub.server is not None, sub.client is not None)
            if sub.only is not None:
                scenarios = [s for s in scenarios if s.name in sub.only]
            reports = (self.checker._traced(self.builder, manager, lesson, scenarios, server_cmd, client_cmd,
                                            on_result)
                       if self.trace else run_scenarios(run, scenarios, on_result))
        return LessonReport(lesson.id, str(sub.server or "reference"), str(sub.client or "reference"), reports)
