"""Every guide (services/<lesson>/README.md), typed as a student would: each ``session`` block, in
order, into the real client in a pseudo-terminal, against the lesson's real containers."""
import pytest

from framing.server import MODES as FRAMING_MODES
from tests.guides.guide import GuideRun, docker_available, guide, parse

pytestmark = pytest.mark.integration

# what each lesson's interactive client shows when it waits for the next line
PROMPTS = {
    "basic": ("> ",),
    "framing": tuple(f"[{mode}] >> " for mode in FRAMING_MODES),     # the client shows its sending mode
    "ftp": ("ftp alice:/> ", "ftp alice:/docs> ", "ftp bob:/> ", "password for alice: ", "password for bob: "),
    "loops": (">>> ",),
    "socketserver": ("[+_+] ",),
    "sticky": (">> ",),
    "udp": (">> ",),
}


@pytest.fixture(scope="module", params=list(PROMPTS))
def guide_run(request, tmp_path_factory):
    """The lesson in its own project, up once for its guide, down at the end."""
    if not docker_available():
        pytest.skip("needs the docker command-line tool (lab.py client uses docker exec)")
    work = tmp_path_factory.mktemp(f"work-{request.param}")
    work.chmod(0o777)                      # the lesson containers run as uid 1000
    run = GuideRun(request.param, work)
    run.up()
    yield run
    run.down()


@pytest.mark.parametrize("lesson", list(PROMPTS))
def test_the_guide_has_typed_steps(lesson):
    assert parse(guide(lesson), PROMPTS[lesson]), "the guide has no session blocks"


def test_every_step_of_the_guide_works_as_typed(guide_run):
    typed = guide_run.play(parse(guide(guide_run.lesson), PROMPTS[guide_run.lesson]))
    print(f"{guide_run.lesson}: {typed} steps typed")
    assert typed > 0


def test_the_demo_still_passes_after_the_guide(guide_run):
    """A student who followed the guide has left files, users and connections behind: the demo
    prepares its own state and still passes on the same lab."""
    if not guide_run.typed:
        pytest.skip("the guide's steps did not run")
    guide_run.close_sessions()
    done = guide_run.lab("demo", guide_run.lesson, timeout=600)
    assert done.returncode == 0, f"demo {guide_run.lesson} after the guide:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
