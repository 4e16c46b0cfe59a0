"""Classroom: lessons across real lab machines over SSH (fabric), and grading a whole room.

Lab machines need Python >= 3.11 and SSH — not Docker. The lab's reference code is uploaded to
``~/.socketlab/lab`` on each machine; a lesson's server runs on one machine and its scenarios'
client side on another, through the same ``scenario.Node`` interface containers use, so the
scenarios and ``check`` are the very same code as in containers.

Host keys are checked against a known_hosts file (RejectPolicy). A teacher who has not collected
the keys yet may say ``--trust-new-hosts``: new keys are then recorded in that file (trust on first
use), and a *changed* key is still refused.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shlex
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from fabric import Config, Connection, ThreadingGroup
from fabric.exceptions import GroupException
from invoke.exceptions import CommandTimedOut

from .errors import LabError
from .runner import LessonReport, ScenarioReport, run_scenarios, select
from .scenario import LessonRun, RunResult, ShellNode, wait_listening
from .scenarios import for_lesson
from .topology import ROOT, Lesson, program_part

REMOTE_DIR = ".socketlab/lab"
CONNECT_TIMEOUT = 8


@dataclass(frozen=True)
class Machine:
    name: str
    host: str
    user: str
    key: str | None = None
    port: int = 22


def read_hosts(path: Path) -> list[Machine]:
    """``name address[:port] user [key]`` per line; ``#`` starts a comment."""
    if not path.is_file():
        raise LabError(f"hosts file {path} does not exist", "write one line per machine: name address user key")
    machines = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 3:
            raise LabError(f"{path}:{number}: expected `name address user [key]`, got {line.strip()!r}",
                           "e.g.  pc01  10.1.2.101  student  ~/.ssh/socketlab_ed25519")
        host, _, port = fields[1].partition(":")
        key = os.path.expanduser(fields[3]) if len(fields) > 3 else None
        machines.append(Machine(fields[0], host, fields[2], key, int(port or 22)))
    names = [m.name for m in machines]
    if len(set(names)) != len(names):
        raise LabError(f"{path}: machine names repeat", "give every machine its own name")
    return machines


def connect(machine: Machine, known_hosts: Path, trust_new: bool = False) -> Connection:
    config = Config(ssh_config=paramiko.SSHConfig(), overrides={"run": {"in_stream": False}})
    kwargs = {"look_for_keys": False, "allow_agent": False, "banner_timeout": CONNECT_TIMEOUT,
              "auth_timeout": CONNECT_TIMEOUT}
    if machine.key:
        kwargs["key_filename"] = machine.key
    conn = Connection(machine.host, user=machine.user, port=machine.port, config=config,
                      connect_timeout=CONNECT_TIMEOUT, connect_kwargs=kwargs)
    # fabric installs AutoAddPolicy (accept any key, remember none); replace it before connecting.
    if known_hosts.is_file():
        conn.client.load_host_keys(str(known_hosts))
    conn.client.set_missing_host_key_policy(paramiko.AutoAddPolicy() if trust_new else paramiko.RejectPolicy())
    conn.socketlab_known_hosts = known_hosts  # type: ignore[attr-defined]
    conn.socketlab_trust_new = trust_new      # type: ignore[attr-defined]
    return conn


def open_connection(conn: Connection) -> None:
    conn.open()
    if conn.socketlab_trust_new:  # type: ignore[attr-defined]
        known = conn.socketlab_known_hosts  # type: ignore[attr-defined]
        known.parent.mkdir(parents=True, exist_ok=True)
        conn.client.save_host_keys(str(known))


def explain(exc: BaseException, machine: Machine) -> str:
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return (f"host key of {machine.host} is unknown: add it with `ssh-keyscan -p {machine.port} {machine.host} "
                ">> known_hosts` or run with --trust-new-hosts")
    if isinstance(exc, paramiko.BadHostKeyException):
        return f"host key of {machine.host} CHANGED — refusing to connect (re-installed machine or an attack)"
    if isinstance(exc, paramiko.AuthenticationException):
        return f"authentication as {machine.user} failed: check the key in the hosts file"
    if isinstance(exc, (TimeoutError, OSError)) and not isinstance(exc, paramiko.SSHException):
        return f"unreachable: {type(exc).__name__}: {exc}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


