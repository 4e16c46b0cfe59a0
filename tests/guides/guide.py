"""Replay a lesson guide's ``session`` blocks in a pseudo-terminal, against real containers.

A guide shows each "try it" step as a fenced block whose info string is ``session NAME``::

    ```session a
    $ python lab.py client loops            <- starts a program (lab.py, for session NAME)
    connected: me 10.77.0.21:… -> server …  <- output the program must print (in this order)
    >>> hello                               <- typed: the line starts with one of the lesson's prompts
    olleh
    ```

Output lines are literal text, except ``…`` (anything on that line) and the lab's fixed addresses
``10.77.0.x``, which match any IPv4 address (a test runs in its own project and subnet). ``^C`` on a
typed line sends Ctrl-C, ``^D`` Ctrl-D, ``⏎`` an empty line. Text after two spaces and ``#``
on a typed line is a comment. Blocks with
the same NAME continue the same program, so two clients can take turns. The guide is the test:
what a student reads is what this types.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parents[2]
EXPECT_TIMEOUT = 150   # a traced scenario on a busy two-core machine can take over a minute
SHELL_PROMPTS = ("client$ ", "server$ ", "relay$ ")
IP = re.compile(r"10\.77\.0\.\d+")
BLOCK = re.compile(r"^([ \t]*)```session[ \t]+(\S+)[^\n]*\n(.*?)^[ \t]*```", re.M | re.S)


@dataclass
class Step:
    kind: str                # "start", "type", "expect"
    text: str


@dataclass
class Block:
    session: str
    steps: list[Step] = field(default_factory=list)


def line_pattern(line: str) -> str:
    """A guide's output line as a regex: literal but for … and the lab's addresses."""
    parts = []
    for i, piece in enumerate(line.split("…")):
        if i:
            parts.append(".*?")
        pos = 0
        for m in IP.finditer(piece):
            parts.append(re.escape(piece[pos:m.start()]))
            parts.append(r"\d+\.\d+\.\d+\.\d+")
            pos = m.end()
        parts.append(re.escape(piece[pos:]))
    return "".join(parts)


def parse(guide: Path, prompts: tuple[str, ...]) -> list[Block]:
    """Every ``session`` block of the guide, in order."""
    blocks = []
    for indent, name, body in BLOCK.findall(guide.read_text(encoding="utf-8")):
        block = Block(name)
        for raw in body.splitlines():   # a block inside a list item is indented: take that off
            line = raw[len(indent):] if raw.startswith(indent) else raw.lstrip()
            line = line.rstrip()
            if not line.strip() or line.strip() == "...":
                continue
            if line.startswith("$ "):
                block.steps.append(Step("start", line[2:].split("  #")[0].strip()))
                continue
            prompt = next((p for p in (*prompts, *SHELL_PROMPTS) if line.startswith(p)), None)
            if prompt is not None:
                block.steps.append(Step("prompt", prompt))
                block.steps.append(Step("type", line[len(prompt):].split("  #")[0].rstrip()))
            else:
                block.steps.append(Step("expect", line.strip()))
        blocks.append(block)
    return blocks


class GuideRun:
    """One lesson in its own project: ``up`` at the start, ``down`` at the end, and the sessions."""

    def __init__(self, lesson: str, work: Path) -> None:
        self.lesson = lesson
        self.env = {**os.environ, "SOCKETLAB_PROJECT": f"guide-{uuid.uuid4().hex[:6]}", "SOCKETLAB_SUBNET": "",
                    "SOCKETLAB_WORK": str(work), "TERM": "dumb", "COLUMNS": "200", "LINES": "50"}
        self.sessions: dict[str, pexpect.spawn] = {}
        self.typed = 0
        self.transcript = Path(work) / "transcript.txt"

    def lab(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "lab.py", *args], cwd=ROOT, env=self.env, text=True,
                              capture_output=True, timeout=timeout)

    def up(self) -> None:
        done = self.lab("up", self.lesson)
        assert done.returncode == 0, done.stdout + done.stderr

    def close_sessions(self) -> None:
        """End every program the guide started as a closed terminal would: SIGHUP to lab.py, which
        then removes what it started (a trace's throw-away instance); forced only if it hangs."""
        for child in self.sessions.values():
            if child.isalive():
                child.kill(signal.SIGHUP)
                try:
                    child.expect(pexpect.EOF, timeout=120)
                except pexpect.TIMEOUT:
                    pass
            child.close(force=True)
        self.sessions.clear()

    def down(self) -> None:
        self.close_sessions()
        self.lab("down", self.lesson)
        self.sweep()

    def sweep(self) -> None:
        """Whatever is left of this run's projects (the lesson, and any trace or check it started,
        named after it): removed by label, so an interrupted step leaves nothing on the engine."""
        import docker
        client = docker.from_env()
        mine = lambda labels: labels.get("socketlab.project", "").startswith(self.env["SOCKETLAB_PROJECT"])  # noqa: E731
        # sparse: the other test worker's containers may vanish between listing and inspecting
        for c in client.containers.list(all=True, sparse=True, filters={"label": "socketlab.project"}):
            if mine(c.attrs.get("Labels") or {}):
                try:
                    c.remove(force=True, v=True)
                except docker.errors.NotFound:
                    pass
        for n in client.networks.list(filters={"label": "socketlab.project"}):
            if mine(n.attrs.get("Labels") or {}):
                try:
                    n.remove()
                except docker.errors.APIError:
                    pass

    def spawn(self, command: str) -> pexpect.spawn:
        argv = command.split()
        assert argv[:2] == ["python", "lab.py"], f"a session starts with 'python lab.py ...': {command}"
        child = pexpect.spawn(sys.executable, ["lab.py", *argv[2:]], cwd=str(ROOT), env=self.env,
                              encoding="utf-8", codec_errors="replace", timeout=EXPECT_TIMEOUT,
                              dimensions=(50, 200))
        child.logfile_read = self.transcript.open("a", encoding="utf-8")
        return child

    def play(self, blocks: list[Block]) -> int:
        """Type every block's input, assert every output line; returns the number of typed steps."""
        for block in blocks:
            child = self.sessions.get(block.session)
            for step in block.steps:
                if step.kind == "start":
                    child = self.sessions[block.session] = self.spawn(step.text)
                    self.typed += 1
                elif step.kind == "prompt":
                    self._expect(child, r"\$ " if step.text in SHELL_PROMPTS else re.escape(step.text), step)
                elif step.kind == "type":
                    if step.text == "^C":
                        child.sendcontrol("c")
                    elif step.text == "^D":
                        child.sendeof()
                    elif step.text == "⏎":
                        child.sendline("")
                    else:
                        child.sendline(step.text)
                    self.typed += 1
                else:
                    self._expect(child, line_pattern(step.text), step)
        return self.typed

    def _expect(self, child: pexpect.spawn, pattern: str, step: Step) -> None:
        try:
            child.expect(pattern)
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            raise AssertionError(f"the guide promised {step.text!r}; the program printed instead:\n"
                                 f"{child.before[-3000:]}") from exc

    def wait_end(self, session: str) -> int:
        child = self.sessions[session]
        child.expect(pexpect.EOF)
        child.close()
        return child.exitstatus


def guide(lesson: str) -> Path:
    return ROOT / "services" / lesson / "README.md"


def docker_available() -> bool:
    return shutil.which("docker") is not None
