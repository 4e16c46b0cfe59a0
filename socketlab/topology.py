"""The lesson model, read from compose.yaml (the single source of truth for topology).

Knows lessons, services and the network; knows nothing about Docker. Turning a service into
engine arguments is pure data translation (``ServiceSpec.engine_kwargs``) so that ``lab.py``,
``check`` and the pytest suite all start exactly what compose.yaml describes.
"""
from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import LabError

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
NETWORK = "socketlab"

# compose keys lab.py translates; anything else in a service is an error, never silently ignored.
# There is deliberately no `volumes`/`ports`: a lesson container gets no host mount but the student's
# workspace (x-workspace, mounted by the lab manager) and publishes nothing (docs/security.md).
_SUPPORTED = {"image", "build", "command", "init", "user", "working_dir", "environment", "cap_drop",
              "cap_add", "mem_limit", "pids_limit", "cpus", "security_opt", "read_only", "tmpfs",
              "healthcheck", "networks", "profiles", "sysctls"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)")
_UNIT_NS = {"us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
            "h": 3_600_000_000_000}


def duration_ns(text: str | int) -> int:
    """Compose durations ("1s", "500ms", "1m30s") in nanoseconds, as the engine API wants them."""
    if isinstance(text, int):
        return text * 1_000_000_000
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise LabError(f"compose.yaml: cannot read the duration {text!r}", "write it like 1s, 500ms or 1m30s")
    return int(sum(float(n) * _UNIT_NS[unit] for n, unit in parts))


@dataclass(frozen=True)
class ServiceSpec:
    name: str            # compose service name, also its DNS name on the lab network
    lesson: str
    role: str            # server, client, relay, ...
    config: dict[str, Any]

    @property
    def image(self) -> str:
        return self.config["image"]

    @property
    def command(self) -> list[str] | None:
        return self.config.get("command")

    @property
    def ipv4_address(self) -> str | None:
        return (self.config.get("networks", {}).get(NETWORK) or {}).get("ipv4_address")

    @property
    def healthcheck(self) -> dict | None:
        hc = self.config.get("healthcheck")
        if not hc:
            return None
        return {"test": hc["test"], "interval": duration_ns(hc.get("interval", "1s")),
                "timeout": duration_ns(hc.get("timeout", "3s")), "retries": int(hc.get("retries", 3)),
                "start_period": duration_ns(hc.get("start_period", "0s"))}

    def engine_kwargs(self) -> dict[str, Any]:
        """Arguments for the engine's container create call (docker SDK ``containers.create``).

        Network, name and labels are the caller's: they depend on which lab instance runs it.
        """
        c = self.config
        kw: dict[str, Any] = {"image": c["image"], "hostname": self.name}
        if "command" in c:
            kw["command"] = list(c["command"])
        for key, arg in (("init", "init"), ("user", "user"), ("working_dir", "working_dir"),
                         ("cap_drop", "cap_drop"), ("cap_add", "cap_add"), ("mem_limit", "mem_limit"),
                         ("pids_limit", "pids_limit"), ("security_opt", "security_opt"),
                         ("read_only", "read_only"), ("sysctls", "sysctls")):
            if key in c:
                kw[arg] = c[key]
        if "cpus" in c:   # compose's `cpus: 1.0` is the SDK's nano_cpus (billionths of a CPU)
            kw["nano_cpus"] = round(float(c["cpus"]) * 1_000_000_000)
        if "environment" in c:
            kw["environment"] = {k: str(v) for k, v in c["environment"].items()}
        if "tmpfs" in c:
            tmpfs = [c["tmpfs"]] if isinstance(c["tmpfs"], str) else c["tmpfs"]
            kw["tmpfs"] = dict((t.split(":", 1) + [""])[:2] for t in tmpfs)
        if self.healthcheck:
            kw["healthcheck"] = self.healthcheck
        return kw

    def fingerprint(self) -> str:
        """Changes whenever the service's definition changes (used to recreate stale containers)."""
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Lesson:
    id: str
    title: str
    seed: str
    ports: dict[str, int]
    services: tuple[ServiceSpec, ...]
    client_program: tuple[str, ...] = ()
    protocols: dict[str, str] = field(default_factory=dict)

    def port_text(self, role: str) -> str:
        return f"{self.ports[role]}/{self.protocols.get(role, 'tcp')}" if role in self.ports else ""

    def service(self, role: str) -> ServiceSpec:
        for s in self.services:
            if s.role == role:
                return s
        raise LabError(f"lesson {self.id!r} has no {role!r} service",
                       f"roles of {self.id}: {', '.join(s.role for s in self.services)}")

    @property
    def guide(self) -> Path:
        return ROOT / "services" / self.id / "README.md"

    @property
    def server_program(self) -> list[str]:
        """The server's program part of its command: everything before the first --option."""
        return program_part(self.service("server").command or [])

    @property
    def reference_client(self) -> list[str]:
        return list(self.client_program) or ["python3", f"{self.id}/client.py"]


