"""Lesson ftp (seed §3, SPEC §6-§7): the homework, each item shown and graded.

Server scenarios run ``labnode.probes.ftp`` on the client machine against the server under test (the
reference ``python3 -m ftp.server --port 20060 --root /srv/ftp``, or a student's server that
implements docs/ftp-protocol.md) and then look at the server's disk directly: what is stored
where, under which name, with which sha256. The client scenario runs the client under test in
batch mode (``-c "put ...; get ..."``) against the reference server.

Negative control: tests/negative/ftp_seed_server.py (the seed's my_ftp server) fails every one.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from ..contract import Contract, RoleContract
from ..scenario import LessonRun, Outcome, ProbeResult, scenario, wait_listening

DEFAULT_ROOT = "/srv/ftp"     # the server's --root in compose.yaml
FRESH_PORT_OFFSET = 2          # a demo on a used lab runs its own reference server here

CONTRACT = Contract("ftp", (
    RoleContract("server", "python3 my_server.py --port 20060 --root /srv/ftp [--max-sessions 3]", (
        "speak the protocol of [docs/ftp-protocol.md](../../docs/ftp-protocol.md) (frames as in lesson "
        "framing; JSON requests and RFC 959-style reply codes; version 1 is enough, the digest trailer of "
        "version 2 is optional; you may import `framing.codec`, `ftp.protocol` and `ftp.users`);",
        "follow its §7 server conventions: on a root without `users.json`, create the demo users alice / "
        "wonderland (10 MiB quota), bob / builder (1 MiB) and alice2 / looking-glass (2 MiB); keep "
        "`<root>/users.json` in the documented format and each home in `<root>/home/<user>/`;",
        "log in by the SCRAM-style challenge-response of §4 (the password never crosses the wire; an "
        "unknown user looks exactly like a wrong password; each failure answered after a delay (~1 s, at "
        "least 0.5 s); after 3 failures reply 421 and close);",
        "confine each user to their home (`..`, a sibling home such as `alice2`, NUL, symlinks out: refused "
        "with 553/550; an absolute path starts at the home, so `cd /` answers 250), enforce each user's "
        "quota (552, no file left) including concurrent uploads, and serve many users at once;",
        "make uploads invisible until complete and verified (a hidden partial file, `os.replace` at the "
        "end), resume uploads and downloads at the offsets of §5, and verify sha256;",
        "with `--max-sessions N`, serve N sessions and answer the next with 421;",
        "answer every bad frame or field with an error reply (or a clean close), never a silent drop.",
    ), ("print anything; use threads, a `queue.Queue` pool, `selectors` or `asyncio`.",)),
    RoleContract("client", "python3 my_client.py --host ftp-server --port 20060 --user alice --password "
                           "wonderland -c \"put /tmp/cli-original.bin cli.bin; ls; get cli.bin /tmp/cli-copy.bin; "
                           "rm cli.bin; quit\"", (
        "connect to the `--host` and `--port` given (the other checks start it on other ports of ftp-server: a "
        "relay that writes down every frame, a test server), log in as the user given and run the "
        "`;`-separated commands of `-c` in order: `put LOCAL REMOTE`, `ls`, `get REMOTE LOCAL`, `rm REMOTE`, "
        "`quit`;",
        "really run each one (`rm` removes the file on the server), leave the downloaded copy with the sha256 of "
        "the original, and exit 0 when all of them succeeded (`client-batch`, the command line above);",
        "stop at the first command that fails and exit non-zero, running none of the commands after it: a "
        "refusal from the server (`get no-such.bin /tmp/cli-nothing.bin; put /tmp/cli-small.bin after-get.bin; "
        "quit` gets 550) or a local file that does not exist (`put /tmp/cli-no-such-file.bin cli-missing.bin; "
        "...`) (`client-stops-at-failure`);",
        "resume an interrupted upload as §5 says: the 350's `offset` is where `data` starts, with only the file's "
        "bytes from there on (`client-resume-upload` leaves the first 1048576 bytes of /tmp/cli-resume.bin on "
        "the server, then runs `put /tmp/cli-resume.bin cli-resume.bin; quit`);",
        "check the server as §4 says: refuse a challenge whose scrypt parameters exceed n ≤ 2¹⁶, r ≤ 16, p ≤ 4 "
        "(send no `auth`), and verify the 230's `server_signature`; either way send no further command and exit "
        "non-zero (`client-server-signature` runs it against a fake server);",
        "read every frame exactly (§1): one `recv()` may return part of the 4-byte prefix, of the header or of a "
        "body, so loop until all bytes arrive (`client-short-reads` delivers the server's frames in small "
        "pieces).",
    ), ("show a progress bar on stderr.",)),
), ("The seed's `my_ftp` server (`tests/negative/ftp_seed_server.py`) fails: clear-text passwords, "
    "`os.path.join(home, path)` lets `../` out of the home, no quota.",))


@contextmanager
def session(run: LessonRun) -> Iterator[LessonRun]:
    """The scenarios assume the demo users' homes hold nothing but what they make themselves.

    A student who followed the guide has files in alice's home (and used her quota), so on a used
    lab the demo starts the reference server once more, on a spare port with a fresh root in /tmp,
    and runs there; the student's own files are never touched. A check always starts fresh.
    """
    tree = run.tool(run.server, "tree", "--dir", homes(run), timeout=60).observed.get("tree") or {}
    used = sorted(p for p, e in tree.items() if e.get("type") != "dir" and not p.split("/")[-1].startswith("."))
    if not used or "ftp.server" not in " ".join(run.server_cmd):
        yield run
        return
    port = run.port() + FRESH_PORT_OFFSET
    root = f"/tmp/ftp-demo-{uuid.uuid4().hex[:8]}"
    name = "ftp-fresh-demo"
    run.server.spawn(name, run.in_workdir([*run.server_cmd, "--port", str(port), "--root", root]))
    try:
        if not wait_listening(run.server, port):
            raise RuntimeError(f"the demo's own reference server did not start on port {port}")
        print(f"(the demo homes hold {len(used)} file(s) of yours, e.g. {used[0]}: this demo runs on a fresh "
              f"reference server, port {port}, root {root}; your files stay as they are)", file=sys.stderr, flush=True)
        yield dataclasses.replace(run, ports={**run.ports, "server": port},
                                  server_args=["--port", str(port), "--root", root])
    finally:
        run.server.stop(name)
        run.server.run(["rm", "-rf", root], timeout=30)


def server_root(run: LessonRun) -> str:
    """Where the server under test keeps its files on its node (its --root option)."""
    return run.server_option("--root", DEFAULT_ROOT)


def homes(run: LessonRun) -> str:
    """<root>/home/<user>: the layout docs/ftp-protocol.md prescribes."""
    return f"{server_root(run)}/home"
DEMO = {"alice": "wonderland", "bob": "builder", "alice2": "looking-glass"}




def outcome(probe: ProbeResult, summary: str, passed: bool | None = None, extra: dict | None = None,
            transcript: list[str] | None = None, fix: str = "") -> Outcome:
    """Outcome.from_probe, plus server-side facts and transcript lines the scenario adds, and what
    to change (shown only when it failed)."""
    base = Outcome.from_probe(probe, summary, passed)
    return Outcome(base.passed and not probe.observed.get("error"), base.summary,
                   {**base.observed, **(extra or {})}, base.transcript + list(transcript or []), fix)


def server_tree(run: LessonRun, path: str) -> dict:
    """{relative path: {type, size, sha256}} of everything under ``path`` on the server node."""
    found = run.tool(run.server, "tree", "--dir", path, timeout=60)
    return found.observed.get("tree", {}) if found.ok else {}


def internal_names(tree: dict) -> list[str]:
    """Names a half-finished upload could leave: .part files, the seed's _temp files."""
    return sorted(p for p in tree if p.endswith((".part", ".part.json")) or "_temp" in p)


