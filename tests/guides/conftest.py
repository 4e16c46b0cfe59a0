"""Each guide test module runs its lesson in its own project, up once, down at the end."""
from __future__ import annotations

import pytest

from tests.guides.guide import GuideRun, docker_available


@pytest.fixture(scope="module")
def guide_run(request, tmp_path_factory):
    if not docker_available():
        pytest.skip("needs the docker command-line tool (lab.py client uses docker exec)")
    work = tmp_path_factory.mktemp(f"work-{request.module.LESSON}")
    work.chmod(0o777)                      # the lesson containers run as uid 1000
    run = GuideRun(request.module.LESSON, work)
    run.up()
    yield run
    run.down()
