"""Each guide's "Write your own" section is the contract `check` enforces: generated from the
scenario modules, and compared here so the two cannot drift apart."""
import pytest

from socketlab.contract import VERSION, contract_of, guide_block, rendered
from socketlab.runner import LessonReport, ScenarioReport, select
from socketlab.scenarios import for_lesson
from socketlab.topology import load

LESSONS = list(load().lessons)


@pytest.mark.parametrize("lesson", LESSONS)
def test_the_guide_shows_the_contract_check_enforces(lesson):
    guide = load().lesson(lesson).guide.read_text(encoding="utf-8")
    assert guide_block(guide) == rendered(lesson), (
        f"services/{lesson}/README.md is out of date: run `python -m socketlab.contract --write`")


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_graded_role_has_a_contract_and_required_scenarios(lesson):
    contract = contract_of(lesson)
    scenarios = for_lesson(lesson)
    for rc in contract.roles:
        graded = select(scenarios, rc.role == "server", rc.role == "client")
        assert [s for s in graded if not s.advisory], f"{lesson} {rc.role}: nothing required"
        assert "--port" in rc.command
    roles_graded = {r for s in scenarios for r in s.roles}
    assert roles_graded <= {rc.role for rc in contract.roles}, "a scenario grades a role without a contract"


def test_advisory_scenarios_never_fail_the_grade():
    report = LessonReport("x", "s.py", "reference", [
        ScenarioReport("required", "", True, "ok", 0.1),
        ScenarioReport("advice", "", False, "not taught", 0.1, required=False, fix="do it"),
    ])
    assert report.passed
    data = report.as_dict()
    assert data["contract_version"] == VERSION
    assert [s["verdict"] for s in data["scenarios"]] == ["pass", "advice"]
    assert data["scenarios"][1]["explanation"] == "not taught. Fix: do it"
    assert any("advice (not graded)" in line for line in report.lines())


def test_a_failure_is_never_reported_as_passed():
    report = LessonReport("x", "s.py", "reference", [ScenarioReport("a", "", False, "no reply", 0.1, fix="reply")])
    assert not report.passed
    assert report.lines()[-1].startswith("x: FAILED (0/1")