# ---------------------------------------------------------------------------------------------
# (1) encrypted authentication
# ---------------------------------------------------------------------------------------------

@scenario("login", "challenge-response login: the password never crosses the wire; an unknown user "
                   "looks exactly like a wrong password")
def login(run: LessonRun) -> Outcome:
    probe = run.probe("login")
    o = probe.observed
    return outcome(probe, f"login -> {o.get('challenge_code')} {o.get('challenge_keys')} -> "
                          f"{o.get('login_code')}; "
                          f"password on the wire: {o.get('password_on_wire')}; unknown user: same shape "
                          f"{o.get('unknown_same_shape')}, stable salt {o.get('unknown_salt_stable')}, "
                          f"same refusal {o.get('refusals_identical')}")


@scenario("password-storage", "passwords are stored salted with a slow KDF (scrypt/PBKDF2), never in clear "
                              "or as a fast hash like the seed's sha256(user+password+user)")
def password_storage(run: LessonRun) -> Outcome:
    result = run.server.run(run.in_workdir([run.python, "-m", "labnode.ftpaudit", server_root(run),
                                            json.dumps(DEMO)]), timeout=30)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        return Outcome(False, f"could not read {server_root(run)} on the server: {result.stderr.strip()[-200:]}")
    records = report["records"]
    slow = {u: r for u, r in records.items()
            if r["kdf"] in ("scrypt", "pbkdf2", "pbkdf2_hmac", "argon2") and r["salt_bytes"] >= 16}
    transcript = [f"files in {server_root(run)}: {report['files']}"]
    for user, r in records.items():
        transcript.append(f"{user}: kdf={r['kdf']} n={r['n']} iterations={r['iterations']} "
                          f"salt={r['salt_bytes']} bytes, fields {r['keys']}")
    for user, how in report["fast_hash"]:
        transcript.append(f"{user}'s password is stored as {how}: one cheap hash per guess, the same on "
                          f"every server (the user name is no salt) - a GPU tries billions per second")
    if report["cleartext"]:
        transcript.append(f"passwords in clear for {report['cleartext']}")
    passed = not report["cleartext"] and not report["fast_hash"] and len(slow) == len(DEMO)
    summary = (f"{len(slow)}/{len(DEMO)} demo users stored with a salted slow KDF; "
               f"in clear: {report['cleartext']}; fast hashes found: {len(report['fast_hash'])}")
    observed = {"files": report["files"], "records": records, "cleartext_users": report["cleartext"],
                "fast_hashes": report["fast_hash"], "slow_kdf_users": sorted(slow)}
    return Outcome(passed, summary, observed, transcript)