class SSHNode(ShellNode):
    """``scenario.Node`` for a lab machine reached over SSH."""

    def __init__(self, name: str, conn: Connection, workdir: str) -> None:
        self.name = name
        self.conn = conn
        self.workdir = workdir

    def run(self, argv: Sequence[str], *, timeout: float = 30) -> RunResult:
        # the same environment as in the containers: lesson packages importable, output unbuffered
        workdir = shlex.quote(self.workdir)
        command = f"cd {workdir} && export PYTHONPATH={workdir} PYTHONUNBUFFERED=1 && {shlex.join(argv)}"
        try:
            r = self.conn.run(command, hide=True, warn=True, timeout=timeout, in_stream=False)
        except CommandTimedOut as exc:
            return RunResult(124, exc.result.stdout, exc.result.stderr + f"\n(timed out after {timeout} s)")
        return RunResult(r.exited, r.stdout, r.stderr)

    def expand(self, path: str) -> str:
        """``~/x`` on this machine (commands are quoted, so the remote shell would not expand it)."""
        home = self.workdir.rsplit("/.socketlab/", 1)[0]
        return home + path[1:] if path == "~" or path.startswith("~/") else path

    def read_file(self, path: str) -> bytes:
        buf = io.BytesIO()
        self.conn.get(path, buf)
        return buf.getvalue()


def services_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(ROOT / "services", arcname="lab",
                filter=lambda info: None if "__pycache__" in info.name else info)
    return buf.getvalue()


def prepare(conn: Connection, payload: bytes) -> str:
    """Upload the lab's reference code; return the absolute remote directory."""
    home = conn.run("echo $HOME", hide=True, in_stream=False, timeout=20).stdout.strip()
    base = f"{home}/.socketlab"
    conn.run(f"rm -rf {base}/lab && mkdir -p {base}", hide=True, in_stream=False, timeout=20)
    conn.put(io.BytesIO(payload), remote=f"{base}/lab.tar.gz")
    conn.run(f"cd {base} && tar -xzf lab.tar.gz && rm lab.tar.gz", hide=True, in_stream=False, timeout=30)
    return f"{base}/lab"


def remote_command(lesson: Lesson, role: str, workdir: str, program: list[str] | None = None) -> list[str]:
    """The compose command of a service, for a lab machine: its own program, paths under workdir."""
    spec = lesson.service(role)
    command = list(spec.command or [])
    if program:
        command = program + command[len(program_part(command)):]
    tmpfs = spec.engine_kwargs().get("tmpfs", {})
    return [f"{workdir}/../state{a}" if a in tmpfs else a for a in command]


@contextmanager
def lesson_on_machines(lesson: Lesson, server: SSHNode, client: SSHNode, server_address: str,
                       server_program: list[str] | None = None, client_program: list[str] | None = None,
                       ) -> Iterator[LessonRun]:
    """Start the lesson's server on one machine; yield a LessonRun whose client is another."""
    name = f"socketlab-{lesson.id}-server"
    command = remote_command(lesson, "server", server.workdir, server_program)
    for path in command:
        if "/../state/" in path:
            server.run(["mkdir", "-p", path], timeout=10)
    server.spawn(name, command)
    try:
        proto = lesson.protocols.get("server", "tcp")
        if not wait_listening(server, lesson.ports["server"], proto, timeout=15):
            log = server.run(["tail", "-n", "8", f"/tmp/{name}.log"]).stdout
            raise LabError(f"the {lesson.id} server did not start listening on {server.name}:\n{log}",
                           f"run it by hand there: {shlex.join(command)}")
        yield LessonRun(lesson=lesson.id, nodes={"server": server, "client": client}, server_host=server_address,
                        ports=dict(lesson.ports), server_cmd=server_program or lesson.server_program,
                        client_cmd=client_program or lesson.reference_client, workdir=client.workdir,
                        server_args=command[len(program_part(command)):])
    finally:
        server.stop(name)


# -- a whole room -------------------------------------------------------------------------------
@dataclass
class MachineResult:
    machine: str
    reachable: bool
    passed: bool
    error: str = ""
    client_machine: str = ""
    scenarios: list[ScenarioReport] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RoomReport:
    lesson: str
    machines: list[MachineResult]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.machines)

    def as_dict(self) -> dict:
        return {"lesson": self.lesson, "passed": self.passed, "seconds": round(self.seconds, 1),
                "machines": [{**{k: v for k, v in m.__dict__.items() if k != "scenarios"},
                              "scenarios": [s.__dict__ for s in m.scenarios]} for m in self.machines]}

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path, csv_path = out_dir / f"room-{self.lesson}.json", out_dir / f"room-{self.lesson}.csv"
        json_path.write_text(json.dumps(self.as_dict(), indent=2, ensure_ascii=False))
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["machine", "reachable", "scenario", "passed", "summary"])
            for m in self.machines:
                if not m.scenarios:
                    w.writerow([m.machine, m.reachable, "-", False, m.error])
                for s in m.scenarios:
                    w.writerow([m.machine, m.reachable, s.scenario, s.passed, s.summary])
        return json_path, csv_path


