"""``scenario.Node`` for a container: how scenarios run commands on lesson containers."""
from __future__ import annotations

from collections.abc import Sequence

from docker.models.containers import Container

from .scenario import RunResult, ShellNode


class ContainerNode(ShellNode):
    def __init__(self, container: Container, name: str | None = None) -> None:
        self.container = container
        self.name = name or container.name

    def run(self, argv: Sequence[str], *, timeout: float = 30) -> RunResult:
        # exec has no timeout of its own; coreutils' timeout(1) bounds it inside the container.
        argv = ["timeout", "--kill-after=2", str(int(timeout) or 1), *argv]
        result = self.container.exec_run(argv, demux=True)
        out, err = result.output if result.output else (b"", b"")
        return RunResult(result.exit_code if result.exit_code is not None else -1,
                         (out or b"").decode("utf-8", "replace"), (err or b"").decode("utf-8", "replace"))

    def read_file(self, path: str) -> bytes:
        result = self.container.exec_run(["cat", path], demux=True)
        out, _ = result.output if result.output else (b"", b"")
        return out or b""
