"""Run a program under test and keep what it printed in order, each line labelled by its stream.

    python3 -m labnode.labelled --timeout 60 [--fresh F] [--digest F] -- python3 my_client.py --host ftp-server ...

prints ``out| line`` and ``err| line`` as the lines arrive (so a traceback stands where it
happened, between the replies the program printed), then one RESULT line with the exit code.
A progress bar's carriage returns keep only its last state. The program gets no stdin and is
killed (with its process group) after --timeout seconds. ``--fresh F`` removes F before the run
(a copy the program must make), ``--digest F`` reports F's sha256 after it (null: no such file),
``--make F SEED SIZE`` writes a file of seeded random bytes before it (what ``labnode make-file`` writes).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import selectors
import signal
import subprocess
import sys
import time

from labnode.report import emit_result

MAX_LINES = 400
MAX_CHARS = 300


def digest_of(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m labnode.labelled", description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--fresh", action="append", default=[], help="remove this file before the run")
    parser.add_argument("--digest", action="append", default=[], help="the sha256 of this file after the run")
    parser.add_argument("--make", nargs=3, action="append", default=[], metavar=("FILE", "SEED", "SIZE"),
                        help="write a file of seeded random bytes before the run")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    made = {}
    for path, seed, size in args.make:
        data = random.Random(int(seed)).randbytes(int(size))
        with open(path, "wb") as f:
            f.write(data)
        made[path] = hashlib.sha256(data).hexdigest()
    for path in args.fresh:
        if os.path.lexists(path):
            os.unlink(path)
    started = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    sel = selectors.DefaultSelector()
    pending = {"out": b"", "err": b""}
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    shown, timed_out = 0, False

    def show(label: str, raw: bytes) -> None:
        nonlocal shown
        line = raw.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1]
        shown += 1
        if shown <= MAX_LINES:
            print(f"{label}| {line[:MAX_CHARS]}", flush=True)

    while sel.get_map():
        left = args.timeout - (time.monotonic() - started)
        if left <= 0:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            break
        for key, _ in sel.select(min(left, 1.0)):
            data = os.read(key.fileobj.fileno(), 65536)
            if not data:
                sel.unregister(key.fileobj)
                if pending[key.data]:
                    show(key.data, pending[key.data])
                continue
            *lines, pending[key.data] = (pending[key.data] + data).split(b"\n")
            for line in lines:
                show(key.data, line)
    code = proc.wait()
    if shown > MAX_LINES:
        print(f"...| ({shown - MAX_LINES} more lines)", flush=True)
    emit_result(True, {"exit_code": code, "timed_out": timed_out, "seconds": round(time.monotonic() - started, 2),
                       "made": made, "sha256": {path: digest_of(path) for path in args.digest}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
