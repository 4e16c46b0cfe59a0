"""Lesson ftp, the client under test (``check ftp --client my_client.py``): its contract, proven.

Each scenario runs the client in batch mode (``-c "cmd; cmd"``) from the client machine and judges
what it did by what it *sent*, not by what it printed: the client talks to the reference server
through a relay on the server machine (``labnode.ftprelay``: every frame both ways written down),
or to a fake server (``labnode.ftpfake``). So a failure names the request that was wrong.

    client-batch             put, ls, get, rm, quit: every command runs, the copy is the original
    client-stops-at-failure  a refused or impossible command: exit non-zero, the rest is not run
    client-resume-upload     an interrupted upload is on the server: data starts at the 350's offset
    client-server-signature  a fake server: a wrong server_signature, scrypt parameters over §4's limits
    client-short-reads       the server's frames arrive in pieces (a trickle relay)

The scenarios are registered here and appended to the lesson's list by socketlab/scenarios/ftp.py.
Mistake controls: tests/mistakes/ftp_client_*.py (tests/integration/test_grading.py).
"""
from __future__ import annotations

import json
import random
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..scenario import LessonRun, Outcome, ProbeResult, scenario, wait_listening

RELAY_PORT_OFFSET = 3          # ftp.py uses +1 (max-sessions) and +2 (a fresh demo server)
FAKE_PORT_OFFSET = 4
PASSWORD = "wonderland"        # alice, a demo user of docs/ftp-protocol.md §7

ORIGINAL, ORIGINAL_SEED, ORIGINAL_SIZE = "/tmp/cli-original.bin", 21, 1536 * 1024
COPY = "/tmp/cli-copy.bin"
SMALL, SMALL_SEED, SMALL_SIZE = "/tmp/cli-small.bin", 22, 64 * 1024
RESUME, RESUME_SEED, RESUME_SIZE, CUT = "/tmp/cli-resume.bin", 23, 1536 * 1024, 1024 * 1024
MISSING_LOCAL = "/tmp/cli-no-such-file.bin"

BATCH = f"put {ORIGINAL} cli.bin; ls; get cli.bin {COPY}; rm cli.bin; quit"
FAIL_REMOTE = f"get no-such.bin /tmp/cli-nothing.bin; put {SMALL} after-get.bin; quit"
FAIL_LOCAL = f"put {MISSING_LOCAL} cli-missing.bin; put {SMALL} after-put.bin; quit"
RESUME_BATCH = f"put {RESUME} cli-resume.bin; quit"
SIGNATURE_BATCH = f"put {SMALL} sig.bin; ls; quit"
TRICKLE_COPY = "/tmp/cli-trickle-copy.bin"
TRICKLE_BATCH = f"put {SMALL} trickle.bin; get trickle.bin {TRICKLE_COPY}; rm trickle.bin; quit"

RECV_EXACT_FIX = ("one recv(n) may return fewer than n bytes (TCP keeps no message boundaries): loop until "
                  "all bytes arrive (recv_exact) for the 4-byte prefix, the header and the body")


# ---------------------------------------------------------------------------------------------
# Running the client under test, and what the relay or fake server saw
# ---------------------------------------------------------------------------------------------

@dataclass
class Ran:
    """The client's run: exit code and its output, stdout and stderr interleaved as they came."""

    command: str
    exit_code: int
    lines: list[str]
    timed_out: bool = False
    sha256: dict = field(default_factory=dict)     # files made by the run: their sha256 (None: missing)
    made: dict = field(default_factory=dict)       # files the check wrote before it: their sha256

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def transcript(self) -> list[str]:
        return [f"$ {self.command}", *self.lines,
                f"(exit {self.exit_code}" + (", killed at the time limit)" if self.timed_out else ")")]


