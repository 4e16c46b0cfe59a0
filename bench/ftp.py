"""FTP benchmark (not a test): our server vs pyftpdlib vs bare-socket ceilings, container to container.

    cd /work/main && .venv/bin/python bench/ftp.py [--quick] [--reps 5] [--markdown]
                                                   [--sizes 1M,64M,1G] [--only RUN,...] [--seed N]

Two containers (server, client) on a private Docker network, files on a Docker volume (ext4 on
this host; not the image's fuse-overlayfs, not tmpfs), 4 GiB memory limit each so the page cache
holds every file. In the server container run, side by side and for the whole run:

    ceiling    bench/ftp_peer.py ceiling-server   bare sendfile / recv_into loops (the physical limit)
    ours       python3 -m ftp.server --quiet      services/ftp, driven by its FtpClient library
    ours-300   the same with --max-sessions 310   only for the 300-logins test
    pyftpdlib  2.2.0 (requirements.txt), quiet    driven by ftplib with 1 MiB blocks
    pyftpdlib+fsync  the same, fsync before 226   uploads with our durability ("same work")
    bare       bench/ftp_peer.py login-bare-server   our login's frames, canned: I/O and json only

Per file size (1 MiB, 64 MiB, 1 GiB; --quick: 1 MiB and 64 MiB) and repetition, the runs of one
direction go back to back in a freshly shuffled order, so machine noise hits all alike; tables
show medians, and ratios are medians of the per-repetition ratios. A measurement is 64 transfers
of 1 MiB, 4 of 64 MiB or 1 of 1 GiB on one session, after a `sync` so no run inherits another's
dirty pages. Per run: MB/s (10^6 bytes/s at the client, until the server's final reply), ratio to
the ceiling and to the pyftpdlib run doing the same client work, server CPU s/GB (every thread's
schedstat run time: utime+stime without the 10 ms tick), client CPU s/GB (getrusage), and server
peak RSS (VmHWM, reset through /proc/PID/clear_refs before each run). Derived rows split a run
into parts it timed itself: the upload ceiling plus the fsync it did after acking, and a protocol-1
put minus the sha256 pass its client makes over the file before sending.

Goals (SPEC §9, issue 11): download ≥ 0.9× ceiling (64 MiB and 1 GiB), upload ≥ 0.85× ceiling and
≥ 1.0× pyftpdlib with the same durability, server RSS flat from 1 MiB to 1 GiB, 300 concurrent
logins ≤ pyftpdlib's time in the same run. The logins run a third peer beside the two: the
*bare* exchange: our login's three round trips of JSON frames with nothing but the I/O (a selectors
loop sending replies made at start-up, a raw-socket client; no checks, no proof, no state), so the
table shows what part of a login any Python implementation of this protocol pays on this machine.
The write-up is docs/ftp-benchmark.md.
Everything created carries socketlab.owner=bench and its own socketlab.project and is removed at
the end, also after Ctrl-C, kill or an error.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import platform
import random
import signal
import statistics
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from socketlab.engine import LABEL_OWNER, LABEL_PROJECT, connect  # noqa: E402
from socketlab.images import ImageBuilder  # noqa: E402

PYFTPDLIB_VERSION = "2.2.0"
MEM_LIMIT = "4g"            # page cache is charged to the container: 2 × 1 GiB files + a 1 GiB copy
PORTS = {"ceiling": 20070, "ours": 20060, "ours-300": 20061, "pyftpd": 2121, "pyftpd-fsync": 2122,
         "bare": 20062}
LOGIN_SERVERS = {"ours": "ours-300", "pyftpd": "pyftpd", "bare": "bare"}   # login client kind -> server
FTP_ROOT = "/data/srv/root"                 # our server's --root
HOME = f"{FTP_ROOT}/home/bench"             # bench's home = pyftpdlib's root = the ceiling's dir
CLIENT_DIR = "/data/cli"
PEER = "python3 /opt/bench/ftp_peer.py"
LOGIN_CLIENTS = 300


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Size:
    label: str
    bytes: int
    name: str               # the file's name on both sides
    count: int              # transfers per measurement, on one session


SIZES = [Size("1 MiB", 1 << 20, "f1m", 64), Size("64 MiB", 64 << 20, "f64m", 4),
         Size("1 GiB", 1 << 30, "f1g", 1)]


@dataclass(frozen=True)
class Method:
    key: str
    direction: str          # download | upload
    label: str
    server: str             # key of PORTS: whose CPU and RSS we read
    kind: str               # ftp_peer.py transfer KIND
    mode: str = "verified"
    peer: str | None = None  # the pyftpdlib row doing the same client work

    @property
    def op(self) -> str:
        return "get" if self.direction == "download" else "put"


METHODS = [
    Method("down-ceiling", "download", "ceiling: sendfile -> recv_into, discarded", "ceiling", "ceiling",
           "discard"),
    Method("down-ours-discard", "download", "ours: FtpClient session, body discarded", "ours", "ours",
           "discard", peer="down-pyftpd-discard"),
    Method("down-pyftpd-discard", "download", "pyftpdlib: ftplib RETR, discarded", "pyftpd", "pyftpd",
           "discard"),
    Method("down-ours", "download", "ours: FtpClient.get (sha256+disk+fsync)", "ours", "ours",
           peer="down-pyftpd"),
    Method("down-pyftpd", "download", "pyftpdlib: ftplib RETR -> sha256+disk+fsync", "pyftpd", "pyftpd"),
    Method("up-ceiling", "upload", "ceiling: recv_into -> write + sha256", "ceiling", "ceiling"),
    Method("up-ceiling-wb", "upload", "ceiling + sync_file_range every 4 MiB (as ours)", "ceiling", "ceiling",
           "writeback"),
    Method("up-ours", "upload", "ours: FtpClient.put, protocol 2 (one pass, trailer, fsync)", "ours", "ours",
           peer="up-pyftpd-fsync"),
    Method("up-ours-v1", "upload", "ours: FtpClient.put, protocol 1 (sha256 pre-pass)", "ours", "ours",
           "prepass", peer="up-pyftpd-fsync"),
    Method("up-pyftpd-fsync", "upload", "pyftpdlib + fsync before 226: STOR, sha256 same pass", "pyftpd-fsync",
           "pyftpd"),
    Method("up-pyftpd", "upload", "pyftpdlib as shipped (no fsync): STOR, sha256 same pass", "pyftpd", "pyftpd"),
]
CEILING = {"download": "down-ceiling", "upload": "up-ceiling"}
SHORT = {"download": "down", "upload": "up"}


@dataclass(frozen=True)
class Derived:
    """A row computed from another run's own numbers: its time plus or minus a part it timed."""

    key: str
    base: str
    label: str
    seconds: str            # a list in the driver's JSON (timed outside the clock)
    sign: int
    peer: str | None = None


