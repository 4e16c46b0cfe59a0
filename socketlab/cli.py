"""`python lab.py <command>`: argument parsing and printing only; the work happens below.

Each command is a small function taking the parsed arguments and returning an exit code.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from . import __version__
from .errors import LabError
from .output import emit_json, say, table
from .topology import ROOT, Topology, load

NODE_HEADERS = ("NODE", "ROLE", "STATE", "IP", "PORTS", "DNS NAME")


def _instance(topology: Topology | None = None):
    from .deploy import Instance
    project = os.environ.get("SOCKETLAB_PROJECT", "socketlab")
    subnet = os.environ.get("SOCKETLAB_SUBNET") or ("compose" if project == "socketlab" else None)
    workspace = None
    if topology is not None:   # the student's own folders: ./work/<lesson>/ unless SOCKETLAB_WORK says
        workspace = Path(os.environ.get("SOCKETLAB_WORK") or topology.workspace.host_root()).resolve()
    return Instance(project=project, subnet=subnet, workspace=workspace)


def _manager(topology: Topology):
    from .deploy import LabManager
    from .engine import connect
    return LabManager(connect(), topology, _instance(topology), say)


def _node_rows(rows) -> list[tuple]:
    return [(r.node, r.role, r.state, r.ip, r.ports, ",".join(r.aliases[:1])) for r in rows]


# -- commands ---------------------------------------------------------------------------------
def cmd_list(args, topology: Topology) -> int:
    states: dict[str, str] = {}
    try:
        for row in _manager(topology).status():
            states[row.lesson] = "up" if row.state.startswith("running") else row.state
    except LabError:
        pass   # listing lessons must work without an engine
    items = [{"id": lesson.id, "title": lesson.title, "seed": lesson.seed, "state": states.get(lesson.id, "down")}
             for lesson in topology.lessons.values()]
    if args.json:
        emit_json(items)
    else:
        print(table(("LESSON", "SEED", "STATE", "TITLE"), [(i["id"], "§" + i["seed"], i["state"], i["title"])
                                                             for i in items]))
    return 0


def cmd_build(args, topology: Topology) -> int:
    from .engine import connect
    from .images import ImageBuilder
    ImageBuilder(connect(), say).ensure_all()
    say("images are up to date")
    return 0


def cmd_up(args, topology: Topology) -> int:
    from .images import ImageBuilder
    lesson = topology.lesson(args.lesson)
    manager = _manager(topology)
    image_id = ImageBuilder(manager.client, say).ensure_all()
    say(f"starting lesson {lesson.id}: {lesson.title}")
    rows = manager.up(lesson, image_id)
    print(table(NODE_HEADERS, _node_rows(rows)))
    print(f"\nguide: {lesson.guide.relative_to(ROOT)}  (seed §{lesson.seed})")
    workspace = manager.instance.workspace
    if workspace is not None:
        print(f"your files: {_shown(workspace / lesson.id)}/  is {topology.workspace.container} in the "
              f"{' and '.join(topology.workspace.roles)} containers (lab.py down never deletes it)")
    if manager.gateway_open:
        say(f"note: the host's own services are reachable from the lesson containers ({manager.gateway_open}); "
            "docs/security.md has the one firewall rule that closes this")
    print("try next:")
    steps = try_next(lesson, _graded_roles(lesson.id))
    width = max(len(cmd) for cmd, _ in steps)
    for cmd, why in steps:
        print(f"  {cmd.ljust(width)}  # {why}")
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _graded_roles(lesson_id: str) -> set[str]:
    """The programs a lesson's checks grade (server, client), from its scenarios' roles."""
    from .scenarios import for_lesson
    return {role for sc in for_lesson(lesson_id) for role in sc.roles}


def try_next(lesson, graded: set[str]) -> list[tuple[str, str]]:
    """The commands that exist for this lesson, each with why a student would run it."""
    server = lesson.service("server").name
    has_client = any(s.role == "client" for s in lesson.services)
    steps = [(f"python lab.py demo {lesson.id}", "watch the lesson's scenarios across the containers"),
             (f"python lab.py client {lesson.id}", f"talk to {server} yourself"),
             (f"python lab.py shell {lesson.id} {'client' if has_client else 'server'}", "a shell in that container"),
             (f"python lab.py logs {lesson.id} -f", "what the server prints")]
    for role in ("server", "client"):
        if role in graded:
            steps.append((f"python lab.py check {lesson.id} --{role} my_{role}.py", f"grade your own {role}"))
    steps.append((f"python lab.py down {lesson.id}", "remove the containers (your files stay)"))
    return steps


def cmd_down(args, topology: Topology) -> int:
    if not args.all and not args.lesson:
        raise LabError("say which lesson to take down", "python lab.py down <lesson>, or python lab.py down --all", 2)
    if args.lesson:
        topology.lesson(args.lesson)
    removed = _manager(topology).down(None if args.all else args.lesson)
    say(f"removed {removed} container(s)" + ("" if removed else " (nothing was running)"))
    return 0


def cmd_status(args, topology: Topology) -> int:
    if args.lesson:
        topology.lesson(args.lesson)
    rows = _manager(topology).status(args.lesson, connections=True)
    if args.json:
        emit_json([r.as_dict() for r in rows])
    elif rows:
        print(table(NODE_HEADERS, _node_rows(rows)))
        for r in rows:
            if r.role == "server" and r.ports.endswith("/tcp") and r.state.startswith("running"):
                print(f"\nconnections to {r.node} port {r.ports}:" + ("" if r.connections else " none"))
                if r.connections:
                    print(table(("  PEER", "NODE", "STATE"),
                                [("  " + c["peer"], c["node"] or "-", c["state"]) for c in r.connections]))
    else:
        print("no lesson is running" + (f" for {args.lesson}" if args.lesson else "") +
              "; start one with: python lab.py up sticky")
    return 0


def _running(manager, topology: Topology, lesson_id: str, start: bool = True):
    """The lesson's containers, started first (with a note) when they are not running."""
    from .images import ImageBuilder
    lesson = topology.lesson(lesson_id)
    containers = manager.containers(lesson.id)
    if start:
        if not containers:
            say(f"lesson {lesson.id} is not up; starting it first")
        # `up` is idempotent and cheap when nothing changed; after a code change it rebuilds the
        # thin layer and recreates the containers, so a demo never runs yesterday's code.
        manager.up(lesson, ImageBuilder(manager.client, say).ensure_all())
        containers = manager.containers(lesson.id)
    if not containers:
        raise LabError(f"lesson {lesson.id} is not running", f"python lab.py up {lesson.id}")
    return lesson, containers