def run_client(run: LessonRun, commands: str, port: int, timeout: int = 60, copy: str | None = None,
               absent: str | None = None, source: tuple[str, int, int] | None = None) -> Ran:
    """The client under test in batch mode; ``copy``: a file it must make (removed before, hashed after);
    ``absent``: a file that must not exist; ``source``: (path, seed, size) of a file the check writes first."""
    argv = [*run.client_cmd, "--host", run.server_host, "--port", str(port), "--user", "alice",
            "--password", PASSWORD, "-c", commands]
    made = ((["--fresh", copy, "--digest", copy] if copy else []) + (["--fresh", absent] if absent else [])
            + (["--make", *map(str, source)] if source else []))
    wrapped = [run.python, "-m", "labnode.labelled", "--timeout", str(timeout), *made, "--", *argv]
    probe = ProbeResult.parse(run.client.run(run.in_workdir(wrapped), timeout=timeout + 15))
    shown = " ".join(argv[:-2]).replace("/lab/student/client/", "")
    o = probe.observed
    return Ran(f"{shown} -c {commands!r}", int(o.get("exit_code", -1)), probe.transcript,
               bool(o.get("timed_out")), dict(o.get("sha256") or {}), dict(o.get("made") or {}))


@dataclass
class Wire:
    """What the relay (or the fake server) wrote down: one dict per frame or event."""

    port: int
    events: list[dict] = field(default_factory=list)

    def frames(self, direction: str, conn: int | None = None) -> list[dict]:
        return [e for e in self.events if e.get("ev") == "frame" and e.get("dir") == direction
                and (conn is None or e.get("conn") == conn)]

    def ops(self, conn: int | None = None) -> list[str]:
        return [str(e.get("op")) for e in self.frames("c2s", conn)]

    def first(self, ev: str, conn: int | None = None, **match: object) -> dict | None:
        return next((e for e in self.events if e.get("ev") == ev and (conn is None or e.get("conn") == conn)
                     and all(e.get(k) == v for k, v in match.items())), None)

    def reply_code(self, frame: int, conn: int | None = None) -> int | None:
        found = next((e for e in self.frames("s2c", conn) if e.get("frame") == frame), None)
        return found.get("code") if found else None

    def ladder(self, conn: int | None = None) -> str:
        """'220 | login 331 | auth 230 | put 350 | data [1572864 B] 226 ...', in the order seen."""
        tokens = []
        for e in self.events:
            if e.get("ev") != "frame" or (conn is not None and e.get("conn") != conn):
                continue
            body = f" [{e['body']} B]" if e.get("body") else ""
            tokens.append(f"| {e.get('op')}{body}" if e["dir"] == "c2s" else f"{e.get('code')}{body}")
        return " ".join(tokens).lstrip("| ")