FSYNC_ROW, PREPASS_ROW = "up-ceiling+fsync", "up-ours-v1-prepass"
DERIVED = [
    Derived(FSYNC_ROW, "up-ceiling", "  + the fsync it did after (derived)", "fsync_seconds", +1),
    Derived(PREPASS_ROW, "up-ours-v1", "  - the client's sha256 pre-pass (derived)", "prepass_seconds", -1),
]


@dataclass
class Sample:
    mbps: float
    srv_cpu_per_gb: float
    cli_cpu_per_gb: float
    srv_hwm_mib: float


@dataclass
class Results:
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)    # (size, key) -> reps
    logins: dict[str, list[dict]] = field(default_factory=dict)
    first_get: dict[str, float] = field(default_factory=dict)     # size -> MB/s of the cold-digest get

    def add(self, size: str, key: str, sample: Sample) -> None:
        self.samples.setdefault((size, key), []).append(sample)


# ---------------------------------------------------------------------------------------------
# Docker objects: one project, labelled, removed in `finally`
# ---------------------------------------------------------------------------------------------

class BenchLab:
    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.project = f"ftpbench-{uuid.uuid4().hex[:8]}"
        self.labels = {LABEL_OWNER: "bench", LABEL_PROJECT: self.project}
        self.tag = f"socketlab-bench/ftp:{self.project}"
        self.server = self.cli = None
        self.pids: dict[str, int] = {}
        self.digests: dict[tuple[str, str], str] = {}      # (side, file) -> sha256

    # --- build and start ------------------------------------------------------------------------

    def build_image(self, base: str) -> None:
        """The lessons image + pyftpdlib (copied from this venv) + ftp_peer.py + an empty /data."""
        spec = importlib.util.find_spec("pyftpdlib")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("pyftpdlib is not installed: run `.venv/bin/pip install -r requirements.txt`")
        import pyftpdlib
        if pyftpdlib.__ver__ != PYFTPDLIB_VERSION:
            raise SystemExit(f"pyftpdlib {pyftpdlib.__ver__} found, the benchmark pins {PYFTPDLIB_VERSION}")
        package = Path(next(iter(spec.submodule_search_locations)))
        files = {f"opt/pyftpdlib/{p.relative_to(package).as_posix()}": p.read_bytes()
                 for p in sorted(package.rglob("*.py"))}
        files["opt/ftp_peer.py"] = (ROOT / "bench/ftp_peer.py").read_bytes()
        files["data/.keep"] = b""
        labels = " ".join(f'{k}="{v}"' for k, v in self.labels.items())
        files["Dockerfile"] = (f"FROM {base}\n"
                               "COPY --chown=1000:1000 data/ /data/\n"     # a fresh volume copies uid 1000
                               "COPY opt/ /opt/bench/\n"
                               f"ENV PYTHONPATH=/lab:/opt/bench\nLABEL {labels}\n").encode()
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        context.seek(0)
        for event in self.client.api.build(fileobj=context, custom_context=True, tag=self.tag, rm=True,
                                           forcerm=True, decode=True, pull=False):
            if "error" in event:
                raise RuntimeError(f"building {self.tag} failed: {event['error'].strip()}")

    def start(self) -> None:
        network = self.client.networks.create(self.project, driver="bridge", labels=self.labels)
        volume = self.client.volumes.create(f"{self.project}-data", labels=self.labels)
        common = dict(image=self.tag, command=["sleep", "infinity"], detach=True, labels=self.labels,
                      network=network.name, user="1000:1000", cap_drop=["ALL"],
                      security_opt=["no-new-privileges:true"], init=True, mem_limit=MEM_LIMIT,
                      pids_limit=4096, working_dir="/lab",
                      volumes={volume.name: {"bind": "/data", "mode": "rw"}},
                      environment={"PYTHONUNBUFFERED": "1", "PYTHONPATH": "/lab:/opt/bench"})
        self.server = self.client.containers.run(name=f"{self.project}-server", **common)
        self.cli = self.client.containers.run(name=f"{self.project}-client", **common)

    def cleanup(self) -> None:
        """Everything with our project label, whatever state the run died in."""
        flt = {"label": f"{LABEL_PROJECT}={self.project}"}
        for c in self.client.containers.list(all=True, filters=flt):
            _quietly(lambda c=c: c.remove(force=True))
        for n in self.client.networks.list(filters=flt):
            _quietly(n.remove)
        for v in self.client.volumes.list(filters=flt):
            _quietly(lambda v=v: v.remove(force=True))
        for i in self.client.images.list(filters=flt):
            _quietly(lambda i=i: self.client.images.remove(i.id, force=True))
        _quietly(lambda: self.client.images.remove(self.tag, force=True))

    # --- commands in the containers -----------------------------------------------------------

    @staticmethod
    def run(container, command: str) -> str:
        result = container.exec_run(["sh", "-c", command], demux=True)
        out, err = result.output if result.output else (b"", b"")
        if result.exit_code != 0:
            tail = (err or out or b"").decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"`{command[:120]}` failed in {container.name} ({result.exit_code}): "
                               + " | ".join(tail))
        return (out or b"").decode()

    def spawn(self, name: str, command: str) -> None:
        """A long-running server process; its pid (the exec'd python) goes to /data/run/NAME.pid."""
        self.server.exec_run(["sh", "-c", f"echo $$ > /data/run/{name}.pid; exec {command} "
                              f"> /data/run/{name}.log 2>&1"], detach=True)

    def setup(self, sizes: list[Size]) -> None:
        self.run(self.server, f"mkdir -p /data/run {HOME} {CLIENT_DIR} && python3 -m ftp.users add bench "
                              f"--quota 100G --password bench --root {FTP_ROOT}")
        for size in sizes:
            say(f"  creating {size.label} files on both sides")
            self.digests["srv", size.name] = self.run(self.server, f"{PEER} mkfile {HOME}/{size.name} "
                                                                   f"{size.bytes}").strip()
            self.digests["cli", size.name] = self.run(self.cli, f"{PEER} mkfile {CLIENT_DIR}/{size.name} "
                                                                f"{size.bytes}").strip()
        self.spawn("ceiling", f"{PEER} ceiling-server --port {PORTS['ceiling']} --dir {HOME}")
        self.spawn("pyftpd", f"{PEER} pyftpd-server --port {PORTS['pyftpd']} --root {HOME}")
        self.spawn("pyftpd-fsync", f"{PEER} pyftpd-server --port {PORTS['pyftpd-fsync']} --root {HOME} --fsync")
        self.spawn("bare", f"{PEER} login-bare-server --port {PORTS['bare']}")
        self.spawn("ours", f"python3 -m ftp.server --port {PORTS['ours']} --root {FTP_ROOT} --quiet "
                           "--no-demo-users")
        # the second instance starts after the first has made server.secret (no race on creating it)
        self.run(self.server, f"{PEER} wait-listening {PORTS['ceiling']} {PORTS['pyftpd']} "
                              f"{PORTS['pyftpd-fsync']} {PORTS['ours']} {PORTS['bare']}")
        self.spawn("ours-300", f"python3 -m ftp.server --port {PORTS['ours-300']} --root {FTP_ROOT} --quiet "
                               f"--no-demo-users --max-sessions {LOGIN_CLIENTS + 10}")
        self.run(self.server, f"{PEER} wait-listening {PORTS['ours-300']}")
        for name in PORTS:
            self.pids[name] = int(self.run(self.server, f"cat /data/run/{name}.pid").strip())

    # --- server-side counters -------------------------------------------------------------------

    def server_stat(self, server: str, *, reset: bool = False, sync: bool = False,
                    remove: Iterable[str] = ()) -> tuple[float, int]:
        """(CPU seconds, VmHWM KiB) of one server process; optionally reset the peak and delete files.

        CPU is the sum of every thread's on-CPU nanoseconds (/proc/PID/task/*/schedstat), which
        is utime+stime without the 10 ms tick rounding. The servers keep their threads for life
        (our pool is fixed), so no thread's time is lost by exiting.
        """
        pid = self.pids[server]
        command = f"grep VmHWM /proc/{pid}/status && cat /proc/{pid}/task/*/schedstat"
        if sync:      # every run starts with no dirty pages of the one before (sync(2) is machine-wide)
            command = "sync && " + command
        if reset:
            command += f" && echo 5 > /proc/{pid}/clear_refs"    # VmHWM := current RSS (Linux >= 4.0)
        if remove:
            command += " && rm -f " + " ".join(remove)
        out = self.run(self.server, command).splitlines()
        hwm = int(out[0].split()[1])
        cpu = sum(int(line.split()[0]) for line in out[1:] if line.strip()) / 1e9
        return cpu, hwm

    def client_json(self, command: str) -> dict:
        return json.loads(self.run(self.cli, command).strip().splitlines()[-1])

    # --- one run ----------------------------------------------------------------------------

    def transfer_command(self, m: Method, size: Size) -> str:
        host = f"{self.project}-server"
        args = [PEER, "transfer", m.kind, m.op, "--host", host, "--port", str(PORTS[m.server]),
                "--count", str(size.count), "--mode", m.mode]
        if m.op == "get":
            args += ["--remote", size.name, "--local", f"{CLIENT_DIR}/down-{m.kind}-{size.name}",
                     "--digest", self.digests["srv", size.name]]
        else:
            args += ["--remote", upload_name(m, size), "--local", f"{CLIENT_DIR}/{size.name}",
                     "--digest", self.digests["cli", size.name]]
        return " ".join(args)

    def measure(self, m: Method, size: Size) -> tuple[Sample, dict]:
        cpu0, _ = self.server_stat(m.server, reset=True, sync=True)
        out = self.client_json(self.transfer_command(m, size))
        # each put of a measurement made a file of its own (see ftp_peer.py numbered)
        remove = [f"{HOME}/{upload_name(m, size)}*"] if m.op == "put" else []
        cpu1, hwm = self.server_stat(m.server, remove=remove)
        gb = out["bytes"] / 1e9
        return Sample(mbps=out["bytes"] / out["seconds"] / 1e6, srv_cpu_per_gb=(cpu1 - cpu0) / gb,
                      cli_cpu_per_gb=out["client_cpu"] / gb, srv_hwm_mib=hwm / 1024), out

    def measure_logins(self, kind: str) -> dict:
        server = LOGIN_SERVERS[kind]
        cpu0, _ = self.server_stat(server, reset=True)
        out = self.client_json(f"{PEER} logins {kind} --host {self.project}-server --port {PORTS[server]} "
                               f"--clients {LOGIN_CLIENTS}")
        cpu1, hwm = self.server_stat(server)
        out.update(srv_cpu=cpu1 - cpu0, srv_hwm_mib=hwm / 1024)
        return out

    def machine(self) -> dict:
        info = self.client.info()
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor() or "?")
        python = self.run(self.server, "python3 -V").strip()
        return {"cpu": f"{cpu} ({info.get('NCPU')} CPUs, {info.get('MemTotal', 0) / 2**30:.1f} GiB)",
                "kernel": info.get("KernelVersion", platform.release()),
                "docker": f"{info.get('ServerVersion')}, storage driver {info.get('Driver')}, "
                          f"cgroup v{info.get('CgroupVersion', '?')}",
                "files": f"a Docker volume (local driver) on "
                         f"{filesystem_of(info.get('DockerRootDir', '/'))}; page cache warm",
                "python": f"{python} in the containers"}


