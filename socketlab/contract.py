"""The grading contract of a lesson: what a student's own server or client must do to pass `check`.

One source for two readers. Each lesson's scenario module declares its ``CONTRACT`` beside the
scenarios that enforce it; ``render()`` turns it into the "Write your own" section of the lesson's
guide, between two marker comments, and a unit test fails when the guide and the contract drift
apart (``python -m socketlab.contract --write`` puts the rendered text back into the guides).

Nothing outside the contract may fail a grade: a scenario that checks something the lesson does
not teach is declared ``advisory`` and is reported only.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .scenario import Scenario

VERSION = 5          # bump when any lesson's contract changes what it requires
BEGIN = "<!-- contract:begin (generated from socketlab/scenarios/{lesson}.py; edit it there) -->"
END = "<!-- contract:end -->"


@dataclass(frozen=True)
class RoleContract:
    """What one program (``server`` or ``client``) must do."""

    role: str
    command: str                     # how check starts it, e.g. "python3 my_server.py --port 20000"
    duties: tuple[str, ...]          # each one sentence, in the order a program meets them
    notes: tuple[str, ...] = ()      # what it may do freely (things check never looks at)


@dataclass(frozen=True)
class Contract:
    lesson: str
    roles: tuple[RoleContract, ...]
    controls: tuple[str, ...] = field(default=())   # sentences about the negative controls

    def role(self, role: str) -> RoleContract | None:
        return next((r for r in self.roles if r.role == role), None)

    def render(self, scenarios: list[Scenario]) -> str:
        lines = [BEGIN.format(lesson=self.lesson)]
        for rc in self.roles:
            graded = [s for s in scenarios if rc.role in s.roles]
            required = [s.name for s in graded if not s.advisory]
            advisory = [s.name for s in graded if s.advisory]
            lines += [f"**Your {rc.role}** — `python lab.py check {self.lesson} --{rc.role} my_{rc.role}.py` "
                      f"starts it as `{rc.command}`.", "", "It must:"]
            lines += [f"- {duty}" for duty in rc.duties]
            if rc.notes:
                lines += ["", "It may:"]
                lines += [f"- {note}" for note in rc.notes]
            lines += ["", f"Graded by: {', '.join(f'`{n}`' for n in required)}."]
            if advisory:
                lines.append(f"Reported, never failing the grade (the lesson shows it, the contract does not "
                             f"ask it): {', '.join(f'`{n}`' for n in advisory)}.")
            lines.append("")
        lines += list(self.controls)
        if self.controls:
            lines.append("")
        lines.append(f"(Contract version {VERSION}. A folder works too: `--{self.roles[0].role} mydir/ "
                     f"--entry {self.roles[0].role}.py`.)")
        lines.append(END)
        return "\n".join(lines)


def contract_of(lesson: str) -> Contract:
    from .scenarios import module_of
    return module_of(lesson).CONTRACT


def rendered(lesson: str) -> str:
    from .scenarios import for_lesson
    return contract_of(lesson).render(for_lesson(lesson))


_BLOCK = re.compile(r"<!-- contract:begin.*?<!-- contract:end -->", re.S)


def guide_block(guide_text: str) -> str | None:
    found = _BLOCK.search(guide_text)
    return found.group(0) if found else None


def write_guide(path: Path, lesson: str) -> bool:
    """Put the rendered contract into the guide; True when the file changed."""
    text = path.read_text(encoding="utf-8")
    new = _BLOCK.sub(lambda _: rendered(lesson), text, count=1)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    from .topology import load
    parser = argparse.ArgumentParser(description="print or write the lessons' grading contracts")
    parser.add_argument("lesson", nargs="*")
    parser.add_argument("--write", action="store_true", help="update the guides' contract sections")
    args = parser.parse_args(argv)
    topology = load()
    for lesson in args.lesson or list(topology.lessons):
        if args.write:
            changed = write_guide(topology.lesson(lesson).guide, lesson)
            print(f"{lesson}: {'updated' if changed else 'unchanged'}")
        else:
            print(rendered(lesson))
    return 0


if __name__ == "__main__":
    sys.exit(main())