@scenario("login-limit", "three wrong passwords: 530, 530, 421 and the connection is closed; "
                         "failures are slowed down")
def login_limit(run: LessonRun) -> Outcome:
    probe = run.probe("login-limit")
    o = probe.observed
    result = outcome(probe, f"codes {o.get('codes')}, closed {o.get('closed')}, "
                            f"seconds per attempt {o.get('seconds_per_attempt')}")
    if result.passed or o.get("error"):
        return result
    if (o.get("codes") or [])[:3] != [530, 530, 421]:
        result.fix = ("answer a wrong proof with 530 (with attempts_left), and the third failure in a session "
                      "with 421, then close the connection (docs/ftp-protocol.md §4)")
    elif not o.get("closed"):
        result.fix = "after the 421 for the third failure, close the connection (§4)"
    elif not o.get("slowed_down"):
        result.fix = ("answer each failed auth only after a delay (1 s by default; the check wants at least 0.5 s), "
                      "without holding up the other sessions (a sleep in that session's thread or task): "
                      "otherwise passwords can be guessed at full speed (§4)")
    elif not o.get("new_session_ok"):
        result.fix = "a new session must still log in with the right password after another session's failures"
    return result


# ---------------------------------------------------------------------------------------------
# (2) many users, (3) homes
# ---------------------------------------------------------------------------------------------

@scenario("two-users", "alice and bob logged in at once; each sees only their own home")
def two_users(run: LessonRun) -> Outcome:
    probe = run.probe("two-users")
    o = probe.observed
    return outcome(probe, f"alice sees {o.get('alice_entries')}, bob sees {o.get('bob_entries')}; "
                          f"cross-visible: {o.get('cross_visible')}")


@scenario("isolation", "../, absolute paths, a sibling home (alice2), NUL and a symlink out of the home are "
                       "all refused (553/550), and 'cd /' goes to the home; nothing is read or written outside "
                       "the home")