def cmd_demo(args, topology: Topology) -> int:
    from .runner import lesson_run, nodes_of, run_scenarios
    from .scenarios import for_lesson
    manager = _manager(topology)
    lesson, _ = _running(manager, topology, args.lesson)
    run = lesson_run(lesson, nodes_of(manager, lesson))
    print(f"demo: {lesson.title} (seed §{lesson.seed})\n")

    def narrate(sc, rep) -> None:
        print(f"── {sc.name}: {sc.shows}")
        for line in rep.transcript:
            print(f"   {line}")
        print(f"   {'✔ shown' if rep.passed else '✘ NOT shown'}: {rep.summary}\n", flush=True)

    scenarios = for_lesson(lesson.id)
    if args.only:
        scenarios = [s for s in scenarios if s.name in args.only]
    reports = run_scenarios(run, scenarios, narrate)
    shown = sum(r.passed for r in reports)
    print(f"{shown}/{len(reports)} phenomena shown")
    return 0 if reports and shown == len(reports) else 1


def cmd_check(args, topology: Topology) -> int:
    servers, clients = args.server or [], args.client or []
    topology.lesson(args.lesson)
    if len(servers) > 1 and clients or len(clients) > 1 and servers:
        raise LabError("a batch grades one role: several --server programs or several --client programs, not both",
                       f"python lab.py check {args.lesson} --server a.py b.py, then --client x.py y.py", 2)
    if len(servers) > 1 or len(clients) > 1:
        return _check_batch(args, topology, "server" if len(servers) > 1 else "client", servers or clients)
    return _check_one(args, topology, servers[0] if servers else None, clients[0] if clients else None)


