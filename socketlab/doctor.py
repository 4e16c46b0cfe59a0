"""`lab.py doctor`: what this machine has and lacks, each with the fix."""
from __future__ import annotations

import shutil
import sys
import uuid
from dataclasses import dataclass

from .errors import LabError
from .topology import Topology


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    severity: str = "FAIL"   # FAIL blocks the lab; WARN only limits it


def run_doctor(topology: Topology) -> list[Check]:
    from .engine import LABEL_OWNER, LABEL_PROJECT, connect
    from .images import BASE_IMAGE, LESSONS_IMAGE, ROOTFS_IMAGE

    checks = [Check("python", sys.version_info >= (3, 11), sys.version.split()[0], "install Python 3.11 or newer")]
    try:
        client = connect(timeout=30)
    except LabError as exc:
        return checks + [Check("engine", False, exc.message, exc.fix)]
    info, version = client.info(), client.version()
    checks.append(Check("engine", True, f"Docker {version.get('Version')} (API {version.get('ApiVersion')}), "
                                        f"{info.get('NCPU')} CPUs, cgroup v{info.get('CgroupVersion', '?')}"))
    for tag, fix in ((ROOTFS_IMAGE, "python lab.py build (bootstraps it with mmdebstrap when no registry answers)"),
                     (BASE_IMAGE, "python lab.py build"), (LESSONS_IMAGE, "python lab.py build")):
        try:
            img = client.images.get(tag)
            checks.append(Check(f"image {tag}", True, f"{img.attrs.get('Size', 0) / 1e6:.0f} MB"))
        except Exception:
            checks.append(Check(f"image {tag}", False, "missing", fix, "WARN"))
    checks.append(Check("mmdebstrap", bool(shutil.which("mmdebstrap")),
                        shutil.which("mmdebstrap") or "not installed (needed only without a registry)",
                        "apt-get install mmdebstrap (lab.py installs it itself when run as root)", "WARN"))
    name = f"socketlab-doctor-{uuid.uuid4().hex[:6]}"
    try:
        net = client.networks.create(name, labels={LABEL_PROJECT: name, LABEL_OWNER: "doctor"})
        net.remove()
        checks.append(Check("network", True, "can create user-defined bridge networks"))
    except Exception as exc:
        checks.append(Check("network", False, str(exc)[:100], "check the engine's network configuration"))
    used = [n.name for n in client.networks.list()
            if any(c.get("Subnet") == topology.subnet for c in (n.attrs.get("IPAM") or {}).get("Config") or [])]
    ours = [n for n in used if n == "socketlab"]
    checks.append(Check("lab subnet", not (set(used) - set(ours)), f"{topology.subnet}" +
                        (f" used by {', '.join(used)}" if used else " free"),
                        "remove that network or set SOCKETLAB_SUBNET=10.78.0.0/24"))
    checks.append(_gateway_check())
    if any(c.name.startswith("image socketlab/base") and c.ok for c in checks):
        checks += _kernel_checks(client, BASE_IMAGE)
    try:
        usage = shutil.disk_usage(info.get("DockerRootDir", "/var/lib/docker"))
        free = usage.free / 1e9
        checks.append(Check("disk", free > 2, f"{free:.1f} GB free for images", "free some disk space", "WARN"))
    except OSError:
        checks.append(Check("disk", True, "engine's disk is not visible from here (remote engine)"))
    return checks


def _kernel_checks(client, image: str) -> list[Check]:
    """netem (for impairments) and packet capture, probed in a throw-away container."""
    from .engine import LABEL_OWNER, LABEL_PROJECT
    script = ("tc qdisc add dev lo root netem delay 1ms 2>&1 && echo NETEM_OK; "
              "python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))' "
              "2>&1 && echo CAPTURE_OK")
    try:
        out = client.containers.run(image, ["sh", "-c", script], remove=True, user="root",
                                     cap_add=["NET_ADMIN", "NET_RAW"],
                                     labels={LABEL_PROJECT: "doctor", LABEL_OWNER: "doctor"}).decode()
    except Exception as exc:
        return [Check("kernel probes", False, str(exc)[:100], "python lab.py build", "WARN")]
    netem = "NETEM_OK" in out
    return [Check("netem", netem, "tc netem works" if netem else "sch_netem missing in this kernel: lessons use "
                  "the seeded relay service instead", "optional: a kernel with CONFIG_NET_SCH_NETEM", "WARN"),
            Check("capture", "CAPTURE_OK" in out, "AF_PACKET sockets work with NET_RAW",
                  "capture needs NET_RAW in the container", "WARN")]


def _gateway_check() -> Check:
    """Can lab.py fence the host's own services off from lesson containers (docs/security.md)?"""
    from .deploy import GatewayGuard
    why = GatewayGuard().reason("docker0")   # the engine's default bridge: is this the engine's machine?
    if why is None:
        return Check("gateway", True, "lab.py adds the host firewall rule for each lab network itself")
    return Check("gateway", False, f"lesson containers can reach the host's own services ({why})",
                 "add the one rule of docs/security.md: sudo iptables -I INPUT -i br-socketlab -m conntrack "
                 "--ctstate NEW -j REJECT", "WARN")