def isolation(run: LessonRun) -> Outcome:
    link = "etc-link"
    made = run.server.run(["ln", "-sfn", "/etc", f"{homes(run)}/alice/{link}"], timeout=10)
    try:
        probe = run.probe("isolation", "--symlink", link)
    finally:
        run.server.run(["rm", "-f", f"{homes(run)}/alice/{link}"], timeout=10)
    tree = server_tree(run, server_root(run))
    escaped = sorted(p for p in tree if "evil" in p)
    o = probe.observed
    extra = {"symlink_created": made.ok, "server_files_named_evil": escaped}
    transcript = [f"server side: a symlink {homes(run)}/alice/{link} -> /etc was planted before the probe "
                  f"({'ok' if made.ok else 'FAILED: ' + made.stderr.strip()})",
                  f"server side: files named 'evil' anywhere under {server_root(run)}: {escaped or 'none'}"]
    passed = probe.ok and made.ok and not escaped
    codes = o.get("codes") or {}
    not_refused = o.get("not_refused") or []
    result = outcome(probe, f"{len(codes) - len(not_refused)}/{len(codes)} attempts refused or not followed; "
                            f"leaked {o.get('leaked_files')}; written outside: {escaped}", passed, extra, transcript)
    error = str(probe.observed.get("error") or "")
    through_link = [label for label in not_refused if link in label]
    cd_root = o.get("cd_root_code")
    if not result.passed and error and not escaped and ("frame" in error or "Protocol" in error):
        result.fix = ("the server does not speak the lab's protocol, so no path could even be tried: frames "
                      "(a 4-byte '!I' length, a JSON header, a body) and the requests of docs/ftp-protocol.md")
    elif not result.passed and error and not escaped:
        result.fix = ("the server closed the connection during the isolation attempts (see the transcript for "
                      "the last one): answer every path request with a reply, including a listing that holds "
                      "a symlink leading out of the home")
    elif not result.passed and (escaped or o.get("leaked_files") or set(not_refused) - set(through_link)):
        result.fix = ("os.path.join(home, path) lets '../x' and '/etc/x' out of the home: normalise the path "
                      "(os.path.realpath, which also follows symlinks) and refuse it with 553 unless "
                      "os.path.commonpath([home, real]) == home")
    elif not result.passed and through_link:
        result.fix = (f"{', '.join(repr(t) for t in through_link)} followed the symlink {link} -> /etc out of the "
                      "home: resolve every path with os.path.realpath (which follows symlinks) before the "
                      "os.path.commonpath check and answer 553 when it leads out (docs/ftp-protocol.md §2, Paths); "
                      "`ls` of the link may instead list just the link's own entry, type \"link\"")
    elif not result.passed and cd_root != 250:
        result.fix = (f"'cd /' got {cd_root}: a path that starts with '/' starts at the user's home, so 'cd /' "
                      "goes back to the home and answers 250 (docs/ftp-protocol.md §2, Paths)")
    elif not result.passed and o.get("cwd_after") not in (None, "/"):
        result.fix = (f"after the refused attempts pwd says {o.get('cwd_after')!r}: a refused cd must leave the "
                      "current directory where it was ('/')")
    elif not result.passed and not made.ok:
        result.fix = (f"the lab could not plant its symlink in {homes(run)}/alice/: keep each user's home in "
                      "<root>/home/<user>/ (docs/ftp-protocol.md §7)")
    return result


# ---------------------------------------------------------------------------------------------
# (4) quotas
# ---------------------------------------------------------------------------------------------

@scenario("quota", "bob (1 MiB) and alice (10 MiB) have different quotas; an upload over quota gets 552 "
                   "and leaves no file, partial or final")
def quota(run: LessonRun) -> Outcome:
    probe = run.probe("quota")
    bob = server_tree(run, f"{homes(run)}/bob")
    leftovers = sorted(p for p in bob if "too-big" in p)
    o = probe.observed
    transcript = [f"server side: {homes(run)}/bob holds {sorted(bob) or 'nothing'}; anything of too-big.bin: "
                  f"{leftovers or 'no'}"]
    return outcome(probe, f"bob {o.get('bob_limit')} vs alice {o.get('alice_limit')} bytes; bob's "
                          f"{o.get('upload_size')}-byte put -> {o.get('bob_put_code')}, alice's -> "
                          f"{o.get('alice_put_code')}", probe.ok and not leftovers,
                   {"server_bob_files": sorted(bob), "server_leftovers": leftovers}, transcript)


@scenario("concurrent-quota", "two sessions of one user start uploads that fit alone but not together: "
                              "the second is refused at once (the first reserved its size)")
def concurrent_quota(run: LessonRun) -> Outcome:
    probe = run.probe("concurrent-quota")
    o = probe.observed
    return outcome(probe, f"free {o.get('free_before')}, two puts of {o.get('size_each')}: "
                          f"{o.get('first_code')} and {o.get('second_code')}; "
                          f"used after {o.get('used_after')} of {o.get('limit')}")


# ---------------------------------------------------------------------------------------------
# (7) checksums, (8) progress, (9) resume
# ---------------------------------------------------------------------------------------------

@scenario("put-get-checksum", "a 5 MiB random file goes up and down with the same sha256 on both machines "
                              "(md5 on request); zero-byte files work")
