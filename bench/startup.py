"""Startup benchmark (not a test): how long a student waits.

    python lab.py test -- no; run it as:  .venv/bin/python bench/startup.py [--cold] [--runs 5]

Prints:
  cold   base-image bootstrap with no registry (mmdebstrap + docker import + base + lessons layers),
         into a separate image prefix so the lab's own images are untouched (--cold; ~40 s)
  warm   `lab.py up basic` to healthy, median of N, on a private project
  down   `lab.py down basic`, median of N
  peer   `docker-compose --profile basic up -d` to healthy and `down`, same machine, same run
         (a temporary copy of compose.yaml on another network name and subnet)
Goal (SPEC §9): warm up ≤ 3 s median; cold ≤ 90 s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from socketlab.engine import connect  # noqa: E402
from socketlab.images import ImageBuilder  # noqa: E402


def timed(argv: list[str], env: dict | None = None, cwd: Path = ROOT) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def wait_healthy(client, project_label: str, expected: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        cs = client.containers.list(filters={"label": project_label})
        states = [client.api.inspect_container(c.id)["State"] for c in cs]
        if len(cs) == expected and all(s["Status"] == "running" and (s.get("Health") or {}).get("Status")
                                       in (None, "healthy") for s in states):
            return
        time.sleep(0.05)
    raise TimeoutError("not healthy")


def cold(client) -> float:
    prefix = f"socketlab-bench{uuid.uuid4().hex[:6]}"
    builder = ImageBuilder(client, say=lambda m: print(f"    {m}", file=sys.stderr), prefix=prefix)
    started = time.perf_counter()
    try:
        builder.ensure_all()
        return time.perf_counter() - started
    finally:
        for tag in (builder.lessons_tag, builder.base_tag, builder.rootfs_tag):
            try:
                client.images.remove(tag, force=True)
            except Exception:
                pass


def lab_py(runs: int) -> tuple[list[float], list[float]]:
    env = dict(os.environ, SOCKETLAB_PROJECT=f"slbench-{uuid.uuid4().hex[:6]}")
    python = str(ROOT / ".venv/bin/python")
    ups, downs = [], []
    for _ in range(runs):
        ups.append(timed([python, "lab.py", "up", "basic"], env))       # returns once healthy
        downs.append(timed([python, "lab.py", "down", "basic"], env))
    return ups, downs


def compose_peer(client, runs: int) -> tuple[list[float], list[float]]:
    if not shutil.which("docker-compose"):
        return [], []
    raw = yaml.safe_load((ROOT / "compose.yaml").read_text())
    name = f"slbenchc{uuid.uuid4().hex[:6]}"
    raw["networks"]["socketlab"]["name"] = name
    for svc in raw["services"].values():
        svc.pop("networks", None)
        svc.pop("build", None)
        svc["networks"] = ["socketlab"]
    del raw["networks"]["socketlab"]["ipam"]
    ups, downs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "compose.yaml"
        path.write_text(yaml.safe_dump(raw))
        base = ["docker-compose", "-f", str(path), "-p", name, "--profile", "basic"]
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([*base, "up", "-d"], check=True, capture_output=True)
            wait_healthy(client, f"com.docker.compose.project={name}", 2)
            ups.append(time.perf_counter() - started)
            downs.append(timed([*base, "down", "-t", "1"]))
    return ups, downs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="also time a cold bootstrap (about 40 s)")
    args = parser.parse_args()
    client = connect()
    ImageBuilder(client).ensure_all()
    rows = []
    if args.cold:
        rows.append(("cold bootstrap (no registry)", f"{cold(client):.1f} s", "", "goal ≤ 90 s"))
    # interleave: ours, peer, ours, peer ... so machine noise hits both alike
    ups, downs, pups, pdowns = [], [], [], []
    for _ in range(args.runs):
        u, d = lab_py(1)
        pu, pd = compose_peer(client, 1)
        ups += u
        downs += d
        pups += pu
        pdowns += pd
    med = statistics.median
    rows.append(("warm up basic -> healthy", f"{med(ups):.2f} s", f"{med(pups):.2f} s" if pups else "-",
                 f"ratio {med(ups) / med(pups):.2f}x; goal ≤ 3 s" if pups else "goal ≤ 3 s"))
    rows.append(("down basic", f"{med(downs):.2f} s", f"{med(pdowns):.2f} s" if pdowns else "-",
                 f"ratio {med(downs) / med(pdowns):.2f}x" if pdowns else ""))
    print(f"{'measure':32} {'lab.py':>10} {'docker-compose':>15}  note")
    for name, ours, peer, note in rows:
        print(f"{name:32} {ours:>10} {peer:>15}  {note}")
    print(f"(medians of {args.runs}; up samples {[round(x, 2) for x in ups]}, peer {[round(x, 2) for x in pups]})")


if __name__ == "__main__":
    main()