def _check_one(args, topology: Topology, server_arg: str | None, client_arg: str | None) -> int:
    from .deploy import DeadlineExceeded, deadline, remove_throwaways
    from .engine import connect
    from .runner import Checker
    server = Path(server_arg).resolve() if server_arg else None
    client = Path(client_arg).resolve() if client_arg else None
    client_ = connect()
    finished = []   # scenarios that ended before a deadline cut the check short

    def progress(sc, rep) -> None:
        finished.append(rep)
        if not args.json:
            say(f"  {rep.verdict.upper():<6}  {sc.name}  ({rep.seconds:.1f} s)")

    try:
        with deadline(args.timeout):
            report = Checker(client_, topology, say, _instance().project).check(args.lesson, server, client,
                                                                                progress, entry=args.entry,
                                                                                trace=args.trace)
    except DeadlineExceeded as exc:
        report = _cut_short(args.lesson, server_arg, client_arg, finished, exc, remove_throwaways(client_))
    if args.json:
        emit_json(report.as_dict())
    else:
        _print_report(report)
    return 0 if report.passed else 1


def _print_report(report) -> None:
    print(table(("SCENARIO", "RESULT", "WHAT IT CHECKS"),
                [(s.scenario, s.verdict, s.shows) for s in report.scenarios]))
    print("\n".join(report.lines()), flush=True)


def _check_batch(args, topology: Topology, role: str, paths: list[str]) -> int:
    """`check LESSON --server A.py B.py ...`: every program on one lesson instance, reset in between
    (socketlab/runner.py, Batch); each report as a single check prints it, then a summary table."""
    import time

    from .deploy import DeadlineExceeded, deadline, remove_throwaways
    from .engine import connect
    from .runner import Checker, LessonReport, ScenarioReport, Submission
    client_ = connect()
    submissions = [Submission(**{role: Path(p).resolve()}, entry=args.entry) for p in paths]
    checker = Checker(client_, topology, say, _instance().project)
    reports: list[LessonReport] = []
    started = time.monotonic()
    batch = checker.batch(args.lesson, submissions, trace=args.trace)
    finished: list = []    # the current program's scenarios that ended before a deadline cut it short

    def progress(sc, rep) -> None:
        finished.append(rep)
        if not args.json:
            say(f"  {rep.verdict.upper():<6}  {sc.name}  ({rep.seconds:.1f} s)")

    try:
        for i, path in enumerate(paths):
            finished.clear()
            if not args.json:
                print(f"{'' if i == 0 else chr(10)}── {i + 1}/{len(paths)}  {path}", flush=True)
            try:
                # the wall-clock limit is each program's own; the first one's includes building the images
                with deadline(args.timeout):
                    batch.open()
                    report = batch.grade(i, progress)
            except DeadlineExceeded as exc:
                shown = str(getattr(submissions[i], role))       # absolute, like the other reports of the batch
                report = _cut_short(args.lesson, *((shown, None) if role == "server" else (None, shown)), finished,
                                    exc, remove_throwaways(client_))
                batch.discard()
            except LabError as exc:      # the lab failed, not the program: say so for this one and go on
                if exc.exit_code == 130:
                    raise
                say(f"error: {exc.message}" + (f"\n  fix: {exc.fix}" if exc.fix else ""))
                report = LessonReport(args.lesson, *((str(submissions[i].server), "reference") if role == "server"
                                                     else ("reference", str(submissions[i].client))),
                                      [*finished, ScenarioReport("check", "the lab could grade this program", False,
                                                                 f"the check itself failed: {exc.message}", 0.0,
                                                                 fix=exc.fix)])
            reports.append(report)
            if not args.json:
                _print_report(report)
    finally:
        batch.close()
    if args.json:
        emit_json([r.as_dict() for r in reports])
    else:
        print(f"\n{args.lesson}: {len(reports)} {role} programs graded on one lesson instance "
              f"({time.monotonic() - started:.1f} s)")
        print(table(("PROGRAM", "RESULT", "GRADED", "FAILED SCENARIOS"), batch_rows(paths, reports)))
        failed = sum(not r.passed for r in reports)
        print(f"{len(reports) - failed} passed, {failed} failed")
    return 0 if all(r.passed for r in reports) else 1


def batch_rows(paths: list[str], reports) -> list[tuple[str, str, str, str]]:
    """The summary table of a batch: program, PASSED/FAILED, graded scenarios passed/total, what failed."""
    rows = []
    for path, report in zip(paths, reports):
        graded = report.required
        failing = [s.scenario for s in graded if not s.passed]
        rows.append((path, "PASSED" if report.passed else "FAILED", f"{sum(s.passed for s in graded)}/{len(graded)}",
                     ", ".join(failing) or "-"))
    return rows


