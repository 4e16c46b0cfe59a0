"""What each lesson must show: one module per lesson, each with a ``SCENARIOS`` list."""
from __future__ import annotations

import importlib

from ..scenario import Scenario


def for_lesson(lesson: str) -> list[Scenario]:
    module = importlib.import_module(f"{__name__}.{lesson}")
    return list(module.SCENARIOS)
