"""Lessons loops and socketserver on loopback: the lesson code, and the scenarios run on this machine.

No Docker here: a ``LocalNode`` plays both the server and the client machine, so the very
scenario functions `lab.py check` runs in containers are exercised against the reference servers
and against the seed-style negative controls (which must fail for the reasons the lesson is about).
"""
from __future__ import annotations

import errno
import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from labnode.kernel import connection_state, read_tcp_table, sockets_on_port, wait_until
from loops.reuse import try_bind
from loops.server import reverse
from socketlab.scenario import LessonRun
from socketlab.scenarios import for_lesson
from tests.local_node import LocalNode, free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
NEGATIVE = ROOT / "tests" / "negative"


@contextmanager
def lesson_run(lesson: str, server_cmd: list[str]) -> Iterator[LessonRun]:
    """The lesson's main server on a free port, plus a LessonRun whose two nodes are this machine."""
    port = free_port()
    server = subprocess.Popen([*server_cmd, "--port", str(port)], cwd=SERVICES, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(SERVICES)})
    try:
        listening = wait_until(lambda: any(s.state == "LISTEN" for s in sockets_on_port(port)), 10)
        assert listening, "server did not start"
        node = LocalNode("local")
        yield LessonRun(lesson=lesson, nodes={"server": node, "client": node}, server_host="127.0.0.1",
                        ports={"server": port}, server_cmd=server_cmd, client_cmd=[],
                        python=sys.executable, workdir=str(SERVICES))
    finally:
        server.terminate()
        server.wait(10)


def run_all(run: LessonRun) -> dict:
    return {sc.name: sc(run) for sc in for_lesson(run.lesson)}


# --- lesson code ---------------------------------------------------------------------------------

def test_reverse_keeps_the_line_ending():
    assert reverse("abc") == "cba"
    assert reverse("abc\n") == "cba\n"
    assert reverse("") == ""


def test_tcp_table_shows_listener_and_connection_states():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert [s.state for s in sockets_on_port(port)] == ["LISTEN"]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            conn, _ = listener.accept()
            with conn:
                assert connection_state(client.getsockname(), client.getpeername()) == "ESTABLISHED"
                assert any(s.local_ip == "127.0.0.1" and s.state == "LISTEN" for s in read_tcp_table())


def test_time_wait_blocks_rebind_unless_both_sides_reuse():
    """The heart of lesson loops, measured on loopback: server closes first -> TIME_WAIT -> EADDRINUSE."""
    results = {}
    for old_reuse, new_reuse in [(False, True), (True, True)]:
        port = free_port()
        listener = socket.socket()
        if old_reuse:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn, _ = listener.accept()
        listener.close()
        conn.close()                    # the server closes first ...
        assert client.recv(10) == b""   # ... the client sees EOF and closes too
        client.close()
        assert wait_until(lambda p=port: [s.state for s in sockets_on_port(p)] == ["TIME_WAIT"], 3)
        results[old_reuse, new_reuse] = try_bind(port, "127.0.0.1", new_reuse)[0]
    assert results == {(False, True): errno.EADDRINUSE, (True, True): 0}


# --- scenarios, lesson loops -----------------------------------------------------------------------

LOOPS_REFERENCE = [sys.executable, "loops/server.py"]
LOOPS_SEED = [sys.executable, str(NEGATIVE / "loops_seed_server.py")]


def test_loops_scenarios_pass_against_the_reference():
    with lesson_run("loops", LOOPS_REFERENCE) as run:
        outcomes = run_all(run)
    failed = {name: (o.summary, o.transcript[-12:]) for name, o in outcomes.items() if not o.passed}
    assert not failed
    assert outcomes["many-clients"].observed["served"] == 10
    assert outcomes["many-clients"].observed["ports_distinct"]
    it = outcomes["iterative"].observed
    assert it["b_state_while_waiting"] == "ESTABLISHED" and it["b_timed_out"]
    assert it["b_reply_after_a_left"] == "x"
    gone = outcomes["client-gone"].observed
    assert gone["cpu_seconds"] <= 0.1 and gone["next_client_served"] and gone["server_log_says_gone"]
    restart = outcomes["restart-after-quit"].observed
    assert restart["time_wait_on_server"] and restart["restarted"] and restart["served_after_restart"]
    assert restart["exit_status_on_sigterm"] == 0
    matrix = outcomes["address-in-use"].observed
    assert [(r["closer"], r["old_reuse"], r["new_reuse"], r["errno"]) for r in matrix["matrix"]] == [
        ("client", False, False, 0), ("server", False, False, 98), ("server", False, True, 98),
        ("server", True, False, 98), ("server", True, True, 0)]
    assert matrix["only_new_listener_reuse_errno"] == errno.EADDRINUSE
    assert matrix["inherited_reuse"] == [False, False, False, True, True]
    assert matrix["time_wait_on_server_when_server_closed_first"]
    assert matrix["time_wait_on_client_when_client_closed_first"]


