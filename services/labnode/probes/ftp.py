"""Lesson ftp, probes: what `lab.py demo ftp` and `lab.py check ftp` do from the client machine.

    python3 -m labnode.probes.ftp login --host ftp-server --port 20060
    python3 -m labnode.probes.ftp resume-upload --stage cut --host ftp-server --port 20060

Every probe speaks only the documented protocol (docs/ftp-protocol.md) through ftp.client, so
it grades any server that implements the contract. Each prints what it sees, one observation
per line, then one line `RESULT {"ok": ..., "observed": {...}}`.

The demo users (alice/wonderland 10 MiB, bob/builder 1 MiB, alice2/looking-glass 2 MiB) are
the ones a fresh server root gets; see services/ftp/README.md.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import socket
import sys
import tempfile
import time
import unicodedata

from framing.codec import encode_header
from ftp.client import FtpClient, FtpError, ProgressBar, TransferCut, file_digest, local_part_paths
from ftp.protocol import (
    MAX_LOGIN_ATTEMPTS,
    MAX_NAME_BYTES,
    MAX_PATH_CHARS,
    Abort,
    Auth,
    Cd,
    Login,
    Ls,
    Noop,
    ProtocolError,
    Put,
    PutData,
    Reply,
)
from ftp.users import DEMO_USERS
from labnode.report import result, say

MiB = 1024 * 1024
PASSWORDS = {name: password for name, (password, _quota) in DEMO_USERS.items()}
WORK = os.path.join(tempfile.gettempdir(), "ftp-probes")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


#: Every remote name the probes create: each probe first removes the leftovers of the others,
#: so the probes run in any order, any number of times, within alice's 10 MiB.
PROBE_FILES = ["random.bin", "random-md5.bin", "empty.bin", "resume-up.bin", "resume-down.bin",
               "progress.bin", "first.bin", "second.bin", "fits.bin", "too-big.bin", "short.bin", "long.bin",
               "café.txt", "hello-alice.txt", "hello-bob.txt", "secret.txt"]


def login(host: str, port: int, user: str, password: str | None = None, *, clean: bool = False) -> FtpClient:
    client = FtpClient(host, port, timeout=20)
    client.login(user, password if password is not None else PASSWORDS[user])
    if clean:
        quietly_remove(client, *(f"/{name}" for name in PROBE_FILES))
    return client


def make_file(path: str, size: int, seed: int) -> str:
    """A file of seeded random bytes (incompressible, the same on every run); returns sha256."""
    rng, digest = random.Random(seed), hashlib.sha256()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = rng.randbytes(min(left, MiB))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def local(name: str) -> str:
    """A path in this machine's scratch folder for the probes' files (made when first needed)."""
    os.makedirs(WORK, exist_ok=True)
    return os.path.join(WORK, name)


def code_of(call) -> int:
    """Run a client call; return the reply code (FtpError's code when refused)."""
    try:
        reply = call()
    except FtpError as exc:
        return exc.code
    return reply.code if isinstance(reply, Reply) else 200


def quietly_remove(client: FtpClient, *paths: str) -> None:
    for path in paths:
        try:
            client.rm(path)
        except FtpError:
            pass


def entry_names(entries: list[dict]) -> list[str]:
    suffix = {"dir": "/", "partial": " (partial)"}
    return [e["name"] + suffix.get(e.get("type"), "") for e in entries]


def reply_or_close(client: FtpClient) -> Reply | None:
    """The next reply, or None when the server closed the connection instead."""
    try:
        return client.read_reply()
    except (EOFError, ConnectionError):
        return None
    except ProtocolError:
        return None


def peer_closed(sock: socket.socket, timeout: float = 3.0) -> bool:
    """True when the peer has closed: recv returns b'' (EOF) or the connection was reset."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionError, OSError):
        return isinstance(sys.exc_info()[1], ConnectionError)


# ---------------------------------------------------------------------------------------------
# Logging in
# ---------------------------------------------------------------------------------------------

class RecordingClient(FtpClient):
    """An FtpClient that keeps every byte it sends, to show what crossed the wire."""

    sent = b""

    def send(self, request, body_size: int = 0) -> None:
        data = self.conn.send(request, body_size=body_size)
        self.sent += data
        self.sock.sendall(data)


def probe_login(host: str, port: int) -> bool:
    """Challenge-response: the password never crosses; unknown users look like wrong passwords."""
    user, password = "alice", PASSWORDS["alice"]
    client = RecordingClient(host, port, timeout=20)
    greeting = client.greeting
    say(f"connected; the server speaks first: {greeting.code} {greeting.msg}")
    say(f"  features {greeting.fields.get('features')}, limits {greeting.fields.get('limits')}")
    welcome = client.login(user, password)
    on_wire = password.encode() in client.sent
    say(f"login {user}: sent {len(client.sent)} bytes in 2 frames (login, auth); "
        f"the password {'APPEARS' if on_wire else 'does not appear'} in them")
    say(f"  {welcome.code} {welcome.msg}; the server proved it knows our verifier (server_signature checked)")
    client.quit()

    def challenge(name: str) -> Reply:
        c = FtpClient(host, port, timeout=20)
        try:
            return c.request(Login(name, os.urandom(16).hex()))
        finally:
            c.close()

    def wrong_proof(name: str) -> Reply:
        c = FtpClient(host, port, timeout=20)
        try:
            c.request(Login(name, os.urandom(16).hex()))
            return c.request(Auth("00" * 32), check=False)
        finally:
            c.close()

    known, ghost1, ghost2 = challenge("alice"), challenge("mallory"), challenge("mallory")
    keys = sorted(set(known.fields) - {"user"})
    same_shape = (known.code == ghost1.code and keys == sorted(set(ghost1.fields) - {"user"})
                  and len(str(known.fields.get("salt", ""))) == len(str(ghost1.fields.get("salt", ""))))
    stable = ghost1.fields.get("salt") == ghost2.fields.get("salt") and ghost1.fields.get("salt") is not None
    say(f"login alice   -> {known.code} with {keys} (salt {str(known.fields.get('salt'))[:12]}..., "
        f"kdf {known.fields.get('kdf')} n={known.fields.get('n')} r={known.fields.get('r')} "
        f"p={known.fields.get('p')})")
    say(f"login mallory -> {ghost1.code} with {sorted(set(ghost1.fields) - {'user'})}: "
        f"same shape: {same_shape}; "
        f"asked twice, the fake salt is {'the same' if stable else 'DIFFERENT'} (it is derived, not random)")
    bad_alice, bad_ghost = wrong_proof("alice"), wrong_proof("mallory")
    same_refusal = (bad_alice.code, bad_alice.msg) == (bad_ghost.code, bad_ghost.msg)
    say(f"wrong proof for alice -> {bad_alice}; for mallory -> {bad_ghost}: "
        f"{'indistinguishable' if same_refusal else 'DIFFERENT: user names can be probed'}")
    ok = (greeting.code == 220 and welcome.code == 230 and not on_wire and known.code == 331
          and same_shape and stable and bad_alice.code == 530 and same_refusal)
    return result(ok, greeting_code=greeting.code, login_code=welcome.code, password_on_wire=on_wire,
                  bytes_sent=len(client.sent), challenge_code=known.code, challenge_keys=keys,
                  kdf=known.fields.get("kdf"), kdf_n=known.fields.get("n"), unknown_user_code=ghost1.code,
                  unknown_same_shape=same_shape, unknown_salt_stable=stable,
                  wrong_password_reply=[bad_alice.code, bad_alice.msg],
                  unknown_user_reply=[bad_ghost.code, bad_ghost.msg], refusals_identical=same_refusal)


MIN_FAILURE_DELAY = 0.5    # seconds; §4 says 1 s by default: a failed login answered sooner is not slowed down


def probe_login_limit(host: str, port: int) -> bool:
    """Three wrong passwords: 530, 530, then 421 and the server closes the connection."""
    client = FtpClient(host, port, timeout=20)
    codes, times = [], []
    for attempt in range(1, MAX_LOGIN_ATTEMPTS + 2):
        started = time.monotonic()
        try:
            client.login("alice", f"guess-{attempt}")
            codes.append(230)
        except FtpError as exc:
            codes.append(exc.code)
            took = time.monotonic() - started
            say(f"attempt {attempt}: wrong password -> {exc.code} {exc.reply.msg} (after {took:.2f} s: "
                + ("slowed down)" if took >= MIN_FAILURE_DELAY else
                   f"answered at once; §4 wants a delay, at least {MIN_FAILURE_DELAY} s here)"))
        except (OSError, EOFError, AttributeError):
            say(f"attempt {attempt}: the connection is closed")
            break
        times.append(round(time.monotonic() - started, 3))
        if client.sock is None:
            break
    closed = client.sock is None or peer_closed(client.sock)
    say(f"after {MAX_LOGIN_ATTEMPTS} failures the connection is {'closed' if closed else 'STILL OPEN'}")
    client.close()
    fresh = login(host, port, "alice")
    still_serving = fresh.noop().code == 200
    fresh.quit()
    say(f"a new session logs in with the right password: {still_serving}")
    expected = [530] * (MAX_LOGIN_ATTEMPTS - 1) + [421]
    slowed = len(times) >= MAX_LOGIN_ATTEMPTS and min(times[:MAX_LOGIN_ATTEMPTS]) >= MIN_FAILURE_DELAY
    return result(codes[:MAX_LOGIN_ATTEMPTS] == expected and closed and still_serving and slowed, codes=codes,
                  seconds_per_attempt=times, slowed_down=slowed, closed=closed, new_session_ok=still_serving)


# ---------------------------------------------------------------------------------------------
# Users and homes
# ---------------------------------------------------------------------------------------------

def probe_two_users(host: str, port: int) -> bool:
    """alice and bob at the same time: each sees only their own home."""
    alice, bob = login(host, port, "alice", clean=True), login(host, port, "bob", clean=True)
    say("alice and bob are logged in at the same time (two sessions at once)")
    for client in (alice, bob):
        name = f"hello-{client.user}.txt"
        path = local(name)
        with open(path, "w") as f:
            f.write(f"hello from {client.user}\n")
        client.put(path, name)
    a_names, b_names = entry_names(alice.ls("/")), entry_names(bob.ls("/"))
    say(f"alice's ls /: {a_names}")
    say(f"bob's   ls /: {b_names}")
    a_pwd, b_pwd = alice.pwd(), bob.pwd()
    crossed = "hello-bob.txt" in a_names or "hello-alice.txt" in b_names
    say(f"each home is '/' for its owner (pwd: {a_pwd!r}, {b_pwd!r}); "
        f"anyone sees the other's file: {crossed}")
    alive = alice.noop().code == 200 and bob.noop().code == 200
    for client in (alice, bob):
        quietly_remove(client, f"hello-{client.user}.txt")
        client.quit()
    ok = "hello-alice.txt" in a_names and "hello-bob.txt" in b_names and not crossed and alive
    return result(ok, alice_entries=a_names, bob_entries=b_names, alice_pwd=a_pwd, bob_pwd=b_pwd,
                  cross_visible=crossed, both_alive=alive)


def probe_isolation(host: str, port: int, symlink: str | None = None) -> bool:
    """Path traversal, absolute paths, sibling homes, NUL, symlinks out: all refused."""
    bob = login(host, port, "bob", clean=True)
    login(host, port, "alice", clean=True).quit()
    secret = local("bob-secret.txt")
    with open(secret, "w") as f:
        f.write("bob's secret\n")
    bob.put(secret, "secret.txt")
    bob.quit()
    alice = login(host, port, "alice")
    probe_file = local("probe.txt")
    with open(probe_file, "w") as f:
        f.write("x\n")
    attempts = {
        "cd ../..": lambda: alice.cd("../.."),
        "cd ../bob": lambda: alice.cd("../bob"),
        "ls ..": lambda: alice.ls(".."),
        "get ../bob/secret.txt": lambda: alice.get("../bob/secret.txt", local("leak1")),
        "get ../../users.json": lambda: alice.get("../../users.json", local("leak2")),
        "get /etc/passwd": lambda: alice.get("/etc/passwd", local("leak3")),
        "get ../alice2/x (sibling prefix)": lambda: alice.get("../alice2/x", local("leak4")),
        "get docs/../../bob/secret.txt": lambda: alice.get("docs/../../bob/secret.txt", local("leak5")),
        "put ../evil.txt": lambda: alice.put(probe_file, "../evil.txt"),
        "put ../bob/evil.txt": lambda: alice.put(probe_file, "../bob/evil.txt"),
        "mkdir a/../../b": lambda: alice.mkdir("a/../../b"),
        "rm ../bob/secret.txt": lambda: alice.rm("../bob/secret.txt"),
        "cd a\\x00b (NUL)": lambda: alice.cd("a\x00b"),
        "get .secret.txt.part (internal name)": lambda: alice.get(".secret.txt.part", local("leak6")),
    }
    unfollowed = set()

    def ls_link() -> Reply:
        """553, or (like `ls FILE`) just the link's own entry, type "link": listed, never followed."""
        reply = alice.request(Ls(symlink))
        entries = reply.fields.get("entries")
        if (isinstance(entries, list) and len(entries) == 1 and isinstance(entries[0], dict)
                and entries[0].get("type") == "link" and entries[0].get("name") == symlink
                and not reply.fields.get("truncated")):
            unfollowed.add(f"ls {symlink} (symlink out)")
        return reply

    if symlink:
        attempts[f"ls {symlink} (symlink out)"] = ls_link
        attempts[f"cd {symlink}"] = lambda: alice.cd(symlink)
        attempts[f"get {symlink}/passwd"] = lambda: alice.get(f"{symlink}/passwd", local("leak7"))
        attempts[f"get {symlink}"] = lambda: alice.get(symlink, local("leak8"))
    codes = {}
    for label, call in attempts.items():
        codes[label] = code_of(call)
        say(f"alice: {label:<40} -> {codes[label]}"
            + (" (just the link's own entry, type link: listed, not followed)" if label in unfollowed else ""))
    leaked = [name for name in os.listdir(WORK) if name.startswith("leak") and not name.startswith(".")]
    cwd = alice.pwd()
    ls_entries = alice.ls("/")
    absolute = code_of(lambda: alice.request(Cd("/")))
    say(f"alice's cwd is still {cwd!r}; 'cd /' -> {absolute} (an absolute path starts at her home: 250)")
    alice.quit()
    not_refused = [label for label, code in codes.items() if code not in (550, 553) and label not in unfollowed]
    say(f"every attempt refused with 550/553 (or, for ls of the link, not followed): {not not_refused}; "
        f"files that leaked to this machine: {leaked}")
    return result(not not_refused and not leaked and cwd == "/" and absolute == 250, codes=codes,
                  not_refused=not_refused, listed_not_followed=sorted(unfollowed), leaked_files=leaked,
                  cwd_after=cwd, cd_root_code=absolute, alice_entries=entry_names(ls_entries),
                  symlink_type=next((e["type"] for e in ls_entries if e["name"] == symlink), None))


# ---------------------------------------------------------------------------------------------
# Quotas
# ---------------------------------------------------------------------------------------------

def probe_quota(host: str, port: int) -> bool:
    """Each user has a quota of their own; an upload that does not fit gets 552 and leaves nothing."""
    bob, alice = login(host, port, "bob", clean=True), login(host, port, "alice", clean=True)
    bq, aq = bob.quota(), alice.quota()
    say(f"bob's quota: {bq}")
    say(f"alice's quota: {aq}  (different users, different quotas)")
    size = bq["limit"] + 1
    make_file(local("too-big.bin"), size, seed=7)
    bob_code = code_of(lambda: bob.put(local("too-big.bin"), "too-big.bin"))
    after = bob.quota()
    bob_names = entry_names(bob.ls("/"))
    say(f"bob: put {size} bytes (his limit + 1) -> {bob_code}; his home now: {bob_names}; "
        f"used {bq['used']} -> {after['used']}")
    empty = local("empty.bin")
    open(empty, "wb").close()
    empty_code = code_of(lambda: bob.put(empty, "empty.bin"))
    say(f"bob: put a zero-byte file -> {empty_code} (an empty file is a real file)")
    alice_code = code_of(lambda: alice.put(local("too-big.bin"), "fits.bin"))
    say(f"alice: the same {size} bytes -> {alice_code} (her quota is larger)")
    quietly_remove(bob, "empty.bin")
    quietly_remove(alice, "fits.bin")
    bob.quit()
    alice.quit()
    left = [n for n in bob_names if n.startswith("too-big")]
    ok = (bob_code == 552 and not left and after["used"] == bq["used"] and alice_code == 226
          and empty_code == 226 and bq["limit"] != aq["limit"])
    return result(ok, bob_limit=bq["limit"], alice_limit=aq["limit"], upload_size=size, bob_put_code=bob_code,
                  bob_entries_after=bob_names, bob_used_before=bq["used"], bob_used_after=after["used"],
                  alice_put_code=alice_code, zero_byte_code=empty_code)


def probe_concurrent_quota(host: str, port: int) -> bool:
    """Two sessions of alice announce uploads that each fit but together do not: one gets 552."""
    a, b = login(host, port, "alice", clean=True), login(host, port, "alice")
    q = a.quota()
    size = q["free"] * 6 // 10
    digest = make_file(local("six-tenths.bin"), size, seed=11)
    say(f"alice has {q['free']} bytes free; both sessions want to upload {size} bytes (60 % each)")
    first = a.request(Put("first.bin", size, digest, overwrite=True), check=False)
    say(f"session A: put first.bin  -> {first.code} {first.msg} (A's {size} bytes are now reserved)")
    second = b.request(Put("second.bin", size, digest, overwrite=True), check=False)
    say(f"session B: put second.bin -> {second.code} {second.msg}")
    during = b.quota()
    say(f"B's quota while A uploads: used {during['used']}, reserved {during['reserved']}")
    final = None
    if first.code == 350:
        with open(local("six-tenths.bin"), "rb") as f:
            a.send(PutData(first.get_int("offset")), body_size=size)
            a.sock.sendfile(f)
        final = a.read_reply()
        say(f"session A sends its bytes -> {final.code} {final.msg}")
    if second.code == 350:
        b.request(Noop(), check=False)      # pragma: no cover - only for a server that let both in
    end = b.quota()
    say(f"afterwards: used {end['used']} of {end['limit']} (never above the limit)")
    quietly_remove(a, "first.bin", "second.bin")
    a.close()
    b.close()
    ok = first.code == 350 and second.code == 552 and final is not None and final.code == 226 \
        and end["used"] <= end["limit"]
    return result(ok, free_before=q["free"], size_each=size, first_code=first.code, second_code=second.code,
                  reserved_during=during["reserved"], first_final=final.code if final else None,
                  used_after=end["used"], limit=end["limit"])


# ---------------------------------------------------------------------------------------------
# Transfers
# ---------------------------------------------------------------------------------------------

def probe_put_get(host: str, port: int, size: int = 5 * MiB) -> bool:
    """put and get of seeded random files, sha256 checked end to end (md5 too, for the seed's sake)."""
    client = login(host, port, "alice", clean=True)
    digest = make_file(local("random.bin"), size, seed=42)
    say(f"local random.bin: {size} bytes, sha256 {digest}")
    stored = client.put(local("random.bin"), "random.bin")
    say(f"put -> {stored.code} {stored.msg}; the server's sha256 {stored.fields.get('digest')}")
    got = client.get("random.bin", local("random-copy.bin"))
    copy = file_digest(local("random-copy.bin"))
    say(f"get -> {got.code} {got.msg}; sha256 of the downloaded copy {copy}")
    md5_local = file_digest(local("random.bin"), "md5")
    md5_put = client.put(local("random.bin"), "random-md5.bin", algo="md5")
    say(f"the same with md5 (the seed's choice; fine against accidents, no defence against tampering): "
        f"{md5_put.fields.get('digest')} vs local {md5_local}")
    empty = local("empty.bin")
    open(empty, "wb").close()
    zero_put = client.put(empty, "empty.bin")
    zero_get = client.get("empty.bin", local("empty-copy.bin"))
    say(f"zero-byte file: put -> {zero_put.code}, get -> {zero_get.code}, copy has "
        f"{os.path.getsize(local('empty-copy.bin'))} bytes")
    entries = client.ls("/")
    partials = [e["name"] for e in entries if e["type"] == "partial"]
    listed = {e["name"]: e.get("size") for e in entries if e["type"] == "file"}
    say(f"ls /: {entry_names(entries)} (no unfinished uploads left: {not partials})")
    quietly_remove(client, "random-md5.bin", "empty.bin")
    client.quit()
    ok = (stored.fields.get("digest") == digest == copy == got.fields.get("digest")
          and md5_put.fields.get("digest") == md5_local and zero_put.code == zero_get.code == 226
          and listed.get("random.bin") == size and not partials)
    return result(ok, size=size, local_sha256=digest, server_sha256=stored.fields.get("digest"),
                  downloaded_sha256=copy, md5_local=md5_local, md5_server=md5_put.fields.get("digest"),
                  zero_byte_codes=[zero_put.code, zero_get.code], listed_size=listed.get("random.bin"),
                  partials=partials, remote_path="/random.bin")


def probe_upload_integrity(host: str, port: int, size: int = 2 * MiB) -> bool:
    """What "verified" and "one upload per name" promise (docs/ftp-protocol.md §4, §5): a body that
    does not hash to the put's digest gets 451 and leaves nothing, final or partial; while one
    session uploads a name, another session's put of it gets 450; `abort` answers 226 and frees
    the name, and the next put of it stores the right bytes."""
    a, b = login(host, port, "alice", clean=True), login(host, port, "alice")
    digest = make_file(local("integrity.bin"), size, seed=23)
    wrong = hashlib.sha256(b"some other file").hexdigest()
    accepted = a.request(Put("wrong.bin", size, wrong, overwrite=True), check=False)
    say(f"put wrong.bin announcing sha256 {wrong[:16]}... (not the file's, which is {digest[:16]}...) "
        f"-> {accepted.code} {accepted.msg}")
    final = None
    if accepted.code == 350:
        offset = accepted.get_int("offset")
        with open(local("integrity.bin"), "rb") as f:
            a.send(PutData(offset), body_size=size - offset)
            a.sock.sendfile(f, offset)
        final = a.read_reply()
        say(f"all {size - offset} bytes sent -> {final.code} {final.msg}")
    listed = {e["name"]: e.get("type") for e in b.ls("/")}
    say(f"ls / in another session: wrong.bin is {listed.get('wrong.bin') or 'not there'} (must be not there)")
    first = a.request(Put("busy.bin", size, digest, overwrite=True), check=False)
    say(f"session A: put busy.bin -> {first.code} {first.msg}")
    second = b.request(Put("busy.bin", size, digest, overwrite=True), check=False)
    say(f"session B: put busy.bin while A holds it -> {second.code} {second.msg}")
    if second.code == 350:
        b.request(Abort(), check=False)
    aborted = a.request(Abort(), check=False) if first.code == 350 else None
    if aborted is not None:
        say(f"session A: abort -> {aborted.code} {aborted.msg}")
    stored = b.put(local("integrity.bin"), "busy.bin")
    say(f"session B: put busy.bin again -> {stored.code}, the server's sha256 {stored.fields.get('digest')}")
    quietly_remove(b, "busy.bin")
    a.close()
    b.close()
    ok = (accepted.code == 350 and final is not None and final.code == 451 and "wrong.bin" not in listed
          and first.code == 350 and second.code == 450 and aborted is not None and aborted.code == 226
          and stored.fields.get("digest") == digest)
    return result(ok, wrong_digest_code=final.code if final else accepted.code, wrong_listed=listed.get("wrong.bin"),
                  busy_first=first.code, busy_second=second.code, abort_code=aborted.code if aborted else None,
                  after_abort_digest=stored.fields.get("digest"), local_sha256=digest)


def probe_ls_paging(host: str, port: int, count: int = 300) -> bool:
    """§4 "Pages": a directory whose listing does not fit one 64 KiB reply header comes in pages
    (truncated, continue_after, ls again with after), and every entry is listed exactly once."""
    client = login(host, port, "alice", clean=True)
    client.mkdir("/pages")
    for name in page_names(count):
        client.mkdir(f"/pages/{name}")
    say(f"made /pages with {count} directories of {len(page_names(count)[0])}-character names "
        f"(about {count * (len(page_names(count)[0]) + 40) // 1024} KiB of listing: more than one reply)")
    pages, seen, after, truncated_once = 0, [], None, False
    for _ in range(count + 1):
        reply = client.request(Ls("/pages", after=after))
        pages += 1
        entries = reply.fields.get("entries", [])
        seen += [e.get("name") for e in entries]
        truncated_once |= reply.fields.get("truncated") is True
        say(f"ls page {pages}: {len(entries)} entries, truncated={reply.fields.get('truncated')}, "
            f"continue_after={str(reply.fields.get('continue_after'))[:24]}..., total={reply.fields.get('total')}")
        after = reply.fields.get("continue_after")
        if not reply.fields.get("truncated") or not isinstance(after, str):
            break
    missing = sorted(set(page_names(count)) - set(seen))
    twice = sorted({n for n in seen if seen.count(n) > 1})
    say(f"{len(seen)} names over {pages} pages; missing {len(missing)}, listed twice {len(twice)}")
    quietly_remove(client, *(f"/pages/{n}" for n in page_names(count)), "/pages")
    client.quit()
    ok = truncated_once and pages > 1 and not missing and not twice and len(seen) == count
    return result(ok, pages=pages, listed=len(seen), expected=count, missing=missing[:3], twice=twice[:3],
                  truncated_once=truncated_once)


def page_names(count: int) -> list[str]:
    return [f"{i:04d}-" + "p" * 225 for i in range(count)]


def probe_resume_upload(host: str, port: int, stage: str = "both", size: int = 3 * MiB,
                        cut: int = MiB) -> bool:
    """An upload cut after ``cut`` bytes continues from there; the final sha256 is right."""
    digest = make_file(local("resume-up.bin"), size, seed=5)
    observed: dict = {"size": size, "cut_after": cut, "local_sha256": digest, "remote_path": "/resume-up.bin"}
    ok = True
    if stage in ("cut", "both"):
        client = login(host, port, "alice", clean=True)
        try:
            client.put(local("resume-up.bin"), "resume-up.bin", cut_after=cut)
            say("the upload was NOT cut (it finished)")
        except TransferCut as exc:
            say(f"put resume-up.bin ({size} bytes): we closed the socket after sending {exc.sent} body bytes")
        viewer = login(host, port, "alice")
        entries = {e["name"]: e for e in viewer.ls("/") if e["name"] == "resume-up.bin"}
        entry = entries.get("resume-up.bin", {})
        say(f"another session lists: {entry} (the final name does not exist yet, only a partial upload)")
        viewer.quit()
        observed.update(partial_type=entry.get("type"), partial_size=entry.get("size"))
        ok = entry.get("type") == "partial" and entry.get("size") == cut
    if stage in ("resume", "both"):
        client = login(host, port, "alice")
        accepted: list[Reply] = []
        version = client.greeting.fields.get("version")
        how = ("the digest follows the body, protocol 2" if client.streams_digest
               else "the sha256 is in the put, protocol 1")
        try:
            done = client.put(local("resume-up.bin"), "resume-up.bin", overwrite=True, on_accept=accepted.append)
        except FtpError as exc:
            done = exc.reply
        offset = accepted[0].get_int("offset") if accepted else -1
        say(f"put again (greeting version {version}: {how}): the server answers 350 offset={offset} "
            f"(it already has {offset} bytes of this file)")
        say(f"sent the remaining {size - offset} bytes -> {done.code} {done.msg}; "
            f"server sha256 {done.fields.get('digest')}")
        entries = {e["name"]: e for e in client.ls("/")}
        entry = entries.get("resume-up.bin", {})
        say(f"ls now shows resume-up.bin as {entry.get('type')} of {entry.get('size')} bytes")
        client.quit()
        observed.update(resume_offset=offset, resume_code=done.code, server_sha256=done.fields.get("digest"),
                        received_on_resume=done.fields.get("received"), final_type=entry.get("type"),
                        final_size=entry.get("size"))
        ok = ok and offset == cut and done.code == 226 and done.fields.get("digest") == digest \
            and entry.get("type") == "file" and entry.get("size") == size
    return result(ok, **observed)


def probe_resume_download(host: str, port: int, size: int = 3 * MiB, cut: int = MiB) -> bool:
    """A download cut after ``cut`` bytes continues from the local .part; a changed file restarts."""
    client = login(host, port, "alice", clean=True)
    digest = make_file(local("resume-down.bin"), size, seed=9)
    client.put(local("resume-down.bin"), "resume-down.bin")
    dest = local("resume-down-copy.bin")
    part, _meta = local_part_paths(dest)
    for stale in (dest, part, _meta):
        if os.path.exists(stale):
            os.unlink(stale)
    try:
        client.get("resume-down.bin", dest, cut_after=cut)
    except TransferCut as exc:
        say(f"get resume-down.bin: we closed the socket after receiving {exc.sent} body bytes")
    part_size = os.path.getsize(part) if os.path.exists(part) else None
    say(f"this machine now has {os.path.basename(part)} with {part_size} bytes; "
        f"{os.path.basename(dest)} does not exist yet: {not os.path.exists(dest)}")
    client = login(host, port, "alice")
    done = client.get("resume-down.bin", dest)
    copy = file_digest(dest)
    say(f"get again -> {done.code}, resumed from byte {done.fields.get('resumed_from')}, the server sent "
        f"{done.fields.get('sent')} bytes; sha256 of the copy {copy}")
    # The same name, new content: the stale part must not be glued to the new file.
    try:
        client.get("resume-down.bin", dest + ".2", cut_after=cut)
    except TransferCut:
        pass
    client = login(host, port, "alice")
    digest2 = make_file(local("resume-down.bin"), size, seed=10)
    client.put(local("resume-down.bin"), "resume-down.bin")
    again = client.get("resume-down.bin", dest + ".2")
    copy2 = file_digest(dest + ".2")
    say(f"the file changed on the server; get with a stale {cut}-byte part -> restarted at "
        f"{again.fields.get('resumed_from')}, sha256 right: {copy2 == digest2}")
    quietly_remove(client, "resume-down.bin")
    client.quit()
    ok = (part_size == cut and done.code == 226 and done.fields.get("resumed_from") == cut
          and done.fields.get("sent") == size - cut and copy == digest and copy2 == digest2
          and again.fields.get("resumed_from") == 0 and not os.path.exists(part))
    return result(ok, size=size, cut_after=cut, local_part_size=part_size,
                  resumed_from=done.fields.get("resumed_from"),
                  bytes_sent_on_resume=done.fields.get("sent"), sha256_expected=digest, sha256_copy=copy,
                  changed_file_restart_offset=again.fields.get("resumed_from"),
                  changed_file_ok=copy2 == digest2,
                  part_left=os.path.exists(part))


def probe_progress(host: str, port: int, size: int = 4 * MiB) -> bool:
    """The progress callback only goes up and ends at 100 %; the bar redraws at most 10 times a second."""
    client = login(host, port, "alice", clean=True)
    make_file(local("progress.bin"), size, seed=3)
    calls: list[tuple[int, int]] = []
    screen = io.StringIO()
    bar = ProgressBar("put progress.bin", stream=screen)

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        bar(done, total)

    started = time.monotonic()
    client.put(local("progress.bin"), "progress.bin", progress=progress)
    elapsed = time.monotonic() - started
    got: list[tuple[int, int]] = []
    client.get("progress.bin", local("progress-copy.bin"), progress=lambda d, t: got.append((d, t)))
    quietly_remove(client, "progress.bin")
    client.quit()
    redraws = screen.getvalue().count("\r")
    # The transfer above may take only milliseconds; to see the throttle at work, feed a bar
    # 20 000 updates over a third of a second, as a slow link would.
    slow_screen = io.StringIO()
    slow_bar = ProgressBar("slow", stream=slow_screen)
    t0, n = time.monotonic(), 20000
    for i in range(n + 1):
        slow_bar(i, n)
        if i % 1000 == 0:
            time.sleep(0.015)
    slow_seconds = time.monotonic() - t0
    slow_redraws = slow_screen.getvalue().count("\r")
    monotonic = all(a[0] <= b[0] for a, b in zip(calls, calls[1:])) and all(
        a[0] <= b[0] for a, b in zip(got, got[1:]))
    say(f"put: {len(calls)} progress calls, {calls[0]} ... {calls[-1]}; never going back: {monotonic}")
    say(f"get: {len(got)} progress calls, last {got[-1]}")
    say(f"the bar was drawn {redraws} times in {elapsed:.2f} s (throttled to <= 10/s, plus the final 100 %)")
    say(f"last line: {screen.getvalue().splitlines()[-1].strip() if screen.getvalue() else ''}")
    say(f"{n} updates in {slow_seconds:.2f} s drew the bar {slow_redraws} times "
        "(the seed redrew it for every 8-byte recv)")
    ok = (monotonic and calls[-1] == (size, size) and got[-1] == (size, size)
          and redraws <= elapsed * 10 + 2 and slow_redraws <= slow_seconds * 10 + 2)
    return result(ok, size=size, put_calls=len(calls), get_calls=len(got), monotonic=monotonic,
                  put_last=list(calls[-1]), get_last=list(got[-1]), redraws=redraws,
                  seconds=round(elapsed, 3),
                  throttle_updates=n, throttle_redraws=slow_redraws, throttle_seconds=round(slow_seconds, 3))


# ---------------------------------------------------------------------------------------------
# Concurrency limits
# ---------------------------------------------------------------------------------------------

def probe_max_sessions(host: str, port: int, expect: int | None = None) -> bool:
    """N sessions are served; session N+1 gets 421 and is closed; when one leaves, the next gets in."""
    for attempt in range(2):      # a session of an earlier probe may still be finishing: retry once
        clients, refused = [], None
        first = FtpClient(host, port, timeout=10)
        clients.append(first)
        limit = expect or int(first.greeting.fields.get("limits", {}).get("max_sessions", 0)) or 10
        say(f"the greeting says max_sessions = {limit}")
        try:
            while len(clients) <= limit:
                try:
                    clients.append(FtpClient(host, port, timeout=10))
                except FtpError as exc:
                    refused = exc.reply
                    break
        finally:
            pass
        greeted = len(clients)
        if refused is not None and greeted == limit or attempt == 1:
            break
        for c in clients:
            c.close()
        time.sleep(1.0)    # last resort: the server needs a moment to notice those closes
    say(f"{greeted} sessions got 220; the next one got {refused.code if refused else 'no refusal'} "
        f"{refused.msg if refused else ''}")
    closed_after_421 = refused is not None   # FtpClient closes after a 421 greeting; check with a raw socket
    raw = socket.create_connection((host, port), timeout=10)
    raw_data = b""
    try:
        raw.settimeout(5)
        while True:
            chunk = raw.recv(4096)
            if not chunk:
                break
            raw_data += chunk
        closed_after_421 = True
    except (TimeoutError, ConnectionError):
        closed_after_421 = False
    finally:
        raw.close()
    say(f"a raw connection while full received {len(raw_data)} bytes and then EOF: {closed_after_421} "
        "(the server closed it: no hanging in a queue)")
    clients[0].close()
    later = None
    for _ in range(50):        # the server frees the slot when it sees our FIN: poll briefly
        try:
            later = FtpClient(host, port, timeout=10)
            break
        except FtpError:
            time.sleep(0.1)
    say(f"one session left; a new connection gets {later.greeting.code if later else 'nothing'}")
    for c in clients[1:] + ([later] if later else []):
        c.close()
    ok = (refused is not None and refused.code == 421 and greeted == limit and closed_after_421
          and later is not None)
    return result(ok, max_sessions=limit, greeted=greeted, refused_code=refused.code if refused else None,
                  refused_msg=refused.msg if refused else None, closed_after_refusal=closed_after_421,
                  after_release_code=later.greeting.code if later else None)


# ---------------------------------------------------------------------------------------------
# Bad input (SPEC §7): every case gets an answer, and another session keeps working throughout
# ---------------------------------------------------------------------------------------------

def frame(fields: dict, body: bytes = b"") -> bytes:
    return encode_header(fields, len(body)) + body


def raw_header(text: bytes | str) -> bytes:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return len(data).to_bytes(4, "big") + data


FRAMING_CASES: dict[str, bytes] = {
    "length prefix 0": b"\x00\x00\x00\x00",
    "length prefix 2**32-1": b"\xff\xff\xff\xff",
    "length prefix 2**31 (negative if read signed)": b"\x80\x00\x00\x00",
    "header not UTF-8": raw_header(b"\xff\xfe{}"),
    "header not JSON": raw_header("hello"),
    "JSON that is not an object": raw_header("[1, 2, 3]"),
    "deep nesting": raw_header('{"op": "noop", "x": ' + "[" * 5000 + "]" * 5000 + "}"),
    "huge number 1e400": raw_header('{"op": "get", "path": "x", "offset": 1e400}'),
    "5000-digit integer": raw_header('{"op": "get", "path": "x", "offset": ' + "9" * 5000 + "}"),
    "NaN": raw_header('{"op": "noop", "x": NaN}'),
    "duplicate keys": raw_header('{"op": "noop", "op": "quit"}'),
    "seed-style struct.pack('i') prefix": (12).to_bytes(4, "little") + b'{"op":"pwd"}',
}

FIELD_CASES: dict[str, bytes] = {
    "missing op": frame({"path": "x"}),
    "op not a string": frame({"op": 42}),
    "unknown op": frame({"op": "format-disk"}),
    "path missing": frame({"op": "cd"}),
    "path not a string": frame({"op": "cd", "path": ["a"]}),
    "path empty": frame({"op": "cd", "path": ""}),
    "path with NUL": frame({"op": "cd", "path": "a\x00b"}),
    "path too long": frame({"op": "cd", "path": "a/" * MAX_PATH_CHARS}),
    "name over 255 bytes": frame({"op": "mkdir", "path": "n" * 300}),
    f"name of {MAX_NAME_BYTES + 1} bytes (one over the limit)":
        frame({"op": "mkdir", "path": "n" * (MAX_NAME_BYTES + 1)}),
    "lone surrogate": raw_header('{"op": "cd", "path": "\\ud800"}'),
    "offset negative": frame({"op": "get", "path": "x", "offset": -1}),
    "offset 1.5": frame({"op": "get", "path": "x", "offset": 1.5}),
    "offset true": frame({"op": "get", "path": "x", "offset": True}),
    "offset '10'": frame({"op": "get", "path": "x", "offset": "10"}),
    "file_size 2**62": frame({"op": "put", "path": "x", "file_size": 2 ** 62, "digest": "0" * 64}),
    "digest not hex": frame({"op": "put", "path": "x", "file_size": 1, "digest": "z" * 64}),
    "algo unknown": frame({"op": "put", "path": "x", "file_size": 1, "digest": "0" * 64, "algo": "crc32"}),
    "data without put": frame({"op": "data", "offset": 0}, b"0123456789"),
    "body on noop": frame({"op": "noop"}, b"0123456789"),
    "auth without login": frame({"op": "auth", "proof": "00" * 32}),
    "login again": frame({"op": "login", "user": "bob", "cnonce": "00" * 16}),
}


def probe_bad_input(host: str, port: int) -> bool:
    """The SPEC §7 battery; after every case a witness session (bob) still gets 200 to noop."""
    witness = login(host, port, "bob")
    cases: list[dict] = []

    def witness_ok() -> bool:
        try:
            return witness.noop().code == 200
        except (OSError, FtpError, ProtocolError, EOFError):
            return False

    # A slow-drip client: 3 bytes of a length prefix, then silence. The server must give up on it
    # after its header deadline (in the greeting), whatever the others do meanwhile.
    drip = socket.create_connection((host, port), timeout=10)
    drip_greeting = drip.recv(65536)
    drip.sendall(b"\x00\x00\x00")
    drip_started = time.monotonic()
    deadline = float(witness.greeting.fields.get("limits", {}).get("header_deadline", 10))

    for label, data in FRAMING_CASES.items():
        client = FtpClient(host, port, timeout=10)
        client.sock.sendall(data)
        answer = reply_or_close(client)
        closed = answer is None or peer_closed(client.sock)
        client.close()
        ok = (answer is None or answer.code >= 400) and closed
        cases.append({"case": label, "kind": "framing", "code": answer.code if answer else None,
                      "closed": closed, "witness_ok": witness_ok(), "ok": ok})
    for label, data in FIELD_CASES.items():
        client = login(host, port, "alice")
        client.sock.sendall(data)
        answer = reply_or_close(client)
        in_step = False
        if answer is not None and client.sock is not None:
            client.sock.sendall(frame({"op": "noop"}))     # still in step: the next frame is read normally
            nxt = reply_or_close(client)
            in_step = nxt is not None and nxt.code == 200
        client.close()
        ok = answer is not None and 500 <= answer.code < 600 and in_step
        cases.append({"case": label, "kind": "fields", "code": answer.code if answer else None,
                      "msg": answer.msg if answer else None, "in_step": in_step, "witness_ok": witness_ok(),
                      "ok": ok})

    # Transfers that go wrong half-way.
    alice = login(host, port, "alice", clean=True)
    payload = b"x" * 1000
    digest = hashlib.sha256(payload).hexdigest()
    alice.request(Put("short.bin", 1000, digest, overwrite=True))
    alice.sock.sendall(encode_header({"op": "data", "offset": 0}, 1000) + payload[:500])
    alice.sock.shutdown(socket.SHUT_WR)       # gone mid-body: 500 of 1000 bytes
    peer_closed(alice.sock)
    alice.close()
    viewer = login(host, port, "alice")
    short = {e["name"]: e for e in viewer.ls("/")}.get("short.bin", {})
    cases.append({"case": "body shorter than announced, then EOF", "kind": "transfer", "partial": short,
                  "witness_ok": witness_ok(),
                  "ok": short.get("type") == "partial" and short.get("size") == 500})
    quietly_remove(viewer, "short.bin")

    viewer.request(Put("long.bin", 1000, digest, overwrite=True))
    viewer.sock.sendall(encode_header({"op": "data", "offset": 0}, 1000) + payload + b"GARBAGE!")
    stored = reply_or_close(viewer)
    after = reply_or_close(viewer)
    cases.append({"case": "body longer than announced", "kind": "transfer",
                  "code": stored.code if stored else None, "then": after.code if after else None,
                  "witness_ok": witness_ok(),
                  "ok": stored is not None and stored.code == 226 and (after is None or after.code >= 500)})
    viewer.close()

    for label, data in (("gone mid-header", b"\x00\x00\x00\x20{\"op\":"), ("gone mid-login", None)):
        c = FtpClient(host, port, timeout=10)
        if data is None:
            c.request(Login("alice", os.urandom(16).hex()))
        else:
            c.sock.sendall(data)
        c.close()
        cases.append({"case": label, "kind": "disconnect", "witness_ok": witness_ok(), "ok": True})

    # Unicode forms: NFD in, NFC out, one file.
    uni = login(host, port, "alice")
    path = local("cafe.txt")
    with open(path, "w") as f:
        f.write("café\n")
    nfd = unicodedata.normalize("NFD", "café.txt")
    put_code = code_of(lambda: uni.put(path, nfd))
    names = [e["name"] for e in uni.ls("/") if e["name"].startswith("caf")]
    get_code = code_of(lambda: uni.get(unicodedata.normalize("NFC", "café.txt"), local("cafe-copy.txt")))
    quietly_remove(uni, "café.txt")
    uni.quit()
    nfc_only = names == [unicodedata.normalize("NFC", "café.txt")]
    cases.append({"case": "unicode NFD name", "kind": "names", "put": put_code, "listed": names,
                  "get_nfc": get_code, "witness_ok": witness_ok(),
                  "ok": put_code == 226 and nfc_only and get_code == 226})

    # Back to the slow drip: it must have been cut off by now (or within the deadline).
    drip.settimeout(max(1.0, deadline + 3 - (time.monotonic() - drip_started)))
    drip_answer = b""
    try:
        while chunk := drip.recv(65536):
            drip_answer += chunk
        drip_closed = True
    except (TimeoutError, ConnectionError):
        drip_closed = False
    drip.close()
    waited = round(time.monotonic() - drip_started, 2)
    cases.append({"case": f"slow drip (header deadline {deadline:g} s)", "kind": "timeout",
                  "closed": drip_closed,
                  "after_s": waited, "reply_bytes": len(drip_answer), "greeting_bytes": len(drip_greeting),
                  "witness_ok": witness_ok(), "ok": drip_closed})

    for case in cases:
        detail = {k: v for k, v in case.items() if k not in ("case", "kind", "ok", "witness_ok")}
        say(f"{'ok ' if case['ok'] else 'BAD'} {case['case']:<46} {detail}  witness noop: "
            f"{'200' if case['witness_ok'] else 'FAILED'}")
    witness.quit()
    ok = all(c["ok"] and c["witness_ok"] for c in cases)
    failed = [c["case"] for c in cases if not (c["ok"] and c["witness_ok"])]
    cleanup = login(host, port, "alice", clean=True)
    cleanup.quit()
    say(f"{len(cases)} cases, {len(cases) - len(failed)} handled; "
        "the witness session was served after every one")
    return result(ok, cases=cases, failed=failed, count=len(cases))


# ---------------------------------------------------------------------------------------------

PROBES = {
    "login": probe_login,
    "login-limit": probe_login_limit,
    "two-users": probe_two_users,
    "isolation": probe_isolation,
    "quota": probe_quota,
    "concurrent-quota": probe_concurrent_quota,
    "put-get-checksum": probe_put_get,
    "upload-integrity": probe_upload_integrity,
    "ls-paging": probe_ls_paging,
    "resume-upload": probe_resume_upload,
    "resume-download": probe_resume_download,
    "progress": probe_progress,
    "max-sessions": probe_max_sessions,
    "bad-input": probe_bad_input,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=sorted(PROBES))
    parser.add_argument("--host", default="ftp-server")
    parser.add_argument("--port", type=int, default=20060)
    parser.add_argument("--symlink", help="isolation: a name in alice's home that links outside it")
    parser.add_argument("--stage", choices=["cut", "resume", "both"], default="both", help="resume-upload")
    parser.add_argument("--expect", type=int, help="max-sessions: the limit (default: from the greeting)")
    args = parser.parse_args(argv)
    os.makedirs(WORK, exist_ok=True)
    extra = {"isolation": {"symlink": args.symlink}, "resume-upload": {"stage": args.stage},
             "max-sessions": {"expect": args.expect}}.get(args.probe, {})
    try:
        ok = PROBES[args.probe](args.host, args.port, **extra)
    except (OSError, EOFError, FtpError, ProtocolError, KeyError, ValueError, TypeError, AttributeError,
            IndexError) as exc:
        say(f"the probe could not finish: {type(exc).__name__}: {exc}")
        if isinstance(exc, ProtocolError):
            say("(the server did not speak the documented protocol: a 4-byte '!I' length, a JSON header, "
                "a 220 greeting first; see docs/ftp-protocol.md)")
        ok = result(False, error=f"{type(exc).__name__}: {exc}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
