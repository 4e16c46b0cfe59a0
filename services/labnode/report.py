"""The one output format every probe and node tool shares: observations, then one RESULT line.

    listening on 0.0.0.0:20000            <- lines for people
    RESULT {"ok": true, "observed": {...}} <- one line for the lab (socketlab.scenario.ProbeResult)
"""
from __future__ import annotations

import json

RESULT_PREFIX = "RESULT "


def say(line: str) -> None:
    print(line, flush=True)


def emit_result(ok: bool, observed: dict) -> int:
    """The one machine-readable line every probe ends with; returns the exit status."""
    print(RESULT_PREFIX + json.dumps({"ok": bool(ok), "observed": observed}, sort_keys=True), flush=True)
    return 0 if ok else 1


def result(ok: bool, **observed: object) -> bool:
    """``emit_result`` for probes that return a bool and pass facts as keywords."""
    emit_result(ok, observed)
    return ok
