"""`lab.py check` proven both ways, on real containers.

* Positive controls (tests/students/<lesson>/<role>_<style>.py): correct programs written from the
  guide's contract alone, in different styles, by people who had not read the reference. Every
  one must pass.
* Negative controls (tests/negative/: the seed's programs) and mistake controls (tests/mistakes/:
  the mistakes students really make, each one change away from a correct program) must fail, in
  the scenario that is about that mistake, with an explanation that names it.

Each (lesson, role) group is graded as one batch, as a teacher grades a class (`lab.py check LESSON
--server A.py B.py ...`): one lesson instance, every container created afresh for each program.
Batches of different lessons run side by side (a small thread pool) once per session; the tests
below assert on the collected reports. Hostile programs (tests/isolation/) are graded right before
a positive control in the same batch: that control must still pass.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

# the first test's setup grades every control (about 60 programs in 10 batches): more than the suite's
# default 300 s per test on two cores
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]
TESTS = Path(__file__).resolve().parents[1]
PARALLEL = 3     # batches side by side (two cores, every control: 2 took 180 s, 3 took 118-135 s, 4 no less)


@dataclass(frozen=True)
class Control:
    lesson: str
    role: str
    path: Path
    entry: str | None = None
    must_fail: str | None = None            # None: a positive control, every graded scenario passes
    names: tuple[str, ...] = ()             # words the failing scenario's explanation must contain

    @property
    def id(self) -> str:
        return f"{self.lesson}-{self.path.name}" + (f"-{self.entry}" if self.entry else "")


STUDENTS = [Control(p.parent.name, p.name.split("_")[0], p)
            for p in sorted((TESTS / "students").glob("*/*.py")) if p.name.split("_")[0] in ("server", "client")]
# a folder of modules graded with --entry (written by an outside tester from the guide and docs/ftp-protocol.md
# alone, importing none of the lab's modules)
STUDENTS += [Control("ftp", "server", TESTS / "students" / "ftp" / "server_modules", "server.py")]

NEGATIVE = [Control(lesson, role, TESTS / "negative" / name, None, fails, words)
            for lesson, role, name, fails, words in [
    ("basic", "server", "basic_seed_server.py", "accept-new-socket", ("127.0.0.1",)),
    ("framing", "server", "framing_seed_server.py", "bad-input", ("error",)),
    ("framing", "client", "framing_seed_client.py", "client", ("trickle",)),
    ("loops", "server", "loops_seed_server.py", "client-gone", ("b''",)),
    ("socketserver", "server", "socketserver_seed_server.py", "restart-same-port", ("class attribute",)),
    ("sticky", "client", "sticky_seed_client.py", "client-exact-replies", ("recv()",)),
    ("udp", "client", "udp_seed_client.py", "reliable-delivery", ("send it again",)),
    ("udp", "server", "udp_seed_server.py", "truncation", ("recvfrom(65535)",)),
    # the seed's my_ftp speaks no frames at all (os.path.join is tests/mistakes/ftp_path_join_server.py)
    ("ftp", "server", "ftp_seed_server.py", "isolation", ("docs/ftp-protocol.md",)),
]]

MISTAKES_DIR = TESTS / "mistakes"
# the FTP client mistakes are edits of a positive control (tests/ftp_client_mistakes.py), made here
GENERATED = MISTAKES_DIR / ".generated"


def generated(name: str) -> Path:
    from tests.ftp_client_mistakes import write
    return write(name, GENERATED)


def edited(base: str, name: str, old: str, new: str) -> Path:
    """A mistake control: the positive control tests/students/BASE changed once (OLD -> NEW)."""
    from tests.ftp_client_mistakes import edited as apply
    from tests.ftp_client_mistakes import write_program
    return write_program(GENERATED / f"{name}.py", apply(TESTS / "students" / base, [(old, new)], name))


MISTAKES = [Control(lesson, role, MISTAKES_DIR / name, entry, fails, words)
            for lesson, role, name, entry, fails, words in [
    ("basic", "server", "basic_binds_loopback.py", None, "accept-new-socket", ("127.0.0.1", "0.0.0.0")),
    ("basic", "server", "basic_sends_str.py", None, "accept-new-socket",
     ("server exited", "TypeError", "encode text before send()")),
    ("loops", "server", "loops_no_eof_check.py", None, "client-gone", ("b''", "spinning")),
    ("loops", "server", "loops_no_reuseaddr.py", None, "restart-after-quit", ("SO_REUSEADDR",)),
    ("socketserver", "server", "socketserver_instance_reuse.py", None, "restart-same-port",
     ("class attribute",)),
    ("framing", "server", "framing", "recv_assumed.py", "trickled-request", ("recv(4) may return",)),
    ("framing", "server", "framing", "msg_waitall.py", "trickled-request", ("MSG_WAITALL",)),
    ("framing", "server", "framing", "body_recv_1024.py", "pipelined-requests",
     ("reads into the next frame", "min(remaining, n)")),
    ("framing", "server", "framing", "no_header_limit.py", "bad-input",
     ("died on 'length-2**32-1'", "against a limit")),
    ("framing", "client", edited("framing/client_recv_exact.py", "framing_client_nosha",
                                 'if hashlib.sha256(body).hexdigest() != header.get("sha256"):',
                                 "if False:  # MISTAKE: the body is never checked against the header's sha256"),
     None, "client", ("corrupt", "sha256 does not match", "hashlib.sha256(body)")),
    ("framing", "client", edited("framing/client_recv_exact.py", "framing_client_ignore_ok",
                                 'if header.get("ok") is not True:',
                                 'if False:  # MISTAKE: the reply\'s "ok" is never looked at'),
     None, "client", ("refused", '"ok": false', "exit non-zero")),
    ("framing", "client", "framing_client_nolimit.py", None, "client",
     ("oversize", "hung", "limit (e.g. 64 KiB)")),
    ("framing", "server", "framing", "send_not_sendall.py", "big-body", ("sendall()",)),
    ("framing", "client", "framing_client_print.py", None, "client", ("print()",)),
    ("udp", "server", "udp_recvfrom_1024.py", None, "truncation", ("recvfrom(1024)",)),
    ("sticky", "client", "sticky_client_prints_length.py", None, "client-exact-replies", ("4-byte length",)),
    ("sticky", "client", edited("sticky/client_frame_recv_exact.py", "sticky_client_native_length",
                                'struct.unpack("!I", recv_exact(s, 4))',
                                'struct.unpack("i", recv_exact(s, 4))  # MISTAKE: the machine\'s byte order'),
     None, "client-exact-replies", ("crashed after 0 of 6 replies", "network byte order", "'\\n'")),
    ("sticky", "client", edited("sticky/client_frame_recv_exact.py", "sticky_client_no_newline",
                                'cmd.encode("utf-8") + b"\\n")',
                                'cmd.encode("utf-8"))  # MISTAKE: no newline ends the command'),
     None, "client-exact-replies", ("the server refused 'big 5120'", "send each command as one line")),
    ("sticky", "client", "sticky_client_short_read_is_end.py", None, "client-exact-replies",
     ("crashed after 0 of 6 replies", "says nothing about the end")),
    ("socketserver", "server", "socketserver_one_line_handler.py", None, "b-while-a-idles",
     ("returns after one line", "self.rfile")),
    ("socketserver", "server", "socketserver_recv_is_a_line.py", None, "twenty-parallel",
     ("one recv() is not one line",)),
    ("loops", "server", "loops_reverses_bytes.py", None, "many-clients", ("not the bytes", "decode")),
    ("loops", "server", "loops_answers_quit.py", None, "client-gone", ("'quit'", "instead of answering")),
    ("udp", "server", "udp_strips_datagram.py", None, "boundaries", ("unchanged", "strip()")),
    ("udp", "server", "udp_replies_from_new_socket.py", None, "no-connection",
     ("not from the server's address", "the socket that received the datagram")),
    ("ftp", "server", "ftp_path_join_server.py", None, "isolation", ("os.path.join",)),
    ("ftp", "server", edited("ftp/server_compact.py", "ftp_server_follows_symlinks",
                             "if not inside(os.path.realpath(disk), self.home):",
                             "if False:  # MISTAKE: a symlink named last is followed wherever it leads"),
     None, "isolation", ("followed the symlink", "os.path.realpath", "553")),
    ("ftp", "server", edited("ftp/server_compact.py", "ftp_server_refuses_cd_root",
                             "    def op_cd(self, h):\n",
                             "    def op_cd(self, h):\n        if want_path(h) == '/':  # MISTAKE: 'cd /' refused\n"
                             "            raise Reply(553, 'absolute paths are not allowed')\n"),
     None, "isolation", ("'cd /' got 553", "starts at the user's home", "250")),
    ("ftp", "server", edited("ftp/server_compact.py", "ftp_server_no_digest_check",
                             'if hasher.hexdigest() != u["digest"]:',
                             'if False:  # MISTAKE: the digest the client announced is never compared'),
     None, "upload-integrity", ("wrong digest -> 226", "451", "compare it with the put's digest")),
    ("ftp", "server", edited("ftp/server_compact.py", "ftp_server_one_page_listing",
                             'if len(encode_frame(dict(code=200, msg="listing", **fields))) - 4 <= MAX_HEADER:',
                             'if True:  # MISTAKE: the whole listing in one reply, however big'),
     None, "ls-paging", ("64 KiB", "truncated", "continue_after")),
    ("ftp", "client", generated("single_recv"), None, "client-batch",
     ("body bytes", "as a length prefix", "loop until size bytes arrive")),
    ("ftp", "client", generated("native_byteorder"), None, "client-batch",
     ("sent nothing usable after the greeting", "byte order", "!I")),
    ("ftp", "client", generated("skips_rm"), None, "client-batch",
     ("'rm cli.bin' did not remove it", "yet the client exited 0")),
    ("ftp", "client", generated("exit0_on_failure"), None, "client-stops-at-failure",
     ("yet the client exited 0", "non-zero")),
    ("ftp", "client", generated("ignores_resume_offset"), None, "client-resume-upload",
     ("offset 1048576", "from offset 0", "501", "350's offset")),
    ("ftp", "client", generated("no_server_signature"), None, "client-server-signature",
     ("wrong server_signature", "went on", "compare_digest")),
    ("ftp", "client", generated("header_single_recv"), None, "client-short-reads",
     ("a frame arrived in pieces", "your client read", "recv_exact")),
]]

ISOLATION = TESTS / "isolation"


@dataclass(frozen=True)
class Hostile:
    """A program that leaves a mess for the next one, graded right before ``precedes`` in its batch."""

    control: Control
    precedes: Control
    evidence: str            # what its own report says, proving the mess was there while it was graded

    @property
    def id(self) -> str:
        return self.control.id


def _student(lesson: str, name: str) -> Control:
    return next(c for c in STUDENTS if c.lesson == lesson and c.path.name == name)


HOSTILE = [
    # a daemon out of the program's process group, deaf to SIGTERM, on every spare port
    Hostile(Control("loops", "server", ISOLATION / "loops_leaves_a_daemon.py", None, "restart-after-quit"),
            _student("loops", "server_iterative.py"), "no free port on the server machine"),
    # most of alice's quota filled with junk, .part files in alice's and bob's homes
    Hostile(Control("ftp", "server", ISOLATION / "ftp_server_leaves_junk.py", None, "put-get-checksum"),
            _student("ftp", "server_compact.py"), "9500000 bytes used"),
]

ALL = STUDENTS + NEGATIVE + MISTAKES


@dataclass
class Graded:
    reports: dict            # control id -> LessonReport, or the exception its grading raised
    batches: dict            # (lesson, role) -> the control ids in the order that batch graded them


def batches_of(controls: list[Control]) -> dict[tuple[str, str], list[Control]]:
    """One batch per (lesson, role); each hostile program right before the control it precedes."""
    groups: dict[tuple[str, str], list[Control]] = {}
    for c in controls:
        groups.setdefault((c.lesson, c.role), []).append(c)
    for h in HOSTILE:
        group = groups.get((h.control.lesson, h.control.role), [])
        if h.control in group and h.precedes in group:
            group.remove(h.control)
            group.insert(group.index(h.precedes), h.control)
    return groups


def grade_batch(checker, controls: list[Control]) -> dict:
    from socketlab.runner import Submission
    # a negative control only needs the scenario it must fail; a positive one, every scenario
    submissions = [Submission(**{c.role: c.path}, entry=c.entry, only=(c.must_fail,) if c.must_fail else None)
                   for c in controls]
    results: dict = {}
    try:
        with checker.batch(controls[0].lesson, submissions) as batch:
            for i, c in enumerate(controls):
                try:
                    results[c.id] = batch.grade(i)
                except Exception as exc:    # one broken check must not hide the others' results
                    results[c.id] = exc
    except Exception as exc:                # the batch itself could not be set up (or torn down)
        for c in controls:
            results.setdefault(c.id, exc)
    return results


@pytest.fixture(scope="module")
def graded(request, docker_client, lab_image, topology) -> Graded:
    from socketlab.runner import Checker
    from tests.conftest import RUN_ID
    checker = Checker(docker_client, topology, say=lambda _: None, project=RUN_ID)
    # grade only the controls whose tests were selected (`-k ftp` grades the ftp controls only)
    wanted = {item.callspec.params["control"].id for item in request.session.items
              if hasattr(item, "callspec") and "control" in item.callspec.params}
    wanted |= {h.precedes.id for h in HOSTILE if h.id in wanted}
    chosen = [c for c in ALL + [h.control for h in HOSTILE] if c.id in wanted]
    groups = batches_of(chosen)
    # the longest batches first (ftp's scenarios take the longest), so the pool ends together
    order = sorted(groups, key=lambda key: (key[0] != "ftp", -len(groups[key])))
    reports: dict = {}
    with ThreadPoolExecutor(PARALLEL) as pool:
        for result in pool.map(lambda key: grade_batch(checker, groups[key]), order):
            reports |= result
    return Graded(reports, {key: [c.id for c in groups[key]] for key in groups})


@pytest.fixture(scope="module")
def reports(graded) -> dict:
    return graded.reports


def report_of(reports: dict, control: Control):
    report = reports[control.id]
    if isinstance(report, Exception):
        raise report
    return report


def failures(report) -> list[tuple[str, str]]:
    return [(s.scenario, s.explanation) for s in report.scenarios if s.required and not s.passed]


@pytest.mark.parametrize("control", STUDENTS, ids=[c.id for c in STUDENTS])
def test_a_correct_program_written_from_the_contract_passes(reports, control):
    report = report_of(reports, control)
    assert report.passed, failures(report)


@pytest.mark.parametrize("control", NEGATIVE + MISTAKES, ids=[c.id for c in NEGATIVE + MISTAKES])
def test_a_wrong_program_fails_with_an_explanation_that_names_the_mistake(reports, control):
    report = report_of(reports, control)
    assert not report.passed
    failed = dict(failures(report))
    assert control.must_fail in failed, [(s.scenario, s.passed, s.summary) for s in report.scenarios]
    explanation = failed[control.must_fail]
    for word in control.names:
        assert word in explanation, explanation


@pytest.mark.parametrize("control", [h.control for h in HOSTILE], ids=[h.id for h in HOSTILE])
def test_a_hostile_program_leaves_nothing_for_the_next_one_in_its_batch(graded, control):
    """Batch grading resets between programs: what a hostile program left behind (a daemon on the
    ports, junk in the ftp homes) was there while it was graded, and is gone for the next one."""
    hostile = next(h for h in HOSTILE if h.control == control)
    order = graded.batches[control.lesson, control.role]
    assert order[order.index(hostile.id) + 1] == hostile.precedes.id, order
    mess = report_of(graded.reports, control)
    assert not mess.passed
    failed = dict(failures(mess))
    assert control.must_fail in failed, [(s.scenario, s.passed, s.summary) for s in mess.scenarios]
    assert hostile.evidence in failed[control.must_fail], failed[control.must_fail]
    after = report_of(graded.reports, hostile.precedes)
    assert after.passed, failures(after)
    from socketlab.runner import select
    from socketlab.scenarios import for_lesson
    every = select(for_lesson(control.lesson), control.role == "server", control.role == "client")
    # graded in full: the scenario the hostile program failed, and every other one
    assert [s.scenario for s in after.scenarios] == [s.name for s in every]


def test_every_gradable_role_has_three_independent_positive_controls(topology):
    from socketlab.contract import contract_of
    counts = {(c.lesson, c.role): 0 for c in STUDENTS}
    for c in STUDENTS:
        counts[c.lesson, c.role] += 1
    for lesson in topology.lessons:
        for rc in contract_of(lesson).roles:
            wanted = 2 if (lesson, rc.role) == ("ftp", "server") else 3   # a whole FTP server is a big program
            assert counts.get((lesson, rc.role), 0) >= wanted, (lesson, rc.role, counts)


def test_check_trace_attaches_the_wire_to_a_failing_scenario(docker_client, lab_image, topology):
    """`check --trace`: the student sees the bytes their own program sent and received."""
    from socketlab.runner import Checker
    from tests.conftest import RUN_ID
    checker = Checker(docker_client, topology, say=lambda _: None, project=RUN_ID)
    report = checker.check("sticky", client=TESTS / "negative" / "sticky_seed_client.py", trace=True)
    [graded] = report.required
    assert not graded.passed
    wire = graded.transcript[graded.transcript.index(next(line for line in graded.transcript
                                                          if line.startswith("on the wire"))):]
    assert any("recv(1024) → 1024" in line for line in wire)     # the seed's one recv per command
    assert any("PSH" in line for line in wire)