def _cut_short(lesson: str, server: str | None, client: str | None, finished: list, exc, removed: int):
    """The report of a check its wall-clock limit stopped: what finished, and why the rest did not."""
    from .runner import LessonReport, ScenarioReport
    say(f"stopped: {exc}; its containers were removed" + (f" ({removed} left over, now gone)" if removed else ""))
    stop = ScenarioReport("deadline", "the whole check finishes within its wall-clock limit", False, str(exc),
                          float(exc.seconds), fix="a program that never answers or never ends: make every recv and "
                          "loop finish (timeouts, EOF), or raise the limit with --timeout")
    return LessonReport(lesson, server or "reference", client or "reference", [*finished, stop])


def _interactive(container, argv: list[str], workdir: str | None) -> int:
    """Run argv in the container for the person at this terminal; it ends when the terminal goes.

    With a terminal: ``docker exec -i`` (not ``-t``: a tty exec outlives its client) under the
    supervisor of socketlab/hangup.py, this terminal in raw mode so that keys (Ctrl-C included)
    reach the program's own terminal in the container. Piped input: a plain ``docker exec -i``.
    """
    if not shutil.which("docker"):
        raise LabError("the interactive commands need the docker command-line tool",
                       "install it (apt-get install docker.io, or Docker Desktop)")
    exec_ = ["docker", "exec", "-i", *(["-w", workdir] if workdir else []), container.name]
    if not sys.stdin.isatty():   # piped input (a script, a test): no terminal; stdin's end ends it
        return _call([*exec_, *argv])
    from . import hangup
    size = shutil.get_terminal_size((0, 0))
    supervisor = ["python3", "-c", Path(hangup.__file__).read_text(encoding="utf-8"), str(size.lines),
                  str(size.columns)]
    import termios
    import tty
    saved = termios.tcgetattr(sys.stdin.fileno())
    tty.setraw(sys.stdin.fileno())
    try:
        return _call([*exec_, *supervisor, *argv])
    finally:
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


def _call(argv: list[str]) -> int:
    """subprocess.call that ends the child too when lab.py is hung up or terminated."""
    import signal
    child = subprocess.Popen(argv)

    def end(signum, _frame) -> None:
        child.terminate()          # docker exec goes, the container's stdin closes, the program ends
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, end) for sig in (signal.SIGHUP, signal.SIGTERM) if hasattr(signal, "SIGHUP")}
    try:
        code = child.wait()
        if code < 0:               # docker exec itself was killed: the session (and the program) ended
            say(f"\r\nthe session ended: docker exec was stopped by signal {-code}")
            return 128 - code
        return code
    except KeyboardInterrupt:      # piped mode: Ctrl-C ends the session quietly
        child.terminate()
        child.wait()
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _workdir(manager, topology: Topology, spec) -> str | None:
    """Where an interactive session starts: the workspace, when this node has it mounted."""
    return topology.workspace.container if manager.workspace(spec) else None


def _from_lab(argv: list[str], spec) -> list[str]:
    """A lesson program path (``sticky/client.py``) made absolute, so it runs from any workdir."""
    base = spec.config.get("working_dir", "/lab")
    return [f"{base}/{a}" if i == 1 and a.endswith(".py") and not a.startswith("/") else a
            for i, a in enumerate(argv)]


def cmd_client(args, topology: Topology) -> int:
    manager = _manager(topology)
    lesson, containers = _running(manager, topology, args.lesson)
    server = lesson.service("server").name
    role = "client" if "client" in containers else "server"
    spec = lesson.service(role)
    command = [*_from_lab(lesson.reference_client, spec), "--host", server,
               "--port", str(lesson.ports.get("server", 0)), *args.extra]
    node = containers[role]
    workdir = _workdir(manager, topology, spec)
    say(f"{node.name}:{workdir or spec.config.get('working_dir', '/')}$ {' '.join(command)}")
    return _interactive(node, command, workdir)


def cmd_shell(args, topology: Topology) -> int:
    manager = _manager(topology)
    lesson, containers = _running(manager, topology, args.lesson)
    if args.role not in containers:
        raise LabError(f"lesson {lesson.id} has no {args.role!r} node", f"roles: {', '.join(containers)}")
    return _interactive(containers[args.role], ["bash"], _workdir(manager, topology, lesson.service(args.role)))


