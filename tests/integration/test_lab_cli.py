"""lab.py end to end, as a student runs it: up, status, demo, down, check — on a private project
name and an engine-chosen subnet, so it never touches a running lab or another test run."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import RUN_ID

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
WORK = Path(tempfile.gettempdir()) / f"{RUN_ID}-work"     # workspaces of these runs, never ./work


def lab(*args: str, project: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, SOCKETLAB_PROJECT=project, SOCKETLAB_WORK=str(WORK))
    env.pop("SOCKETLAB_SUBNET", None)
    return subprocess.run([sys.executable, "lab.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def project(docker_client, lab_image):
    name = f"{RUN_ID}-cli"
    yield name
    lab("down", "--all", project=name)
    shutil.rmtree(WORK, ignore_errors=True)     # down keeps workspaces (they are the student's); tests do not


def labelled(docker_client, project: str):
    selector = {"label": f"socketlab.project={project}"}
    return docker_client.containers.list(all=True, filters=selector), docker_client.networks.list(filters=selector)


def test_up_status_demo_down_leaves_nothing(docker_client, project):
    up = lab("up", "basic", project=project)
    assert up.returncode == 0, up.stderr
    assert "NODE" in up.stdout and "IP" in up.stdout and "basic-server" in up.stdout
    assert "python lab.py demo basic" in up.stdout                       # the student is told what's next
    assert "check basic --server my_server.py" in up.stdout              # basic grades a server ...
    assert "--client" not in up.stdout                                   # ... and no client

    status = lab("status", "basic", "--json", project=project)
    nodes = json.loads(status.stdout)
    assert {n["role"] for n in nodes} == {"server", "client"}
    assert all(n["state"] == "running" and n["ip"] for n in nodes)
    assert {n["node"] for n in nodes} == {f"{project}-basic-server", f"{project}-basic-client"}
    assert all(n["connections"] == [] for n in nodes)                    # nobody talks to the server yet

    logs = lab("logs", "basic", "client", project=project)               # the client runs no program
    assert logs.returncode == 0 and "python lab.py client basic" in logs.stdout

    again = lab("up", "basic", project=project)                          # idempotent
    assert again.returncode == 0
    assert json.loads(lab("status", "basic", "--json", project=project).stdout) == nodes

    demo = lab("demo", "basic", project=project)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "4/4 phenomena shown" in demo.stdout

    down = lab("down", "basic", project=project)
    assert down.returncode == 0
    containers, networks = labelled(docker_client, project)
    assert containers == [] and networks == []
    assert lab("down", "basic", project=project).returncode == 0         # idempotent


def test_up_unknown_lesson_fails_and_names_known_lessons(project):
    result = lab("up", "nosuch", project=project)
    assert result.returncode != 0
    assert "basic" in result.stderr and "sticky" in result.stderr


def test_check_passes_the_reference_and_rejects_the_seed_server(docker_client, project):
    good = lab("check", "basic", "--json", project=project)
    report = json.loads(good.stdout)
    assert good.returncode == 0 and report["passed"], good.stdout
    bad = lab("check", "basic", "--server", "tests/negative/basic_seed_server.py", "--json", project=project)
    report = json.loads(bad.stdout)
    assert bad.returncode != 0 and not report["passed"]
    failed = {s["scenario"] for s in report["scenarios"] if not s["passed"]}
    assert "accept-new-socket" in failed          # bound to 127.0.0.1: unreachable from the client container
    leftovers = [c for c in docker_client.containers.list(all=True, filters={"label": "socketlab.owner=check"})
                 if c.labels.get("socketlab.project", "").startswith(f"{project}-check-")]
    assert leftovers == []                        # check cleans up its throw-away instance


def test_compose_file_runs_under_docker_compose_v1():
    result = subprocess.run(["docker-compose", "-f", "compose.yaml", "--profile", "basic", "config", "-q"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    services = subprocess.run(["docker-compose", "-f", "compose.yaml", "--profile", "sticky", "config", "--services"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60).stdout.split()
    assert "sticky-server" in services and "sticky-client" in services


def test_a_foreign_container_with_the_lab_name_is_a_clear_error(docker_client, project, lab_image):
    # by tag: the id the session fixture saw may be gone once the lesson code changed
    foreign = docker_client.containers.create("socketlab/lessons:latest", ["sleep", "60"],
                                              name=f"{project}-basic-server",
                                              labels={"socketlab.owner": "pytest", "socketlab.test": project})
    try:
        result = lab("up", "basic", project=project)
        assert result.returncode == 1
        assert "SocketLab did not create it" in result.stderr and "fix:" in result.stderr
    finally:
        foreign.remove(force=True)


def test_a_subnet_clash_is_a_clear_error(docker_client, project):
    import ipaddress
    import random
    subnet = str(ipaddress.ip_network(f"10.{random.randint(100, 250)}.{random.randint(0, 255)}.0/24"))
    other = docker_client.networks.create(f"{project}-other", ipam=_ipam(subnet),
                                          labels={"socketlab.owner": "pytest", "socketlab.project": RUN_ID})
    try:
        env_project = f"{project}-clash"
        env = dict(os.environ, SOCKETLAB_PROJECT=env_project, SOCKETLAB_SUBNET=subnet)
        result = subprocess.run([sys.executable, "lab.py", "up", "basic"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 1
        assert f"subnet {subnet} is already used" in result.stderr and "SOCKETLAB_SUBNET" in result.stderr
        subprocess.run([sys.executable, "lab.py", "down", "--all"], cwd=ROOT, env=env, timeout=60)
    finally:
        other.remove()


def _ipam(subnet: str):
    import docker
    return docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])


def test_doctor_reports_engine_images_and_netem(lab_image):
    result = lab("doctor", "--json", project="unused")
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["engine"]["ok"] and checks["network"]["ok"]
    assert checks["image socketlab/lessons:latest"]["ok"]
    assert "netem" in checks                     # absent on this kernel: reported, with the relay as fallback