def test_loops_check_rejects_the_seed_server_for_the_lesson_reasons():
    with lesson_run("loops", LOOPS_SEED) as run:
        outcomes = run_all(run)
    # the loops themselves work while clients say 'quit' ...
    assert outcomes["many-clients"].passed and outcomes["iterative"].passed
    # ... but a client leaving without 'quit' makes it spin, and it cannot restart at once
    gone = outcomes["client-gone"]
    assert not gone.passed
    assert gone.observed["cpu_seconds"] > 0.1 and not gone.observed["next_client_served"]
    restart = outcomes["restart-after-quit"]
    assert not restart.passed
    assert restart.observed["time_wait_on_server"] and not restart.observed["restarted"]
    assert any("Address already in use" in line for line in restart.observed["restart_log"])


# --- scenarios, lesson socketserver --------------------------------------------------------------

SOCKETSERVER_REFERENCE = [sys.executable, "socketserver/server.py"]
SOCKETSERVER_SEED = [sys.executable, str(NEGATIVE / "socketserver_seed_server.py")]


def load_lesson_module(path: Path):
    """The socketserver lesson is not a package (it would shadow the stdlib module): load by path."""
    spec = importlib.util.spec_from_file_location(f"socketserver_lesson_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_socketserver_lesson_directory_does_not_shadow_the_stdlib():
    import socketserver
    assert Path(socketserver.__file__).name == "socketserver.py"
    assert not (SERVICES / "socketserver" / "__init__.py").exists()


def test_allow_reuse_address_class_attribute_versus_instance_attribute():
    server_module = load_lesson_module(SERVICES / "socketserver" / "server.py")
    with server_module.UpperCaseServer(("127.0.0.1", 0), server_module.UpperCaseHandler) as good:
        assert good.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
    import socketserver
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as seed:
        seed.allow_reuse_address = True          # what the seed does: too late, bind() already ran
        assert seed.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0


def test_socketserver_scenarios_pass_against_the_reference():
    with lesson_run("socketserver", SOCKETSERVER_REFERENCE) as run:
        outcomes = run_all(run)
    failed = {name: (o.summary, o.transcript[-12:]) for name, o in outcomes.items() if not o.passed}
    assert not failed
    concurrent = outcomes["b-while-a-idles"].observed
    assert concurrent["b_reply"] == "ABC" and concurrent["a_still_connected"]
    assert concurrent["threads_with_clients"] - concurrent["threads_idle"] >= 3
    parallel = outcomes["twenty-parallel"].observed
    assert parallel["clients"] == 20 and parallel["connected_at_once"] == 20
    assert parallel["correct"] == 20 and parallel["mixed"] == 0
    attr = outcomes["allow-reuse-address"].observed
    assert attr["instance_attribute_after_init"] == 0 and attr["class_attribute"] == 1
    shutdown = outcomes["clean-shutdown"].observed
    assert shutdown["idle_client_got_eof"] and shutdown["connect_after_errno"] == errno.ECONNREFUSED
    assert shutdown["exit_status"] == 0
    restart = outcomes["restart-same-port"].observed
    assert restart["time_wait_on_server"] and restart["restarted"]


def test_socketserver_check_rejects_the_seed_server():
    with lesson_run("socketserver", SOCKETSERVER_SEED) as run:
        outcomes = run_all(run)
    # ThreadingTCPServer itself is fine: concurrency works ...
    assert outcomes["b-while-a-idles"].passed and outcomes["twenty-parallel"].passed
    # ... it has no shutdown path (SIGTERM kills it: exit status 143) ...
    assert not outcomes["clean-shutdown"].passed
    assert outcomes["clean-shutdown"].observed["exit_status"] == 143
    # ... and `server.allow_reuse_address = True` after construction did nothing
    restart = outcomes["restart-same-port"]
    assert not restart.passed
    assert restart.observed["time_wait_on_server"] and not restart.observed["restarted"]
    assert any("Address already in use" in line for line in restart.observed["restart_log"])


@pytest.mark.parametrize("lesson", ["loops", "socketserver"])
def test_every_scenario_says_what_it_shows(lesson):
    for sc in for_lesson(lesson):
        assert sc.name and sc.shows
