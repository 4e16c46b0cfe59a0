"""Faults outside the protocol: a client killed with SIGKILL mid-upload, a disk that is full.

Run as a program, this module is the other side of those tests (no program inside a string):

    python -m tests.hostile.test_ftp_faults upload HOST PORT FILE CUT      put FILE, send CUT body bytes, wait
    unshare -Urm python -m tests.hostile.test_ftp_faults serve-on-tmpfs ROOT SIZE
        (in a new user + mount namespace, no root needed: mount a SIZE tmpfs on ROOT/home, exec the server)
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftp import users
from ftp.client import FtpClient, FtpError
from ftp.protocol import CHUNK_SIZE, Put, PutData
from tests.hostile.test_ftp_server import FAST_KDF, TIMEOUT, HostileLab

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "services"
MiB = 1024 * 1024


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{SERVICES}", "PYTHONUNBUFFERED": "1"}


def make(path: Path, size: int, seed: int) -> str:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# kill -9 of a client mid-upload, at many offsets
# ---------------------------------------------------------------------------------------------

SIZE = 2 * MiB
CUTS = [0, 1, 4095, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, MiB + 7, SIZE - 1]


@pytest.fixture(scope="module")
def kill_lab(tmp_path_factory):
    running = HostileLab(tmp_path_factory.mktemp("kill") / "root")
    yield running
    running.stop()


@pytest.mark.parametrize("cut", CUTS)
def test_a_client_killed_mid_upload_leaves_a_part_that_resumes(kill_lab, tmp_path, cut):
    lab, name = kill_lab, f"k{cut}.bin"
    digest = make(tmp_path / name, SIZE, seed=cut)
    child = subprocess.Popen([sys.executable, "-m", "tests.hostile.test_ftp_faults", "upload", lab.host,
                              str(lab.port), str(tmp_path / name), str(cut)],
                             stdout=subprocess.PIPE, text=True, env=child_env(), cwd=REPO)
    try:
        assert child.stdout.readline().strip() == "sent", "the uploading client did not start"
    finally:
        child.send_signal(signal.SIGKILL)          # no clean-up, no FIN from Python: the kernel closes
        child.wait(10)
    space = lab.server.storage.space("alice")
    for _ in range(500):                           # the server notices the EOF and keeps the part
        if not space.uploads:
            break
        time.sleep(0.01)
    assert not space.uploads
    home = lab.home()
    assert not (home / name).exists()              # never a partial file under the final name
    part = home / f".{name}.part"
    assert (part.stat().st_size if part.exists() else 0) == cut
    with lab.client() as c:
        done = c.put(str(tmp_path / name))
        assert done.fields["digest"] == digest and done.fields["received"] == SIZE - cut
    assert hashlib.sha256((home / name).read_bytes()).hexdigest() == digest
    assert not part.exists() and not (home / f".{name}.part.json").exists()
    with lab.client() as c:
        c.rm(name)                                 # the module's server is shared: free the quota
    lab.assert_alive()


def upload_then_wait(host: str, port: int, local: str, cut: int) -> None:
    """The victim: announce the whole file, send `cut` body bytes, then wait to be killed."""
    client = FtpClient(host, port, timeout=TIMEOUT)
    client.login("alice", users.DEMO_USERS["alice"][0])
    with open(local, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        accepted = client.request(Put(os.path.basename(local), size, digest, overwrite=True))
        offset = accepted.fields["offset"]
        client.send(PutData(offset), body_size=size - offset)
        if cut:
            client.sock.sendfile(f, offset, cut)
    print("sent", flush=True)
    time.sleep(60)


# ---------------------------------------------------------------------------------------------
# A full disk: a small tmpfs in a user namespace (no root needed)
# ---------------------------------------------------------------------------------------------

def user_namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-Urm", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not user_namespaces_work(),
                    reason="needs `unshare -Urm` (unprivileged user namespaces) to mount a small tmpfs")
def test_a_full_disk_gets_452_and_leaves_no_stray_files(tmp_path):
    root = tmp_path / "root"
    (root / "home").mkdir(parents=True)
    users.UserDb(str(root)).add("alice", "wonderland", 100 * MiB, n=FAST_KDF)
    server = subprocess.Popen(["unshare", "-Urm", sys.executable, "-m", "tests.hostile.test_ftp_faults",
                               "serve-on-tmpfs", str(root), "512k"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(),
                              cwd=REPO)
    try:
        port = None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            if match := re.match(r"listening on [\d.]+:(\d+)", line):
                port = int(match.group(1))
        assert port is not None, "the server on the tmpfs did not start"
        c = FtpClient("127.0.0.1", port, timeout=TIMEOUT)
        c.login("alice", "wonderland")
        make(tmp_path / "a.bin", 300 * 1024, seed=1)
        make(tmp_path / "b.bin", 400 * 1024, seed=2)
        make(tmp_path / "c.bin", 10, seed=3)
        assert c.put(str(tmp_path / "a.bin")).code == 226
        with pytest.raises(FtpError) as info:
            c.put(str(tmp_path / "b.bin"))                 # runs out of disk mid-body
        assert info.value.code == 452
        assert c.noop().code == 200
        codes = []
        for i in range(40):                                # now the disk is completely full
            try:
                codes.append(c.put(str(tmp_path / "c.bin"), f"c{i}.bin").code)
            except FtpError as exc:
                codes.append(exc.code)
            if codes[-1] == 452 and codes.count(452) >= 3:
                break
        assert set(codes) <= {226, 452} and 452 in codes, codes
        names = {e["name"]: e["type"] for e in c.ls()}
        assert all(not n.startswith(".") and "tmp" not in n for n in names), names
        assert names["a.bin"] == "file" and names.get("b.bin") == "partial"
        home = Path(f"/proc/{server.pid}/root") / str(root).lstrip("/") / "home" / "alice"
        if home.is_dir():                                  # the namespace's view of the disk
            on_disk = [p.name for p in home.iterdir()]
            assert not [n for n in on_disk if "tmp" in n or (n.endswith(".part.json")
                                                             and n[1:-len(".part.json")] not in names)]
        assert c.rm("b.bin").code == 250                   # free the space: the session goes on
        assert c.put(str(tmp_path / "c.bin"), "after.bin").code == 226
        fresh = FtpClient("127.0.0.1", port, timeout=TIMEOUT)
        fresh.login("alice", "wonderland")
        assert fresh.quota()["used"] >= 300 * 1024
        fresh.quit()
        c.quit()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate(timeout=10)


def serve_on_tmpfs(root: str, size: str) -> None:
    """Inside `unshare -Urm`: a tmpfs of `size` on ROOT/home, then become the server."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "socketlab-ftp-full", f"{root}/home"],
                   check=True)
    os.execv(sys.executable, [sys.executable, "-m", "ftp.server", "--host", "127.0.0.1", "--port", "0",
                              "--root", root, "--login-delay", "0", "--no-demo-users"])


if __name__ == "__main__":
    if sys.argv[1] == "upload":
        upload_then_wait(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    elif sys.argv[1] == "serve-on-tmpfs":
        serve_on_tmpfs(sys.argv[2], sys.argv[3])