def read_events(run: LessonRun, path: str) -> list[dict]:
    events = []
    for line in run.server.read_file(path).decode("utf-8", "replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return events


@contextmanager
def node_tool_in_background(run: LessonRun, name: str, module: str, port: int, *args: str) -> Iterator[Wire]:
    """A labnode tool (relay, fake server) listening on ``port`` of the server machine while the
    block runs; afterwards its log is in ``wire.events``."""
    log = f"/tmp/{name}.jsonl"             # the tool starts it afresh
    run.server.spawn(name, run.in_workdir([run.python, "-m", module, "--port", str(port), "--log", log, *args]))
    wire = Wire(port)
    try:
        if not wait_listening(run.server, port):
            raise RuntimeError(f"the check's {module} did not start on port {port} of {run.server.name}")
        yield wire
    finally:
        run.server.stop(name)
        wire.events = read_events(run, log)


def relayed(run: LessonRun, name: str, trickle: bool = False) -> Iterator[Wire]:
    return node_tool_in_background(run, name, "labnode.ftprelay", run.port() + RELAY_PORT_OFFSET,
                                   "--to-port", str(run.port()), *(["--trickle"] if trickle else []))


def alice_files(run: LessonRun) -> dict:
    from .ftp import homes, server_tree
    return server_tree(run, f"{homes(run)}/alice")


def remove_from_alice(run: LessonRun, *names: str) -> None:
    """Leave alice's home as the scenario found it (a demo runs on the student's own lab): each file
    that is there is removed through the server, with the lab's own client, so quotas stay right."""
    present = alice_files(run)
    for name in names:
        if name in present:
            run.client.run(run.in_workdir([run.python, "-m", "ftp.client", "--host", run.server_host, "--port",
                                           str(run.port()), "--user", "alice", "--password", PASSWORD,
                                           "-c", f"rm {name}"]), timeout=30)


def copy_state(copy: str | None, original: str | None) -> str:
    if copy is None:
        return "the copy is missing"
    return "the copy has the original's sha256" if copy == original else f"the copy's sha256 differs ({copy[:12]}...)"


# ---------------------------------------------------------------------------------------------
# client-batch: every command of -c runs
# ---------------------------------------------------------------------------------------------

STEPS = {"put": f"put {ORIGINAL} cli.bin", "data": f"put {ORIGINAL} cli.bin", "ls": "ls",
         "get": f"get cli.bin {COPY}", "rm": "rm cli.bin", "quit": "quit", "login": "login", "auth": "login"}


def prefix_readings(prefix_hex: str) -> tuple[int, int]:
    raw = bytes.fromhex(prefix_hex)
    return struct.unpack("!I", raw)[0], struct.unpack("<I", raw)[0]


def body_taken_as_prefix(text: str, size: int) -> tuple[int, int] | None:
    """(offset, number): a number the client printed that is 4 bytes of the 150's body read as '!I'.

    The body is the seeded file the check made, so it is known here byte for byte."""
    numbers = {int(n) for n in re.findall(r"\b\d{5,10}\b", text)} - {size, ORIGINAL_SIZE}
    if not numbers:
        return None
    body = random.Random(ORIGINAL_SEED).randbytes(ORIGINAL_SIZE)
    found = [(body.find(struct.pack("!I", n)), n) for n in numbers if n < 2**32]
    found = [(k, n) for k, n in found if k >= 0]
    return min(found) if found else None


def judge_batch(ran: Ran, wire: Wire, original: str | None, copy: str | None, removed: bool) -> tuple[str, str]:
    """(summary, fix) of a failed client-batch: which command went wrong, from what was sent."""
    ops = wire.ops()
    bad = wire.first("bad-prefix", dir="c2s")
    greeting = next(iter(wire.frames("s2c")), None)
    if bad:
        return (f"exit {ran.exit_code}; the client's first frame after the greeting starts with the prefix "
                f"{bad['prefix']}: {bad['as_network_order']} as '!I' (over the 65536 limit, so the server answered "
                f"500 and closed), {bad['as_little_endian']} read little-endian; nothing was stored",
                "pack the length prefix in network byte order, unsigned: struct.pack('!I', len(header)) (the seed's "
                "'i' is native order, little-endian on x86), and unpack replies with '!I'")
    if not [op for op in ops if op not in ("quit",)]:
        said = ""
        if greeting:
            big, little = prefix_readings(greeting["prefix"])
            said = (f"; the greeting's prefix {greeting['prefix']} is {big} as '!I' but {little} in native "
                    f"(little-endian) byte order" + (", over the 65536 limit" if little > 65536 else ""))
        return (f"exit {ran.exit_code}; the client sent nothing usable after the greeting (220){said}; cli.bin was "
                f"never stored",
                "read the greeting as a frame: a 4-byte length in network byte order (struct.unpack('!I', ...)), "
                "that many header bytes, then the body; check the prefix's byte order `!I` on both send and receive")
    if not ran.ok:
        last = wire.frames("c2s")[-1]
        step = STEPS.get(str(last.get("op")), str(last.get("op")))
        replies = [e for e in wire.frames("s2c") if e.get("frame", 0) > 0]
        after = [e for e in replies if wire.events.index(e) > wire.events.index(last)]
        answered = " then ".join(f"{e.get('code')}" + (f" with a {e['body']}-byte body" if e.get("body") else "")
                                 for e in after) or "nothing yet"
        if last.get("op") == "get" and after and after[0].get("code") == 150:
            size = after[0].get("body") or 0
            seen = body_taken_as_prefix(ran.text, size)
            how = (f"the client read {seen[0]} of the {size} body bytes of the 150 and then took body bytes "
                   f"{seen[0]}..{seen[0] + 3} as a length prefix ({seen[1]}, which it printed)" if seen else
                   f"the client stopped reading inside or right after the 150's {size}-byte body")
            return (f"exit {ran.exit_code} in '{step}': the server answered {answered}; {how}; "
                    f"{copy_state(copy, original)}",
                    "the 150's body is `size` bytes and arrives in many recv() pieces: loop until size bytes arrive "
                    "(recv_exact, or a loop that writes each piece to the file), then read the 226")
        return (f"exit {ran.exit_code} in '{step}': the server answered {answered} (see the client's output)",
                f"'{step}' must succeed against the reference server: compare the request the client sent "
                f"({ {k: v for k, v in last.items() if k in ('op', 'path', 'offset', 'body')} }) with "
                f"docs/ftp-protocol.md §2")
    if not removed:
        why = ("the server answered it, yet cli.bin is still there" if "rm" in ops
               else "the client never sent an rm request")
        return (f"'rm cli.bin' did not remove it ({why}), "
                f"yet the client exited 0",
                "run every command of -c: `rm REMOTE` sends {\"op\": \"rm\", \"path\": REMOTE} and needs 250; a "
                "command the client cannot run is a failure (exit non-zero), never a warning")
    return (f"the client exited 0 but {copy_state(copy, original)}",
            f"`get REMOTE LOCAL` must leave LOCAL with the server's bytes: write the 150's body from its offset, "
            f"check the digest, then rename the part to {COPY}")


@scenario("client-batch", "the client's batch mode (-c) runs put, ls, get, rm and quit in order: the copy has "
                          "the sha256 of the original, rm removes the file, exit 0", roles=("client",))
def client_batch(run: LessonRun) -> Outcome:
    with relayed(run, "ftp-relay-batch") as wire:
        ran = run_client(run, BATCH, wire.port, copy=COPY, source=(ORIGINAL, ORIGINAL_SEED, ORIGINAL_SIZE))
    original, copy = ran.made.get(ORIGINAL), ran.sha256.get(COPY)
    tree = alice_files(run)
    removed = "cli.bin" not in tree
    transcript = [*ran.transcript(), f"on the wire (a relay on port {wire.port}): {wire.ladder()}",
                  f"original sha256 {original}", f"downloaded copy  {copy or '(missing)'}",
                  f"server side at the end: cli.bin {'still there' if not removed else 'absent'}"]
    observed = {"exit_code": ran.exit_code, "original_sha256": original, "copy_sha256": copy,
                "size": ORIGINAL_SIZE, "removed_on_server": removed, "ops": wire.ops()}
    if ran.ok and original and copy == original and removed:
        return Outcome(True, f"exit 0; sent {' '.join(wire.ops())}; the copy has the original's sha256; cli.bin "
                             f"removed", observed, transcript)
    summary, fix = judge_batch(ran, wire, original, copy, removed)
    return Outcome(False, summary, observed, transcript, fix)


# ---------------------------------------------------------------------------------------------
# client-stops-at-failure
# ---------------------------------------------------------------------------------------------

@scenario("client-stops-at-failure", "a command that fails (a 550 from the server, a local file that does not "
                                     "exist) ends the batch: exit non-zero, the commands after it are not run",
          roles=("client",))
def client_stops_at_failure(run: LessonRun) -> Outcome:
    cases = [(FAIL_REMOTE, "get no-such.bin /tmp/cli-nothing.bin", "the server answered 550 (no such file)",
              "after-get.bin"),
             (FAIL_LOCAL, f"put {MISSING_LOCAL} cli-missing.bin", f"{MISSING_LOCAL} does not exist", "after-put.bin")]
    with relayed(run, "ftp-relay-stops") as wire:
        runs = [run_client(run, commands, wire.port, absent=MISSING_LOCAL, source=(SMALL, SMALL_SEED, SMALL_SIZE))
                for commands, *_ in cases]
    tree = alice_files(run)
    remove_from_alice(run, "after-get.bin", "after-put.bin")
    transcript, problems, fixes = [], [], []
    for conn, (ran, (_, failing, why, after)) in enumerate(zip(runs, cases), start=1):
        stored = after in tree
        later = [e for e in wire.frames("c2s", conn) if e.get("op") == "put" and e.get("path") == after]
        transcript += [*ran.transcript(), f"on the wire: {wire.ladder(conn)}",
                       f"server side: {after} {'was stored' if stored else 'absent'}"]
        if stored or later:
            problems.append(f"after '{failing}' failed ({why}) the client still ran 'put {SMALL} {after}'"
                            + (f" ({after} is on the server)" if stored else ""))
            fixes.append("stop the batch at the first command that fails: the commands after it must not run")
        if ran.ok:
            problems.append(f"'{failing}' failed ({why}), yet the client exited 0")
            fixes.append("exit with a non-zero status (sys.exit(1)) when a command fails")
    observed = {"exit_codes": [r.exit_code for r in runs], "stored_after_failure": sorted(
        name for name in ("after-get.bin", "after-put.bin") if name in tree)}
    if not problems:
        return Outcome(True, f"exit {runs[0].exit_code} after the 550, exit {runs[1].exit_code} after the missing "
                             f"local file; nothing after either was run", observed, transcript)
    return Outcome(False, "; ".join(problems), observed, transcript, "; ".join(dict.fromkeys(fixes)))


# ---------------------------------------------------------------------------------------------
# client-resume-upload
# ---------------------------------------------------------------------------------------------

@scenario("client-resume-upload", "an interrupted upload of the file is on the server: the client's put sends "
                                  "data from the 350's offset (1048576), only the rest of the file",
          roles=("client",))
def client_resume_upload(run: LessonRun) -> Outcome:
    prep = ProbeResult.parse(run.client.run(run.in_workdir(
        [run.python, "-m", "labnode.ftpprep", "cut-upload", "--host", run.server_host, "--port", str(run.port()),
         "--password", PASSWORD, "--file", RESUME, "--seed", str(RESUME_SEED), "--size", str(RESUME_SIZE),
         "--remote", "cli-resume.bin", "--cut-after", str(CUT)]), timeout=60))
    digest = prep.observed.get("sha256")
    if not prep.ok:
        return Outcome(False, f"the check could not leave an interrupted upload on the server "
                              f"(offered offset {prep.observed.get('offered_offset')}): the server does not resume "
                              f"a protocol-1 put", prep.observed, prep.transcript)
    with relayed(run, "ftp-relay-resume") as wire:
        ran = run_client(run, RESUME_BATCH, wire.port)
    stored = alice_files(run).get("cli-resume.bin") or {}
    remove_from_alice(run, "cli-resume.bin")
    accepted = next((e for e in wire.frames("s2c") if e.get("code") == 350), None)
    data = next((e for e in wire.frames("c2s") if e.get("op") == "data"), None)
    after_data = [e for e in wire.frames("s2c") if data and wire.events.index(e) > wire.events.index(data)]
    answer = after_data[0].get("code") if after_data else None
    transcript = [*prep.transcript, *ran.transcript(), f"on the wire: {wire.ladder()}",
                  f"server side: cli-resume.bin {stored.get('size')} bytes, sha256 {stored.get('sha256')}"]
    observed = {"exit_code": ran.exit_code, "offered_offset": accepted and accepted.get("offset"),
                "data_offset": data and data.get("offset"), "data_body": data and data.get("body"),
                "reply_to_data": answer, "server_sha256": stored.get("sha256"), "local_sha256": digest}
    offset = accepted.get("offset") if accepted else None
    right = (data is not None and data.get("offset") == CUT and data.get("body") == RESUME_SIZE - CUT)
    if ran.ok and right and stored.get("sha256") == digest:
        return Outcome(True, f"350 offered offset {offset}; the client sent data from {CUT}, "
                             f"{RESUME_SIZE - CUT} bytes; the stored file has the right sha256", observed, transcript)
    fix = ("send `data` with the 350's offset and only the rest of the file (f.seek(offset), a body of "
           "file_size - offset bytes): the server keeps the bytes of an interrupted upload (§5)")
    if data is None:
        summary = (f"the server's 350 offered offset {offset} (it kept the first {CUT} bytes of an interrupted upload "
                   f"of this file), but the client sent no data; exit {ran.exit_code}")
    elif data.get("offset") != offset:
        summary = (f"the server's 350 offered offset {offset} (it kept the first {CUT} bytes of an interrupted upload "
                   f"of this file), but the client ignored the resume offset and sent data from offset "
                   f"{data.get('offset')} with {data.get('body')} bytes; the server answered {answer}; "
                   f"exit {ran.exit_code}")
    elif data.get("body") != RESUME_SIZE - (offset or 0):
        summary = (f"data at offset {offset} as the 350 said, but with a {data.get('body')}-byte body instead of "
                   f"{RESUME_SIZE - (offset or 0)} (the file from byte {offset} on); the server answered {answer}")
    else:
        summary = (f"the client resumed at {offset}, then: reply {answer}, exit {ran.exit_code}, stored sha256 "
                   f"{'right' if stored.get('sha256') == digest else 'WRONG'}")
        fix = "send the file's bytes from the offset on, unchanged, and exit 0 when the 226 came"
    return Outcome(False, summary, observed, transcript, fix)


# ---------------------------------------------------------------------------------------------
# client-server-signature
# ---------------------------------------------------------------------------------------------

@scenario("client-server-signature", "against a fake server, the client checks §4: a 230 with a wrong "
                                     "server_signature, or a challenge with scrypt n over 2^16, ends the session: "
                                     "no further command, exit non-zero", roles=("client",))
def client_server_signature(run: LessonRun) -> Outcome:
    port = run.port() + FAKE_PORT_OFFSET
    with node_tool_in_background(run, "ftp-fake", "labnode.ftpfake", port, "--mode",
                                 "bad-signature,huge-scrypt") as wire:
        signature = run_client(run, SIGNATURE_BATCH, port, source=(SMALL, SMALL_SEED, SMALL_SIZE))
        scrypt = run_client(run, SIGNATURE_BATCH, port)
    requests = {conn: [str(e.get("op")) for e in wire.events if e.get("ev") == "request" and e.get("conn") == conn]
                for conn in (1, 2)}
    # logging in again is no trust in the session (the lab's client retries, then gives up); a command is
    went_on = [op for op in requests[1][requests[1].index("auth") + 1:] if op not in ("quit", "login", "auth")] \
        if "auth" in requests[1] else []
    transcript = [f"a fake server on port {port}, 1st connection: a 230 whose server_signature is random",
                  *signature.transcript(), f"the fake server received: {' '.join(requests[1]) or 'nothing'}",
                  "2nd connection: a 331 asking for scrypt n=131072, r=1, p=1",
                  *scrypt.transcript(), f"the fake server received: {' '.join(requests[2]) or 'nothing'}"]
    observed = {"exit_codes": [signature.exit_code, scrypt.exit_code], "requests": requests}
    problems, fixes = [], []
    if went_on:
        problems.append(f"the server's 230 carried a wrong server_signature (a fake server that does not hold "
                        f"alice's verifier), yet the client went on and sent '{went_on[0]}'")
        fixes.append("after 230, compute HMAC-SHA256(server_key, auth_message) (§4) and compare it with the 230's "
                     "server_signature (hmac.compare_digest); if it differs, send no command and exit non-zero")
    elif signature.ok:
        problems.append("the client stopped after a wrong server_signature but exited 0")
        fixes.append("exit non-zero when the server_signature does not verify")
    if "auth" in requests[2]:
        problems.append("the challenge asked for scrypt n=131072 (§4 allows n <= 2^16, r <= 16, p <= 4), yet the "
                        "client computed it and sent auth")
        fixes.append("check n, r and p of the 331 against §4's limits before calling hashlib.scrypt; refuse "
                     "(no auth, exit non-zero) when one is over")
    elif scrypt.ok:
        problems.append("the client refused scrypt n=131072 but exited 0")
        fixes.append("exit non-zero when the challenge's scrypt parameters are refused")
    if not problems:
        return Outcome(True, f"wrong server_signature: exit {signature.exit_code}, nothing sent after auth; scrypt "
                             f"n=131072: exit {scrypt.exit_code}, no auth sent", observed, transcript)
    return Outcome(False, "; ".join(problems), observed, transcript, "; ".join(fixes))


# ---------------------------------------------------------------------------------------------
# client-short-reads
# ---------------------------------------------------------------------------------------------

def where_it_stopped(wire: Wire) -> str | None:
    """'1 of the 4-byte prefix of the 220 greeting': where the client hung up, mid-frame."""
    closed = wire.first("closed")
    at = (closed or {}).get("client_stopped_at")
    if not at or at.get("frame_complete") or at.get("part") not in ("prefix", "header", "body"):
        return None
    code = at.get("code") or wire.reply_code(at["frame"])
    frame = "the 220 greeting" if at["frame"] == 1 else f"the {code} reply" if code else f"reply {at['frame']}"
    return f"{at['delivered']} of the {at['of']}-byte {at['part']} of {frame}"


@scenario("client-short-reads", "the server's frames arrive in pieces (prefix as 1 + 3 bytes, the header in "
                                "two parts, pauses between): the client reads each one whole (recv_exact)",
          roles=("client",))
def client_short_reads(run: LessonRun) -> Outcome:
    with relayed(run, "ftp-relay-trickle", trickle=True) as wire:
        ran = run_client(run, TRICKLE_BATCH, wire.port, copy=TRICKLE_COPY, source=(SMALL, SMALL_SEED, SMALL_SIZE))
    original, copy = ran.made.get(SMALL), ran.sha256.get(TRICKLE_COPY)
    stopped = where_it_stopped(wire)
    transcript = [f"a relay on port {wire.port} delivers every server frame in pieces, 30 ms apart (250 ms in "
                  f"the greeting)",
                  *ran.transcript(), f"on the wire: {wire.ladder()}",
                  f"the client hung up with {stopped} delivered" if stopped else
                  f"relay: {(wire.first('closed') or {}).get('reason')}"]
    observed = {"exit_code": ran.exit_code, "copy_sha256": copy, "original_sha256": original,
                "stopped_mid_frame": stopped}
    if ran.ok and copy == original:
        return Outcome(True, f"exit 0 with every frame in pieces; {copy_state(copy, original)}", observed, transcript)
    if stopped:
        summary = f"a frame arrived in pieces: your client read {stopped} and gave up (exit {ran.exit_code})"
    else:
        summary = (f"with the server's frames arriving in pieces the client ended with exit {ran.exit_code} and "
                   f"{copy_state(copy, original)}")
    return Outcome(False, summary, observed, transcript, RECV_EXACT_FIX)
