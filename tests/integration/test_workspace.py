"""The student's workspace and interactive sessions, as a student uses them through lab.py.

`up` mounts work/<lesson>/ (here: a temporary SOCKETLAB_WORK root) at /work in the server and
client containers; `shell` and `client` start there; `down` leaves it alone. A `client` whose
terminal goes away leaves no ghost behind in the container.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from tests.conftest import RUN_ID

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
AS_ROOT = os.name == "posix" and os.geteuid() == 0

MY_SERVER = """\
import os
print("my own server runs in", os.getcwd())
with open("from-container.txt", "w") as f:
    f.write("written inside the container")
"""


class Lab:
    def __init__(self, project: str, work: Path, **env: str) -> None:
        self.project, self.work = project, work
        self.env = dict(os.environ, SOCKETLAB_PROJECT=project, SOCKETLAB_WORK=str(work), **env)
        self.env.pop("SOCKETLAB_SUBNET", None)
        for key in ("SUDO_UID", "SUDO_GID"):
            if key not in env:
                self.env.pop(key, None)

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "lab.py", *args], cwd=ROOT, env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=timeout)

    def spawn(self, *args: str) -> pexpect.spawn:
        return pexpect.spawn(sys.executable, ["lab.py", *args], cwd=str(ROOT), env=self.env, encoding="utf-8",
                             timeout=60, dimensions=(40, 120))


@pytest.fixture
def lab(tmp_path, lab_image):
    made = []

    def make(suffix: str = "ws", **env: str) -> Lab:
        instance = Lab(f"{RUN_ID}-{suffix}", tmp_path / suffix, **env)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance("down", "--all")


def test_the_workspace_is_shared_both_ways_and_survives_down(lab, docker_client):
    lab = lab()
    assert lab("up", "basic").returncode == 0
    folder = lab.work / "basic"
    assert folder.is_dir()
    (folder / "notes.txt").write_text("written on the host\n")
    (folder / "my_server.py").write_text(MY_SERVER)

    for role in ("server", "client"):
        container = docker_client.containers.get(f"{lab.project}-basic-{role}")
        seen = container.exec_run(["cat", "/work/notes.txt"])
        assert seen.exit_code == 0 and seen.output == b"written on the host\n", role

    # a shell starts in the workspace, and the student's own code runs from there
    shell = lab("shell", "basic", "server", stdin="pwd\npython3 my_server.py\n")
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.splitlines()[0] == "/work"
    assert "my own server runs in /work" in shell.stdout
    made = folder / "from-container.txt"
    assert made.read_text() == "written inside the container"
    if AS_ROOT:   # root without sudo (CI): containers stay uid 1000, the folder is shared through its group
        st = folder.stat()
        assert (st.st_uid, st.st_gid) == (0, 1000) and st.st_mode & 0o2070 == 0o2070
        assert made.stat().st_uid == 1000

    assert lab("down", "basic").returncode == 0
    assert (folder / "notes.txt").read_text() == "written on the host\n"    # down never deletes it
    assert made.exists()


@pytest.mark.skipif(not AS_ROOT, reason="runs lab.py as root with SUDO_UID to play sudo")
def test_under_sudo_the_folder_is_the_students_and_so_are_the_containers(lab, docker_client):
    lab = lab("sudo", SUDO_UID="1234", SUDO_GID="1234")
    assert lab("up", "basic").returncode == 0
    folder = lab.work / "basic"
    assert (folder.stat().st_uid, folder.stat().st_gid) == (1234, 1234)
    server = docker_client.containers.get(f"{lab.project}-basic-server")
    assert server.attrs["Config"]["User"] == "1234:1234"       # the container user is the folder's owner
    assert server.exec_run(["touch", "/work/made-inside"]).exit_code == 0
    assert (folder / "made-inside").stat().st_uid == 1234


def _docker_exec_child(pid: int) -> int:
    """The `docker exec` that lab.py (pid) started."""
    for _ in range(100):
        out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            child_pid, args = line.strip().split(None, 1)
            if args.startswith("docker exec"):
                return int(child_pid)
        time.sleep(0.1)
    raise AssertionError(f"lab.py (pid {pid}) started no docker exec")


def _client_processes(container) -> list[str]:
    out = container.exec_run(["ps", "-eo", "args"]).output.decode()
    return [line for line in out.splitlines() if "sticky/client.py" in line]


def _established(lab: Lab) -> list[dict]:
    nodes = json.loads(lab("status", "sticky", "--json").stdout)
    server = next(n for n in nodes if n["role"] == "server")
    return [c for c in server["connections"] if c["state"] == "ESTABLISHED"]


@pytest.mark.parametrize("goes_away", ["docker exec killed", "terminal closed"])
def test_a_client_whose_terminal_goes_away_leaves_no_ghost(lab, docker_client, goes_away):
    lab = lab("ghost")
    assert lab("up", "sticky").returncode == 0
    session = lab.spawn("client", "sticky")
    session.expect(">> ")
    # looked up now: `client` recreates the containers when the lesson code changed since `up`
    client = docker_client.containers.get(f"{lab.project}-sticky-client")
    assert ":/work$" in session.before                       # the client starts in the workspace
    session.sendline("echo hello")                           # a real terminal: typed, echoed, answered
    session.expect("hello")
    session.expect(">> ")
    assert _client_processes(client)
    connections = _established(lab)                          # status shows the client's connection
    assert [c["node"] for c in connections] == ["sticky-client"]

    if goes_away == "docker exec killed":
        os.kill(_docker_exec_child(session.pid), signal.SIGKILL)
        session.expect(pexpect.EOF)
        output = session.before
    else:
        session.close(force=True)                           # hang-up, as when the window closes
        output = ""
    deadline = time.monotonic() + 10
    while _client_processes(client) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _client_processes(client) == []                  # the client in the container ended too
    assert "Traceback" not in output
    deadline = time.monotonic() + 10
    while _established(lab) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _established(lab) == []                          # and its connection to the server is gone


def test_ctrl_c_in_a_shell_reaches_the_container_and_lab_py_shows_no_traceback(lab):
    lab = lab("ctrlc")
    assert lab("up", "sticky").returncode == 0
    session = lab.spawn("shell", "sticky", "client")
    session.expect(r":/work\$ ")                             # bash on a real terminal, in the workspace
    session.sendline("sleep 60")
    time.sleep(1)
    session.send("\x03")                                     # Ctrl-C: SIGINT for sleep, not for lab.py
    session.sendline("echo still-$((20+22))")
    session.expect("still-42", timeout=10)
    session.sendline("exit")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0
    assert "Traceback" not in session.before
