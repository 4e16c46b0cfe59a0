"""Classroom: sshd containers on a lab network stand in for lab machines (Python + SSH, no Docker).

Key authentication with a key made by the test; host keys are collected from the machines and
pinned in a known_hosts file — the product refuses unknown keys unless told otherwise.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from socketlab.classroom import (
    Machine,
    SSHNode,
    check_on_machines,
    connect,
    explain,
    open_connection,
    prepare,
    services_tar,
)
from tests.conftest import OWNER_LABELS, RUN_ID

pytestmark = [pytest.mark.integration, pytest.mark.classroom]
ROOT = Path(__file__).resolve().parents[2]
MACHINES = ("pc1", "pc2", "pc3")


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory) -> Path:
    key = Ed25519PrivateKey.generate()
    path = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    Path(f"{path}.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                  serialization.PublicFormat.OpenSSH))
    return path


@pytest.fixture(scope="module")
def room(docker_client, lab_image, ssh_key, tmp_path_factory):
    """Three lab machines on one network; yields {name: (ip, container)} plus a pinned known_hosts."""
    from socketlab.images import ImageBuilder
    image = ImageBuilder(docker_client).ensure_sshd()
    network = Network(docker_network_kw={"labels": OWNER_LABELS})
    network.name = f"{RUN_ID}-room"
    network.create()
    started = {}
    try:
        for name in MACHINES:
            c = (DockerContainer(image, name=f"{RUN_ID}-{name}")
                 .with_network(network).with_network_aliases(name)
                 .with_kwargs(init=True, hostname=name, labels=OWNER_LABELS)
                 .with_copy_into_container(Path(f"{ssh_key}.pub").read_bytes(), "/home/lab/.ssh/authorized_keys",
                                           0o644)
                 .waiting_for(LogMessageWaitStrategy(r"Server listening on 0\.0\.0\.0 port 22")
                              .with_startup_timeout(60)))
            c.start()
            wrapped = c.get_wrapped_container()
            wrapped.reload()
            started[name] = (wrapped.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"], c)
        known = tmp_path_factory.mktemp("known") / "known_hosts"
        lines = []
        for ip, c in started.values():
            pub = c.exec(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).output.decode().split()
            lines.append(f"{ip} {pub[0]} {pub[1]}")
        known.write_text("\n".join(lines) + "\n")
        yield started, known
    finally:
        for _, c in started.values():
            c.stop()
        network.remove()


def machine(room, name: str, key: Path) -> Machine:
    return Machine(name, room[0][name][0], "lab", str(key))


def node(room, name: str, key: Path) -> SSHNode:
    conn = connect(machine(room, name, key), room[1])
    open_connection(conn)
    return SSHNode(name, conn, prepare(conn, services_tar()))


def test_a_lesson_runs_across_two_lab_machines(room, ssh_key, topology):
    server, client = node(room, "pc1", ssh_key), node(room, "pc2", ssh_key)
    report = check_on_machines(topology.lesson("basic"), server, client, room[0]["pc1"][0], None, None)
    by_name = {s.scenario: s for s in report.scenarios}
    assert report.passed, [(s.scenario, s.summary, s.transcript) for s in report.scenarios]
    # the server on pc1 saw connections coming from pc2's address
    assert all(f"hello {room[0]['pc2'][0]}:" in r for r in by_name["accept-new-socket"].observed["replies"])
    assert by_name["loopback-unreachable"].observed["remote_errno_name"] == "ECONNREFUSED"
    # nothing left running on the server machine
    assert "basic/server.py" not in server.run(["ps", "-eo", "args"]).stdout


@pytest.mark.parametrize("lesson", ["loops", "sticky", "framing", "udp", "socketserver", "ftp"])
def test_every_lesson_runs_across_lab_machines(room, ssh_key, topology, lesson):
    server, client = node(room, "pc2", ssh_key), node(room, "pc3", ssh_key)
    report = check_on_machines(topology.lesson(lesson), server, client, room[0]["pc2"][0], None, None)
    assert report.passed, [(s.scenario, s.summary, s.transcript[-4:]) for s in report.scenarios if not s.passed]


def test_unknown_host_key_is_refused(room, ssh_key, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    m = machine(room, "pc1", ssh_key)
    with pytest.raises(Exception) as err:
        open_connection(connect(m, empty))
    assert "unknown" in explain(err.value, m)
    conn = connect(m, empty, trust_new=True)            # trust on first use, recorded in the file
    open_connection(conn)
    assert room[0]["pc1"][0] in empty.read_text()


def test_grade_a_room_with_a_failing_student_and_an_unreachable_machine(room, ssh_key, tmp_path):
    machines, known = room
    reference = (ROOT / "services/basic/server.py").read_bytes()
    seed = (ROOT / "tests/negative/basic_seed_server.py").read_bytes()
    for name, program in (("pc1", reference), ("pc2", seed), ("pc3", reference)):
        c = machines[name][1]
        c.exec(["sh", "-c", "mkdir -p /home/lab/work/basic && chown -R lab:lab /home/lab/work"])
        c.get_wrapped_container().put_archive("/home/lab/work/basic", _tar("server.py", program))
    unreachable = _unused_address(machines["pc1"][0])
    hosts = tmp_path / "hosts"
    hosts.write_text("# name address user key\n" + "".join(
        f"{n} {machines[n][0]} lab {ssh_key}\n" for n in MACHINES) + f"pc9 {unreachable} lab {ssh_key}\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "lab.py", "room", "check", "basic", "--hosts", str(hosts),
                             "--server", "~/work/{lesson}/server.py", "--known-hosts", str(known),
                             "--out", str(tmp_path / "reports"), "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=240, env=dict(os.environ))
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    by_machine = {m["machine"]: m for m in report["machines"]}
    failures = {m["machine"]: m["error"] or [x["summary"] for x in m["scenarios"] if not x["passed"]]
                for m in report["machines"] if not m["passed"]}
    assert by_machine["pc1"]["passed"] and by_machine["pc3"]["passed"], failures
    assert not by_machine["pc2"]["passed"]
    assert "accept-new-socket" in {s["scenario"] for s in by_machine["pc2"]["scenarios"] if not s["passed"]}
    assert not by_machine["pc9"]["reachable"] and "unreachable" in by_machine["pc9"]["error"]
    csv_text = (tmp_path / "reports/room-basic.csv").read_text()
    assert "pc9" in csv_text and "pc2" in csv_text
    print(f"\ngraded a room of 3 machines + 1 unreachable in {elapsed:.1f} s")


def test_bundle_remove_load_up(docker_client, lab_image, tmp_path):
    from socketlab.images import LESSONS_IMAGE, parents_lock
    env = dict(os.environ, SOCKETLAB_PROJECT=f"{RUN_ID}-bundle")
    tar = tmp_path / "socketlab-images.tar"
    lab = [sys.executable, "lab.py"]
    assert subprocess.run([*lab, "bundle", "-o", str(tar)], cwd=ROOT, env=env, timeout=300).returncode == 0
    assert tar.stat().st_size > 50_000_000
    # Untag (running labs keep their layers) and load back. Meanwhile the other test worker may want
    # the tag: its overlay builds and test containers wait on the machine's image lock until then.
    with parents_lock(fcntl.LOCK_EX):
        docker_client.images.remove(LESSONS_IMAGE, force=True)
        loaded = subprocess.run([*lab, "load", str(tar)], cwd=ROOT, env=env, timeout=300, capture_output=True,
                                text=True)
    assert loaded.returncode == 0 and LESSONS_IMAGE in loaded.stderr
    try:
        up = subprocess.run([*lab, "up", "basic"], cwd=ROOT, env=env, timeout=300, capture_output=True, text=True)
        assert up.returncode == 0, up.stderr
        assert "building" not in up.stderr          # the loaded images are used as they are
    finally:
        subprocess.run([*lab, "down", "--all"], cwd=ROOT, env=env, timeout=120)


def _tar(name: str, data: bytes) -> bytes:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid = len(data), 0o644, 1000, 1000
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _unused_address(ip: str) -> str:
    parts = ip.split(".")
    return ".".join(parts[:3] + ["250"])
