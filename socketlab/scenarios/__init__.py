"""What each lesson must show: one module per lesson, each with a ``SCENARIOS`` list and the
``CONTRACT`` a student's own program is graded against (socketlab.contract)."""
from __future__ import annotations

import importlib
from types import ModuleType

from ..scenario import Scenario


def module_of(lesson: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{lesson}")


def for_lesson(lesson: str) -> list[Scenario]:
    return list(module_of(lesson).SCENARIOS)
