"""The lab manager: brings a lesson's services up and down on the engine, finds them again by label.

One instance of the lab is a *project*: the student's is ``socketlab`` (containers
``socketlab-<lesson>-<role>`` on network ``socketlab``); ``check`` and the tests start their own
projects with unique names, so they never touch the student's containers and can run side by side.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from . import __version__
from .engine import LABEL_CONFIG, LABEL_LESSON, LABEL_OWNER, LABEL_PROJECT, LABEL_ROLE, LABEL_VERSION
from .errors import LabError
from .topology import Lesson, ServiceSpec, Topology

DEFAULT_PROJECT = "socketlab"
Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# Throw-away instances this process started (``check``): removed by ``remove_throwaways`` when a
# deadline cuts a check short in the middle of its own clean-up.
_THROWAWAYS: set[str] = set()


@dataclass(frozen=True)
class Instance:
    """Which lab instance to act on. ``subnet=None`` lets the engine choose (no fixed IPs).

    Every instance is a sandbox (docs/security.md): its network is ``internal`` (no route out) and
    the host's own services are fenced off where lab.py can (``GatewayGuard``). ``workspace`` is the
    host folder whose ``<lesson>/`` is mounted into the lesson's containers; ``None`` (``check``, the
    tests) means no host mount at all.
    """

    project: str = DEFAULT_PROJECT
    subnet: str | None = "compose"     # "compose" = the subnet compose.yaml fixes
    owner: str = "lab"
    internal: bool = True
    workspace: Path | None = None

    @classmethod
    def throwaway(cls, owner: str, prefix: str = DEFAULT_PROJECT) -> Instance:
        """A private, internal instance with no host mounts: how untrusted code is graded."""
        instance = cls(project=f"{prefix}-{owner}-{uuid.uuid4().hex[:8]}", subnet=None, owner=owner)
        _THROWAWAYS.add(instance.project)
        return instance

    @property
    def bridge(self) -> str | None:
        """A readable bridge name for the student's own network (the one rule docs/security.md shows)."""
        return "br-socketlab" if self.project == DEFAULT_PROJECT else None


@dataclass(frozen=True)
class Override:
    """Run a service from another image and/or with another command (``check --server PATH``)."""

    image: str | None = None
    command: list[str] | None = None


@dataclass
class NodeStatus:
    node: str
    lesson: str
    role: str
    state: str
    ip: str
    ports: str
    aliases: list[str] = field(default_factory=list)
    connections: list[dict] = field(default_factory=list)   # servers: [{"peer", "node", "state"}]

    def as_dict(self) -> dict:
        return {"node": self.node, "lesson": self.lesson, "role": self.role, "state": self.state,
                "ip": self.ip, "ports": self.ports, "dns": self.aliases, "connections": self.connections}


# -- the kernel's connection table, read inside a server container ------------------------------
def peers_from_sockets_tool(stdout: bytes) -> list[tuple[str, int, str]]:
    """(peer ip, peer port, state) of each connection ``python3 -m labnode sockets`` found (the node
    tool reads /proc/net/tcp{,6} inside the container; the listener itself is left out)."""
    for line in stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("RESULT "):
            sockets = json.loads(line[len("RESULT "):]).get("observed", {}).get("sockets", [])
            peers = []
            for s in sockets:
                if s["state"] == "LISTEN":
                    continue
                ip, port = s["remote"].rsplit(":", 1)
                peers.append((ip.removeprefix("::ffff:"), int(port), s["state"]))
            return peers
    return []


# -- the student's workspace -------------------------------------------------------------------
def invoking_user() -> tuple[int, int]:
    """Who ran lab.py: the person behind sudo when run through sudo, else this process's user."""
    if os.geteuid() == 0 and os.environ.get("SUDO_UID", "").isdigit():
        uid = int(os.environ["SUDO_UID"])
        gid = os.environ.get("SUDO_GID", "")
        return uid, int(gid) if gid.isdigit() else uid
    return os.getuid(), os.getgid()


