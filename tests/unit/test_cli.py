"""The CLI's argument errors, without an engine."""
import json
import os
import subprocess
import sys

import pytest

from socketlab.cli import build_parser, main


def test_unknown_command_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["frobnicate"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_down_needs_a_lesson_or_all(capsys):
    assert main(["down"]) == 2
    err = capsys.readouterr().err
    assert "say which lesson" in err and "--all" in err


def test_up_unknown_lesson_exits_nonzero_naming_the_lessons(capsys):
    assert main(["up", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "unknown lesson 'nosuch'" in err
    for lesson in ("basic", "sticky", "framing", "udp", "ftp"):
        assert lesson in err


def test_list_json_works_and_names_seed_sections(capsys):
    assert main(["list", "--json"]) == 0
    import json
    items = json.loads(capsys.readouterr().out)
    assert {i["id"] for i in items} >= {"basic", "sticky"}
    assert all(i["seed"] for i in items)


def test_lab_py_runs_through_its_own_environment():
    out = subprocess.run([sys.executable, "lab.py", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "socketlab" in out.stdout


@pytest.mark.parametrize("lesson,graded,not_graded", [("sticky", ["client"], ["server"]),
                                                      ("basic", ["server"], ["client"]),
                                                      ("udp", ["server", "client"], []),
                                                      ("framing", ["server", "client"], [])])
def test_up_suggests_only_the_checks_the_lesson_has(lesson, graded, not_graded):
    from socketlab.cli import _graded_roles, try_next
    from socketlab.topology import load
    commands = [cmd for cmd, _ in try_next(load().lesson(lesson), _graded_roles(lesson))]
    for role in graded:
        assert f"python lab.py check {lesson} --{role} my_{role}.py" in commands
    for role in not_graded:
        assert not any(f"--{role}" in c for c in commands)


def test_status_reads_a_servers_connections_from_proc_net_tcp(tmp_path):
    """One parser of the kernel's table (labnode.kernel, run inside the container by the node tool);
    status reads what that tool reports."""
    from labnode.kernel import read_tcp_table
    from socketlab.deploy import peers_from_sockets_tool
    tcp, tcp6 = tmp_path / "tcp", tmp_path / "tcp6"
    tcp.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000:4E34 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1\n"
        "   1: 0A004D0A:4E34 0B004D0A:A2B6 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n"
        "   2: 0A004D0A:4E34 0B004D0A:A2B8 06 00000000:00000000 03:00000000 00000000     0        0 0 3\n"
        "   3: 0A004D0A:9C40 0B004D0A:4E34 01 00000000:00000000 00:00000000 00000000  1000        0 4 1\n")
    tcp6.write_text(
        "  sl  local_address                         remote_address                        st ...\n"
        "   0: 0000000000000000FFFF00000A004D0A:4E34 0000000000000000FFFF00000C004D0A:B000 08 "
        "00000000:00000000 00:00000000 00000000  1000        0 5 1\n")
    found = [s for s in read_tcp_table([str(tcp), str(tcp6)]) if s.local_port == 20020]
    report = "RESULT " + json.dumps({"observed": {"sockets": [s.as_dict() for s in found]}, "ok": True})
    assert peers_from_sockets_tool(f"sockets on this machine...\n{report}\n".encode()) == [
        ("10.77.0.11", 41654, "ESTABLISHED"), ("10.77.0.11", 41656, "TIME_WAIT"), ("10.77.0.12", 45056, "CLOSE_WAIT")]
    assert peers_from_sockets_tool(b"python3: No module named labnode\n") == []


def test_a_deadline_interrupts_what_runs_and_is_not_an_exception_scenarios_swallow():
    import time

    from socketlab.deploy import DeadlineExceeded, deadline
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as err:
        with deadline(0.2):
            try:
                time.sleep(5)
            except Exception:   # how run_scenarios guards against a crashing scenario
                pytest.fail("the deadline was swallowed")
    assert time.monotonic() - started < 2 and "0.2 s wall-clock limit" in str(err.value)
    with deadline(5):
        pass                    # and a check that ends in time leaves no timer behind
    time.sleep(0.05)


def test_the_in_container_supervisor_is_stdlib_only():
    import ast

    import socketlab.hangup as hangup
    tree = ast.parse(open(hangup.__file__).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "fcntl", "os", "pty", "select", "signal", "struct", "sys", "termios", "time"}


def test_the_gateway_rule_is_found_again_by_its_tag_and_removed_exactly(monkeypatch):
    import subprocess as sp

    import socketlab.deploy as deploy
    listing = ('-P INPUT ACCEPT\n'
               '-A INPUT -i br-socketlab -m conntrack --ctstate NEW -m comment --comment "socketlab:socketlab" '
               '-j REJECT --reject-with icmp-port-unreachable\n'
               '-A INPUT -i br-0123456789ab -m conntrack --ctstate NEW -m comment --comment '
               '"socketlab:socketlab-check-1" -j REJECT --reject-with icmp-port-unreachable\n')
    calls = []

    def iptables(argv, **_):
        calls.append(argv)
        return sp.CompletedProcess(argv, 0, listing if "-S" in argv else "", "")

    monkeypatch.setattr(deploy.os, "geteuid", lambda: 0)
    monkeypatch.setattr(deploy.shutil, "which", lambda _: "/usr/sbin/iptables")
    deploy.GatewayGuard(iptables).unguard("socketlab")
    deletes = [c for c in calls if "-D" in c]
    assert len(deletes) == 1 and "br-socketlab" in deletes[0] and "socketlab:socketlab" in deletes[0]
    assert deploy.GatewayGuard.rule("br-x", "p")[:3] == ["INPUT", "-i", "br-x"]


def test_output_into_a_closed_pipe_is_no_traceback():
    """`python lab.py list | head -1`: the reader has left before lab.py writes; it stops quietly."""
    reader, writer = os.pipe()
    os.close(reader)                   # nobody will read: every write is EPIPE
    done = subprocess.run([sys.executable, "lab.py", "list"], stdout=writer, stderr=subprocess.PIPE,
                          text=True, timeout=120)
    os.close(writer)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1
