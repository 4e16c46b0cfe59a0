"""Images: one base image for every lesson, lesson code in a thin layer on top.

base     socketlab/base:bookworm   Debian bookworm + python3 + user `lab`   (rarely rebuilt)
lessons  socketlab/lessons:latest  base + services/ copied to /lab          (seconds to rebuild)
capture  socketlab/capture:bookworm base + Debian's tcpdump, for `lab.py trace` (built on first use)

The base needs a Debian rootfs. Where a registry answers we pull debian:bookworm-slim; where none
does (classrooms, CI here) we bootstrap one with mmdebstrap and `docker import` it. No flag
decides this: we try the pull and fall back. Every image records a hash of its inputs in a label,
so unchanged inputs never rebuild.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import docker
import docker.errors

from . import __version__
from .engine import LABEL_INPUTS, LABEL_OWNER, LABEL_VERSION
from .errors import LabError
from .topology import ROOT

ROOTFS_IMAGE = "socketlab/rootfs:bookworm"
BASE_IMAGE = "socketlab/base:bookworm"
LESSONS_IMAGE = "socketlab/lessons:latest"
CAPTURE_IMAGE = "socketlab/capture:bookworm"
OFFICIAL_DEBIAN = ("debian", "bookworm-slim")
ROOTFS_PACKAGES = "python3,iproute2,procps,openssh-server,iputils-ping"
MMDEBSTRAP = ["mmdebstrap", "--variant=minbase", f"--include={ROOTFS_PACKAGES}", "bookworm"]

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class ImageBuilder:
    def __init__(self, client: docker.DockerClient, say: Say = _quiet, root: Path = ROOT,
                 prefix: str = "socketlab") -> None:
        self.client = client
        self.say = say
        self.root = root
        # another prefix builds a separate set of images (the cold-start benchmark uses one)
        self.rootfs_tag, self.base_tag, self.lessons_tag = (
            tag.replace("socketlab/", f"{prefix}/", 1) for tag in (ROOTFS_IMAGE, BASE_IMAGE, LESSONS_IMAGE))

    # -- what is there ------------------------------------------------------------------------
    def _labels(self, tag: str) -> dict | None:
        try:
            return self.client.images.get(tag).labels or {}
        except docker.errors.ImageNotFound:
            return None

    def image_id(self, tag: str) -> str | None:
        try:
            return self.client.images.get(tag).id
        except docker.errors.ImageNotFound:
            return None

    # -- the three layers ---------------------------------------------------------------------
    def ensure_all(self) -> str:
        """Make sure the lessons image is current; return its id."""
        self.ensure_rootfs()
        self.ensure_base()
        return self.ensure_lessons()

    def ensure_rootfs(self) -> None:
        if self.image_id(self.rootfs_tag):
            return
        self.say("Debian rootfs image is missing: trying the registry first (debian:bookworm-slim)")
        if self._pull_official():
            return
        self.say("  no registry answers: bootstrapping Debian bookworm with mmdebstrap (about 30 s)")
        self.bootstrap_rootfs()

    def _pull_official(self) -> bool:
        repo, tag = OFFICIAL_DEBIAN
        try:
            image = self.client.images.pull(repo, tag=tag)
        except (docker.errors.APIError, docker.errors.DockerException) as exc:
            self.say(f"  pull failed: {str(exc).splitlines()[0][:120]}")
            return False
        image.tag(*self.rootfs_tag.split(":"))
        self.say(f"  pulled {repo}:{tag}")
        return True

    def bootstrap_rootfs(self) -> None:
        tool = shutil.which("mmdebstrap")
        if not tool:
            self._install_mmdebstrap()
        with tempfile.TemporaryDirectory(prefix="socketlab-rootfs-") as tmp:
            tar = Path(tmp) / "rootfs.tar"
            started = time.monotonic()
            proc = subprocess.run([*MMDEBSTRAP, str(tar)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
            if proc.returncode != 0:
                tail = "\n".join(proc.stdout.splitlines()[-8:])
                raise LabError(f"mmdebstrap failed (exit {proc.returncode}):\n{tail}",
                               "check that deb.debian.org is reachable, then run the command again")
            self.say(f"  rootfs built in {time.monotonic() - started:.0f} s "
                     f"({tar.stat().st_size / 1e6:.0f} MB); importing")
            repo, tag = self.rootfs_tag.split(":")
            changes = [f"LABEL {LABEL_OWNER}=lab", f"LABEL {LABEL_VERSION}={__version__}",
                       'CMD ["python3"]']
            self.client.api.import_image_from_file(str(tar.resolve()), repository=repo, tag=tag, changes=changes)
        if not self.image_id(self.rootfs_tag):
            raise LabError(f"docker import did not produce {self.rootfs_tag}",
                           "run `python lab.py doctor` and check the engine's disk space")

    def _install_mmdebstrap(self) -> None:
        command = "apt-get install -y mmdebstrap"
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise LabError("mmdebstrap is needed to build the base image without a registry",
                           f"run: sudo {command} && python lab.py up basic   "
                           f"(or on a machine with a registry: docker pull debian:bookworm-slim)")
        self.say(f"  installing mmdebstrap: {command}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "mmdebstrap"]):
            proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode != 0:
                raise LabError(f"`{' '.join(argv)}` failed: {proc.stdout.strip().splitlines()[-1:]}",
                               f"install it by hand: sudo {command}")

    def ensure_base(self) -> str:
        files = {"Dockerfile": (self.root / "images/base.Dockerfile").read_bytes(),
                 "lab-health": (self.root / "images/lab-health").read_bytes()}
        return self._build(self.base_tag, files, parent=self.rootfs_tag, what="base image",
                           buildargs={"ROOTFS": self.rootfs_tag})

    def ensure_lessons(self) -> str:
        files = {"Dockerfile": (self.root / "images/lessons.Dockerfile").read_bytes()}
        files.update(_tree(self.root / "services", "services/"))
        return self._build(self.lessons_tag, files, parent=self.base_tag, what="lesson image",
                           buildargs={"BASE": self.base_tag})

    def ensure_sshd(self) -> str:
        """A lab machine stand-in (sshd) for the classroom tests."""
        self.ensure_rootfs()
        self.ensure_base()
        files = {"Dockerfile": (self.root / "images/sshd.Dockerfile").read_bytes()}
        tag = self.base_tag.replace("/base:", "/sshd:")
        self._build(tag, files, parent=self.base_tag, what="lab machine image", buildargs={"BASE": self.base_tag})
        return tag

    def ensure_capture(self) -> str:
        """The packet-capture sidecar of `lab.py trace` (images/capture.Dockerfile); return its tag.

        Not part of ``ensure_all``: only `trace` (and `bundle`) need it, and its one download from
        Debian's mirror must never stand between a student and `up`.
        """
        self.ensure_rootfs()
        self.ensure_base()
        files = {"Dockerfile": (self.root / "images/capture.Dockerfile").read_bytes()}
        tag = self.base_tag.replace("/base:", "/capture:")
        self._build(tag, files, parent=self.base_tag, what="packet capture image", buildargs={"BASE": self.base_tag})
        return tag

    def build_overlay(self, tag: str, files: dict[str, bytes], owner: str) -> str:
        """A throw-away image: the lessons image plus a student's files under /lab/student/.

        While it builds, the lessons image under it must not be removed by another lab.py that has
        just rebuilt it (its old build is then untagged, and `_drop_replaced` would remove it): the
        build holds the parents' lock shared, which `_drop_replaced` respects. Should the parent
        still vanish (an engine shared with another machine), the build is tried again on the new one.
        """
        dockerfile = (f"FROM {self.lessons_tag}\nCOPY --chown=1000:1000 student/ /lab/student/\n").encode()
        ctx = {"Dockerfile": dockerfile, **{f"student/{k}": v for k, v in files.items()}}
        for attempt in range(OVERLAY_ATTEMPTS):
            try:
                with parents_lock(fcntl.LOCK_SH):
                    return self._build(tag, ctx, parent=self.lessons_tag, what="student overlay", owner=owner,
                                       quiet=True)
            except LabError as exc:
                if not PARENT_GONE.search(exc.message) or attempt == OVERLAY_ATTEMPTS - 1:
                    if PARENT_GONE.search(exc.message):
                        raise LabError(f"building the image of your program failed {OVERLAY_ATTEMPTS} times: the "
                                       f"lessons image under it was replaced meanwhile ({exc.message})",
                                       "another lab.py is rebuilding the lab's images: run the same command "
                                       "again once it has finished") from None
                    raise
                time.sleep(2.0 * (attempt + 1))
        raise AssertionError("unreachable")

    # -- building -----------------------------------------------------------------------------
    def _build(self, tag: str, files: dict[str, bytes], parent: str, what: str, owner: str = "lab",
               quiet: bool = False, buildargs: dict[str, str] | None = None) -> str:
        parent_id = self.image_id(parent) or ""
        digest = hashlib.sha256(parent_id.encode() + repr(sorted((buildargs or {}).items())).encode())
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        inputs = digest.hexdigest()[:24]
        labels = self._labels(tag)
        if labels is not None and labels.get(LABEL_INPUTS) == inputs:
            return self.image_id(tag) or ""
        if not quiet:
            self.say(f"building {what} {tag}" + (" (inputs changed)" if labels is not None else ""))
        # Labels go into the Dockerfile as ONE instruction: the classic builder commits a layer per
        # instruction (the build API's labels= would add one step per label), and each commit costs
        # about a second on a slow storage driver.
        label_line = (f'\nLABEL {LABEL_INPUTS}="{inputs}" {LABEL_OWNER}="{owner}" '
                      f'{LABEL_VERSION}="{__version__}"\n').encode()
        files = {**files, "Dockerfile": files["Dockerfile"].rstrip(b"\n") + label_line}
        context = _tar(files)
        image_id = None
        step = re.compile(r"^Step (\d+)/(\d+) : (.*)")
        log: list[str] = []
        try:
            stream = self.client.api.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                                           decode=True, pull=False, buildargs=buildargs)
            for event in stream:
                if "stream" in event:
                    line = event["stream"].rstrip()
                    log.append(line)
                    m = step.match(line)
                    if m and not quiet:
                        self.say(f"  [{m.group(1)}/{m.group(2)}] {m.group(3)[:100]}")
                elif "aux" in event:
                    image_id = event["aux"].get("ID")
                elif "error" in event:
                    failing = next((x for x in reversed(log) if x.startswith("Step ")), "a build step")
                    raise LabError(f"building {tag} failed at {failing}: {event['error'].strip()}",
                                   "read the step's output above; `python lab.py doctor` checks the engine")
        except docker.errors.APIError as exc:
            raise LabError(f"building {tag} failed: {exc.explanation or exc}",
                           f"the parent image {parent} may be missing: run `python lab.py build`") from None
        new_id = image_id or self.image_id(tag) or ""
        if labels is not None:
            self._drop_replaced(tag)
        return new_id

    def _drop_replaced(self, tag: str) -> None:
        """Remove earlier builds of this image that lost their tag (old lesson layers pile up
        otherwise); ones still used by a container or a child image stay, and none goes while a
        student overlay is being built on this machine (it may stand on one): then the next build
        tidies up."""
        try:
            with parents_lock(fcntl.LOCK_EX | fcntl.LOCK_NB):
                for image in self.client.images.list(filters={"dangling": True, "label": f"{LABEL_OWNER}"}):
                    try:
                        self.client.images.remove(image.id)
                    except docker.errors.APIError:
                        pass
        except BlockingIOError:
            pass


OVERLAY_ATTEMPTS = 3
PARENT_GONE = re.compile(r"unknown parent image|No such image|failed to set parent|failed to get digest", re.I)
# one per machine (every clone and every lab.py process on it share the engine's images)
PARENTS_LOCK = Path(tempfile.gettempdir()) / "socketlab-image-parents.lock"


@contextlib.contextmanager
def parents_lock(mode: int):
    """flock on PARENTS_LOCK: shared while an overlay builds on the lessons image, exclusive (and
    non-blocking: BlockingIOError) while untagged old builds are removed."""
    fd = os.open(PARENTS_LOCK, os.O_RDONLY | os.O_CREAT, 0o644)   # read access is enough for flock
    try:
        fcntl.flock(fd, mode)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _tree(directory: Path, prefix: str) -> dict[str, bytes]:
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            out[prefix + path.relative_to(directory).as_posix()] = path.read_bytes()
    return out


def _tar(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name in ("lab-health",) or data.startswith(b"#!") else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def bundle(client: docker.DockerClient, out: Path, tags: Iterable[str], say: Say = _quiet) -> int:
    """Write every lab image into one tar that `load` can read on an offline machine.

    The capture image goes in too (built first where it is missing), so `trace` works offline.
    """
    try:
        tags = [*tags, ImageBuilder(client, say).ensure_capture()]
    except LabError as exc:
        say(f"  the bundle has no packet capture image ({exc.message}); `trace` will need Debian's mirror")
    tags = [t for t in dict.fromkeys(tags) if _exists(client, t)]
    if not tags:
        raise LabError("there are no SocketLab images to bundle", "run `python lab.py build` first")
    size = 0
    # one `docker save` of several tags, so shared layers are stored once (the SDK saves one tag)
    response = client.api._get(client.api._url("/images/get"), params={"names": tags}, stream=True)
    client.api._raise_for_status(response)
    with open(out, "wb") as f:
        for chunk in response.iter_content(chunk_size=1 << 20):
            f.write(chunk)
            size += len(chunk)
    say(f"wrote {out} ({size / 1e6:.0f} MB): {', '.join(tags)}")
    return size


def load(client: docker.DockerClient, path: Path, say: Say = _quiet) -> list[str]:
    if not path.is_file():
        raise LabError(f"{path} does not exist", "give the file written by `python lab.py bundle -o FILE`")
    with open(path, "rb") as f:
        events = client.api.load_image(f)
        loaded = []
        for ev in events:
            msg = ev.get("stream", "").strip() if isinstance(ev, dict) else str(ev)
            if msg:
                loaded.append(msg)
                say(f"  {msg}")
    return loaded


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False

