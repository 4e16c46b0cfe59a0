"""Start a lesson with testcontainers, exactly as compose.yaml describes it.

The same ``ServiceSpec.engine_kwargs()`` that ``lab.py up`` uses is handed to testcontainers, so
the suite tests the topology students get, on a network of its own (random name, engine-chosen
subnet) so it never collides with a running lab or another test run.
"""
from __future__ import annotations

import fcntl

from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import ContainerStatusWaitStrategy, HealthcheckWaitStrategy

from socketlab.docker_nodes import ContainerNode
from socketlab.images import parents_lock
from socketlab.runner import lesson_run
from socketlab.scenario import LessonRun
from socketlab.topology import Lesson, ServiceSpec


def service_container(spec: ServiceSpec, network: Network, name: str, labels: dict[str, str],
                      image: str | None = None, command: list[str] | None = None) -> DockerContainer:
    kwargs = spec.engine_kwargs()
    env = kwargs.pop("environment", {})
    tmpfs = kwargs.pop("tmpfs", {})
    compose_image, compose_command = kwargs.pop("image"), kwargs.pop("command", None)
    image, command = image or compose_image, command or compose_command   # an override wins
    container = (DockerContainer(image, command=command, name=name)
                 .with_network(network).with_network_aliases(spec.name)
                 .with_kwargs(labels={**labels, "socketlab.lesson": spec.lesson, "socketlab.role": spec.role},
                              **kwargs))
    for key, value in env.items():
        container.with_env(key, value)
    container.tmpfs.update(tmpfs)
    strategy = HealthcheckWaitStrategy() if spec.healthcheck else ContainerStatusWaitStrategy()
    return container.waiting_for(strategy.with_startup_timeout(60))


class LessonDeployment:
    def __init__(self, lesson: Lesson, run_id: str, labels: dict[str, str], image: str | None = None,
                 server_command: list[str] | None = None) -> None:
        self.lesson = lesson
        self.run_id = run_id
        self.labels = labels
        self.image = image
        self.server_command = server_command
        self.network = Network(docker_network_kw={"labels": labels})
        self.network.name = f"{run_id}-{lesson.id}-{id(self) % 10000}"
        self.containers: dict[str, DockerContainer] = {}
        self.run: LessonRun | None = None

    def start(self) -> LessonDeployment:
        self.network.create()
        try:
            # the containers are created from the lessons image's tag: while a test has that tag
            # removed (tests/integration/test_classroom.py, bundle/load), wait for it to come back
            with parents_lock(fcntl.LOCK_SH):
                for spec in self.lesson.services:
                    command = self.server_command if spec.role == "server" else None
                    container = service_container(spec, self.network, f"{self.network.name}-{spec.role}",
                                                  self.labels, self.image, command)
                    container.start()
                    self.containers[spec.role] = container
        except BaseException:
            self.stop()
            raise
        nodes = {role: ContainerNode(c.get_wrapped_container()) for role, c in self.containers.items()}
        self.run = lesson_run(self.lesson, nodes)
        return self

    def stop(self) -> None:
        for container in self.containers.values():
            try:
                container.stop()
            except Exception:
                pass
        self.containers.clear()
        try:
            self.network.remove()
        except Exception:
            pass
