"""`lab.py check LESSON --server A.py B.py ...` (a batch): its arguments, help and summary rows, without an engine."""
import pytest

from socketlab.cli import batch_rows, build_parser, main
from socketlab.runner import LessonReport, ScenarioReport


def test_several_programs_of_one_role_are_collected_in_order():
    args = build_parser().parse_args(["check", "basic", "--server", "a.py", "b.py", "--server", "c/",
                                      "--entry", "x.py"])
    assert args.server == ["a.py", "b.py", "c/"] and args.client is None and args.entry == "x.py"
    assert build_parser().parse_args(["check", "basic", "--server", "a.py"]).server == ["a.py"]


def test_a_batch_of_servers_and_clients_at_once_is_an_argument_error(capsys):
    assert main(["check", "framing", "--server", "a.py", "b.py", "--client", "c.py"]) == 2
    err = capsys.readouterr().err
    assert "a batch grades one role" in err and "fix:" in err


def test_help_says_what_the_exit_codes_json_and_timeout_mean(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 every program passed; 1 a program (any program of a batch) failed" in text
    assert "a batch gives a list of those objects" in text
    assert "wall-clock limit per program" in text


def _report(*verdicts: tuple[str, bool, bool]) -> LessonReport:
    return LessonReport("basic", "/x/a.py", "reference",
                        [ScenarioReport(name, "", passed, "", 0.0, required=required)
                         for name, passed, required in verdicts])


def test_the_summary_row_counts_graded_scenarios_and_names_the_failing_ones():
    good = _report(("accept-new-socket", True, True), ("bytes-not-str", True, True), ("advice", False, False))
    bad = _report(("accept-new-socket", False, True), ("bytes-not-str", True, True), ("loopback", False, True))
    assert batch_rows(["a.py", "b.py"], [good, bad]) == [
        ("a.py", "PASSED", "2/2", "-"),
        ("b.py", "FAILED", "1/3", "accept-new-socket, loopback")]