def put_get_checksum(run: LessonRun) -> Outcome:
    probe = run.probe("put-get-checksum", timeout=120)
    o = probe.observed
    tree = server_tree(run, f"{homes(run)}/alice")
    stored = tree.get("random.bin", {})
    partial = internal_names(tree)
    same = stored.get("sha256") == o.get("local_sha256") and stored.get("size") == o.get("size")
    transcript = [f"server side: {homes(run)}/alice/random.bin has {stored.get('size')} bytes, sha256 "
                  f"{stored.get('sha256')} ({'the same' if same else 'DIFFERENT'}); "
                  f".part/_temp files: {partial or 'none'}"]
    return outcome(probe, f"{o.get('size')} bytes, sha256 {str(o.get('local_sha256'))[:16]}... on the "
                          f"client, the server's disk and the downloaded copy",
                   probe.ok and same and not partial,
                   {"server_size": stored.get("size"), "server_file_sha256": stored.get("sha256"),
                    "server_internal_files": partial}, transcript)


@scenario("upload-integrity", "a body that does not hash to the put's digest gets 451 and leaves no file, "
                              "final or partial; a name being uploaded is refused to a second session (450); "
                              "abort answers 226 and frees the name")
def upload_integrity(run: LessonRun) -> Outcome:
    probe = run.probe("upload-integrity", timeout=120)
    tree = server_tree(run, f"{homes(run)}/alice")
    left = sorted(p for p in tree if "wrong.bin" in p)
    o = probe.observed
    transcript = [f"server side: anything of wrong.bin in {homes(run)}/alice: {left or 'no'}"]
    fixes = []
    if o.get("wrong_digest_code") != 451 or left or o.get("wrong_listed"):
        fixes.append("hash the whole file (the part's bytes and the body) before the rename and compare it "
                     "with the put's digest; on a mismatch answer 451 and delete the part and its sidecar, "
                     "so nothing of it is listed or left (docs/ftp-protocol.md §5)")
    if o.get("busy_second") != 450:
        fixes.append("remember which names are being uploaded (with the quota reservation, under one lock) "
                     "and answer another session's put of such a name 450 (§4's put row)")
    if o.get("abort_code") != 226:
        fixes.append("after a 350, accept abort instead of data: keep the part for a resume, free the name "
                     "and answer 226 with kept (§4's abort row)")
    return outcome(probe, f"wrong digest -> {o.get('wrong_digest_code')}; second put of a busy name -> "
                          f"{o.get('busy_second')}; abort -> {o.get('abort_code')}",
                   probe.ok and not left, {"server_wrong_files": left}, transcript, fix="; ".join(fixes))


@scenario("ls-paging", "a directory of 300 long names does not fit one 64 KiB reply: ls answers in pages "
                       "(truncated, continue_after, ls with after) and lists every name exactly once")
def ls_paging(run: LessonRun) -> Outcome:
    probe = run.probe("ls-paging", timeout=120)
    o = probe.observed
    return outcome(probe, f"{o.get('listed')} of {o.get('expected')} names over {o.get('pages')} page(s); "
                          f"missing {o.get('missing') or 'none'}, twice {o.get('twice') or 'none'}", fix=(
        "fill a reply with entries only while its header stays under 64 KiB (measure the encoded JSON); "
        "then stop, say \"truncated\": true and \"continue_after\": the last name sent, and answer "
        "ls with \"after\" with the names that sort after it (docs/ftp-protocol.md §4, Pages)"))


@scenario("resume-upload", "an upload cut after 1 MiB leaves only a hidden partial on the server; the next "
                           "put continues at byte 1048576 and the file ends with the right sha256")
def resume_upload(run: LessonRun) -> Outcome:
    cut = run.probe("resume-upload", "--stage", "cut", timeout=120)
    middle = server_tree(run, f"{homes(run)}/alice")
    final_during = middle.get("resume-up.bin")
    parts_during = {p: v.get("size") for p, v in middle.items() if p in internal_names(middle)}
    resume = run.probe("resume-upload", "--stage", "resume", timeout=120)
    after = server_tree(run, f"{homes(run)}/alice")
    stored = after.get("resume-up.bin", {})
    parts_after = internal_names(after)
    o = {**cut.observed, **resume.observed}
    transcript = list(cut.transcript) + [
        f"server side after the cut: resume-up.bin {'EXISTS' if final_during else 'does not exist'}; "
        f"hidden partial files {parts_during}"] + list(resume.transcript) + [
        f"server side after the resume: resume-up.bin {stored.get('size')} bytes, "
        f"sha256 {stored.get('sha256')}; partial files left: {parts_after or 'none'}"]
    passed = (cut.ok and resume.ok and final_during is None and o.get("cut_after") in parts_during.values()
              and stored.get("sha256") == o.get("local_sha256") and not parts_after)
    error = cut.observed.get("error") or resume.observed.get("error")
    summary = (f"probe stopped: {error}" if error else
               f"cut at {o.get('cut_after')}, partial {parts_during}, resumed at {o.get('resume_offset')}, "
               f"{o.get('received_on_resume')} bytes sent again, "
               f"sha256 ok: {stored.get('sha256') == o.get('local_sha256')}")
    observed = {**o, "server_final_during_cut": final_during is not None,
                "server_partials_during_cut": parts_during, "server_file_sha256": stored.get("sha256"),
                "server_partials_after": parts_after}
    return Outcome(passed and not error, summary, observed, transcript)


