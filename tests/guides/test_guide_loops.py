"""services/loops/README.md, typed as a student would: every ``session`` block, in order."""
import pytest

from tests.guides.guide import guide, parse

pytestmark = pytest.mark.integration
LESSON = "loops"
PROMPTS = (">>> ",)


def test_the_guide_has_typed_steps():
    assert parse(guide(LESSON), PROMPTS), "the guide has no session blocks"


def test_every_step_of_the_guide_works_as_typed(guide_run):
    typed = guide_run.play(parse(guide(LESSON), PROMPTS))
    print(f"{LESSON}: {typed} steps typed")
    assert typed > 0
