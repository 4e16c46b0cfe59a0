"""Untrusted code runs in a sandbox: the lab network has no way out, the host's own services are
fenced off, and every lesson container has its limits — proved on the real engine, without
sending a packet off this machine (the "outside" is a Docker network the test makes itself).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import HealthcheckWaitStrategy

from socketlab.deploy import GatewayGuard, Instance, LabManager
from tests.conftest import OWNER_LABELS, RUN_ID

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
OUTSIDE_PORT = 8080


@pytest.fixture(scope="module")
def check_lab(docker_client, lab_image, topology):
    """The basic lesson as `lab.py check` starts it: a throw-away instance."""
    manager = LabManager(docker_client, topology, Instance.throwaway("check", RUN_ID))
    manager.up(topology.lesson("basic"), lab_image)
    yield manager
    manager.down()


@pytest.fixture(scope="module")
def outside(docker_client, lab_image):
    """A listener on a separate (ordinary, routable) Docker network: stands in for the world."""
    network = Network(docker_network_kw={"labels": OWNER_LABELS})
    network.name = f"{RUN_ID}-outside"
    network.create()
    listener = (DockerContainer(lab_image, command=["python3", "-m", "http.server", str(OUTSIDE_PORT)],
                                name=f"{RUN_ID}-outside-listener")
                .with_network(network)
                .with_kwargs(init=True, labels=OWNER_LABELS,
                             healthcheck={"test": ["CMD", "lab-health", "tcp", str(OUTSIDE_PORT)],
                                          "interval": 500_000_000, "timeout": 2_000_000_000, "retries": 60})
                .waiting_for(HealthcheckWaitStrategy().with_startup_timeout(60)))
    listener.start()
    try:
        wrapped = listener.get_wrapped_container()
        wrapped.reload()
        yield wrapped.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    finally:
        listener.stop()
        network.remove()


def connect_from(container, host: str, port: int):
    """The lesson's own client (services/basic/client.py), run inside ``container``, to host:port."""
    return container.exec_run(["timeout", "20", "python3", "basic/client.py", "--host", host, "--port", str(port),
                               "--message", "hello"], demux=True)


def test_the_lab_network_is_internal(check_lab, docker_client):
    net = docker_client.networks.get(check_lab.network_name)
    assert net.attrs["Internal"] is True
    assert net.attrs["Labels"]["socketlab.owner"] == "check"


def test_a_lesson_container_cannot_reach_another_network(check_lab, outside):
    # positive control: the listener is there and answers (from the host, which routes to it)
    with socket.create_connection((outside, OUTSIDE_PORT), timeout=5):
        pass
    client = check_lab.containers("basic")["client"]
    result = connect_from(client, outside, OUTSIDE_PORT)
    out, err = (b or b"" for b in result.output)
    assert result.exit_code != 0, out
    assert b"server says" not in out
    assert b"Error" in err or b"timed out" in err          # connect failed inside the container


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="the gateway rule needs root (docs/security.md)")
def test_the_hosts_own_services_are_fenced_off(check_lab, docker_client):
    net = docker_client.networks.get(check_lab.network_name)
    if GatewayGuard().reason(GatewayGuard.bridge_of(net)):
        pytest.skip(GatewayGuard().reason(GatewayGuard.bridge_of(net)))
    gateway = net.attrs["IPAM"]["Config"][0]["Gateway"]
    listener = socket.create_server(("0.0.0.0", 0))          # a "host service" on every address
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    try:
        with socket.create_connection((gateway, port), timeout=5):   # the host itself reaches it
            pass
        result = connect_from(check_lab.containers("basic")["client"], gateway, port)
        assert result.exit_code != 0
        assert b"Connection refused" in (result.output[1] or b"")    # REJECT: refused at once
        rules = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout
        assert f"socketlab:{check_lab.instance.project}" in rules
    finally:
        listener.close()


def test_every_lesson_container_is_limited_and_locked_down(check_lab, docker_client):
    for container in check_lab.containers("basic").values():
        attrs = docker_client.api.inspect_container(container.id)
        host = attrs["HostConfig"]
        assert host["NanoCpus"] == 1_000_000_000, container.name        # compose `cpus: 1.0`
        assert host["Memory"] == 256 * 1024 * 1024 and host["PidsLimit"] == 256
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
        assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert attrs["Config"]["User"] == "1000:1000"
        assert attrs["Mounts"] == [] and not host.get("Binds")          # check: no host mounts at all
        assert not host.get("PortBindings")


def test_the_root_filesystem_is_read_only_from_inside(check_lab):
    server = check_lab.containers("basic")["server"]
    assert server.exec_run(["touch", "/lab/basic/server.py"]).exit_code != 0
    assert server.exec_run(["touch", "/tmp/scratch"]).exit_code == 0


# Listens, accepts, and never answers: each scenario waits for its reply, so no machine is fast
# enough to finish the check inside a few seconds (the reference server finished in 2.8 s).
SILENT_SERVER = """import socket, sys, time
s = socket.create_server(("0.0.0.0", int(sys.argv[sys.argv.index("--port") + 1])), reuse_port=False)
held = []
while True:
    held.append(s.accept()[0])
"""


def test_a_check_past_its_wall_clock_limit_reports_it_and_cleans_up(docker_client, lab_image, tmp_path):
    project = f"{RUN_ID}-deadline"
    env = dict(os.environ, SOCKETLAB_PROJECT=project)
    env.pop("SOCKETLAB_SUBNET", None)
    silent = tmp_path / "silent_server.py"
    silent.write_text(SILENT_SERVER)
    result = subprocess.run([sys.executable, "lab.py", "check", "basic", "--server", str(silent), "--json",
                             "--timeout", "3"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    deadline = [s for s in report["scenarios"] if s["scenario"] == "deadline"]
    assert deadline and not deadline[0]["passed"] and "3 s wall-clock limit" in deadline[0]["summary"]
    assert "wall-clock limit" in result.stderr and "Traceback" not in result.stderr
    prefix = f"{project}-check-"
    left = [c.name for c in docker_client.containers.list(all=True, filters={"label": "socketlab.owner=check"})
            if c.labels.get("socketlab.project", "").startswith(prefix)]
    nets = [n.name for n in docker_client.networks.list(filters={"label": "socketlab.owner=check"})
            if n.name.startswith(prefix)]
    assert left == [] and nets == []