@scenario("resume-download", "a download cut after 1 MiB continues from the local .part; the server sends "
                             "only the rest; a changed file starts over")
def resume_download(run: LessonRun) -> Outcome:
    probe = run.probe("resume-download", timeout=120)
    o = probe.observed
    return outcome(probe, f"cut at {o.get('cut_after')}, resumed from {o.get('resumed_from')}, "
                          f"{o.get('bytes_sent_on_resume')} bytes sent again, sha256 ok "
                          f"{o.get('sha256_copy') == o.get('sha256_expected')}; changed file restarted at "
                          f"{o.get('changed_file_restart_offset')}")


@scenario("progress", "the progress callback only grows and ends at 100 %; "
                      "the bar redraws at most 10 times a second", roles=())   # the lab's client, shown
def progress(run: LessonRun) -> Outcome:
    probe = run.probe("progress", timeout=120)
    o = probe.observed
    return outcome(probe, f"{o.get('put_calls')} calls on put, {o.get('get_calls')} on get, monotonic "
                          f"{o.get('monotonic')}, {o.get('redraws')} redraws in {o.get('seconds')} s")


# ---------------------------------------------------------------------------------------------
# (10) thread pool, (11) max sessions
# ---------------------------------------------------------------------------------------------

@scenario("max-sessions", "a server started with --max-sessions 3 serves 3 sessions; the 4th gets 421 and is "
                          "closed; when one leaves, the next gets in")
def max_sessions(run: LessonRun) -> Outcome:
    port = run.port() + 1
    argv = [*run.server_cmd, "--port", str(port), "--root", "/tmp/ftp-max-sessions", "--max-sessions", "3"]
    run.server.spawn("ftp-max-sessions", argv)
    try:
        listening = wait_listening(run.server, port)
        probe = run.probe("max-sessions", "--expect", "3", port=port)
    finally:
        run.server.stop("ftp-max-sessions")
    o = probe.observed
    transcript = [f"server side: started {' '.join(argv)}: {'listening' if listening else 'NOT listening'}"]
    return outcome(probe, f"{o.get('greeted')} sessions greeted, the next got {o.get('refused_code')}; "
                          f"closed {o.get('closed_after_refusal')}; "
                          f"after one left: {o.get('after_release_code')}",
                   probe.ok and listening, {"listening": listening, "port": port}, transcript)


# ---------------------------------------------------------------------------------------------
# SPEC §7: bad input
# ---------------------------------------------------------------------------------------------

@scenario("bad-input", "broken frames, wrong fields, cut bodies, slow drips, unicode forms: each gets a "
                       "clear answer (or a clean close) while another session keeps being served")
def bad_input(run: LessonRun) -> Outcome:
    probe = run.probe("bad-input", timeout=180)
    o = probe.observed
    alive = run.probe("login")
    return outcome(probe, f"{o.get('count', 0) - len(o.get('failed') or [])}/{o.get('count')} cases handled; "
                          f"failed {o.get('failed')}; the server still logs users in: {alive.ok}",
                   probe.ok and alive.ok, {"still_serving": alive.ok})


# ---------------------------------------------------------------------------------------------
# The client under test: socketlab/scenarios/ftp_client.py (client-batch and the client's other duties)
# ---------------------------------------------------------------------------------------------

from .ftp_client import SCENARIOS as _CLIENT_SCENARIOS  # noqa: E402  (they use the helpers above)
from .ftp_client import client_batch  # noqa: E402, F401  (tests call ftp.client_batch)

SCENARIOS.extend(_CLIENT_SCENARIOS)  # noqa: F821  (SCENARIOS is made by @scenario)
