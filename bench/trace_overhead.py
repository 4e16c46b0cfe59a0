"""What the socket-call log costs: per call with tracing on, and nothing with it off.

    python bench/trace_overhead.py [--calls 20000]

The peer is the same loop in the same run with tracing off: one byte through a socketpair,
sendall() then recv(), so each round is two socket calls. Rounds alternate off / on / off / on
and the best of each is kept, so a busy machine (the CI box has 2 shared cores) hurts both
sides alike. Off means the methods of socket.socket are the C ones (checked, not assumed), and
start-up cost is the import time of services/sitecustomize.py (-X importtime).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services"))

import labtrace  # noqa: E402


def loop(calls: int) -> float:
    """Seconds for ``calls`` socket calls (calls/2 rounds of sendall + recv)."""
    a, b = socket.socketpair()
    with a, b:
        started = time.perf_counter()
        for _ in range(calls // 2):
            a.sendall(b"x")
            b.recv(1)
        return time.perf_counter() - started


def sitecustomize_import(runs: int = 11) -> tuple[float, float]:
    """Best import time (µs, from ``-X importtime``) of the sitecustomize Python loads at start-up:
    without services/ on the path (the system's own, if any) and with it (ours, tracing off).
    Whole-process start-up times are too noisy on a shared machine to show a difference this small."""
    base = {k: v for k, v in os.environ.items() if k not in ("SOCKETLAB_TRACE", "PYTHONPATH")}
    envs = (base, {**base, "PYTHONPATH": str(ROOT / "services")})
    best = [float("inf"), float("inf")]
    for _ in range(runs):
        for k, env in enumerate(envs):
            err = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], env=env, check=True,
                                 capture_output=True, text=True).stderr
            found = [int(line.split("|")[1]) for line in err.splitlines() if line.rstrip().endswith(" sitecustomize")]
            if found:
                best[k] = min(best[k], found[0])
    return best[0], best[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    off, on = [], []
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "calls.jsonl")
        for _ in range(args.rounds):
            assert socket.socket.sendall is socket._socket.socket.sendall    # really off
            off.append(loop(args.calls))
            labtrace.install(log)
            on.append(loop(args.calls))
            labtrace.uninstall()
        size = os.path.getsize(log)
        records = sum(1 for _ in open(log))
    best_off, best_on = min(off) / args.calls, min(on) / args.calls
    print(f"socket calls per sample: {args.calls} (sendall + recv of 1 byte on a socketpair), best of {args.rounds}")
    print(f"tracing off: {best_off * 1e6:7.2f} µs per call   (the peer: socket.socket's own C methods)")
    print(f"tracing on:  {best_on * 1e6:7.2f} µs per call   ({best_on / best_off:.1f}x the peer)")
    print(f"overhead:    {(best_on - best_off) * 1e6:7.2f} µs per traced call; "
          f"{size / records:.0f} bytes of log per call ({records} records)")
    system, ours = sitecustomize_import()
    print(f"start-up, tracing off: importing services/sitecustomize.py takes {ours:.0f} µs "
          f"(the system's own sitecustomize: {system:.0f} µs); labtrace is not imported, no method is replaced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