def program_part(argv: list[str]) -> list[str]:
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            return list(argv[:i])
    return list(argv)


@dataclass(frozen=True)
class Workspace:
    """The student's own folder (x-workspace): ``<host>/<lesson>/`` on the host, ``container`` inside."""

    host: str = "./work"         # relative to the project root
    container: str = "/work"
    roles: tuple[str, ...] = ("server", "client")

    def host_root(self, root: Path = ROOT) -> Path:
        return (root / self.host).resolve()


@dataclass
class Topology:
    lessons: dict[str, Lesson]
    subnet: str | None
    path: Path = COMPOSE_FILE
    raw: dict = field(default_factory=dict, repr=False)
    workspace: Workspace = field(default_factory=Workspace)

    def lesson(self, lesson_id: str) -> Lesson:
        if lesson_id in self.lessons:
            return self.lessons[lesson_id]
        near = difflib.get_close_matches(lesson_id, self.lessons, n=3)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise LabError(f"unknown lesson {lesson_id!r}",
                       f"{hint}known lessons: {', '.join(self.lessons)} (see: python lab.py list)", 2)

    @property
    def images(self) -> set[str]:
        return {s.image for lesson in self.lessons.values() for s in lesson.services}


def load(path: Path = COMPOSE_FILE) -> Topology:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabError(f"{path} is missing", "run lab.py from a complete SocketLab checkout") from None
    except yaml.YAMLError as exc:
        raise LabError(f"{path.name} is not valid YAML: {exc}", "fix the line it names") from None
    return parse(raw, path)


def parse(raw: Any, path: Path = COMPOSE_FILE) -> Topology:
    if not isinstance(raw, dict) or not isinstance(raw.get("services"), dict):
        raise LabError(f"{path.name} has no services: map", "restore compose.yaml from git")
    meta = raw.get("x-lessons") or {}
    by_lesson: dict[str, list[ServiceSpec]] = {lesson: [] for lesson in meta}
    for name, cfg in raw["services"].items():
        cfg = cfg or {}
        unknown = sorted(k for k in cfg if k not in _SUPPORTED and not k.startswith("x-"))
        if unknown:
            raise LabError(f"{path.name}: service {name} uses {', '.join(unknown)}, which lab.py does not translate",
                           "remove the key or teach socketlab/topology.py to translate it")
        if "image" not in cfg:
            raise LabError(f"{path.name}: service {name} has no image", "add image: socketlab/lessons:latest")
        profiles = cfg.get("profiles") or []
        if len(profiles) != 1 or profiles[0] not in meta:
            raise LabError(f"{path.name}: service {name} must have exactly one profile naming its lesson",
                           f"add profiles: [<lesson>] with a lesson from x-lessons ({', '.join(meta)})")
        lesson = profiles[0]
        prefix = f"{lesson}-"
        if not name.startswith(prefix):
            raise LabError(f"{path.name}: service {name} should be named {prefix}<role>", f"rename it {prefix}server")
        by_lesson[lesson].append(ServiceSpec(name, lesson, name[len(prefix):], cfg))
    lessons = {}
    for lesson_id, m in meta.items():
        m = m or {}
        lessons[lesson_id] = Lesson(
            id=lesson_id, title=str(m.get("title", lesson_id)), seed=str(m.get("seed", "")),
            ports={k: int(str(v).split("/")[0]) for k, v in (m.get("ports") or {}).items()},
            protocols={k: (str(v).split("/") + ["tcp"])[1] for k, v in (m.get("ports") or {}).items()},
            services=tuple(by_lesson[lesson_id]), client_program=tuple(m.get("client", ())))
    subnet = None
    net = (raw.get("networks") or {}).get(NETWORK) or {}
    for cfg in (net.get("ipam") or {}).get("config") or []:
        subnet = cfg.get("subnet")
    if subnet:
        ipaddress.ip_network(subnet)
    ws = raw.get("x-workspace") or {}
    if not isinstance(ws, dict) or not str(ws.get("container", "/work")).startswith("/"):
        raise LabError(f"{path.name}: x-workspace must be a map with an absolute container path",
                       "x-workspace: {host: ./work, container: /work, roles: [server, client]}")
    workspace = Workspace(str(ws.get("host", "./work")), str(ws.get("container", "/work")),
                          tuple(ws.get("roles") or ("server", "client")))
    return Topology(lessons, subnet, path, raw, workspace)
