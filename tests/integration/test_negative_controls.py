"""Every lesson's check must reject a seed-style implementation (a negative control), for the
reason the lesson is about — proof that the checks detect the bug, not just that they run."""
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
NEGATIVE = Path(__file__).resolve().parents[1] / "negative"

# (lesson, role under test, negative control, a scenario it must fail)
CONTROLS = [
    ("basic", "server", "basic_seed_server.py", "accept-new-socket"),
    ("framing", "server", "framing_seed_server.py", "bad-input"),
    ("framing", "client", "framing_seed_client.py", "client"),
    ("loops", "server", "loops_seed_server.py", "client-gone"),
    ("socketserver", "server", "socketserver_seed_server.py", "restart-same-port"),
    ("sticky", "client", "sticky_seed_client.py", "client-exact-replies"),
    ("udp", "client", "udp_seed_client.py", "reliable-delivery"),
    ("udp", "server", "udp_seed_server.py", "truncation"),
    ("ftp", "server", "ftp_seed_server.py", "isolation"),
]


@pytest.fixture(scope="module")
def checker(docker_client, lab_image, topology):
    from socketlab.runner import Checker
    from tests.conftest import RUN_ID
    return Checker(docker_client, topology, say=lambda _: None, project=RUN_ID)


@pytest.mark.parametrize("lesson,role,control,must_fail", CONTROLS, ids=[f"{c[0]}-{c[2]}" for c in CONTROLS])
def test_check_rejects_the_seed_style_program(checker, lesson, role, control, must_fail):
    path = NEGATIVE / control
    report = checker.check(lesson, **{role: path})
    failed = {s.scenario for s in report.scenarios if not s.passed}
    assert not report.passed
    assert must_fail in failed, [(s.scenario, s.passed, s.summary) for s in report.scenarios]
