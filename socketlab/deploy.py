"""The lab manager: brings a lesson's services up and down on the engine, finds them again by label.

One instance of the lab is a *project*: the student's is ``socketlab`` (containers
``socketlab-<lesson>-<role>`` on network ``socketlab``); ``check`` and the tests start their own
projects with unique names, so they never touch the student's containers and can run side by side.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Instance:
    """Which lab instance to act on. ``subnet=None`` lets the engine choose (no fixed IPs)."""

    project: str = DEFAULT_PROJECT
    subnet: str | None = "compose"     # "compose" = the subnet compose.yaml fixes
    owner: str = "lab"

    @classmethod
    def throwaway(cls, owner: str, prefix: str = DEFAULT_PROJECT) -> Instance:
        return cls(project=f"{prefix}-{owner}-{uuid.uuid4().hex[:8]}", subnet=None, owner=owner)


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

    def as_dict(self) -> dict:
        return {"node": self.node, "lesson": self.lesson, "role": self.role, "state": self.state,
                "ip": self.ip, "ports": self.ports, "dns": self.aliases}


class LabManager:
    def __init__(self, client: docker.DockerClient, topology: Topology, instance: Instance = Instance(),
                 say: Say = _quiet) -> None:
        self.client = client
        self.topology = topology
        self.instance = instance
        self.say = say

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
        for net in self.client.networks.list(names=[self.network_name]):
            if net.name != self.network_name:
                continue
            if (net.attrs.get("Labels") or {}).get(LABEL_PROJECT) != self.instance.project:
                raise LabError(f"a Docker network named {self.network_name!r} exists but SocketLab did not create it",
                               f"remove it (docker network rm {self.network_name}) or set SOCKETLAB_PROJECT "
                               "to another name")
            return net
        ipam = None
        if self.subnet:
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=self.subnet)])
        try:
            return self.client.networks.create(self.network_name, driver="bridge", ipam=ipam,
                                               labels=self._labels(), check_duplicate=True)
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
           wait: bool = True, timeout: float = 90) -> list[NodeStatus]:
        overrides = overrides or {}
        try:
            net = self.ensure_network()
            started = []
            for spec in lesson.services:
                started.append(self._ensure_container(spec, net, image_id, overrides.get(spec.role)))
            if wait:
                self.wait_healthy(started, timeout)
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
        command_hash = hashlib.sha256(json.dumps(kwargs.get("command")).encode()).hexdigest()[:8]
        fingerprint = f"{spec.fingerprint()}:{image_id[7:19]}:{command_hash}"
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

    def wait_healthy(self, containers: list[Container], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        pending = list(containers)
        while pending:
            for c in list(pending):
                state = self.client.api.inspect_container(c.id)["State"]
                health = (state.get("Health") or {}).get("Status")
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

    # -- down ---------------------------------------------------------------------------------
    def down(self, lesson: str | None = None) -> int:
        """Remove the lesson's containers (all lessons when None); the network once nothing uses it."""
        removed = 0
        for c in self.client.containers.list(all=True, filters=self._filter(lesson)):
            try:
                c.remove(force=True, v=True)
                removed += 1
            except docker.errors.NotFound:
                pass
        if not self.client.containers.list(all=True, filters=self._filter()):
            for net in self.client.networks.list(filters={"label": f"{LABEL_PROJECT}={self.instance.project}"}):
                try:
                    net.remove()
                except docker.errors.APIError:
                    pass   # still in use by a container that is not ours; leave it
        return removed

    # -- status -------------------------------------------------------------------------------
    def containers(self, lesson: str) -> dict[str, Container]:
        found = self.client.containers.list(all=True, filters=self._filter(lesson))
        return {c.labels[LABEL_ROLE]: c for c in found}

    def status(self, lesson: str | None = None) -> list[NodeStatus]:
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
            rows.append(NodeStatus(c.name, lesson_id, role, state, net.get("IPAddress", ""), ports,
                                   [a for a in net.get("Aliases") or [] if not c.id.startswith(a)]))
        return sorted(rows, key=lambda r: (r.lesson, r.role != "server", r.role))
