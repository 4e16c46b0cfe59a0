"""Shared by the hostile suites: the slow-reader (memory) attack against a containerised server.

``slow_readers`` (a fixture) starts, in the lesson's *client* container, COUNT connections to the
lesson's server that each ask for a big reply and never read it, then samples the server's VmRSS
(``/proc/<pid>/status`` inside the server container, with its real 256 MiB limit) while they hang
on. The two helper programs below are ordinary functions, linted with the rest of this file; they
are handed to ``python3 -c`` through ``inspect.getsource`` because lesson images carry only
``services/``.
"""
from __future__ import annotations

import inspect
import json
import time

import pytest


def hog(host: str, port: int, count: int, payload_hex: str, hold: float) -> None:
    """COUNT clients send ``payload`` and then never read; report when all were sent."""
    import socket as s
    import time as t
    payload, socks = bytes.fromhex(payload_hex), []
    for _ in range(count):
        c = s.socket()
        c.setsockopt(s.SOL_SOCKET, s.SO_RCVBUF, 4096)   # a tiny window: the server's sends block
        c.settimeout(5)
        c.connect((host, port))
        c.sendall(payload)
        socks.append(c)
    print("sent", len(socks), flush=True)
    t.sleep(hold)                                      # bounded: the attack ends by itself


def rss_of(marker: str) -> None:
    """Print {"pid": ..., "rss_kib": ...} for the process whose command line contains ``marker``."""
    import json as j
    import os
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode().split("\0")
            # the interpreter itself: not docker-init ("docker-init -- python3 ..."), not us (-c)
            if argv[0].rsplit("/", 1)[-1].startswith("python") and marker in argv:
                with open(f"/proc/{pid}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
                print(j.dumps({"pid": int(pid), "rss_kib": int(fields["VmRSS"].split()[0])}))
                return
        except OSError:
            continue
    print(j.dumps({"pid": None, "rss_kib": None}))


def program(function, *args) -> list[str]:
    return ["python3", "-c", f"{inspect.getsource(function)}\n{function.__name__}(*{args!r})"]


@pytest.fixture
def slow_readers():
    """``attack(run, payload, marker, count=64, hold=20) -> dict`` with the worst RSS seen.

    The attackers are stopped before it returns, so the caller can check that the server serves
    again (while they hold every slot, a new client gets the polite "busy" refusal).
    """
    started: list = []

    def attack(run, payload: bytes, marker: str, count: int = 64, hold: float = 20.0) -> dict:
        client, server = run.client, run.server
        client.spawn("hog", program(hog, run.server_host, run.port(), count, payload.hex(), hold))
        started.append(client)
        samples: list[int] = []
        deadline = time.monotonic() + hold - 2
        sent, after_sent = False, 0
        while time.monotonic() < deadline and len(samples) < 40 and after_sent < 8:
            sent = sent or b"sent" in client.read_file("/tmp/hog.log")
            result = json.loads(server.run(program(rss_of, marker), timeout=10).stdout or "{}")
            if result.get("rss_kib"):
                samples.append(result["rss_kib"])
                after_sent += sent
            time.sleep(0.5)
        log = client.read_file("/tmp/hog.log").decode("utf-8", "replace")
        client.stop("hog")                  # the attackers leave: their slots must come back
        return {"sent": sent, "samples_kib": samples, "worst_mib": max(samples, default=0) / 1024,
                "hog_log": log}

    yield attack
    for node in started:
        node.stop("hog")


def served_again(run, argv: list[str], expect: str, tries: int = 20):
    """Run a fresh client until it gets ``expect`` (slots free up as the server notices the
    attackers are gone); return the last RunResult."""
    result = None
    for _ in range(tries):
        result = run.client.run(argv, timeout=30)
        if result.exit_code == 0 and expect in result.stdout:
            break
        time.sleep(0.5)
    return result


@pytest.fixture
def fresh_client():
    return served_again