def ensure_workspace(root: Path, lesson: str, container_user: str) -> tuple[Path, str]:
    """Create ``<root>/<lesson>/`` (never deleted) and return it with the uid:gid to run containers as.

    Files must be readable and writable on both sides. A folder owned by an ordinary user (1000 or
    anyone else) is shared by running the containers as that user. A folder owned by root (lab.py
    run as root without sudo, as CI does) keeps the containers unprivileged: the folder's group
    becomes the container user's group, group-writable and set-gid (new files keep that group).
    """
    uid, gid = invoking_user()
    path = root / lesson
    missing = [d for d in (root, path) if not d.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for d in missing:
        if os.geteuid() == 0 and uid != 0:
            os.chown(d, uid, gid)          # lab.py under sudo: the folder is the student's, not root's
    st = path.stat()
    if st.st_uid != 0:
        return path, f"{st.st_uid}:{st.st_gid}"
    container_gid = int(container_user.split(":")[1]) if ":" in container_user else int(container_user)
    try:
        os.chown(path, 0, container_gid)
        path.chmod(0o2775)
    except PermissionError:
        pass                               # not ours to change; it was set up by an earlier root run
    return path, container_user


def _as_user(kwargs: dict, user: str) -> None:
    """Run the container as ``user``; tmpfs mounts owned by the old user follow (ftp's /srv/ftp)."""
    uid, _, gid = user.partition(":")
    kwargs["user"] = user
    kwargs["tmpfs"] = {path: re.sub(r"\bgid=\d+", f"gid={gid or uid}", re.sub(r"\buid=\d+", f"uid={uid}", opts))
                       for path, opts in (kwargs.get("tmpfs") or {}).items()}


# -- the host behind the gateway -----------------------------------------------------------------
class GatewayGuard:
    """Fences the host itself off from lesson containers.

    An ``internal`` network has no route out, but the host still answers on the bridge's own
    address (the gateway): any service listening on 0.0.0.0 on the host is one connect away. When
    lab.py runs as root on the engine's own machine it adds one rule per lab network to the host's
    INPUT chain, tagged ``socketlab:<project>``, and removes it with the network:

        iptables -I INPUT -i <bridge> -m conntrack --ctstate NEW -j REJECT

    (replies to connections the host opens stay allowed). Otherwise ``reason`` says why not, and
    docs/security.md gives the teacher the same rule to add once.
    """

    def __init__(self, runner: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> None:
        self.run = runner

    @staticmethod
    def bridge_of(net) -> str:
        options = net.attrs.get("Options") or {}
        return options.get("com.docker.network.bridge.name") or f"br-{net.id[:12]}"

    @staticmethod
    def tag(project: str) -> str:
        return f"socketlab:{project}"

    @staticmethod
    def rule(bridge: str, project: str) -> list[str]:
        return ["INPUT", "-i", bridge, "-m", "conntrack", "--ctstate", "NEW",
                "-m", "comment", "--comment", GatewayGuard.tag(project), "-j", "REJECT"]

    def reason(self, bridge: str) -> str | None:
        """Why the rule cannot be added here, or None when it can."""
        if os.name != "posix" or os.geteuid() != 0:
            return "lab.py is not running as root"
        if not shutil.which("iptables"):
            return "iptables is not installed"
        if not Path("/sys/class/net", bridge).exists():
            return "the Docker engine runs on another machine or in a VM (its bridge is not visible here)"
        return None

    def _iptables(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(["iptables", "-w", *args], capture_output=True, text=True, timeout=20)

    def guard(self, net, project: str) -> str | None:
        """Add the rule for this network (idempotent); None when in place, else the reason it is not."""
        bridge = self.bridge_of(net)
        why = self.reason(bridge)
        if why:
            return why
        rule = self.rule(bridge, project)
        if self._iptables("-C", *rule).returncode == 0:
            return None
        done = self._iptables("-I", *rule)
        return None if done.returncode == 0 else f"iptables refused the rule: {done.stderr.strip()[:120]}"

    def _rules(self) -> list[list[str]]:
        if os.name != "posix" or os.geteuid() != 0 or not shutil.which("iptables"):
            return []
        listing = self._iptables("-S", "INPUT")
        return [shlex.split(line) for line in listing.stdout.splitlines() if "socketlab:" in line]

    def unguard(self, project: str) -> None:
        for words in self._rules():
            if self.tag(project) in words and words[:1] == ["-A"]:
                self._iptables("-D", *words[1:])

    def sweep(self) -> int:
        """Remove the rules of lab networks that no longer exist (a crashed run's leftovers)."""
        removed = 0
        for words in self._rules():
            if words[:1] == ["-A"] and "-i" in words:
                bridge = words[words.index("-i") + 1]
                if not Path("/sys/class/net", bridge).exists():
                    self._iptables("-D", *words[1:])
                    removed += 1
        return removed


# -- a wall-clock limit for untrusted code -------------------------------------------------------
class DeadlineExceeded(BaseException):
    """A check ran past its wall-clock limit. A BaseException, so that the scenario runner's
    ``except Exception`` (a crashing scenario must not stop the others) cannot swallow it."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the check ran out of its {seconds:g} s wall-clock limit")
        self.seconds = seconds


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise DeadlineExceeded in the main thread once ``seconds`` have passed (a total deadline)."""
    usable = (seconds and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def expire(_signum, _frame) -> None:
        raise DeadlineExceeded(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def remove_project(client: docker.DockerClient, project: str, lesson: str | None = None,
                   guard: GatewayGuard | None = None) -> int:
    """Remove a project's containers (one lesson's, or all), then its network once nothing uses it."""
    labels = [f"{LABEL_PROJECT}={project}"] + ([f"{LABEL_LESSON}={lesson}"] if lesson else [])
    removed = 0
    for c in client.containers.list(all=True, filters={"label": labels}):
        try:
            c.remove(force=True, v=True)
            removed += 1
        except docker.errors.NotFound:
            pass
    if not client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}):
        for net in client.networks.list(filters={"label": f"{LABEL_PROJECT}={project}"}):
            try:
                net.remove()
            except docker.errors.APIError:
                continue   # still in use by a container that is not ours; leave it (and its rule)
            (guard or GatewayGuard()).unguard(project)
        _THROWAWAYS.discard(project)
    return removed


def remove_throwaways(client: docker.DockerClient) -> int:
    """Remove every throw-away instance this process started and has not removed yet."""
    return sum(remove_project(client, project) for project in sorted(_THROWAWAYS))


class LabManager:
    def __init__(self, client: docker.DockerClient, topology: Topology, instance: Instance = Instance(),
                 say: Say = _quiet) -> None:
        self.client = client
        self.topology = topology
        self.instance = instance
        self.say = say
        self.guard = GatewayGuard()
        self.gateway_open: str | None = None   # why the host is still reachable through the gateway

    # -- names and labels ---------------------------------------------------------------------
    @property
    def network_name(self) -> str:
        return self.instance.project

    def container_name(self, spec: ServiceSpec) -> str:
        return f"{self.instance.project}-{spec.name}"

    def _labels(self, **extra: str) -> dict[str, str]:
        return {LABEL_PROJECT: self.instance.project, LABEL_OWNER: self.instance.owner,
                LABEL_VERSION: __version__, **extra}

    def _filter(self, lesson: str | None = None) -> dict:
        labels = [f"{LABEL_PROJECT}={self.instance.project}"]
        if lesson:
            labels.append(f"{LABEL_LESSON}={lesson}")
        return {"label": labels}

    @property
    def subnet(self) -> str | None:
        return self.topology.subnet if self.instance.subnet == "compose" else self.instance.subnet

    def _address(self, spec: ServiceSpec) -> str | None:
        """The fixed address compose.yaml gives the service, moved into this instance's subnet."""
        if not spec.ipv4_address or not self.subnet or not self.topology.subnet:
            return None
        host_part = int(ipaddress.ip_address(spec.ipv4_address)) - int(
            ipaddress.ip_network(self.topology.subnet).network_address)
        return str(ipaddress.ip_network(self.subnet).network_address + host_part)

    # -- network ------------------------------------------------------------------------------
    def ensure_network(self) -> docker.models.networks.Network:
        net = self._network()
        self.gateway_open = self.guard.guard(net, self.instance.project) if self.instance.internal else "not internal"
        return net

    def _network(self) -> docker.models.networks.Network:
        for net in self.client.networks.list(names=[self.network_name]):
            if net.name != self.network_name:
                continue
            if (net.attrs.get("Labels") or {}).get(LABEL_PROJECT) != self.instance.project:
                raise LabError(f"a Docker network named {self.network_name!r} exists but SocketLab did not create it",
                               f"remove it (docker network rm {self.network_name}) or set SOCKETLAB_PROJECT "
                               "to another name")
            net.reload()
            if bool(net.attrs.get("Internal")) == self.instance.internal:
                return net
            # made by an older lab.py, before the sandbox: recreate it (and the containers on it)
            self.say(f"network {self.network_name} predates the sandbox (it has a route out): recreating it")
            remove_project(self.client, self.instance.project, guard=self.guard)
        self.guard.sweep()
        ipam = None
        if self.subnet:
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=self.subnet)])
        options = {"com.docker.network.bridge.name": self.instance.bridge} if self.instance.bridge else None
        try:
            return self.client.networks.create(self.network_name, driver="bridge", ipam=ipam, options=options,
                                               internal=self.instance.internal, labels=self._labels(),
                                               check_duplicate=True)
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            if "overlap" in text.lower():
                users = [n.name for n in self.client.networks.list()
                         if any(c.get("Subnet") == self.subnet
                                for c in (n.attrs.get("IPAM") or {}).get("Config") or [])]
                raise LabError(f"the lab subnet {self.subnet} is already used"
                               + (f" by network {', '.join(users)}" if users else " on this machine"),
                               "remove that network, or pick a free subnet: SOCKETLAB_SUBNET=10.78.0.0/24 "
                               "python lab.py up ...") from None
            raise LabError(f"could not create network {self.network_name}: {text}",
                           "run `python lab.py doctor`") from None

    # -- up -----------------------------------------------------------------------------------
    def up(self, lesson: Lesson, image_id: str, overrides: dict[str, Override] | None = None,
           wait: bool = True, timeout: float = 90, probe: bool = False) -> list[NodeStatus]:
        """Start what is missing or changed and wait until healthy (``probe``: see ``wait_healthy``)."""
        overrides = overrides or {}
        try:
            net = self.ensure_network()
            started = []
            for spec in lesson.services:
                started.append(self._ensure_container(spec, net, image_id, overrides.get(spec.role)))
            if wait:
                self.wait_healthy(started, timeout, probe)
        except KeyboardInterrupt:
            self.say("interrupted: removing what this run started")
            self.down(lesson.id)
            raise LabError("interrupted; the lesson's containers were removed", "", 130) from None
        return self.status(lesson.id)

    def _ensure_container(self, spec: ServiceSpec, net, image_id: str, override: Override | None) -> Container:
        kwargs = spec.engine_kwargs()
        if override and override.image:
            kwargs["image"] = override.image
            image_id = self.client.images.get(override.image).id
        if override and override.command:
            kwargs["command"] = override.command
        workspace = self.workspace(spec)
        if workspace:
            path, user = workspace
            kwargs["volumes"] = {str(path): {"bind": self.topology.workspace.container, "mode": "rw"}}
            if user != kwargs.get("user"):
                _as_user(kwargs, user)
        # everything that shapes the container (command, user, mounts) is in its fingerprint
        kwargs_hash = hashlib.sha256(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()[:8]
        fingerprint = f"{spec.fingerprint()}:{image_id[7:19]}:{kwargs_hash}"
        name = self.container_name(spec)
        try:
            existing = self.client.containers.get(name)
        except docker.errors.NotFound:
            existing = None
        if existing is not None:
            labels = existing.labels or {}
            if labels.get(LABEL_PROJECT) != self.instance.project:
                raise LabError(f"a container named {name} exists but SocketLab did not create it",
                               f"remove it (docker rm -f {name}) or set SOCKETLAB_PROJECT to another name")
            if labels.get(LABEL_CONFIG) == fingerprint and existing.status == "running":
                return existing
            existing.remove(force=True)
        address = self._address(spec)
        kwargs.update(
            name=name, detach=True, network=net.name,
            labels=self._labels(**{LABEL_LESSON: spec.lesson, LABEL_ROLE: spec.role, LABEL_CONFIG: fingerprint}),
            networking_config={net.name: self.client.api.create_endpoint_config(
                aliases=[spec.name], ipv4_address=address)})
        try:
            container = self.client.containers.create(**kwargs)
            container.start()
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            fix = ("another container holds that address: python lab.py down --all, or docker ps to find it"
                   if "address" in text.lower() else "run `python lab.py doctor`")
            raise LabError(f"could not start {name}: {text}", fix) from None
        return container

    def workspace(self, spec: ServiceSpec) -> tuple[Path, str] | None:
        """(host folder, container user) when this service gets the student's workspace mounted."""
        if self.instance.workspace is None or spec.role not in self.topology.workspace.roles:
            return None
        return ensure_workspace(self.instance.workspace, spec.lesson, str(spec.config.get("user", "1000:1000")))

    def wait_healthy(self, containers: list[Container], timeout: float = 90, probe: bool = False) -> None:
        """Wait until every container runs and its health check passes.

        The engine runs a health check once per interval (1 s in compose.yaml), so a server that
        listens after 0.2 s is seen healthy after a second. With ``probe`` the same check command is
        also run here, through exec, between the engine's: the same verdict, up to an interval sooner
        (``check`` starts one lesson instance per program).
        """
        deadline = time.monotonic() + timeout
        pending = list(containers)
        while pending:
            for c in list(pending):
                attrs = self.client.api.inspect_container(c.id)
                state = attrs["State"]
                health = (state.get("Health") or {}).get("Status")
                if probe and health == "starting" and state["Status"] == "running" and self._passes_check(c, attrs):
                    health = "healthy"
                if state["Status"] in ("exited", "dead"):
                    tail = c.logs(tail=8).decode("utf-8", "replace").strip()
                    raise LabError(f"{c.name} stopped (exit {state.get('ExitCode')}) while starting:\n{tail}",
                                   f"python lab.py logs {c.labels.get(LABEL_LESSON)} {c.labels.get(LABEL_ROLE)}")
                if state["Status"] == "running" and health in (None, "healthy"):
                    pending.remove(c)
                elif health == "unhealthy":
                    raise LabError(f"{c.name} is unhealthy: its server never started listening",
                                   f"python lab.py logs {c.labels.get(LABEL_LESSON)} {c.labels.get(LABEL_ROLE)}")
            if pending and time.monotonic() > deadline:
                raise LabError(f"{', '.join(c.name for c in pending)} not healthy after {timeout:.0f} s",
                               "python lab.py logs <lesson> server")
            if pending:
                time.sleep(0.1)

    def _passes_check(self, container: Container, attrs: dict) -> bool:
        """Run the container's own health check command once (exec); True when it passes."""
        test = ((attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
        if test[:1] == ["CMD"]:
            argv = test[1:]
        elif test[:1] == ["CMD-SHELL"] and len(test) == 2:
            argv = ["sh", "-c", test[1]]
        else:
            return False
        try:
            return container.exec_run(argv).exit_code == 0
        except docker.errors.APIError:
            return False     # stopped or gone meanwhile: the engine's state says which, next round

    # -- down ---------------------------------------------------------------------------------
    def remove_containers(self, lesson: str) -> int:
        """Remove the lesson's containers and keep the network: with them go every process they ran
        (the whole pid namespace), their tmpfs files and their network namespaces (sockets, TIME_WAIT)."""
        removed = 0
        for c in self.client.containers.list(all=True, filters=self._filter(lesson)):
            try:
                c.remove(force=True, v=True)
                removed += 1
            except docker.errors.NotFound:
                pass
        return removed

    def down(self, lesson: str | None = None) -> int:
        """Remove the lesson's containers (all lessons when None); the network once nothing uses it.

        The workspace (``work/<lesson>/``) is the student's and is never touched."""
        return remove_project(self.client, self.instance.project, lesson, self.guard)

    # -- status -------------------------------------------------------------------------------
    def containers(self, lesson: str) -> dict[str, Container]:
        found = self.client.containers.list(all=True, filters=self._filter(lesson))
        return {c.labels[LABEL_ROLE]: c for c in found}

    def connections(self, container: Container, port: int) -> list[tuple[str, int, str]]:
        """The server's connections on its port, from the kernel's table inside its container."""
        try:
            result = container.exec_run(["python3", "-m", "labnode", "sockets", "--port", str(port),
                                         "--settle", "0"], demux=True)
        except docker.errors.APIError:
            return []
        return peers_from_sockets_tool((result.output or (b"", b""))[0] or b"")

    def status(self, lesson: str | None = None, connections: bool = False) -> list[NodeStatus]:
        rows = []
        for c in self.client.containers.list(all=True, filters=self._filter(lesson)):
            attrs = c.attrs
            net = (attrs.get("NetworkSettings", {}).get("Networks") or {}).get(self.network_name) or {}
            health = ((attrs.get("State") or {}).get("Health") or {}).get("Status")
            state = c.status + (f" ({health})" if health and health != "healthy" else "")
            lesson_id, role = c.labels.get(LABEL_LESSON, "?"), c.labels.get(LABEL_ROLE, "?")
            ports = ""
            if lesson_id in self.topology.lessons:
                ports = self.topology.lessons[lesson_id].port_text(role)
            row = NodeStatus(c.name, lesson_id, role, state, net.get("IPAddress", ""), ports,
                             [a for a in net.get("Aliases") or [] if not c.id.startswith(a)])
            if connections and c.status == "running" and ports.endswith("/tcp"):
                row.connections = [{"peer": f"{ip}:{port}", "state": st} for ip, port, st in
                                   self.connections(c, int(ports.split("/")[0]))]
            rows.append(row)
        names = {r.ip: (r.aliases[:1] or [r.node])[0] for r in rows if r.ip}
        for r in rows:
            for conn in r.connections:
                conn["node"] = names.get(conn["peer"].rsplit(":", 1)[0], "")
        return sorted(rows, key=lambda r: (r.lesson, r.role != "server", r.role))
