"""users.json, homes, quotas, partial uploads and listings."""
import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import unicodedata

DEMO = [("alice", "wonderland", 10 * 1024 * 1024),
        ("bob", "builder", 1024 * 1024),
        ("alice2", "looking-glass", 2 * 1024 * 1024)]
N, R, P = 2 ** 14, 8, 1
RESERVED = re.compile(r"^\..+\.part(\.json)?$", re.S)

CODES = {}
for _n, _c in [("ENOENT", 550), ("ENOTDIR", 550), ("EISDIR", 550), ("EEXIST", 550), ("ENOTEMPTY", 550),
               ("EACCES", 550), ("EPERM", 550), ("EROFS", 550), ("EMLINK", 550), ("ENXIO", 550),
               ("ENAMETOOLONG", 553), ("ELOOP", 553), ("EINVAL", 553), ("EILSEQ", 553),
               ("ENOSPC", 452), ("EDQUOT", 452), ("EFBIG", 452),
               ("EBUSY", 450), ("ETXTBSY", 450), ("EAGAIN", 450)]:
    if hasattr(errno, _n):
        CODES[getattr(errno, _n)] = _c


def errno_code(e):
    return CODES.get(e, 451)


def make_verifier(password, quota, max_entries=1000):
    salt = secrets.token_bytes(16)
    salted = hashlib.scrypt(unicodedata.normalize("NFC", password).encode("utf-8"),
                            salt=salt, n=N, r=R, p=P, dklen=32)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return {"salt": salt.hex(), "kdf": "scrypt", "n": N, "r": R, "p": P,
            "stored_key": hashlib.sha256(client_key).hexdigest(),
            "server_key": hmac.new(salted, b"Server Key", "sha256").hexdigest(),
            "quota": quota, "max_entries": max_entries}


def atomic_write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Users:
    def __init__(self, root):
        self.root = root
        self.path = os.path.join(root, "users.json")
        os.makedirs(os.path.join(root, "home"), exist_ok=True)
        if not os.path.exists(self.path):
            users = {name: make_verifier(pw, q) for name, pw, q in DEMO}
            atomic_write(self.path, json.dumps({"version": 1, "users": users}, indent=2).encode())
        self._key = None
        self._users = {}
        self._load()

    def _load(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key == self._key:
            return
        try:
            with open(self.path, "rb") as f:
                data = json.load(f)
            users = data["users"]
        except (OSError, ValueError, KeyError, TypeError):
            return   # keep the last good copy
        self._key, self._users = key, users
        for name in users:
            try:
                os.makedirs(self.home(name), exist_ok=True)
            except OSError:
                pass

    def get(self, name):
        self._load()
        rec = self._users.get(name)
        if isinstance(rec, dict):
            rec = dict(rec)
            rec.setdefault("max_entries", 1000)
            return rec
        return None

    def home(self, name):
        return os.path.join(self.root, "home", name)

    def secret(self):
        p = os.path.join(self.root, "server.secret")
        try:
            with open(p, "rb") as f:
                s = f.read()
            if len(s) >= 32:
                return s
        except OSError:
            pass
        s = secrets.token_bytes(32)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(s)
        return s


def reserved_name(c):
    return bool(RESERVED.match(c))


def inside(home, real):
    try:
        return os.path.commonpath([home, real]) == home
    except ValueError:
        return False


def part_names(real):
    d, n = os.path.split(real)
    return os.path.join(d, f".{n}.part"), os.path.join(d, f".{n}.part.json")


def read_sidecar(side):
    try:
        with open(side, "rb") as f:
            d = json.load(f)
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def write_sidecar(side, d):
    fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(json.dumps(d).encode())
        f.flush()
        os.fsync(f.fileno())


def size_of(p):
    try:
        return os.lstat(p).st_size
    except OSError:
        return 0


def usage(home):
    """(bytes of every regular file incl. parts and sidecars, entries excl. sidecars)."""
    used = entries = 0
    stack = [home]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                name = e.name
                if stat.S_ISREG(st.st_mode):
                    used += st.st_size
                    if name.startswith(".") and name.endswith(".part.json") and len(name) > 11:
                        continue
                    entries += 1
                elif stat.S_ISDIR(st.st_mode):
                    entries += 1
                    stack.append(e.path)
                else:
                    entries += 1
    return used, entries


def _display(bname):
    try:
        return bname.decode("utf-8"), False
    except UnicodeDecodeError:
        out = []
        b = bname
        i = 0
        while i < len(b):
            try:
                # decode the longest valid run
                j = i + 1
                ch = None
                for k in range(min(4, len(b) - i), 0, -1):
                    try:
                        ch = b[i:i + k].decode("utf-8")
                        j = i + k
                        break
                    except UnicodeDecodeError:
                        continue
                if ch is None:
                    out.append("\\x%02x" % b[i])
                    i += 1
                else:
                    out.append(ch)
                    i = j
            except Exception:
                out.append("\\x%02x" % b[i])
                i += 1
        return "".join(out), True


def entry_for(dirpath, name, home, bname=None):
    p = os.path.join(dirpath, name) if bname is None else os.path.join(os.fsencode(dirpath), bname)
    st = os.lstat(p)
    e = {"name": name}
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.path.realpath(p)
            tst = os.stat(p)
            if not inside(home, os.fsdecode(target)):
                raise OSError("outside")
        except (OSError, ValueError):
            e.update(type="link", size=0, mtime=0)
            return e
        st = tst
    if stat.S_ISREG(st.st_mode):
        e.update(type="file", size=st.st_size, mtime=int(st.st_mtime))
    elif stat.S_ISDIR(st.st_mode):
        e.update(type="dir", size=0, mtime=int(st.st_mtime))
    else:
        e.update(type="other", size=0, mtime=int(st.st_mtime))
    return e


def partial_entry(name, part, side):
    sc = read_sidecar(side) or {}
    fs = sc.get("file_size")
    return {"name": name, "type": "partial", "size": size_of(part),
            "file_size": fs if type(fs) is int else None}


def list_dir(real, home):
    out = []
    breal = os.fsencode(real)
    for bname in os.listdir(breal):
        name, bad = _display(bname)
        if not bad and RESERVED.match(name):
            if name.endswith(".part.json"):
                continue
            final = name[1:-len(".part")]
            e = partial_entry(final, os.path.join(real, name),
                              os.path.join(real, name + ".json"))
            out.append(e)
            continue
        try:
            e = entry_for(real, name, home, bname=bname)
        except OSError:
            continue
        e["name"] = name
        if bad:
            e["undecodable"] = True
        out.append(e)
    out.sort(key=lambda e: (e["name"], e["type"]))
    return out
