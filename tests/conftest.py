"""Shared fixtures: the engine, the lab images (built once, never removed), lesson deployments.

Ryuk (testcontainers' reaper) cannot be pulled on a machine without a registry, so it is off and
clean-up is ours: every container and network carries ``socketlab.owner=pytest`` plus this run's
unique ``socketlab.project``, and is removed by label at the end of the session.
"""
from __future__ import annotations

import os

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

RUN_ID = f"pytest-{uuid.uuid4().hex[:8]}"
OWNER_LABELS = {"socketlab.owner": "pytest", "socketlab.project": RUN_ID}


@pytest.fixture(scope="session")
def docker_client():
    from testcontainers.core.config import testcontainers_config

    from socketlab.engine import connect
    testcontainers_config.ryuk_disabled = True
    client = connect()
    yield client
    sweep(client)


def sweep(client) -> None:
    """Remove everything this run created (by label only)."""
    selector = f"socketlab.project={RUN_ID}"
    for c in client.containers.list(all=True, filters={"label": selector}):
        c.remove(force=True, v=True)
    for n in client.networks.list(filters={"label": selector}):
        try:
            n.remove()
        except Exception:
            pass


@pytest.fixture(scope="session")
def lab_image(docker_client) -> str:
    """The lessons image, built once per machine and shared (never removed by tests)."""
    from socketlab.images import ImageBuilder
    return ImageBuilder(docker_client).ensure_all()


@pytest.fixture(scope="session")
def topology():
    from socketlab.topology import load
    return load()


@pytest.fixture(scope="session")
def lesson_lab(docker_client, lab_image, topology):
    """A factory: ``lesson_lab("basic")`` starts the lesson's services as compose.yaml describes
    them, each in its own container on a fresh network, reachable by service name."""
    from tests.lab_containers import LessonDeployment
    deployments: list[LessonDeployment] = []

    def start(lesson_id: str, **kwargs) -> LessonDeployment:
        deployment = LessonDeployment(topology.lesson(lesson_id), RUN_ID, OWNER_LABELS, **kwargs)
        deployments.append(deployment)
        return deployment.start()

    yield start
    for d in deployments:
        d.stop()


@pytest.fixture(scope="module")
def module_lab(request, lesson_lab) -> Iterator:
    """The lesson named by the module's ``LESSON`` constant, running for the whole module."""
    deployment = lesson_lab(request.module.LESSON)
    yield deployment.run
    deployment.stop()


def pytest_collection_modifyitems(items) -> None:
    """The longest file first: on two workers (`lab.py test`) it starts at once, beside the rest."""
    items.sort(key=lambda item: item.path.name != "test_grading.py")