def cmd_logs(args, topology: Topology) -> int:
    manager = _manager(topology)
    lesson, containers = _running(manager, topology, args.lesson, start=False)
    if args.role not in containers:
        raise LabError(f"lesson {lesson.id} has no {args.role!r} node", f"roles: {', '.join(containers)}")
    container = containers[args.role]
    if (lesson.service(args.role).command or [])[:1] == ["sleep"]:
        # the client node runs no program of its own: it waits for the student's commands
        print(f"{container.name} runs no program of its own (it waits for you), so it has no log.\n"
              f"  the client's output is in your terminal: python lab.py client {lesson.id}\n"
              f"  what the server prints:             python lab.py logs {lesson.id} server")
        return 0
    try:
        for chunk in container.logs(stream=True, follow=args.follow, tail=args.tail):
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_doctor(args, topology: Topology) -> int:
    from .doctor import run_doctor
    checks = run_doctor(topology)
    if args.json:
        emit_json([c.__dict__ for c in checks])
    else:
        print(table(("CHECK", "RESULT", "DETAIL"), [(c.name, "ok" if c.ok else c.severity, c.detail) for c in checks]))
        for c in checks:
            if not c.ok and c.fix:
                print(f"  {c.name}: {c.fix}")
    return 0 if all(c.ok or c.severity != "FAIL" for c in checks) else 1


# The grading file (about 60 programs in one batch per lesson and role, 3 batches side by side)
# is the suite's longest: it is collected first (tests/conftest.py), so it starts at once on one
# worker, and every other file goes to whichever worker is free (a file stays on one worker: its
# module fixtures, such as a guide's lab, are set up once).
TEST_WORKERS = 2


def default_test_args() -> list[str]:
    workers = os.environ.get("SOCKETLAB_TEST_WORKERS", str(TEST_WORKERS))
    return ["-n", workers, "--dist", "loadfile", "--durations=25", "tests"]   # where the time goes, in every log


def cmd_test(args, topology: Topology) -> int:
    env = dict(os.environ, TESTCONTAINERS_RYUK_DISABLED="true")
    say("building images the suite shares (once)")
    cmd_build(args, topology)
    argv = [sys.executable, "-m", "pytest", *(args.pytest_args or default_test_args())]
    say("$ " + " ".join(argv[2:]))
    return subprocess.call(argv, cwd=ROOT, env=env)


def cmd_bundle(args, topology: Topology) -> int:
    from .engine import connect
    from .images import BASE_IMAGE, ROOTFS_IMAGE, ImageBuilder, bundle
    client = connect()
    ImageBuilder(client, say).ensure_all()
    bundle(client, Path(args.output), [ROOTFS_IMAGE, BASE_IMAGE, *sorted(topology.images)], say)
    return 0


def cmd_load(args, topology: Topology) -> int:
    from .engine import connect
    from .images import load as load_images
    load_images(connect(), Path(args.file), say)
    return 0


def cmd_clean(args, topology: Topology) -> int:
    """Remove every SocketLab object of every project (tests, checks, the lab itself)."""
    from .engine import LABEL_PROJECT, connect
    client = connect()
    n = 0
    for c in client.containers.list(all=True, filters={"label": LABEL_PROJECT}):
        c.remove(force=True, v=True)
        n += 1
    for net in client.networks.list(filters={"label": LABEL_PROJECT}):
        net.remove()
    from .deploy import GatewayGuard
    GatewayGuard().sweep()    # the host firewall rules of the networks just removed
    say(f"removed {n} container(s) and every SocketLab network")
    return 0


def _room_machines(args):
    from .classroom import read_hosts
    machines = read_hosts(Path(args.hosts))
    if not machines:
        raise LabError(f"{args.hosts} lists no machines", "one line per machine: name address user key")
    return machines


def _known_hosts(args) -> Path:
    return Path(os.path.expanduser(args.known_hosts))