def grade_room(lesson: Lesson, machines: list[Machine], student_server: str | None, student_client: str | None,
               known_hosts: Path, trust_new: bool = False, machine_timeout: float = 300,
               say: Callable[[str], None] = lambda _: None) -> RoomReport:
    """``check <lesson>`` on every machine in parallel, each against that machine's student files.

    Each machine's server is probed from the next reachable machine in the list (across the
    network, as in the containers); a room of one machine probes itself.
    """
    started = time.monotonic()
    conns = {m.name: connect(m, known_hosts, trust_new) for m in machines}
    by_name = {m.name: m for m in machines}
    reachable, errors = preflight(conns, by_name)
    say(f"reachable: {', '.join(reachable) or 'none'}" + (f"; not: {', '.join(errors)}" if errors else ""))
    payload = services_tar()
    nodes: dict[str, SSHNode] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(reachable))) as pool:
        for name, result in zip(reachable, pool.map(lambda n: _prepare_node(n, conns[n], payload), reachable)):
            if isinstance(result, SSHNode):
                nodes[name] = result
            else:
                errors[name] = result
    ready = [n for n in reachable if n in nodes]
    results = [MachineResult(n, False, False, errors[n]) for n in errors if n not in ready]

    def grade(name: str) -> MachineResult:
        t0 = time.monotonic()
        client_name = ready[(ready.index(name) + 1) % len(ready)]
        server_node, client_node = nodes[name], nodes[client_name]
        try:
            report = check_on_machines(lesson, server_node, client_node, by_name[name].host,
                                       student_server, student_client)
            return MachineResult(name, True, report.passed, "", client_name, report.scenarios,
                                 round(time.monotonic() - t0, 1))
        except Exception as exc:   # a broken machine is reported, never stops the room
            return MachineResult(name, True, False, explain(exc, by_name[name]), client_name, [],
                                 round(time.monotonic() - t0, 1))

    with ThreadPoolExecutor(max_workers=max(1, len(ready))) as pool:
        futures = {name: pool.submit(grade, name) for name in ready}
        for name, future in futures.items():
            try:
                results.append(future.result(timeout=machine_timeout))
            except TimeoutError:
                results.append(MachineResult(name, True, False, f"no result within {machine_timeout:.0f} s"))
            say(f"  {name}: {'PASS' if results[-1].passed else 'FAIL'}")
    for conn in conns.values():
        conn.close()
    order = [m.name for m in machines]
    results.sort(key=lambda r: order.index(r.machine))
    return RoomReport(lesson.id, results, time.monotonic() - started)


def preflight(conns: dict[str, Connection], machines: dict[str, Machine]) -> tuple[list[str], dict[str, str]]:
    """Which machines answer, in parallel (fabric ThreadingGroup), each bounded by timeouts."""
    errors: dict[str, str] = {}
    for name, conn in conns.items():
        try:
            open_connection(conn)
        except Exception as exc:
            errors[name] = explain(exc, machines[name])
    alive = [n for n in conns if n not in errors]
    if not alive:
        return [], errors
    group = ThreadingGroup.from_connections([conns[n] for n in alive])
    check = "python3 -c 'import sys; assert sys.version_info >= (3, 11), sys.version'"
    try:
        results = group.run(check, hide=True, warn=True, timeout=20)
    except GroupException as exc:
        results = exc.result
    names = {id(conns[n]): n for n in alive}
    for conn, result in results.items():
        name = names[id(conn)]
        if isinstance(result, BaseException):
            errors[name] = explain(result, machines[name])
        elif result.exited != 0:
            errors[name] = "needs Python >= 3.11 (python3 on that machine is older or missing)"
    return [n for n in alive if n not in errors], errors


def _prepare_node(name: str, conn: Connection, payload: bytes) -> SSHNode | str:
    try:
        return SSHNode(name, conn, prepare(conn, payload))
    except Exception as exc:
        return f"could not upload the lab: {type(exc).__name__}: {exc}"


def check_on_machines(lesson: Lesson, server: SSHNode, client: SSHNode, server_address: str,
                      student_server: str | None, student_client: str | None) -> LessonReport:
    server_program = client_program = None
    if student_server:
        path = server.expand(student_server.format(lesson=lesson.id))
        if server.run(["test", "-f", path]).exit_code != 0:
            return LessonReport(lesson.id, path, "reference", [ScenarioReport(
                "student-file", "the student's server file exists", False, f"{path} not found on {server.name}", 0)])
        server_program = ["python3", path]
    if student_client:
        path = client.expand(student_client.format(lesson=lesson.id))
        client_program = ["python3", path]
    scenarios = select(for_lesson(lesson.id), student_server is not None, student_client is not None)
    with lesson_on_machines(lesson, server, client, server_address, server_program, client_program) as run:
        reports = run_scenarios(run, scenarios)
    return LessonReport(lesson.id, student_server or "reference", student_client or "reference", reports)
