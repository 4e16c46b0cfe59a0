"""Files on the server's disk: quotas (磁盘配额), atomic uploads, resume (断点续传), listings.

An upload never appears under its final name until it is complete and verified:

    put big.bin ──► .big.bin.part        the bytes, appended as they arrive
                    .big.bin.part.json   {file_size, algo, digest}: what the part is meant to become
    all bytes in, digest matches ──► fsync(part) ──► os.replace(part, big.bin) ──► fsync(directory)

* ``os.replace`` is atomic: a reader sees the old file or the new one, never half of each (the
  seed's ``os.remove`` + ``os.rename`` left a moment with no file at all, and its ``name_temp``
  collided when two clients uploaded the same name).
* ``fsync`` before the rename makes sure the bytes are on disk before the name points at them;
  fsync of the directory makes the rename itself durable.
* A client that disappears leaves the ``.part`` behind, fsync'ed: a later put of the *same*
  file (same size and digest, says the sidecar) continues at the part's length. A put of a
  different file under that name starts again from 0.

Quota: a user's usage is every byte under their home, ``.part`` files included, plus what
their uploads in progress still announced they will send. The check and the reservation happen
under one lock per user, so two concurrent uploads cannot both squeeze into the same free space.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from ftp.paths import Home, Resolved, is_internal_name
from ftp.protocol import (
    MAX_HEADER_SIZE,
    PART_SUFFIX,
    SIDECAR_SUFFIX,
    Code,
    ProtocolError,
    dumps_compact,
)

READ_CHUNK = 1024 * 1024


class StorageError(ProtocolError):
    """A file-system refusal with the reply code it deserves (550, 552, 450, 452...)."""


def part_paths(final: str) -> tuple[str, str]:
    """``dir/name`` -> (``dir/.name.part``, ``dir/.name.part.json``), in the same directory so
    that os.replace stays on one file system (a rename across file systems is not atomic)."""
    folder, name = os.path.split(final)
    return os.path.join(folder, f".{name}{PART_SUFFIX}"), os.path.join(folder, f".{name}{SIDECAR_SUFFIX}")


def disk_usage(home: str) -> int:
    """Bytes of every file under ``home`` (symlinks are not followed: their target is not ours)."""
    total = 0
    for folder, _dirs, files in os.walk(home):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass   # removed while we walked
    return total


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hash_fd(fd: int, algo: str, length: int | None = None) -> hashlib._Hash:
    """Hash the first ``length`` bytes of an open file (all of it when None), 1 MiB at a time."""
    hasher = hashlib.new(algo)
    offset = 0
    while length is None or offset < length:
        want = READ_CHUNK if length is None else min(READ_CHUNK, length - offset)
        chunk = os.pread(fd, want, offset)
        if not chunk:
            break
        hasher.update(chunk)
        offset += len(chunk)
    return hasher


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write may write less than asked (a signal, a full disk): loop like sendall does."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_json_atomically(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Uploads
# ---------------------------------------------------------------------------------------------

@dataclass
class Upload:
    """One upload in progress: from the 350 until 226, or until the client goes away."""

    user: str
    target: Resolved
    file_size: int
    algo: str
    digest: str
    offset: int                    # where the client's data starts (bytes already in the part)
    written: int = 0               # bytes of this session's body written so far
    fd: int = -1
    hasher: object = None
    part: str = field(init=False)
    sidecar: str = field(init=False)

    def __post_init__(self) -> None:
        self.part, self.sidecar = part_paths(self.target.real)

    @property
    def position(self) -> int:
        return self.offset + self.written

    @property
    def remaining(self) -> int:
        return self.file_size - self.position

    def open(self) -> None:
        """Open the part for appending at ``offset`` and hash what is already in it."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        self.fd = os.open(self.part, flags, 0o644)
        os.ftruncate(self.fd, self.offset)       # never trust bytes past the agreed offset
        os.lseek(self.fd, self.offset, os.SEEK_SET)
        read_fd = os.open(self.part, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            self.hasher = hash_fd(read_fd, self.algo, self.offset)
        finally:
            os.close(read_fd)

    def write(self, data: bytes | memoryview) -> None:
        if len(data) > self.remaining:
            raise StorageError(Code.BAD_ARGUMENTS, "more bytes than the announced file size")
        write_all(self.fd, data)
        self.hasher.update(data)
        self.written += len(data)

    def keep_for_resume(self) -> int:
        """The client is gone or gave up: make what we have durable, so a resume can trust it."""
        if self.fd >= 0:
            try:
                os.fsync(self.fd)
            finally:
                os.close(self.fd)
                self.fd = -1
        try:
            return os.stat(self.part).st_size
        except FileNotFoundError:
            return 0

    def commit(self) -> str:
        """Verify, fsync, rename into place, fsync the directory. Returns the digest."""
        got = self.hasher.hexdigest()
        if self.position != self.file_size or got != self.digest:
            self.discard()
            raise StorageError(Code.LOCAL_ERROR, f"{self.algo} mismatch: you announced {self.digest}, "
                               f"the {self.position} bytes received hash to {got}; upload discarded")
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.replace(self.part, self.target.real)
        fsync_directory(os.path.dirname(self.target.real))
        remove_quietly(self.sidecar)
        return got

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        remove_quietly(self.part)
        remove_quietly(self.sidecar)


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_sidecar(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Per-user bookkeeping shared by all sessions of that user
# ---------------------------------------------------------------------------------------------

class UserSpace:
    """The lock and the uploads in progress of one user (all their sessions share it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.uploads: dict[str, Upload] = {}     # real path of the final file -> its upload

    def reserved(self) -> int:
        return sum(max(0, u.remaining) for u in list(self.uploads.values()))


class DigestCache:
    """sha256 of files we already hashed, keyed by identity, so a repeated get does not re-read.

    The key includes inode, size and mtime: files are only ever *replaced* (new inode), never
    changed in place, so a stale entry cannot match.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._entries: OrderedDict[tuple, str] = OrderedDict()
        self._lock = threading.Lock()
        self.capacity = capacity

    @staticmethod
    def key(st: os.stat_result, algo: str) -> tuple:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, algo)

    def get(self, st: os.stat_result, algo: str) -> str | None:
        with self._lock:
            return self._entries.get(self.key(st, algo))

    def put(self, st: os.stat_result, algo: str, digest: str) -> None:
        with self._lock:
            self._entries[self.key(st, algo)] = digest
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def digest_of(self, fd: int, st: os.stat_result, algo: str) -> str:
        digest = self.get(st, algo)
        if digest is None:
            digest = hash_fd(fd, algo, st.st_size).hexdigest()
            self.put(st, algo, digest)
        return digest


class Storage:
    """Everything the sessions share about files: spaces per user and the digest cache."""

    def __init__(self) -> None:
        self._spaces: dict[str, UserSpace] = {}
        self._lock = threading.Lock()
        self.digests = DigestCache()

    def space(self, user: str) -> UserSpace:
        with self._lock:
            return self._spaces.setdefault(user, UserSpace())

    def usage(self, user: str, home: Home) -> tuple[int, int]:
        """(bytes on disk, bytes reserved by uploads in progress). Reserved is read first: an
        upload moving bytes from 'reserved' to 'on disk' meanwhile is then counted twice, never
        zero times."""
        reserved = self.space(user).reserved()
        return disk_usage(home.real), reserved

    # --- put --------------------------------------------------------------------------------

    def begin_upload(self, user: str, home: Home, quota: int, target: Resolved, file_size: int,
                     algo: str, digest: str, overwrite: bool) -> Upload:
        """Check everything, pick the resume offset, reserve the quota. 350 follows on success."""
        folder = os.path.dirname(target.real)
        if target.is_home:
            raise StorageError(Code.UNAVAILABLE, "give the file a name")
        if not os.path.isdir(folder):
            raise StorageError(Code.UNAVAILABLE, f"no such directory: {os.path.dirname(target.virtual)}")
        if os.path.isdir(target.real):
            raise StorageError(Code.UNAVAILABLE, f"{target.virtual} is a directory")
        if os.path.lexists(target.real) and not overwrite:
            raise StorageError(Code.UNAVAILABLE,
                               f"{target.virtual} exists; send overwrite=true to replace it")
        space = self.space(user)
        with space.lock:   # check + reserve as one step: the heart of a race-free quota
            if target.real in space.uploads:
                raise StorageError(Code.FILE_BUSY, f"{target.virtual} is being uploaded by another session")
            upload = Upload(user, target, file_size, algo, digest, offset=0)
            upload.offset = self._resume_offset(upload)
            used, reserved = self.usage(user, home)
            need = file_size - upload.offset
            if used + reserved + need > quota:
                raise StorageError(Code.QUOTA_EXCEEDED,
                                   f"quota exceeded: {used} bytes used + {reserved} reserved + {need} "
                                   f"more > your quota of {quota} bytes")
            write_json_atomically(upload.sidecar, {"file_size": file_size, "algo": algo, "digest": digest,
                                                   "path": target.virtual})
            space.uploads[target.real] = upload
        return upload

    @staticmethod
    def _resume_offset(upload: Upload) -> int:
        """Bytes of a matching earlier part, or 0 (a part of some other file is thrown away)."""
        meta = read_sidecar(upload.sidecar)
        try:
            st = os.lstat(upload.part)
        except FileNotFoundError:
            return 0
        same = (meta is not None and meta.get("file_size") == upload.file_size
                and meta.get("algo") == upload.algo and meta.get("digest") == upload.digest)
        if same and stat.S_ISREG(st.st_mode) and st.st_size <= upload.file_size:
            return st.st_size
        remove_quietly(upload.part)
        remove_quietly(upload.sidecar)
        return 0

    def end_upload(self, upload: Upload) -> None:
        space = self.space(upload.user)
        with space.lock:
            if space.uploads.get(upload.target.real) is upload:
                del space.uploads[upload.target.real]

    def remember_digest(self, path: str, algo: str, digest: str) -> None:
        try:
            self.digests.put(os.stat(path), algo, digest)
        except OSError:
            pass

    # --- get --------------------------------------------------------------------------------

    @staticmethod
    def open_for_download(home: Home, target: Resolved) -> tuple[int, os.stat_result]:
        """An fd on a regular file inside the home. The file we hash is the file we send: a
        replacement during the transfer does not matter, we keep reading the old inode."""
        real = os.path.realpath(target.real)
        home.confine(real, target.virtual)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise StorageError(Code.UNAVAILABLE, f"no such file: {target.virtual}") from None
        except IsADirectoryError:
            raise StorageError(Code.UNAVAILABLE, f"{target.virtual} is a directory") from None
        except OSError as exc:
            raise StorageError(Code.UNAVAILABLE, f"cannot open {target.virtual}: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise StorageError(Code.UNAVAILABLE, f"{target.virtual} is {kind}")
        return fd, st

    # --- directories ------------------------------------------------------------------------

    @staticmethod
    def list_dir(home: Home, target: Resolved) -> tuple[list[dict], bool]:
        """Entries of a directory, and whether the list was cut to fit in one header."""
        if not os.path.isdir(target.real):
            what = "no such directory" if not os.path.lexists(target.real) else "not a directory"
            raise StorageError(Code.UNAVAILABLE, f"{what}: {target.virtual}")
        with os.scandir(target.real) as it:
            items = [item for entry in it if (item := describe(home, entry, target.real)) is not None]
        items.sort(key=lambda item: (item["name"], item["type"]))
        entries, budget = [], MAX_HEADER_SIZE - 2048
        for item in items:
            budget -= dumps_compact(item) + 1
            if budget < 0:
                return entries, True
            entries.append(item)
        return entries, False

    @staticmethod
    def make_dir(target: Resolved) -> None:
        try:
            os.mkdir(target.real, 0o755)
        except FileExistsError:
            raise StorageError(Code.UNAVAILABLE, f"{target.virtual} already exists") from None
        except FileNotFoundError:
            parent = os.path.dirname(target.virtual)
            raise StorageError(Code.UNAVAILABLE, f"no such directory: {parent}") from None

    def remove(self, user: str, target: Resolved) -> str:
        """rm: a file, an empty directory, or an unfinished upload (its .part and sidecar)."""
        if target.is_home:
            raise StorageError(Code.UNAVAILABLE, "you cannot remove your home directory")
        space = self.space(user)
        part, sidecar = part_paths(target.real)
        with space.lock:
            if target.real in space.uploads:
                raise StorageError(Code.FILE_BUSY, f"{target.virtual} is being uploaded right now")
            removed = []
            if os.path.lexists(part):
                remove_quietly(part)
                removed.append("unfinished upload")
            remove_quietly(sidecar)
            if os.path.isdir(target.real) and not os.path.islink(target.real):
                try:
                    os.rmdir(target.real)
                except OSError as exc:
                    if exc.errno == errno.ENOTEMPTY:
                        raise StorageError(Code.UNAVAILABLE, f"{target.virtual} is not empty") from None
                    raise
                removed.append("directory")
            elif os.path.lexists(target.real):
                os.unlink(target.real)
                removed.append("file")
            if not removed:
                raise StorageError(Code.UNAVAILABLE, f"no such file or directory: {target.virtual}")
        return " and ".join(removed)


def describe(home: Home, entry: os.DirEntry, folder: str) -> dict | None:
    """One listing entry; unfinished uploads show up as "partial" under their final name."""
    name = entry.name
    if is_internal_name(name):
        if not name.endswith(PART_SUFFIX):
            return None
        final = name[1:-len(PART_SUFFIX)]
        meta = read_sidecar(os.path.join(folder, f".{final}{SIDECAR_SUFFIX}")) or {}
        try:
            size = entry.stat(follow_symlinks=False).st_size
        except OSError:
            return None
        expected = meta.get("file_size")
        return {"name": final, "type": "partial", "size": size,
                "file_size": expected if type(expected) is int else None}  # noqa: E721
    try:
        if entry.is_symlink():
            home.confine(entry.path, name)   # a link leading out of the home is shown, not followed
        st = entry.stat()
    except (ProtocolError, OSError):
        return {"name": name, "type": "link", "size": 0, "mtime": 0}
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
    size = st.st_size if kind == "file" else 0
    return {"name": name, "type": kind, "size": size, "mtime": int(st.st_mtime)}
