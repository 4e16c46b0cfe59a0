"""Output for humans: calm, aligned tables; JSON for machines."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    rows = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def say(message: str) -> None:
    """Progress and notes go to stderr, so stdout stays clean for --json."""
    print(message, file=sys.stderr, flush=True)


def emit_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))
