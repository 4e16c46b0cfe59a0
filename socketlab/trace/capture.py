"""The capture sidecar: tcpdump in the server container's network namespace.

    docker run --network container:<server> --cap-drop ALL --cap-add NET_RAW --cap-add SETGID \\
        --user root socketlab/capture:bookworm tcpdump -Z root -i eth0 -p -n -U ...

The sidecar sees exactly what the server's eth0 sees, and the lesson containers keep every
capability dropped (images/capture.Dockerfile says why the sidecar needs NET_RAW and SETGID, and
why not NET_ADMIN). It ends in three deterministic steps: a marker datagram is sent to the
server, we wait until the capture file holds it (so every packet before it is on disk; -U writes
each packet as it comes), then SIGINT makes tcpdump close the file and exit.
"""
from __future__ import annotations

import io
import tarfile
import time
import uuid

import docker
import docker.errors
from docker.models.containers import Container

from ..errors import LabError

PCAP = "/capture/trace.pcap"
FILTER = "tcp or udp"


def tcpdump_argv(interface: str = "eth0") -> list[str]:
    # -p: no promiscuous mode (no NET_ADMIN); -U: write each packet at once; nanosecond stamps so
    # packets and calls (time.time_ns) sort on the same scale; -B: a 32 MiB kernel buffer (KiB), so
    # a burst of 64 KiB segments (an ftp upload) on a busy machine is not dropped before tcpdump reads it
    return ["tcpdump", "-Z", "root", "-i", interface, "-p", "-n", "-U", "-B", "32768", "-s", "262144",
            "--time-stamp-precision=nano", "-w", PCAP, FILTER]


class Capture:
    def __init__(self, client: docker.DockerClient, image: str, target: Container, name: str,
                 labels: dict[str, str]) -> None:
        self.client = client
        self.image = image
        self.target = target
        self.name = name
        self.labels = labels
        self.container: Container | None = None
        self.token = uuid.uuid4().hex[:12]

    def start(self, timeout: float = 15) -> Capture:
        try:
            self.container = self.client.containers.run(
                self.image, tcpdump_argv(), name=self.name, detach=True, labels=self.labels,
                network_mode=f"container:{self.target.id}", user="root", cap_drop=["ALL"],
                cap_add=["NET_RAW", "SETGID"], security_opt=["no-new-privileges:true"],
                mem_limit="128m", pids_limit=32)
        except docker.errors.APIError as exc:
            raise LabError(f"could not start the packet capture: {exc.explanation or exc}",
                           "run `python lab.py doctor` (packet capture)") from None
        deadline = time.monotonic() + timeout
        while b"listening on" not in self.container.logs():
            self.container.reload()
            if self.container.status == "exited" or time.monotonic() > deadline:
                tail = self.container.logs().decode("utf-8", "replace").strip()
                raise LabError(f"tcpdump did not start in the capture sidecar: {tail[-300:]}",
                               "run `python lab.py doctor` (packet capture)")
            time.sleep(0.05)
        return self

    def holds_mark(self) -> bool:
        result = self.container.exec_run(["grep", "-c", "-a", self.token, PCAP])
        return result.exit_code == 0

    def stop(self, send_mark, timeout: float = 10) -> bytes:
        """``send_mark(token)`` sends the marker; return the pcap once the capture holds it."""
        send_mark(self.token)
        deadline = time.monotonic() + timeout
        while not self.holds_mark():
            if time.monotonic() > deadline:
                break        # the marker was lost: stop anyway; what was captured is still true
            time.sleep(0.02)
        self.container.kill(signal="SIGINT")
        try:
            self.container.wait(timeout=timeout)
        except Exception:
            self.container.kill()
        stream, _ = self.container.get_archive(PCAP)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            return member.read() if member else b""

    def remove(self) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except docker.errors.APIError:
                pass
