#!/usr/bin/env python3
"""SocketLab: a containerised lab for teaching socket programming in Python.

    python lab.py up sticky      # start a lesson (sets everything up on first run)
    python lab.py test           # run the test suite

This file only makes sure the lab's own environment exists (a virtual environment in .venv with
the pinned packages of requirements.txt), then hands over to ``socketlab.cli``.
"""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / ".socketlab-requirements"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def environment_ready() -> bool:
    return venv_python().exists() and STAMP.exists() and STAMP.read_text().strip() == requirements_hash()


def create_environment() -> None:
    print(f"SocketLab first run: creating {VENV.name}/ with the pinned packages of requirements.txt "
          "(once; about a minute)", file=sys.stderr, flush=True)
    if not venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    result = subprocess.run([*pip, "-r", str(REQUIREMENTS)])
    if result.returncode != 0:
        sys.exit("error: installing the lab's packages failed (see pip's message above)\n"
                 "  fix: check that PyPI is reachable, then run the command again")
    STAMP.write_text(requirements_hash())
    print("environment ready", file=sys.stderr, flush=True)


def in_environment() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def main() -> int:
    if not environment_ready():
        create_environment()
    if not in_environment():
        # Re-run this same command inside the lab's environment.
        os.execv(str(venv_python()), [str(venv_python()), str(Path(__file__).resolve()), *sys.argv[1:]])
    sys.path.insert(0, str(ROOT))
    from socketlab.cli import main as cli_main
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
