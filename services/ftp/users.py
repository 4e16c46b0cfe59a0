"""Users, passwords and quotas of the FTP server, and the admin tool that manages them.

    python3 -m ftp.users add alice --quota 10M --root /srv/ftp          (asks for the password)
    python3 -m ftp.users add bob --quota 1M --password builder --root /srv/ftp
    python3 -m ftp.users set-quota bob 2M --entries 500 --root /srv/ftp
    python3 -m ftp.users passwd bob --root /srv/ftp
    python3 -m ftp.users list --root /srv/ftp
    python3 -m ftp.users del bob --root /srv/ftp

Layout of the server root (the server and this tool agree on it; docs/ftp-protocol.md too):

    <root>/users.json       {"version": 1, "users": {"alice": {salt, kdf, n, r, p,
                                                               stored_key, server_key, quota,
                                                               max_entries}}}
    <root>/server.secret    32 random bytes: the fake salts of unknown users are derived from it
    <root>/home/<user>/     each user's home directory (家目录)

The seed kept ``sha256(user + password + user)`` in a file opened by a *relative* path (so the
server only worked when started from its own folder). Here the file holds scrypt verifiers
(see ftp/auth.py), is written atomically (temp file, fsync, os.replace) and is found from --root.
The running server re-reads it when it changes: no restart after `add` or `set-quota`.

On a root without users.json the server creates the demo users (see DEMO_USERS and the guide).
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import threading
from dataclasses import dataclass

from ftp.auth import Verifier, make_verifier
from ftp.protocol import DEFAULT_MAX_ENTRIES, KDF_N, KDF_NAME, KDF_P, KDF_R, USER_NAME_RE

DB_NAME = "users.json"
SECRET_NAME = "server.secret"
HOMES_DIR = "home"
DB_VERSION = 1

MiB = 1024 * 1024
#: name -> (password, quota). Documented in services/ftp/README.md; for the classroom only.
DEMO_USERS: dict[str, tuple[str, int]] = {
    "alice": ("wonderland", 10 * MiB),
    "bob": ("builder", 1 * MiB),
    "alice2": ("looking-glass", 2 * MiB),   # a *sibling prefix* of alice: /home/alice vs /home/alice2
}

UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": MiB, "MB": MiB, "MIB": MiB,
         "G": 1024 * MiB, "GB": 1024 * MiB, "GIB": 1024 * MiB}


def parse_size(text: str) -> int:
    """'10M' -> 10485760. K, M, G are powers of 1024 (like the quota tools of Linux)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in UNITS:
        raise ValueError(f"not a size: {text!r} (try 1048576, 512K, 10M or 1G)")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def format_size(n: int) -> str:
    for unit, factor in (("GiB", 1024 * MiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class User:
    name: str
    verifier: Verifier
    quota: int
    max_entries: int = DEFAULT_MAX_ENTRIES   # files + directories (a quota of entries, not bytes)


def home_dir(root: str, user: str) -> str:
    return os.path.join(root, HOMES_DIR, user)


def _to_json(user: User) -> dict:
    v = user.verifier
    return {"salt": v.salt.hex(), "kdf": KDF_NAME, "n": v.n, "r": v.r, "p": v.p,
            "stored_key": v.stored_key.hex(), "server_key": v.server_key.hex(), "quota": user.quota,
            "max_entries": user.max_entries}


def _from_json(name: str, d: dict) -> User:
    verifier = Verifier(bytes.fromhex(d["salt"]), int(d["n"]), int(d["r"]), int(d["p"]),
                        bytes.fromhex(d["stored_key"]), bytes.fromhex(d["server_key"]))
    return User(name, verifier, int(d["quota"]), int(d.get("max_entries", DEFAULT_MAX_ENTRIES)))


class UserDb:
    """users.json, re-read whenever its modification time changes."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, DB_NAME)
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._users: dict[str, User] = {}

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def users(self) -> dict[str, User]:
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._stamp, self._users = None, {}
                return {}
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp != self._stamp:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        raw = json.load(f)
                    self._users = {name: _from_json(name, d) for name, d in raw["users"].items()}
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                    # A broken file must not take the server down: keep the last good users.
                    print(f"warning: cannot read {self.path} ({exc!r}); keeping the previous users",
                          file=sys.stderr, flush=True)
                self._stamp = stamp
            return dict(self._users)

    def get(self, name: str) -> User | None:
        return self.users().get(name)

    def save(self, users: dict[str, User]) -> None:
        os.makedirs(self.root, exist_ok=True)
        tmp = f"{self.path}.tmp{os.getpid()}"
        data = {"version": DB_VERSION, "users": {n: _to_json(u) for n, u in sorted(users.items())}}
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)      # verifiers are not passwords, but still nobody's business
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)        # a full disk leaves no half-written temp file behind
            except OSError:
                pass
            raise

    def add(self, name: str, password: str, quota: int, *, n: int = KDF_N, r: int = KDF_R, p: int = KDF_P,
            replace: bool = False, max_entries: int = DEFAULT_MAX_ENTRIES) -> User:
        if not USER_NAME_RE.fullmatch(name):
            raise ValueError(f"bad user name {name!r}: 1-32 characters of a-z 0-9 _ -, "
                             "not starting with a digit")
        if not password:
            raise ValueError("the password may not be empty")
        if quota < 0 or max_entries < 0:
            raise ValueError("the quota may not be negative")
        users = self.users()
        if name in users and not replace:
            raise ValueError(f"user {name!r} exists (use set-quota or passwd)")
        user = User(name, make_verifier(password, n=n, r=r, p=p), quota, max_entries)
        users[name] = user
        os.makedirs(home_dir(self.root, name), exist_ok=True)
        self.save(users)
        return user

    def set_quota(self, name: str, quota: int, *, max_entries: int | None = None) -> User:
        users = self.users()
        if name not in users:
            raise ValueError(f"no such user: {name!r}")
        entries = users[name].max_entries if max_entries is None else max_entries
        if quota < 0 or entries < 0:
            raise ValueError("the quota may not be negative")
        users[name] = User(name, users[name].verifier, quota, entries)
        self.save(users)
        return users[name]

    def set_password(self, name: str, password: str) -> None:
        users = self.users()
        if name not in users:
            raise ValueError(f"no such user: {name!r}")
        old = users[name].verifier
        users[name] = User(name, make_verifier(password, n=old.n, r=old.r, p=old.p), users[name].quota,
                           users[name].max_entries)
        self.save(users)

    def remove(self, name: str) -> None:
        users = self.users()
        if users.pop(name, None) is None:
            raise ValueError(f"no such user: {name!r}")
        self.save(users)   # the home directory stays: deleting files is a separate decision


def server_secret(root: str) -> bytes:
    """32 random bytes kept in <root>/server.secret (created on first use, mode 0600)."""
    path = os.path.join(root, SECRET_NAME)
    try:
        with open(path, "rb") as f:
            secret = f.read()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    os.makedirs(root, exist_ok=True)
    secret = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


def ensure_demo_users(db: UserDb, *, n: int = KDF_N) -> list[str]:
    """Add the demo users that are missing; returns their names."""
    added = []
    for name, (password, quota) in DEMO_USERS.items():
        if db.get(name) is None:
            db.add(name, password, quota, n=n)
            added.append(name)
    return added


# ---------------------------------------------------------------------------------------------
# The admin command line
# ---------------------------------------------------------------------------------------------

def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return args.password
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the passwords differ")
    return first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m ftp.users", description="manage the FTP server's users")
    parser.add_argument("--root", default=os.environ.get("FTP_ROOT", "/srv/ftp"), help="the server's --root")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add a user")
    add.add_argument("name")
    add.add_argument("--quota", default="10M", help="e.g. 10M, 512K, 1G (default 10M)")
    add.add_argument("--password", help="default: ask (or read one line from stdin)")
    add.add_argument("--entries", type=int, default=DEFAULT_MAX_ENTRIES,
                     help=f"most files + directories (default {DEFAULT_MAX_ENTRIES})")
    add.add_argument("--kdf-n", type=int, default=KDF_N, help=argparse.SUPPRESS)
    sq = sub.add_parser("set-quota", help="change a user's quota")
    sq.add_argument("name")
    sq.add_argument("quota")
    sq.add_argument("--entries", type=int, default=None, help="most files + directories")
    pw = sub.add_parser("passwd", help="change a user's password")
    pw.add_argument("name")
    pw.add_argument("--password")
    rm = sub.add_parser("del", help="remove a user (the home directory stays)")
    rm.add_argument("name")
    sub.add_parser("list", help="users, quotas and usage")
    sub.add_parser("demo", help="add the demo users alice, bob and alice2")
    # Options may come after the sub-command too: `add alice --quota 10M --root /srv/ftp`.
    for p in (add, sq, pw, rm):
        p.add_argument("--root", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for name in ("list", "demo"):
        sub.choices[name].add_argument("--root", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    db = UserDb(args.root)
    try:
        if args.command == "add":
            user = db.add(args.name, _password(args), parse_size(args.quota), n=args.kdf_n,
                          max_entries=args.entries)
            home = home_dir(args.root, user.name)
            print(f"added {user.name}: quota {format_size(user.quota)}, {user.max_entries} entries, home {home}")
        elif args.command == "set-quota":
            user = db.set_quota(args.name, parse_size(args.quota), max_entries=args.entries)
            print(f"{user.name}: quota {format_size(user.quota)}, {user.max_entries} entries")
        elif args.command == "passwd":
            db.set_password(args.name, _password(args))
            print(f"{args.name}: password changed")
        elif args.command == "del":
            db.remove(args.name)
            print(f"removed {args.name} (home directory kept)")
        elif args.command == "demo":
            print(f"added: {', '.join(ensure_demo_users(db)) or 'nothing (all there)'}")
        else:
            from ftp.storage import disk_usage
            print(f"{'USER':<12} {'QUOTA':>10} {'USED':>10}  HOME")
            for name, user in sorted(db.users().items()):
                home = home_dir(args.root, name)
                used = disk_usage(home) if os.path.isdir(home) else 0
                print(f"{name:<12} {format_size(user.quota):>10} {format_size(used):>10}  {home}")
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
