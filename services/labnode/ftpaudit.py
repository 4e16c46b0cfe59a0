"""On the FTP server's machine: how are the passwords stored? (check ftp, scenario password-storage)

    python3 -m labnode.ftpaudit ROOT '{"alice": "wonderland", ...}'

Looks for each demo password in clear and for the fast hashes a seed-style server uses, then for a
salted slow-hash record per user in ROOT/users.json; prints the findings as one JSON object.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys


def fast_hashes(user: str, password: str) -> dict[str, str]:
    return {"sha256(user+pw+user)": hashlib.sha256((user + password + user).encode()).hexdigest(),
            "sha256(pw)": hashlib.sha256(password.encode()).hexdigest(),
            "md5(pw)": hashlib.md5(password.encode()).hexdigest()}


def audit(root: str, demo: dict[str, str]) -> dict:
    found = {}
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isfile(path) and os.path.getsize(path) < 1 << 20:
            with open(path, "rb") as f:
                found[name] = f.read().decode("utf-8", "replace")
    text = "\n".join(found.values())
    report: dict = {"files": sorted(found), "cleartext": [], "fast_hash": [], "records": {}}
    for user, password in demo.items():
        if password in text:
            report["cleartext"].append(user)
        report["fast_hash"] += [[user, label] for label, digest in fast_hashes(user, password).items()
                                if digest in text]
    try:
        users = json.loads(found.get("users.json", "{}")).get("users", {})
    except (ValueError, AttributeError):
        users = {}
    for user in demo:
        rec = users.get(user) if isinstance(users, dict) else None
        rec = rec if isinstance(rec, dict) else {}
        salt = rec.get("salt")
        report["records"][user] = {"kdf": rec.get("kdf"), "n": rec.get("n"), "iterations": rec.get("iterations"),
                                   "salt_bytes": len(salt) // 2 if isinstance(salt, str) else 0,
                                   "keys": sorted(rec)}
    return report


if __name__ == "__main__":
    print(json.dumps(audit(sys.argv[1], json.loads(sys.argv[2]))))