def upload_name(m: Method, size: Size) -> str:
    return f"up-{m.kind}-{size.name}"


def filesystem_of(path: str) -> str:
    """The file system type and device of the mount that holds ``path`` (longest mount prefix)."""
    best = ("", "?", "?")
    for line in Path("/proc/mounts").read_text().splitlines():
        dev, mount, fstype = line.split()[:3]
        if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best[0]):
            best = (mount, fstype, dev)
    return f"{best[1]} ({best[2]})"


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except docker.errors.DockerException:
        pass


# ---------------------------------------------------------------------------------------------
# The schedule
# ---------------------------------------------------------------------------------------------

def benchmark(lab: BenchLab, sizes: list[Size], reps: int, methods: list[Method], logins: bool,
              seed: int) -> Results:
    results = Results()
    order = random.Random(seed)        # a new order every time, the same one for the same --seed
    say("warm-up (not counted): one get per size fills our server's digest cache; every run once at 1 MiB")
    first = next(m for m in METHODS if m.key == "down-ours-discard")
    for size in sizes:
        sample, _ = lab.measure(first, Size(size.label, size.bytes, size.name, 1))
        results.first_get[size.label] = sample.mbps
    for m in methods:
        lab.measure(m, sizes[0])
    total = reps * len(sizes)
    step = 0
    for rep in range(reps):
        for size in sizes:
            step += 1
            for direction in ("download", "upload"):
                group = [m for m in methods if m.direction == direction]
                order.shuffle(group)
                for m in group:
                    sample, out = lab.measure(m, size)
                    results.add(size.label, m.key, sample)
                    for d in (d for d in DERIVED if d.base == m.key):
                        seconds = out["seconds"] + d.sign * sum(out[d.seconds])
                        nan = float("nan")
                        results.add(size.label, d.key, Sample(out["bytes"] / seconds / 1e6, nan, nan, nan))
                    say(f"  [{step}/{total}] rep {rep + 1} {size.label:>6} {m.label:<46} "
                        f"{sample.mbps:8.0f} MB/s")
        for kind in order.sample(list(LOGIN_SERVERS), len(LOGIN_SERVERS)) if logins else []:
            out = lab.measure_logins(kind)
            results.logins.setdefault(kind, []).append(out)
            say(f"  rep {rep + 1} {LOGIN_CLIENTS} logins {kind:<7} {out['seconds']:.3f} s "
                f"({out['completed']} done, {out['errors']} errors)")
    return results


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def med(values: Iterable[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def paired_ratio(results: Results, size: str, key: str, other: str | None) -> float:
    """Median over repetitions of (this run / the other run of the same repetition)."""
    if other is None or (size, other) not in results.samples or (size, key) not in results.samples:
        return float("nan")
    return med(a.mbps / b.mbps for a, b in zip(results.samples[size, key], results.samples[size, other]))


def fmt(value: float, spec: str, suffix: str = "") -> str:
    return "-" if value != value else f"{value:{spec}}{suffix}"


COLUMNS = ["size", "run", "MB/s", "min-max", "x ceiling", "x pyftpdlib", "srv CPU s/GB", "cli CPU s/GB",
           "srv peak RSS MiB"]


def table_rows(results: Results, sizes: list[Size]) -> list[list[str]]:
    rows = []
    for size in sizes:
        for m in METHODS:
            lines = [(m.key, m.label, m.peer)]
            lines += [(d.key, d.label, d.peer) for d in DERIVED if d.base == m.key]
            for key, label, peer in (x for x in lines if (size.label, x[0]) in results.samples):
                samples = results.samples[size.label, key]
                mbps = [s.mbps for s in samples]
                ratio_ceiling = paired_ratio(results, size.label, key, CEILING[m.direction]) \
                    if key != CEILING[m.direction] else float("nan")
                rows.append([size.label, f"{SHORT[m.direction]:<4}  {label}", fmt(med(mbps), ".0f"),
                             f"{min(mbps):.0f}-{max(mbps):.0f}",
                             fmt(ratio_ceiling, ".2f", "x"),
                             fmt(paired_ratio(results, size.label, key, peer), ".2f", "x"),
                             fmt(med(s.srv_cpu_per_gb for s in samples), ".2f"),
                             fmt(med(s.cli_cpu_per_gb for s in samples), ".2f"),
                             fmt(max((s.srv_hwm_mib for s in samples), default=float("nan")), ".1f")])
    return rows


def login_rows(results: Results) -> list[list[str]]:
    rows = []
    for kind, label in (("ours", "ours (--max-sessions 310), FtpClient"), ("pyftpd", "pyftpdlib, ftplib"),
                        ("bare", "bare exchange: canned frames, raw-socket client")):
        runs = results.logins.get(kind, [])
        if not runs:
            continue
        secs = [r["seconds"] for r in runs]
        errors = sum(r["errors"] for r in runs)
        rows.append([f"{LOGIN_CLIENTS} concurrent logins: {label}", f"{med(secs):.3f} s",
                     f"{min(secs):.3f}-{max(secs):.3f} s", f"{med(r['srv_cpu'] for r in runs):.2f} s",
                     f"{med(r['client_cpu'] for r in runs):.2f} s",
                     f"{max(r['srv_hwm_mib'] for r in runs):.1f}", str(errors)])
    return rows


LOGIN_COLUMNS = ["run", "time (median)", "min-max", "srv CPU", "cli CPU", "srv peak RSS MiB", "errors"]


def goals(results: Results, sizes: list[Size]) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) lines: transfers at every size from 64 MiB up (the largest
    only, when the run has no such size), RSS from the smallest to the largest size."""
    big, small = sizes[-1].label, sizes[0].label
    judged = [s.label for s in sizes if s.bytes >= 64 << 20] or [big]

    def verdict(value: float, goal: float) -> str:
        return "-" if value != value else "met" if value >= goal else "MISSED"

    out = []
    for size in judged:
        def ratio(key: str, other: str | None, size: str = size) -> float:
            return paired_ratio(results, size, key, other)

        r = ratio("down-ours-discard", "down-ceiling")
        out.append((f"download >= 0.90x ceiling ({size})", f"server side (client discards): {r:.2f}x",
                    verdict(r, 0.9)))
        r = ratio("down-ours", "down-ceiling")
        out.append(("", f"FtpClient.get end to end: {r:.2f}x (vs the write+sha256+fsync pipeline: "
                        f"{ratio('down-ours', FSYNC_ROW):.2f}x; vs pyftpdlib, same client work: "
                        f"{ratio('down-ours', 'down-pyftpd'):.2f}x)", verdict(r, 0.9)))
        r = ratio("up-ours", "up-ceiling")
        out.append((f"upload >= 0.85x ceiling ({size})", f"FtpClient.put, protocol 2: {r:.2f}x (vs ceiling + "
                    f"fsync: {ratio('up-ours', FSYNC_ROW):.2f}x; protocol 1 put: "
                    f"{ratio('up-ours-v1', 'up-ceiling'):.2f}x)", verdict(r, 0.85)))
        r = ratio("up-ours", "up-ceiling-wb")
        out.append(("", f"vs the ceiling that starts writeback early as ours does: {r:.2f}x", verdict(r, 0.85)))
        r = ratio("up-ours", "up-pyftpd-fsync")
        out.append((f"upload >= 1.0x pyftpdlib, same durability ({size})",
                    f"{r:.2f}x (vs pyftpdlib as shipped, no fsync: {ratio('up-ours', 'up-pyftpd'):.2f}x)",
                    verdict(r, 1.0)))
        r = ratio("down-ours-discard", "down-pyftpd-discard")
        out.append((f"download >= 1.0x pyftpdlib ({size})", f"client discards: {r:.2f}x; verified: "
                    f"{ratio('down-ours', 'down-pyftpd'):.2f}x", verdict(r, 1.0)))
    peaks = {s: max((x.srv_hwm_mib for k in ("down-ours-discard", "down-ours", "up-ours", "up-ours-v1")
                     for x in results.samples.get((s, k), [])), default=float("nan")) for s in (small, big)}
    growth = peaks[big] - peaks[small]
    out.append((f"server RSS flat {small} -> {big}", f"ours {peaks[small]:.1f} -> {peaks[big]:.1f} MiB "
                f"({growth:+.1f} MiB; flat = within 2 MiB)", verdict(2.0 - growth, 0.0)))
    if results.logins.get("ours") and results.logins.get("pyftpd"):
        t = med(r["seconds"] for r in results.logins["ours"])
        p = med(r["seconds"] for r in results.logins["pyftpd"])
        ratio = med(a["seconds"] / b["seconds"] for a, b in zip(results.logins["ours"], results.logins["pyftpd"]))
        out.append((f"{LOGIN_CLIENTS} logins <= pyftpdlib's time", f"ours {t:.3f} s, pyftpdlib {p:.3f} s: "
                    f"{ratio:.2f}x its time (median of per-repetition ratios)", verdict(1.0 - ratio, 0.0)))
        if results.logins.get("bare"):
            bare = results.logins["bare"]
            bare_s = med(r["seconds"] for r in bare)
            ours_b = med(a["seconds"] / b["seconds"] for a, b in zip(results.logins["ours"], bare))
            py_b = med(a["seconds"] / b["seconds"] for a, b in zip(results.logins["pyftpd"], bare))
            out.append(("", f"the bare exchange (our frames, I/O and json only) {bare_s:.3f} s: ours {ours_b:.2f}x "
                        f"it, pyftpdlib {py_b:.2f}x", ""))
    return out


LEFT = ("size", "run", "goal", "measured")     # text columns; numbers are right-aligned


def aligned(columns: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(columns, *rows)]
    right = [i for i, c in enumerate(columns) if c not in LEFT]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def markdown(columns: list[str], rows: list[list[str]]) -> str:
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" if c in LEFT else "---:" for c in columns) + "|"
    return "\n".join([head, rule, *("| " + " | ".join(r) + " |" for r in rows)])


def report(results: Results, sizes: list[Size], args: argparse.Namespace, machine: dict,
           elapsed: float) -> None:
    rows, lrows, glines = table_rows(results, sizes), login_rows(results), goals(results, sizes)
    first = ", ".join(f"{k} {v:.0f} MB/s" for k, v in results.first_get.items())
    notes = [f"medians of {args.reps} interleaved repetitions (run order shuffled, --seed {args.seed}); "
             "MB/s = 10^6 bytes/s; one measurement = "
             + ", ".join(f"{s.count} x {s.label}" for s in sizes) + " on one session",
             f"first get after the server started (it hashes the file once, then caches the digest): {first}",
             f"benchmark wall time {elapsed:.0f} s"]
    print(aligned(COLUMNS, rows))
    print()
    if lrows:
        print(aligned(LOGIN_COLUMNS, lrows))
        print()
    print(aligned(["goal", "measured", "verdict"], [list(g) for g in glines]))
    print()
    for note in notes:
        print(note)
    for k, v in machine.items():
        print(f"{k}: {v}")
    if args.markdown:
        print("\n<!-- markdown -->\n")
        print(markdown(COLUMNS, rows))
        print()
        if lrows:
            print(markdown(LOGIN_COLUMNS, lrows))
            print()
        print(markdown(["goal", "measured", "verdict"], [list(g) for g in glines]))
        print()
        for note in notes:
            print(f"- {note}")
        for k, v in machine.items():
            print(f"- {k}: {v}")


# ---------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only 1 MiB and 64 MiB (same as --sizes 1M,64M)")
    parser.add_argument("--sizes", help="comma-separated subset of 1M,64M,1G")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the run order (default 1)")
    parser.add_argument("--markdown", action="store_true", help="also print the tables in Markdown")
    parser.add_argument("--only", help="comma-separated run keys and/or 'logins' (to chase one number): "
                                       + ", ".join(m.key for m in METHODS))
    args = parser.parse_args()
    short = {"1M": SIZES[0], "64M": SIZES[1], "1G": SIZES[2]}
    if args.sizes and not set(args.sizes.split(",")) <= set(short):
        parser.error(f"--sizes takes a subset of {','.join(short)}")
    sizes = [short[k] for k in short if k in args.sizes.split(",")] if args.sizes else \
        SIZES[:2] if args.quick else SIZES
    wanted = set(args.only.split(",")) if args.only else {m.key for m in METHODS} | {"logins"}
    unknown = wanted - {m.key for m in METHODS} - {"logins"}
    if unknown:
        parser.error(f"unknown run(s) {', '.join(sorted(unknown))}")
    methods = [m for m in METHODS if m.key in wanted]
    for signum in (signal.SIGINT, signal.SIGTERM):    # Ctrl-C and kill: the same clean-up (also when
        signal.signal(signum, signal.default_int_handler)   # started in the background, SIGINT ignored)
    started = time.monotonic()
    client = connect()
    say("making sure socketlab/lessons:latest exists")
    base = ImageBuilder(client, say=say)
    base.ensure_all()
    lab = BenchLab(client)
    say(f"project {lab.project}: building the benchmark image, starting two containers")
    try:
        lab.build_image(base.lessons_tag)
        lab.start()
        lab.setup(sizes)
        machine = lab.machine()
        results = benchmark(lab, sizes, args.reps, methods, "logins" in wanted, args.seed)
    except KeyboardInterrupt:
        say("interrupted: removing what the benchmark created")
        return 130
    finally:
        lab.cleanup()
        left = client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={lab.project}"})
        if left:
            say(f"could not remove everything; run: docker rm -f $(docker ps -aq --filter "
                f"label={LABEL_PROJECT}={lab.project})")
    report(results, sizes, args, machine, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
