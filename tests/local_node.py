"""``scenario.Node`` on this machine, for unit tests that run real scenarios over loopback.

Both "machines" of a lesson share the loopback interface; background processes keep their pid and
log in /tmp/<name>.pid|.log, as on a container or a lab machine.
"""
from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from socketlab.scenario import RunResult, ShellNode

SERVICES = Path(__file__).resolve().parents[1] / "services"


class LocalNode(ShellNode):
    def __init__(self, name: str = "local") -> None:
        self.name = name

    @staticmethod
    def _env() -> dict:
        return {**os.environ, "PYTHONPATH": str(SERVICES), "PYTHONUNBUFFERED": "1"}

    def run(self, argv: Sequence[str], *, timeout: float = 30) -> RunResult:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=self._env())
        return RunResult(done.returncode, done.stdout, done.stderr)

    def read_file(self, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError:
            return b""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
