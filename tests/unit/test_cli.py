"""The CLI's argument errors, without an engine."""
import subprocess
import sys

import pytest

from socketlab.cli import build_parser, main


def test_unknown_command_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["frobnicate"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_down_needs_a_lesson_or_all(capsys):
    assert main(["down"]) == 2
    err = capsys.readouterr().err
    assert "say which lesson" in err and "--all" in err


def test_up_unknown_lesson_exits_nonzero_naming_the_lessons(capsys):
    assert main(["up", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "unknown lesson 'nosuch'" in err
    for lesson in ("basic", "sticky", "framing", "udp", "ftp"):
        assert lesson in err


def test_list_json_works_and_names_seed_sections(capsys):
    assert main(["list", "--json"]) == 0
    import json
    items = json.loads(capsys.readouterr().out)
    assert {i["id"] for i in items} >= {"basic", "sticky"}
    assert all(i["seed"] for i in items)


def test_lab_py_runs_through_its_own_environment():
    out = subprocess.run([sys.executable, "lab.py", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "socketlab" in out.stdout
