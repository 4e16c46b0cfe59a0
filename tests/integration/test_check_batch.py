"""`lab.py check LESSON --server A.py B.py ...` end to end: a teacher grading several programs in one run.

Each program's report as a single check prints it, headed by its path; then a summary table; exit 1
when any program failed; `--json` a list of the single-check objects; SIGTERM removes everything.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import RUN_ID

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
GOOD = "tests/students/basic/server_selectors.py"
SEED = "tests/negative/basic_seed_server.py"          # binds 127.0.0.1: fails accept-new-socket


def lab(*args: str, project: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SOCKETLAB_PROJECT=project)
    env.pop("SOCKETLAB_SUBNET", None)
    return subprocess.run([sys.executable, "lab.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def leftovers(docker_client, project: str) -> list[str]:
    """Containers and networks of this project's throw-away check instances."""
    prefix = f"{project}-check-"
    found = [c.name for c in docker_client.containers.list(all=True, filters={"label": "socketlab.owner=check"})
             if c.labels.get("socketlab.project", "").startswith(prefix)]
    return found + [n.name for n in docker_client.networks.list(filters={"label": "socketlab.owner=check"})
                    if n.name.startswith(prefix)]


def test_a_batch_reports_each_program_then_a_summary_and_fails_if_one_failed(docker_client, lab_image):
    project = f"{RUN_ID}-batch"
    result = lab("check", "basic", "--server", GOOD, SEED, "--server", "tests/no_such_server.py", project=project)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    heads = [out.index(f"── {i}/3  {path}") for i, path in enumerate((GOOD, SEED, "tests/no_such_server.py"), 1)]
    assert heads == sorted(heads), out
    good, seed, missing = out[heads[0]:heads[1]], out[heads[1]:heads[2]], out[heads[2]:]
    assert "basic: PASSED (2/2 graded scenarios)" in good
    assert "accept-new-socket — FAIL" in seed and "basic: FAILED" in seed
    assert "tests/no_such_server.py does not exist" in missing          # reported for that program; the batch went on
    summary = out[out.index("PROGRAM "):].splitlines()
    assert summary[1].split() == [GOOD, "PASSED", "2/2", "-"]
    assert summary[2].split()[:3] == [SEED, "FAILED", "0/2"] and "accept-new-socket" in summary[2]
    assert summary[3].split() == ["tests/no_such_server.py", "FAILED", "0/1", "start"]
    assert "1 passed, 2 failed" in out
    assert leftovers(docker_client, project) == []


def test_a_batch_in_json_is_a_list_of_single_check_objects(docker_client, lab_image):
    project = f"{RUN_ID}-batch-json"
    single = json.loads(lab("check", "basic", "--server", GOOD, "--json", project=project).stdout)
    result = lab("check", "basic", "--server", GOOD, SEED, "--json", project=project)
    assert result.returncode == 1, result.stderr
    batch = json.loads(result.stdout)
    assert isinstance(single, dict) and [set(r) for r in batch] == [set(single)] * 2
    assert [r["passed"] for r in batch] == [True, False]
    assert [r["server"] for r in batch] == [str(ROOT / GOOD), str(ROOT / SEED)]
    def verdicts(report: dict) -> list[tuple]:
        return [(s["scenario"], s["verdict"], s["shows"], s["required"]) for s in report["scenarios"]]

    assert verdicts(batch[0]) == verdicts(single)      # the same program, graded the same way in a batch
    ok = lab("check", "basic", "--server", GOOD, "tests/students/basic/server_minimal_reply.py", "--json",
             project=project)
    assert ok.returncode == 0 and all(r["passed"] for r in json.loads(ok.stdout)), ok.stdout


def test_sigterm_in_the_middle_of_a_batch_removes_its_instance(docker_client, lab_image):
    project = f"{RUN_ID}-batch-term"
    env = dict(os.environ, SOCKETLAB_PROJECT=project)
    env.pop("SOCKETLAB_SUBNET", None)
    programs = [f"tests/students/loops/{name}" for name in ("server_iterative.py", "server_selectors.py",
                                                             "server_threaded.py")]
    proc = subprocess.Popen([sys.executable, "lab.py", "check", "loops", "--server", *programs], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not leftovers(docker_client, project) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert leftovers(docker_client, project), "the batch never started its lesson instance"
        time.sleep(2)                      # in the middle of a program's scenarios
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err, err
    assert leftovers(docker_client, project) == []


def test_timeout_is_per_program_and_the_batch_goes_on_after_one_ran_out(docker_client, lab_image):
    project = f"{RUN_ID}-batch-deadline"
    # the first program never answers: its many-clients scenario alone waits 60 s; the second is correct
    result = lab("check", "loops", "--server", "tests/isolation/loops_never_answers.py",
                 "tests/students/loops/server_iterative.py", "--timeout", "25", "--json", project=project)
    assert result.returncode == 1, result.stderr
    hung, good = json.loads(result.stdout)
    deadline = [s for s in hung["scenarios"] if s["scenario"] == "deadline"]
    assert deadline and not deadline[0]["passed"] and "25 s wall-clock limit" in deadline[0]["summary"]
    assert good["passed"], [(s["scenario"], s["summary"]) for s in good["scenarios"] if not s["passed"]]
    assert "stopped: the check ran out of its 25 s wall-clock limit" in result.stderr
    assert "Traceback" not in result.stderr
    assert leftovers(docker_client, project) == []