def cmd_room_check(args, topology: Topology) -> int:
    from .classroom import grade_room
    lesson = topology.lesson(args.lesson)
    machines = _room_machines(args)
    say(f"grading {lesson.id} on {len(machines)} machine(s) in parallel")
    report = grade_room(lesson, machines, args.server, args.client, _known_hosts(args), args.trust_new_hosts,
                        args.timeout, say)
    json_path, csv_path = report.write(Path(args.out))
    if args.json:
        emit_json(report.as_dict())
    else:
        rows = []
        for m in report.machines:
            passed = sum(s.passed for s in m.scenarios)
            detail = m.error or ", ".join(s.scenario for s in m.scenarios if not s.passed) or "all scenarios pass"
            rows.append((m.machine, "yes" if m.reachable else "NO", "pass" if m.passed else "FAIL",
                         f"{passed}/{len(m.scenarios)}", m.client_machine or "-", detail[:70]))
        print(table(("MACHINE", "REACHABLE", "RESULT", "SCENARIOS", "PROBED FROM", "DETAIL"), rows))
        print(f"\n{sum(m.passed for m in report.machines)}/{len(report.machines)} machines pass "
              f"({report.seconds:.1f} s); reports: {json_path}, {csv_path}")
    return 0 if report.passed else 1


def cmd_room_demo(args, topology: Topology) -> int:
    from .classroom import SSHNode, check_on_machines, connect, explain, open_connection, prepare, services_tar
    lesson = topology.lesson(args.lesson)
    machines = {m.name: m for m in _room_machines(args)}
    for name in (args.server_machine, args.client_machine):
        if name not in machines:
            raise LabError(f"no machine named {name!r} in {args.hosts}", f"machines: {', '.join(machines)}")
    payload = services_tar()
    nodes = {}
    for name in {args.server_machine, args.client_machine}:
        conn = connect(machines[name], _known_hosts(args), args.trust_new_hosts)
        try:
            open_connection(conn)
        except Exception as exc:
            raise LabError(f"{name}: {explain(exc, machines[name])}",
                           "fix that machine, or pick another with --server-machine/--client-machine") from None
        nodes[name] = SSHNode(name, conn, prepare(conn, payload))
    server, client = nodes[args.server_machine], nodes[args.client_machine]
    print(f"{lesson.id}: server on {server.name} ({machines[server.name].host}), client on {client.name}\n")
    report = check_on_machines(lesson, server, client, machines[server.name].host, None, None)
    for s in report.scenarios:
        print(f"── {s.scenario}: {s.shows}")
        for line in s.transcript:
            print(f"   {line}")
        print(f"   {'✔ shown' if s.passed else '✘ NOT shown'}: {s.summary}\n")
    print(f"{sum(s.passed for s in report.scenarios)}/{len(report.scenarios)} phenomena shown")
    return 0 if report.passed else 1


