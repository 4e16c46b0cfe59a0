"""`lab.py check` proven both ways, on real containers.

* Positive controls (tests/students/<lesson>/<role>_<style>.py): correct programs written from the
  guide's contract alone, in different styles, by people who had not read the reference. Every
  one must pass.
* Negative controls (tests/negative/: the seed's programs) and mistake controls (tests/mistakes/:
  the mistakes students really make, each one change away from a correct program) must fail, in
  the scenario that is about that mistake, with an explanation that names it.

The checks are independent throw-away lesson instances, so they run side by side (a small thread
pool) once per session; the tests below assert on the collected reports.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

# the first test's setup grades every control (about 50 checks side by side): more than the suite's
# default 300 s per test on two cores
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]
TESTS = Path(__file__).resolve().parents[1]
PARALLEL = 4


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


MISTAKES = [Control(lesson, role, MISTAKES_DIR / name, entry, fails, words)
            for lesson, role, name, entry, fails, words in [
    ("basic", "server", "basic_binds_loopback.py", None, "accept-new-socket", ("127.0.0.1", "0.0.0.0")),
    ("loops", "server", "loops_no_eof_check.py", None, "client-gone", ("b''", "spinning")),
    ("loops", "server", "loops_no_reuseaddr.py", None, "restart-after-quit", ("SO_REUSEADDR",)),
    ("socketserver", "server", "socketserver_instance_reuse.py", None, "restart-same-port",
     ("class attribute",)),
    ("framing", "server", "framing", "recv_assumed.py", "trickled-request", ("recv(4) may return",)),
    ("framing", "server", "framing", "msg_waitall.py", "trickled-request", ("MSG_WAITALL",)),
    ("framing", "server", "framing", "send_not_sendall.py", "big-body", ("sendall()",)),
    ("framing", "client", "framing_client_print.py", None, "client", ("print()",)),
    ("udp", "server", "udp_recvfrom_1024.py", None, "truncation", ("recvfrom(1024)",)),
    ("sticky", "client", "sticky_client_prints_length.py", None, "client-exact-replies", ("4-byte length",)),
    ("ftp", "server", "ftp_path_join_server.py", None, "isolation", ("os.path.join",)),
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

ALL = STUDENTS + NEGATIVE + MISTAKES


@pytest.fixture(scope="module")
def reports(request, docker_client, lab_image, topology):
    from socketlab.runner import Checker
    from tests.conftest import RUN_ID
    checker = Checker(docker_client, topology, say=lambda _: None, project=RUN_ID)

    def grade(control: Control):
        # a negative control only needs the scenario it must fail; a positive one, every scenario
        only = [control.must_fail] if control.must_fail else None
        try:
            return checker.check(control.lesson, **{control.role: control.path}, entry=control.entry, only=only)
        except Exception as exc:    # one broken check must not hide the others' results
            return exc

    # grade only the controls whose tests were selected (`-k ftp` grades the ftp controls only)
    wanted = {item.callspec.params["control"].id for item in request.session.items
              if hasattr(item, "callspec") and "control" in item.callspec.params}
    chosen = [c for c in ALL if c.id in wanted]
    with ThreadPoolExecutor(PARALLEL) as pool:
        return dict(zip([c.id for c in chosen], pool.map(grade, chosen)))


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


def test_every_gradable_role_has_three_independent_positive_controls(topology):
    from socketlab.contract import contract_of
    counts = {(c.lesson, c.role): 0 for c in STUDENTS}
    for c in STUDENTS:
        counts[c.lesson, c.role] += 1
    for lesson in topology.lessons:
        for rc in contract_of(lesson).roles:
            wanted = 1 if (lesson, rc.role) == ("ftp", "server") else 3   # a whole FTP server is a big program
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
