"""The FTP exercise's server and client over loopback (no Docker): every homework item, faults, §7.

The server runs in a thread of this process (FtpServer on 127.0.0.1, port 0, a tmp root); a few
tests start it as a subprocess to kill it or send it SIGTERM. The probes that `lab.py check ftp`
runs in containers are run here too, in-process, against the same server.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from framing.codec import encode_header
from ftp import users
from ftp.client import FtpClient, FtpError, TransferCut, file_digest, local_part_paths
from ftp.client import main as client_main
from ftp.protocol import CHUNK_SIZE, Abort, Code, Noop, Put, PutData
from ftp.server import FtpServer, ServerConfig
from ftp.storage import Upload
from tests.local_node import LocalNode, free_port

try:                                           # the probes are moving to the lab-node package
    from labnode.probes import ftp as probes
except ImportError:                            # pragma: no cover - before the move
    from ftp import probes

SERVICES = Path(__file__).resolve().parents[2] / "services"
FAST_KDF = 1 << 10          # scrypt n for test users: same code path, 16x cheaper
MiB = 1024 * 1024


class Lab:
    """A running server plus helpers to log in and look at its disk."""

    def __init__(self, root: Path, **config) -> None:
        self.root = root
        db = users.UserDb(str(root))
        for name, (password, quota) in users.DEMO_USERS.items():
            if db.get(name) is None:
                db.add(name, password, quota, n=FAST_KDF)
        settings = {"login_delay": 0.02, "header_deadline": 1.0, "max_sessions": 16, "verbose": False,
                    **config}
        self.server = FtpServer(ServerConfig(root=str(root), host="127.0.0.1", port=0, **settings))
        self.host, self.port = self.server.address
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def login(self, user: str = "alice") -> FtpClient:
        client = FtpClient(self.host, self.port, timeout=10)
        client.login(user, users.DEMO_USERS[user][0])
        return client

    def home(self, user: str = "alice") -> Path:
        return self.root / "home" / user

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def lab(tmp_path):
    running = Lab(tmp_path / "root")
    yield running
    running.stop()


def make(path: Path, size: int, seed: int = 1) -> str:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def names(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir())


# --- (1) authentication, (2) many users --------------------------------------------------------

def test_login_challenge_and_wrong_password_limit(lab):
    client = FtpClient(lab.host, lab.port, timeout=10)
    codes = []
    for attempt in range(3):
        with pytest.raises(FtpError) as info:
            client.login("alice", f"wrong{attempt}")
        codes.append(info.value.code)
    assert codes == [530, 530, 421]
    assert client.sock is None                                # 421: the client closed too
    assert lab.server.stats.failed_logins == 3
    good = lab.login("alice")
    assert good.noop().code == 200


def test_unknown_user_is_indistinguishable_from_a_wrong_password(lab):
    def attempt(user):
        c = FtpClient(lab.host, lab.port, timeout=10)
        with pytest.raises(FtpError) as info:
            c.login(user, "nope")
        return info.value.reply
    assert (attempt("alice").code, attempt("alice").msg) == (attempt("mallory").code, attempt("mallory").msg)
    raw = [FtpClient(lab.host, lab.port, timeout=10) for _ in range(2)]
    from ftp.protocol import Login
    salts = [c.request(Login("mallory", "00" * 16)).fields["salt"] for c in raw]
    assert salts[0] == salts[1] and len(salts[0]) == 32


def test_users_file_holds_no_password_and_no_fast_hash(lab):
    text = (lab.root / "users.json").read_text()
    for name, (password, _) in users.DEMO_USERS.items():
        assert password not in text
        assert hashlib.sha256((name + password + name).encode()).hexdigest() not in text
        assert json.loads(text)["users"][name]["kdf"] == "scrypt"


def test_two_users_at_once_each_in_their_own_home(lab, tmp_path):
    alice, bob = lab.login("alice"), lab.login("bob")
    (tmp_path / "a.txt").write_text("A")
    alice.put(str(tmp_path / "a.txt"))
    bob.put(str(tmp_path / "a.txt"), "b.txt")
    assert [e["name"] for e in alice.ls()] == ["a.txt"]
    assert [e["name"] for e in bob.ls()] == ["b.txt"]
    assert names(lab.home("alice")) == ["a.txt"] and names(lab.home("bob")) == ["b.txt"]


def test_the_admin_tool_adds_users_and_quotas_without_a_restart(lab, capsys):
    root = str(lab.root)
    add = ["--root", root, "add", "carol", "--quota", "2M", "--password", "pw", "--kdf-n", "1024"]
    assert users.main(add) == 0
    carol = FtpClient(lab.host, lab.port, timeout=10)
    carol.login("carol", "pw")
    assert carol.quota()["limit"] == 2 * MiB
    assert users.main(["set-quota", "carol", "3M", "--root", root]) == 0
    assert carol.quota()["limit"] == 3 * MiB
    assert users.main(["--root", root, "list"]) == 0
    assert "carol" in capsys.readouterr().out
    assert users.main(["--root", root, "add", "carol", "--password", "x"]) == 1     # exists
    assert users.parse_size("1.5K") == 1536


# --- (3) homes, (5) cd, (6) ls, pwd, mkdir, rm --------------------------------------------------

def test_navigation_commands(lab):
    c = lab.login()
    assert c.pwd() == "/"
    assert c.mkdir("docs/").code == 257
    assert c.mkdir("docs/sub").code == 257
    assert c.cd("docs/sub") == "/docs/sub"
    assert c.cd("..") == "/docs"
    assert [e["name"] for e in c.ls("/")] == ["docs"]
    assert c.ls("/")[0]["type"] == "dir"
    with pytest.raises(FtpError) as info:
        c.rm("/docs")
    assert info.value.code == 550                           # not empty
    assert c.rm("sub").code == 250 and c.rm("/docs").code == 250
    with pytest.raises(FtpError):
        c.cd("/docs")
    assert c.pwd() == "/docs"                                # a failed cd leaves the cwd alone
    assert "put" in c.help()


def test_confinement(lab, tmp_path):
    bob = lab.login("bob")
    (tmp_path / "s.txt").write_text("secret")
    bob.put(str(tmp_path / "s.txt"), "secret.txt")
    (lab.home("alice") / "to-etc").symlink_to("/etc")
    (lab.home("alice") / "to-alice2").symlink_to(lab.home("alice2"))
    (lab.home("alice2") / "x.txt").write_text("alice2's")
    c = lab.login("alice")
    attempts = [lambda: c.cd("../.."), lambda: c.get("../bob/secret.txt", str(tmp_path / "l1")),
                lambda: c.get("../../users.json", str(tmp_path / "l2")),
                lambda: c.get("to-etc/passwd", str(tmp_path / "l3")), lambda: c.ls("to-etc"),
                lambda: c.get("to-alice2/x.txt", str(tmp_path / "l4")),
                lambda: c.put(str(tmp_path / "s.txt"), "../x"),
                lambda: c.put(str(tmp_path / "s.txt"), "to-etc/evil"), lambda: c.rm("../bob/secret.txt"),
                lambda: c.cd("a\x00b")]
    for attempt in attempts:
        with pytest.raises(FtpError) as info:
            attempt()
        assert info.value.code in (550, 553)
    with pytest.raises(FtpError) as info:
        c.get("/etc/passwd", str(tmp_path / "l5"))             # absolute = inside the home: not found
    assert info.value.code == 550
    assert not any(p.name.startswith("l") for p in tmp_path.iterdir())
    assert (lab.home("bob") / "secret.txt").exists() and not (lab.root / "home" / "x").exists()
    types = {e["name"]: e["type"] for e in c.ls()}
    assert types == {"to-alice2": "link", "to-etc": "link"}


# --- (4) quotas --------------------------------------------------------------------------------

def test_quota_is_per_user_and_a_refused_upload_leaves_nothing(lab, tmp_path):
    big = tmp_path / "big.bin"
    make(big, MiB + 1)
    bob, alice = lab.login("bob"), lab.login("alice")
    with pytest.raises(FtpError) as info:
        bob.put(str(big))
    assert info.value.code == 552
    assert names(lab.home("bob")) == []
    assert alice.put(str(big)).code == 226
    assert bob.quota()["limit"] == MiB and alice.quota()["used"] == MiB + 1


def test_concurrent_uploads_cannot_exceed_the_quota_together(lab, tmp_path):
    size = 6 * MiB
    digest = make(tmp_path / "six.bin", size)
    a, b = lab.login(), lab.login()
    first = a.request(Put("one.bin", size, digest))
    assert first.code == 350
    with pytest.raises(FtpError) as info:
        b.request(Put("two.bin", size, digest))
    assert info.value.code == 552 and b.quota()["reserved"] == size
    # A is cut after 3 MiB: its reservation ends, but its partial still counts. 8 MiB would fit
    # an empty home; next to the 3 MiB part it does not.
    with open(tmp_path / "six.bin", "rb") as f:
        a.send(PutData(0), body_size=size)
        a.sock.sendfile(f, 0, 3 * MiB)
    a.cut()
    with pytest.raises(FtpError) as info:
        b.request(Put("two.bin", 8 * MiB, digest))
    assert info.value.code == 552
    quota = b.quota()
    assert quota["used"] >= 3 * MiB and quota["reserved"] == 0        # the part counts, nothing reserved


def test_two_sessions_racing_with_real_bodies_never_exceed_the_quota(lab, tmp_path):
    size = 4 * MiB
    make(tmp_path / "four.bin", size)
    results = {}

    def upload(name):
        try:
            results[name] = lab.login().put(str(tmp_path / "four.bin"), name).code
        except FtpError as exc:
            results[name] = exc.code
    threads = [threading.Thread(target=upload, args=(f"f{i}.bin",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results.values()) == [226, 226, 552]
    used = sum(p.stat().st_size for p in lab.home().rglob("*") if p.is_file())
    assert used <= 10 * MiB


def test_the_same_name_cannot_be_uploaded_twice_at_once(lab, tmp_path):
    digest = make(tmp_path / "x.bin", 1000)
    a, b = lab.login(), lab.login()
    a.request(Put("x.bin", 1000, digest))
    with pytest.raises(FtpError) as info:
        b.request(Put("x.bin", 1000, digest))
    assert info.value.code == 450
    with pytest.raises(FtpError) as info:
        b.rm("x.bin")
    assert info.value.code == 450


# --- (7) checksums, (8) progress ---------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * MiB + 7])
def test_put_get_round_trip_is_verified(lab, tmp_path, size):
    digest = make(tmp_path / "f.bin", size, seed=size)
    c = lab.login()
    stored = c.put(str(tmp_path / "f.bin"))
    assert stored.fields["digest"] == digest and stored.fields["file_size"] == size
    assert hashlib.sha256((lab.home() / "f.bin").read_bytes()).hexdigest() == digest
    got = c.get("f.bin", str(tmp_path / "copy.bin"))
    assert file_digest(str(tmp_path / "copy.bin")) == digest and got.fields["digest"] == digest
    assert names(lab.home()) == ["f.bin"] and not any(tmp_path.glob(".*part*"))


def test_md5_is_available_for_old_clients(lab, tmp_path):
    make(tmp_path / "f.bin", 5000)
    c = lab.login()
    md5 = file_digest(str(tmp_path / "f.bin"), "md5")
    assert c.put(str(tmp_path / "f.bin"), algo="md5").fields["digest"] == md5
    assert c.get("f.bin", str(tmp_path / "g.bin"), algo="md5").fields["algo"] == "md5"


def test_a_wrong_digest_is_refused_and_nothing_is_kept(lab):
    c = lab.login()
    c.request(Put("bad.bin", 4, "00" * 32))
    c.send(PutData(0), body_size=4)
    c.sock.sendall(b"abcd")
    done = c.read_reply()
    assert done.code == 451
    assert names(lab.home()) == [] and c.noop().code == 200


def test_a_missing_local_file_sends_nothing(lab, tmp_path):
    c = lab.login()
    with pytest.raises(FileNotFoundError):
        c.put(str(tmp_path / "nope.bin"))
    assert c.noop().code == 200                               # the seed desynchronised here


def test_progress_is_monotonic_and_ends_at_the_total(lab, tmp_path):
    make(tmp_path / "p.bin", 3 * MiB)
    c = lab.login()
    for call in (lambda cb: c.put(str(tmp_path / "p.bin"), progress=cb),
                 lambda cb: c.get("p.bin", str(tmp_path / "q.bin"), progress=cb)):
        seen: list[tuple[int, int]] = []
        call(lambda d, t, seen=seen: seen.append((d, t)))
        assert seen[0] == (0, 3 * MiB) and seen[-1] == (3 * MiB, 3 * MiB) and len(seen) > 3
        assert all(a <= b for a, b in zip(seen, seen[1:]))


def test_progress_bar_draws_at_most_ten_times_a_second():
    import io

    from ftp.client import ProgressBar
    screen = io.StringIO()
    bar = ProgressBar("x", stream=screen)
    started = time.monotonic()
    for i in range(0, 100001, 10):
        bar(i, 100000)
    elapsed = time.monotonic() - started
    assert screen.getvalue().count("\r") <= elapsed * 10 + 2
    assert screen.getvalue().rstrip().endswith("ETA 0:00") and "100%" in screen.getvalue()


# --- (9) resume --------------------------------------------------------------------------------

@pytest.mark.parametrize("cut", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * MiB - 1])
def test_an_interrupted_upload_resumes_where_it_stopped(lab, tmp_path, cut):
    size = 2 * MiB
    digest = make(tmp_path / "r.bin", size, seed=cut)
    with pytest.raises(TransferCut):
        lab.login().put(str(tmp_path / "r.bin"), cut_after=cut)
    c = lab.login()
    if cut == 0:                                   # nothing arrived: nothing is kept
        assert names(lab.home()) == [] and c.ls() == []
    else:
        assert names(lab.home()) == [".r.bin.part", ".r.bin.part.json"]     # never under the final name
        assert (lab.home() / ".r.bin.part").stat().st_size == cut
        partial = {e["name"]: e for e in c.ls()}["r.bin"]
        assert partial["type"] == "partial" and partial["size"] == cut and partial["file_size"] == size
    done = c.put(str(tmp_path / "r.bin"))
    assert done.fields["digest"] == digest and done.fields["received"] == size - cut
    assert names(lab.home()) == ["r.bin"]


def test_a_different_file_under_the_same_name_starts_again(lab, tmp_path):
    make(tmp_path / "r.bin", MiB, seed=1)
    with pytest.raises(TransferCut):
        lab.login().put(str(tmp_path / "r.bin"), cut_after=1000)
    digest = make(tmp_path / "r.bin", MiB, seed=2)
    done = lab.login().put(str(tmp_path / "r.bin"))
    assert done.fields["received"] == MiB and done.fields["digest"] == digest


def test_abort_keeps_the_part_for_later(lab, tmp_path):
    digest = make(tmp_path / "a.bin", 100)
    c = lab.login()
    c.request(Put("a.bin", 100, digest))
    assert c.request(Abort()).fields["kept"] == 0
    assert c.noop().code == 200 and names(lab.home()) == []       # nothing to keep: no sidecar either
    c.request(Put("a.bin", 100, digest))
    c.send(PutData(0), body_size=100)
    c.sock.sendall(b"x" * 40)
    c.cut()
    c = lab.login()
    assert c.request(Put("a.bin", 100, digest)).fields["offset"] == 40
    assert c.request(Abort()).fields["kept"] == 40
    assert c.rm("a.bin").code == 250 and names(lab.home()) == []


@pytest.mark.parametrize("cut", [1, CHUNK_SIZE, 2 * MiB - 1])
def test_an_interrupted_download_resumes_from_the_local_part(lab, tmp_path, cut):
    size = 2 * MiB
    digest = make(tmp_path / "d.bin", size, seed=cut)
    lab.login().put(str(tmp_path / "d.bin"))
    dest = tmp_path / "copy.bin"
    with pytest.raises(TransferCut):
        lab.login().get("d.bin", str(dest), cut_after=cut)
    part, meta = local_part_paths(str(dest))
    assert os.path.getsize(part) == cut and not dest.exists()
    done = lab.login().get("d.bin", str(dest))
    assert done.fields["resumed_from"] == cut and done.fields["sent"] == size - cut
    assert file_digest(str(dest)) == digest and not os.path.exists(part) and not os.path.exists(meta)


@pytest.mark.parametrize("size", [100_000, 3 * MiB])      # hashed inline, and on the hash thread
def test_a_download_whose_bytes_do_not_match_the_digest_is_deleted(lab, tmp_path, size):
    make(tmp_path / "d.bin", size)
    c = lab.login()
    c.put(str(tmp_path / "d.bin"))
    c.get("d.bin", str(tmp_path / "first.bin"))   # now the server's digest cache holds this file
    stored = lab.home() / "d.bin"
    st = os.stat(stored)
    with open(stored, "r+b") as f:          # same inode, size and mtime: the cache still holds the
        f.seek(size // 2)                   # old digest, so the server announces a digest the
        byte = f.read(1)[0]                 # bytes it sends no longer have (one byte flipped)
        f.seek(size // 2)
        f.write(bytes([byte ^ 0xFF]))
    os.utime(stored, ns=(st.st_atime_ns, st.st_mtime_ns))
    dest = tmp_path / "copy.bin"
    with pytest.raises(FtpError, match="sha256 mismatch"):
        c.get("d.bin", str(dest))
    assert not dest.exists() and not any(tmp_path.glob(".copy.bin*"))
    assert c.noop().ok                      # the session goes on


def test_server_side_drop_after_bytes(tmp_path):
    lab = Lab(tmp_path / "root", drop_after_bytes=100_000)
    try:
        digest = make(tmp_path / "d.bin", MiB)
        lab.login().put(str(tmp_path / "d.bin"))
        with pytest.raises((EOFError, OSError, Exception)):
            lab.login().get("d.bin", str(tmp_path / "copy.bin"))
        part, _ = local_part_paths(str(tmp_path / "copy.bin"))
        assert os.path.getsize(part) == 100_000
        done = lab.login().get("d.bin", str(tmp_path / "copy.bin"))        # a resume is not cut
        assert done.fields["resumed_from"] == 100_000 and file_digest(str(tmp_path / "copy.bin")) == digest
    finally:
        lab.stop()


def start_server_process(root: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": str(SERVICES), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ftp.server", "--host", "127.0.0.1", "--port", "0",
                             "--root", str(root), "--login-delay", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if match := re.match(r"listening on [\d.]+:(\d+)", line):
            return proc, int(match.group(1))
    proc.kill()
    raise AssertionError("the server did not start")


def test_server_killed_mid_upload_then_restarted_resumes(tmp_path):
    root = tmp_path / "root"
    db = users.UserDb(str(root))
    db.add("alice", "wonderland", 10 * MiB, n=FAST_KDF)
    size = 3 * MiB
    digest = make(tmp_path / "k.bin", size)
    proc, port = start_server_process(root)
    try:
        c = FtpClient("127.0.0.1", port, timeout=10)
        c.login("alice", "wonderland")
        c.request(Put("k.bin", size, digest))
        with open(tmp_path / "k.bin", "rb") as f:
            c.send(PutData(0), body_size=size)
            c.sock.sendfile(f, 0, MiB + 12345)
        deadline = time.monotonic() + 10
        part = root / "home" / "alice" / ".k.bin.part"
        while (not part.exists() or part.stat().st_size < MiB + 12345) and time.monotonic() < deadline:
            time.sleep(0.02)   # last resort: wait for the other process's writes to reach the file
        proc.kill()            # SIGKILL: no clean-up at all
        proc.wait(10)
        assert not (root / "home" / "alice" / "k.bin").exists()
    finally:
        proc.kill()
    proc, port = start_server_process(root)
    try:
        c = FtpClient("127.0.0.1", port, timeout=10)
        c.login("alice", "wonderland")
        accepted = c.request(Put("k.bin", size, digest))
        assert accepted.fields["offset"] == MiB + 12345
        c.request(Abort())
        done = c.put(str(tmp_path / "k.bin"))
        assert done.fields["received"] == size - MiB - 12345
        assert done.fields["digest"] == digest
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "server stopped" in out


# --- (10) pool, (11) max sessions, timeouts -----------------------------------------------------

def test_max_sessions_gets_a_polite_421_and_the_slot_comes_back(tmp_path):
    lab = Lab(tmp_path / "root", max_sessions=2)
    try:
        first, second = FtpClient(lab.host, lab.port, timeout=5), FtpClient(lab.host, lab.port, timeout=5)
        with pytest.raises(FtpError) as info:
            FtpClient(lab.host, lab.port, timeout=5)
        assert info.value.code == 421 and "too many" in info.value.reply.msg
        assert first.noop().code == 200 and second.noop().code == 200
        first.quit()
        for _ in range(100):
            try:
                FtpClient(lab.host, lab.port, timeout=5).close()
                break
            except FtpError:
                time.sleep(0.02)
        else:
            pytest.fail("the slot was not released")
        assert lab.server.stats.refused >= 1
    finally:
        lab.stop()


def test_a_flood_of_connections_gets_greetings_or_421s_and_the_server_goes_on(tmp_path):
    lab = Lab(tmp_path / "root", max_sessions=8)
    socks = []
    try:
        for _ in range(300):
            socks.append(socket.create_connection((lab.host, lab.port), timeout=10))
        codes = []
        for sock in socks:
            head = b""
            while len(head) < 4 or len(head) < 4 + int.from_bytes(head[:4], "big"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                head += chunk
            codes.append(json.loads(head[4:4 + int.from_bytes(head[:4], "big")])["code"])
        assert codes.count(220) == 8 and codes.count(421) == 292
        for sock in socks:
            sock.close()
        for _ in range(100):
            try:
                assert lab.login().noop().code == 200
                break
            except FtpError:
                time.sleep(0.02)         # the workers are still noticing 8 closed connections
        else:
            pytest.fail("the server did not recover")
    finally:
        for sock in socks:
            sock.close()
        lab.stop()


def test_idle_and_slow_clients_are_disconnected(tmp_path):
    lab = Lab(tmp_path / "root", idle_timeout=0.3, header_deadline=0.3)
    try:
        for payload in (b"", b"\x00\x00"):       # idle; then a header that never completes
            sock = socket.create_connection((lab.host, lab.port), timeout=5)
            sock.recv(65536)                       # the greeting
            sock.sendall(payload)
            started, data = time.monotonic(), b""
            while chunk := sock.recv(65536):
                data += chunk
            assert b'"code": 421' in data and time.monotonic() - started < 3
            sock.close()
    finally:
        lab.stop()


# --- SPEC §7 and the probes -------------------------------------------------------------------

def test_disk_full_during_an_upload_is_reported_and_the_session_goes_on(lab, tmp_path, monkeypatch):
    make(tmp_path / "f.bin", 2 * MiB)
    original = Upload.write

    def write(self, data):
        if self.position + len(data) > MiB:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, data)
    monkeypatch.setattr(Upload, "write", write)
    c = lab.login()
    with pytest.raises(FtpError) as info:
        c.put(str(tmp_path / "f.bin"))
    assert info.value.code == Code.INSUFFICIENT_STORAGE
    assert c.noop().code == 200 and "f.bin" not in names(lab.home())


def test_frames_with_garbage_after_a_valid_request(lab):
    c = lab.login()
    c.sock.sendall(encode_header({"op": "noop"}) + b"\xff\xff\xff\xff")
    assert c.read_reply().code == 200
    assert c.read_reply().code == 500
    with pytest.raises(EOFError):
        c.read_reply()
    assert lab.login().request(Noop()).code == 200


def test_batch_shell(lab, tmp_path, monkeypatch, capsys):
    make(tmp_path / "s.bin", 10000)
    monkeypatch.chdir(tmp_path)
    login = ["--host", lab.host, "--port", str(lab.port), "--user", "alice", "--password", "wonderland"]
    script = "mkdir d; cd d; put s.bin; ls; get s.bin t.bin; quota; rm s.bin; pwd; quit"
    code = client_main([*login, "-c", script])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (tmp_path / "t.bin").read_bytes() == (tmp_path / "s.bin").read_bytes()
    assert "226" in out and "/d" in out
    assert client_main([*login, "-c", "get nothing-here"]) == 1


@pytest.mark.parametrize("name", [p for p in probes.PROBES if p not in ("max-sessions", "login-limit")])
def test_the_probes_pass_against_the_reference_server(lab, name, capsys):
    assert probes.PROBES[name](lab.host, lab.port), capsys.readouterr().out


@pytest.mark.parametrize("delay", [0.6, 0.0])
def test_the_login_limit_probe_wants_failures_slowed_down(tmp_path, capsys, delay):
    """§4: each failed auth is answered after a delay; the probe passes a server that waits 0.6 s
    and fails one that answers at once, saying so."""
    lab = Lab(tmp_path / "root", login_delay=delay)
    try:
        assert probes.PROBES["login-limit"](lab.host, lab.port) is (delay > 0)
    finally:
        lab.stop()
    out = capsys.readouterr().out
    assert ("answered at once" in out) is (delay == 0), out


def test_the_max_sessions_probe(tmp_path, capsys):
    lab = Lab(tmp_path / "root", max_sessions=3)
    try:
        assert probes.probe_max_sessions(lab.host, lab.port, expect=3), capsys.readouterr().out
    finally:
        lab.stop()


def test_server_shows_listening_line_and_stops_on_sigterm(tmp_path):
    proc, port = start_server_process(tmp_path / "root")
    assert FtpClient("127.0.0.1", port, timeout=5).greeting.code == 220
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "server stopped" in out
    assert (tmp_path / "root" / "users.json").exists()          # the demo users were created


# --- the checker's scenarios against the negative control, on loopback ---------------------------

def test_the_seed_server_fails_every_server_scenario(tmp_path):
    from socketlab.scenario import LessonRun
    from socketlab.scenarios import for_lesson
    root = tmp_path / "srv"
    seed = [sys.executable, str(SERVICES.parent / "tests" / "negative" / "ftp_seed_server.py")]
    port = free_port()
    proc = subprocess.Popen([*seed, "--host", "127.0.0.1", "--port", str(port), "--root", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().startswith("listening on")
        node = LocalNode()
        run = LessonRun(lesson="ftp", nodes={"server": node, "client": node}, server_host="127.0.0.1",
                        ports={"server": port}, server_cmd=seed, client_cmd=[], python=sys.executable,
                        workdir=str(SERVICES), server_args=["--root", str(root)])
        outcomes = {sc.name: sc(run) for sc in for_lesson("ftp") if "server" in sc.roles}
    finally:
        proc.kill()
        proc.wait(10)
    assert len(outcomes) >= 12 and not any(o.passed for o in outcomes.values()), {
        n: o.summary for n, o in outcomes.items() if o.passed}
    storage = outcomes["password-storage"].observed
    assert ["alice", "sha256(user+pw+user)"] in storage["fast_hashes"]


# --- the lobby: logins without a worker (issue 11) ----------------------------------------------

def test_logins_are_answered_in_the_lobby_and_the_session_goes_on_in_a_worker(tmp_path, monkeypatch):
    # The lobby hands a session to a worker after LOBBY_PATIENCE (at most half the deadlines) even
    # mid-login; a busy test machine must not turn that into a failure, so both are long here.
    from ftp import server as ftp_server
    monkeypatch.setattr(ftp_server, "LOBBY_PATIENCE", 60.0)
    lab = Lab(tmp_path / "root", header_deadline=180.0, login_deadline=180.0)
    try:
        clients = [lab.login("alice" if i % 2 else "bob") for i in range(12)]
        for client in clients:                 # the first command after the login: a worker takes over
            assert client.pwd() == "/"
            client.quit()
        # counted here, not before the pwd()s: the lobby counts a login just after it sent the 230,
        # so the client may read its 230 first; the pwd() is taken by a worker only after that
        assert lab.server.stats.lobby_logins >= 12
    finally:
        lab.stop()


def test_a_wrong_password_leaves_the_lobby_and_waits_the_login_delay(lab):
    client = FtpClient(lab.host, lab.port, timeout=10)
    started = time.monotonic()
    with pytest.raises(FtpError) as info:
        client.login("alice", "not-her-password")
    assert info.value.code == Code.NOT_LOGGED_IN and time.monotonic() - started >= 0.02
    client.login("alice", users.DEMO_USERS["alice"][0])   # the same session, now in a worker
    assert client.pwd() == "/"
    client.quit()


def test_a_silent_connection_leaves_the_lobby_and_meets_the_login_deadline(tmp_path):
    lab = Lab(tmp_path / "root", login_deadline=1.5)
    try:
        sock = socket.create_connection((lab.host, lab.port), timeout=10)
        started, data = time.monotonic(), b""
        while chunk := sock.recv(65536):
            data += chunk
        assert b'"code": 421' in data and b"log in within" in data
        assert 1.0 < time.monotonic() - started < 5
        sock.close()
    finally:
        lab.stop()


@pytest.mark.parametrize("old", [0, 3 * CHUNK_SIZE + 17])
@pytest.mark.parametrize("prefix_known", [False, True])
def test_the_hash_thread_hashes_lent_buffers_foreign_views_and_old_bytes_in_file_order(tmp_path, old, prefix_known):
    """What a session does with a PartHasher, in every shape the bytes come in: received into the
    buffers it lends (handed back and reused, so a reuse too early would corrupt the digest),
    views of someone else's buffer (changed right after), bytes; and a resumed part's old bytes."""
    from ftp.storage import HashThreads, PartHasher
    rng = random.Random(old + prefix_known)
    old_bytes = rng.randbytes(old)
    part = tmp_path / "x.part"
    part.write_bytes(old_bytes)
    want = hashlib.sha256(old_bytes)
    prefix = hashlib.sha256(old_bytes) if prefix_known else None
    hasher = PartHasher(str(part), "sha256", start=old, hasher=prefix, old=old, threads=HashThreads())
    assert hasher.lends_buffers
    foreign = bytearray(CHUNK_SIZE)
    with open(part, "ab") as f:
        for i in range(60):
            chunk = rng.randbytes(rng.choice([1, 4096, PartHasher.RING_BUFFER - 1, PartHasher.RING_BUFFER]))
            kind = i % 3
            if kind == 0:                          # received into a lent buffer, in two events
                buffer = hasher.buffer()
                buffer[:len(chunk)] = chunk
                pieces = [buffer[:len(chunk) // 2], buffer[len(chunk) // 2:len(chunk)]]
            elif kind == 1:                        # a view of a buffer that changes at once
                foreign[:len(chunk)] = chunk
                pieces = [memoryview(foreign)[:len(chunk)]]
            else:
                pieces = [chunk]
            for piece in pieces:
                f.write(piece)
                f.flush()
                hasher.advance(piece)
            if kind == 1:
                foreign[:len(chunk)] = bytes(len(chunk))
            want.update(chunk)
    assert hasher.finish() == want.hexdigest()


def test_a_failing_hash_thread_does_not_hang_the_session_and_finish_reports_it(tmp_path):
    from ftp.storage import HashThreads, PartHasher
    part = tmp_path / "x.part"
    part.write_bytes(b"")
    hasher = PartHasher(str(part), "sha256", threads=HashThreads())
    hasher.advance(b"\xff")
    hasher.advance("not bytes")                 # hashlib raises TypeError on the hash thread
    for _ in range(3 * PartHasher.RING):           # the session keeps receiving: never blocks
        hasher.buffer()
    with pytest.raises(TypeError):
        hasher.finish()


def test_a_put_over_an_existing_file_frees_the_old_one_after_the_reply_and_keeps_no_fd(lab, tmp_path):
    """The replaced file is held open across the rename (freeing a big file's blocks is slow) and
    closed on a hash thread after the 226: the old inode goes away, and no fd is left behind."""
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))
    c = lab.login()
    make(tmp_path / "f.bin", MiB, seed=1)
    c.put(str(tmp_path / "f.bin"), "same.bin")
    with open(lab.home() / "same.bin", "rb"):
        before = open_fds() - 1
    for seed in (2, 3):
        make(tmp_path / "f.bin", 2 * MiB, seed=seed)
        assert c.put(str(tmp_path / "f.bin"), "same.bin").fields["file_size"] == 2 * MiB
    assert (lab.home() / "same.bin").read_bytes() == (tmp_path / "f.bin").read_bytes()
    for _ in range(100):                              # closed by a hash thread, soon after the 226
        held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}")]
        held = [path for path in held if path.startswith(str(lab.home()))]
        if open_fds() <= before and not held:
            break
        time.sleep(0.02)
    assert open_fds() <= before, held
    assert not held, held
    c.quit()


def test_concurrent_uploads_cut_resumed_and_replaced_all_end_with_the_right_bytes(tmp_path):
    """The upload path under load: 8 sessions at once, each putting files of every shape the hash
    threads see (inline under 256 KiB, lent buffers above, a resumed part's old bytes read back,
    a put over an existing file), protocol 2 and protocol 1 alike. Every file must end with exactly
    the client's bytes, no hash thread more than uploads at once, no fd of a part left open."""
    lab = Lab(tmp_path / "root", max_sessions=12)
    users.UserDb(str(lab.root)).add("carol", "many-files", 1 << 30, n=FAST_KDF)   # room for all of it
    rng = random.Random(7)
    sizes = [0, 1, 100_000, 256 * 1024, 700_000, 3 * MiB + 17]
    errors: list[str] = []

    class ProtocolOne(FtpClient):
        streams_digest = False

    def worker(n: int) -> None:
        try:
            local = tmp_path / f"w{n}"
            local.mkdir()
            client = (ProtocolOne if n % 2 else FtpClient)(lab.host, lab.port, timeout=30)
            client.login("carol", "many-files")
            for i, size in enumerate(sizes):
                name = f"w{n}-{i}.bin"
                make(local / name, size, seed=n * 100 + i)
                if size > MiB and n % 3 == 0:                  # cut, then resume on a new session
                    with pytest.raises(TransferCut):
                        client.put(str(local / name), cut_after=MiB + n)
                    client = (ProtocolOne if n % 2 else FtpClient)(lab.host, lab.port, timeout=30)
                    client.login("carol", "many-files")
                client.put(str(local / name))
                if i == 2:                                      # and once over an existing file
                    make(local / name, size + 5, seed=n * 100 + 50)
                    client.put(str(local / name))
            client.quit()
            for p in local.iterdir():
                if (lab.home("carol") / p.name).read_bytes() != p.read_bytes():
                    errors.append(f"{p.name}: the stored bytes differ from the client's")
        except Exception as exc:   # noqa: BLE001 - collected, asserted below
            errors.append(f"worker {n}: {exc!r}")

    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        rng.shuffle(threads)
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert not [p for p in lab.home("carol").iterdir() if p.name.startswith(".")]   # no part, no sidecar left
        assert lab.server.storage.hash_threads.started <= 8
        for _ in range(100):                                 # replaced files are closed on a hash thread
            held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                    if os.path.exists(f"/proc/self/fd/{fd}")]
            held = [path for path in held if path.startswith(str(lab.home("carol")))]
            if not held:
                break
            time.sleep(0.02)
        assert not held, held
    finally:
        lab.stop()