# -- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python lab.py", description="SocketLab: socket programming across containers")
    p.add_argument("--version", action="version", version=f"socketlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="command", required=True)

    def add(name: str, fn, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    add("list", cmd_list, "lessons with id, title, seed section and state").add_argument("--json", action="store_true")
    add("build", cmd_build, "build the images that are missing or out of date")
    add("up", cmd_up, "start a lesson's containers and show what to do next").add_argument("lesson")
    sp = add("down", cmd_down, "remove a lesson's containers (and the network once unused)")
    sp.add_argument("lesson", nargs="?")
    sp.add_argument("--all", action="store_true", help="every lesson")
    sp = add("status", cmd_status, "the node table: hosts, roles, IPs, ports")
    sp.add_argument("lesson", nargs="?")
    sp.add_argument("--json", action="store_true")
    sp = add("demo", cmd_demo, "run the lesson's scripted scenario across containers, annotated")
    sp.add_argument("lesson")
    sp.add_argument("--only", nargs="*", help="run only these scenarios")
    sp = add("check", cmd_check, "grade the reference or your own server/client against the lesson's scenarios")
    sp.description = (
        "Grade the reference or your own server/client against the lesson's scenarios. Several programs "
        "(--server A.py B.py C.py, or --server given again) are a batch: all are graded on one lesson "
        "instance, every container created afresh for each program, so no program's result depends on "
        "the one before; each report is printed as a single check prints it, then a summary table "
        "(program, PASSED/FAILED, graded scenarios passed/total, the failing scenarios). A program that "
        "cannot be read or started is reported for that program and the batch goes on.")
    sp.epilog = ("exit status: 0 every program passed; 1 a program (any program of a batch) failed or ran out "
                 "of its --timeout; 2 wrong arguments; 130 interrupted (Ctrl-C). "
                 "--json: one program gives one object (lesson, server, client, passed, contract_version, "
                 "scenarios); a batch gives a list of those objects, in the order the programs were given.")
    sp.add_argument("lesson")
    sp.add_argument("--server", metavar="PATH", nargs="+", action="extend",
                    help="your server program (replaces the reference server); several: a batch")
    sp.add_argument("--client", metavar="PATH", nargs="+", action="extend",
                    help="your client program (replaces the reference client); several: a batch")
    sp.add_argument("--trace", action="store_true", help="record socket calls and packets; attach the ladder "
                    "of every failing scenario to its report")
    sp.add_argument("--entry", metavar="FILE", help="when PATH is a folder: the file to run (default server.py "
                    "or client.py); in a batch, for every folder")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--timeout", type=float, default=600, metavar="SECONDS",
                    help="wall-clock limit per program (default %(default)s s): its check stops, is reported as "
                    "failed and cleaned up (a batch goes on with the next program)")
    from .trace.command import add_arguments, cmd_trace  # `trace` lives in socketlab/trace/
    add_arguments(add("trace", cmd_trace, "run a lesson's scenarios with the socket-call log and packet capture "
                      "on; print the ladder (calls and segments), write HTML and pcap"))
    sp = add("client", cmd_client, "an interactive client in the client container")
    sp.add_argument("lesson")
    sp.add_argument("extra", nargs=argparse.REMAINDER, help="extra arguments for the client")
    sp = add("shell", cmd_shell, "a shell inside one of the lesson's containers")
    sp.add_argument("lesson")
    sp.add_argument("role", nargs="?", default="client")
    sp = add("logs", cmd_logs, "what a node printed")
    sp.add_argument("lesson")
    sp.add_argument("role", nargs="?", default="server")
    sp.add_argument("-f", "--follow", action="store_true")
    sp.add_argument("--tail", type=int, default=200)
    add("doctor", cmd_doctor, "what this machine has and lacks, each with a fix").add_argument(
        "--json", action="store_true")
    add("test", cmd_test, "set up and run the test suite (arguments go to pytest)").add_argument(
        "pytest_args", nargs=argparse.REMAINDER)
    add("bundle", cmd_bundle, "write every lab image to one tar for offline machines").add_argument(
        "-o", "--output", default="socketlab-images.tar")
    add("load", cmd_load, "load the images of a bundle tar").add_argument("file")
    add("clean", cmd_clean, "remove every SocketLab container and network (all projects)")

    room = sub.add_parser("room", help="classroom: lessons across lab machines over SSH, grade a room",
                          description="lab machines listed in a hosts file: `name address[:port] user [key]`")
    room_sub = room.add_subparsers(dest="room_command", metavar="room-command", required=True)
    for name, fn, help_ in (("check", cmd_room_check, "check a lesson on every machine in parallel, one report"),
                            ("demo", cmd_room_demo,
                             "run a lesson's scenarios: server on one machine, client on another")):
        sp = room_sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        sp.add_argument("lesson")
        sp.add_argument("--hosts", required=True, help="the hosts file")
        sp.add_argument("--known-hosts", default="~/.ssh/known_hosts", help="host keys to trust (default: %(default)s)")
        sp.add_argument("--trust-new-hosts", action="store_true",
                        help="record keys of machines not yet in --known-hosts (a changed key is still refused)")
        if name == "check":
            sp.add_argument("--server", metavar="PATH", help="student server on each machine, e.g. "
                            "'~/work/{lesson}/server.py' ({lesson} is replaced)")
            sp.add_argument("--client", metavar="PATH", help="student client on each machine")
            sp.add_argument("--out", default="reports", help="directory for room-<lesson>.json/.csv")
            sp.add_argument("--timeout", type=float, default=300, help="seconds per machine")
            sp.add_argument("--json", action="store_true")
        else:
            sp.add_argument("--server-machine", required=True)
            sp.add_argument("--client-machine", required=True)
    return p


def _stopped(signum, _frame) -> None:
    """The terminal closed (SIGHUP) or we were told to stop (SIGTERM): leave through the `finally`
    blocks, so what this command started (a check's or a trace's throw-away instance) is removed.
    A second signal while that clean-up runs is ignored."""
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["test"]:
        # Everything after `test` belongs to pytest, options first included (`test -q -k classroom`);
        # argparse's REMAINDER would reject a leading option.
        args = argparse.Namespace(fn=cmd_test, pytest_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _stopped)
    try:
        return args.fn(args, load())
    except LabError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `lab.py logs udp relay | head`: the reader has what it wanted. Point stdout at /dev/null so
        # the interpreter's final flush does not raise again (the recipe in Python's signal docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
