"""Connecting to the Docker engine, with errors that say how to fix them."""
from __future__ import annotations

import docker
import docker.errors

from .errors import LabError

LABEL_LESSON = "socketlab.lesson"
LABEL_ROLE = "socketlab.role"
LABEL_VERSION = "socketlab.version"
LABEL_PROJECT = "socketlab.project"     # which lab instance (the student's, a check run, a test run)
LABEL_CONFIG = "socketlab.config"       # fingerprint of the service definition + image
LABEL_INPUTS = "socketlab.inputs"       # on images: hash of what they were built from
LABEL_OWNER = "socketlab.owner"         # lab | check | pytest


def connect(timeout: int = 600) -> docker.DockerClient:
    """A client for the local engine; raises LabError when it is not there."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        detail = str(exc).split("(")[0].strip()
        raise LabError(f"the Docker engine is not answering ({detail})",
                       "start it (sudo systemctl start docker, or start Docker Desktop) and check that "
                       "`docker info` works for this user") from None
