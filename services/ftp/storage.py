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
* The digest is computed on a second thread (PartHasher) from the very buffers the session
  received the bytes into and wrote to the part (os.write writes all of them or raises), while
  the session receives the next bytes: receiving + writing and hashing run on two cores
  (hashlib and the socket release the GIL). A resumed part's older bytes are read back and
  hashed first.

Quota: a user's usage is every byte under their home, ``.part`` files (and sidecars) included,
plus what their uploads in progress still announced they will send. The check and the
reservation happen under one lock per user, so two concurrent uploads cannot both squeeze into
the same free space. Entries are counted too (files + directories, ``max_entries``): empty
files and directories cost no bytes, but a million of them would still fill the disk's inodes
and make listings huge.

Hostile disks: every path method is a ``@path_operation`` (an OSError becomes the reply that
ftp/oserrors.py maps it to), and files are opened with ``open_regular`` (a FIFO someone left in
a home cannot block a worker).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import stat
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from ftp.oserrors import StorageError, path_operation
from ftp.paths import Home, Resolved, is_internal_name
from ftp.protocol import (
    DEFAULT_MAX_ENTRIES,
    PART_SUFFIX,
    SIDECAR_SUFFIX,
    Code,
    ProtocolError,
)

__all__ = ["StorageError", "Storage", "Upload", "UserSpace", "part_paths", "home_usage", "disk_usage",
           "open_regular"]

READ_CHUNK = 1024 * 1024          # reading back a resumed part's old bytes, hashing a file for a get
FLUSH_EVERY = 4 * 1024 * 1024     # the hash thread starts the disk on every 4 MiB it hashed
FDATASYNC_EVERY = 16 * 1024 * 1024   # without sync_file_range: fdatasync (which waits) every 16 MiB
HASH_IN_BACKGROUND = 256 * 1024   # smaller bodies are hashed in the session's thread (a thread costs more)


def part_paths(final: str) -> tuple[str, str]:
    """``dir/name`` -> (``dir/.name.part``, ``dir/.name.part.json``), in the same directory so
    that os.replace stays on one file system (a rename across file systems is not atomic)."""
    folder, name = os.path.split(final)
    return os.path.join(folder, f".{name}{PART_SUFFIX}"), os.path.join(folder, f".{name}{SIDECAR_SUFFIX}")


def home_usage(home: str) -> tuple[int, int]:
    """(bytes of every file, number of entries) under ``home``. Symlinks are not followed (their
    target is not ours). Entries are files, directories, links and unfinished uploads; a
    ``.part.json`` sidecar is bookkeeping, not an entry, but its bytes count like any file's."""
    total = entries = 0
    for folder, dirs, files in os.walk(home):
        entries += len(dirs)
        for name in files:
            if not (is_internal_name(name) and name.endswith(SIDECAR_SUFFIX)):
                entries += 1
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass   # removed while we walked
    return total, entries


def disk_usage(home: str) -> int:
    """Bytes of every file under ``home`` (the admin tool's `list` shows it)."""
    return home_usage(home)[0]


def open_regular(path: str, flags: int, mode: int = 0o644) -> int:
    """os.open for files we read or write, that can neither block nor be redirected.

    O_NONBLOCK: opening a FIFO (a named pipe someone put in a home) for reading would otherwise
    wait for a writer forever, and a worker of the pool with it. O_NOFOLLOW: the last component
    may not be a symlink. Then fstat on the open fd (no race with a rename): a regular file, or
    "550 not a regular file". For a regular file O_NONBLOCK changes nothing; it is cleared anyway.
    """
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENXIO, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def hold_open(path: str) -> int:
    """An fd on whatever ``path`` names now (never blocks, follows no symlink), or -1."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return -1


def fsync_quietly(path: str) -> None:
    """fsync a small file we wrote, if it is still there (a missing sidecar just means no resume)."""
    fd = hold_open(path)
    if fd >= 0:
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def close_quietly(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


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


class HashThreads:
    """The threads that run PartHashers: started when every one is busy, then kept for the
    server's life (like the session pool), each with its own ring of receive buffers, so a
    thousand small uploads neither start a thousand threads nor allocate a thousand rings (freed
    512 KiB buffers stay in each worker thread's malloc arena: measured +21 MiB of RSS when every
    upload made its own). There are never more than the uploads in progress at once."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._idle = 0
        self.started = 0

    def run(self, job, done: threading.Event) -> None:
        """Run ``job(ring)`` on a free thread; ``done`` is set once the thread is free again.
        ``ring``: the thread's receive buffers, kept for its life (a PartHasher lends them out)."""
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                self.started += 1
                threading.Thread(target=self._loop, name=f"ftp-hash-{self.started}", daemon=True).start()
        self._jobs.put((job, done))

    def _loop(self) -> None:
        ring = [memoryview(bytearray(PartHasher.RING_BUFFER)) for _ in range(PartHasher.RING)]
        while True:
            job, done = self._jobs.get()
            try:
                job(ring)
            finally:
                with self._lock:
                    self._idle += 1     # free before `done`: the next upload reuses this thread
                done.set()


def _sync_file_range():
    """libc's sync_file_range (Linux): start writing a range of a file to the disk and return
    at once. None where it does not exist (then the hash thread fdatasyncs now and then)."""
    try:
        import ctypes
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError, ImportError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


SYNC_FILE_RANGE = _sync_file_range()
SYNC_FILE_RANGE_WRITE = 2


class PartHasher:
    """The digest of a part file, computed while it is being written.

        session thread:  recv_into(lent buffer) ─► os.write(part) ─► advance(bytes)
                                                                    │ (queue, Condition)
        hash thread:            hasher.update(the same bytes) ◄────┘ ─► buffer given back

    The session receives into one of ``RING`` buffers (512 KiB) it borrows from the hasher (``buffer()``),
    writes the bytes to the part and hands the same bytes to the hash thread, which hashes them
    and gives the buffer back, while the session already receives into the next one: receiving
    + writing and hashing run on two cores (hashlib and the socket release the GIL), and no byte
    is copied or read back. The hash thread also starts the disk on what it has hashed
    (sync_file_range, which does not wait), so the fsync before the rename finds little to do.

    ``start``/``hasher``: the bytes before ``start`` are already hashed into ``hasher`` (a resume
    whose prefix was hashed for the 350); else a resumed part's old bytes are read back and
    hashed first, while the new ones arrive. Small bodies are hashed inline (``threads=None``):
    handing them to a thread would cost more than it saves.
    """

    RING = 4
    RING_BUFFER = 512 * 1024     # measured on loopback: 5 % faster than 256 KiB; 2 MiB per upload

    def __init__(self, path: str, algo: str, *, start: int = 0, hasher=None, old: int = 0,
                 threads: HashThreads | None = None) -> None:
        self.fd = open_regular(path, os.O_RDONLY)
        self.hasher = hasher if hasher is not None else hashlib.new(algo)
        self.hashed = start if hasher is not None else 0
        self._old = old                  # bytes already in the part: read back, hashed first
        self._writing = True
        self._stopped = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._flushed = 0                # bytes the disk was told to write (or fdatasync'ed)
        self._pending: deque = deque()   # bytes to hash, in file order; an int gives a buffer back
        self._ring: list[memoryview] = []  # the hash thread's, once it has taken this job
        self._free: list[int] = []
        self._lent: int | None = None    # the ring buffer the session receives into now
        self._spare: memoryview | None = None   # received into once the hash thread has failed
        self._finished = threading.Event() if threads is not None else None
        if threads is not None:
            threads.run(self._run, self._finished)

    @property
    def lends_buffers(self) -> bool:
        return self._finished is not None

    def buffer(self) -> memoryview:
        """A buffer to receive the next bytes into; the one lent before goes back to the hash
        thread's queue (it is free again once its bytes are hashed). Waits while all are busy."""
        with self._cond:
            if self._lent is not None:
                self._pending.append(self._lent)
                self._lent = None
                self._cond.notify()
            while not self._free and self._error is None and not self._finished.is_set():
                self._cond.wait()
            if self._error is not None or not self._free:   # the hash thread failed: finish() says why
                if self._spare is None:
                    self._spare = memoryview(bytearray(self.RING_BUFFER))
                return self._spare
            self._lent = self._free.pop()
            return self._ring[self._lent]

    def advance(self, data: bytes | memoryview) -> None:
        """The writer has appended ``data`` to the part."""
        if self._finished is None:
            self._hash_old()
            self.hasher.update(data)
            self.hashed += len(data)
            return
        if isinstance(data, memoryview) and not self._owns(data):
            data = bytes(data)          # someone else's buffer may change before it is hashed
        with self._cond:
            if self._error is None:
                self._pending.append(data)
            self._cond.notify()

    def _owns(self, view: memoryview) -> bool:
        return any(view.obj is buffer.obj for buffer in self._ring)

    def finish(self) -> str:
        """All bytes are written: hash the rest and return the hex digest."""
        if self._finished is not None:
            with self._cond:
                self._writing = False
                self._cond.notify()
            self._finished.wait()
        else:
            self._hash_old()
        self._close()
        if self._error is not None:
            raise self._error
        return self.hasher.hexdigest()

    def stop(self) -> None:
        """The upload ends without a digest (cut, aborted, dropped): stop at once."""
        if self._finished is not None:
            with self._cond:
                self._stopped = True
                self._cond.notify()
            self._finished.wait()
        self._close()

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _run(self, ring: list[memoryview]) -> None:
        with self._cond:
            self._ring, self._free = ring, list(range(len(ring)))
            self._cond.notify_all()
        try:
            self._hash_old()
            while True:
                with self._cond:
                    while not self._stopped and self._writing and not self._pending:
                        self._cond.wait()
                    if self._stopped or not self._pending:
                        return
                    item = self._pending.popleft()
                if isinstance(item, int):
                    with self._cond:
                        self._free.append(item)
                        self._cond.notify()
                    continue
                self.hasher.update(item)
                self.hashed += len(item)
                if self.hashed - self._flushed >= FLUSH_EVERY:
                    self._start_disk()
        except BaseException as exc:   # noqa: BLE001 - reported by finish() in the session's thread
            with self._cond:
                self._error = exc          # buffer() no longer waits for us
                self._cond.notify_all()
                # The ring is ours again only once the session stops receiving into it
                # (finish or stop): the next upload on this thread gets the same buffers.
                while self._writing and not self._stopped:
                    self._cond.wait()

    def _start_disk(self) -> None:
        """What is hashed goes to the disk now, while the next bytes arrive, so the fsync before
        the rename has only the tail left (one fsync of the whole file at the end would leave
        the network idle)."""
        if SYNC_FILE_RANGE is not None:
            if SYNC_FILE_RANGE(self.fd, self._flushed, self.hashed - self._flushed, SYNC_FILE_RANGE_WRITE) == 0:
                self._flushed = self.hashed
                return
        if self.hashed - self._flushed >= FDATASYNC_EVERY:
            os.fdatasync(self.fd)
            self._flushed = self.hashed

    def _hash_old(self) -> None:
        """Read back and hash the part's bytes from before this session (a resume), once."""
        if self.hashed >= self._old:
            return
        buffer = memoryview(bytearray(min(READ_CHUNK, self._old - self.hashed)))
        while self.hashed < self._old and not self._stopped:
            view = buffer[:min(len(buffer), self._old - self.hashed)]
            n = os.preadv(self.fd, [view], self.hashed)
            if n == 0:
                raise OSError(errno.EIO, f"the part ended at byte {self.hashed}, {self._old} were written")
            self.hasher.update(view[:n])
            self.hashed += n


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write may write less than asked (a signal, a full disk): loop like sendall does."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_sidecar(path: str, obj: dict) -> None:
    """Write ``.NAME.part.json`` in place (no temp file: its name would exceed NAME_MAX for a
    long NAME). A torn sidecar is harmless: it does not parse, so the next put starts at 0.
    On any error (a full disk) nothing is left behind. Not fsync'ed here: an upload that
    completes deletes it again, so only one that stops needs it on the disk, and
    Upload.keep_for_resume fsyncs it then, with the part (one journal commit fewer per put)."""
    data = json.dumps(obj).encode("utf-8")
    try:
        fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
    except BaseException:
        remove_quietly(path)
        raise


MAX_SIDECAR_BYTES = 16 * 1024


# ---------------------------------------------------------------------------------------------
# Uploads
# ---------------------------------------------------------------------------------------------

@dataclass
class Upload:
    """One upload in progress: from the 350 until 226, or until the client goes away.

    ``digest`` is what the client announced in its put (protocol 1), or None until the trailer
    names it (protocol 2, ``trailer``). ``prefix`` is the hash of the part's first ``offset``
    bytes when the 350 had to tell it (``part_digest``, protocol 2 resumes)."""

    user: str
    target: Resolved
    file_size: int
    algo: str
    digest: str | None
    offset: int                    # where the client's data starts (bytes already in the part)
    trailer: bool = False
    written: int = 0               # bytes of this session's body written so far
    fd: int = -1
    replaced: int = -1             # after commit(): the replaced file, still open (see there)
    hasher: PartHasher | None = None
    prefix: object = None
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

    def hash_prefix(self) -> str:
        """The digest of the part's first ``offset`` bytes (protocol 2: the 350's part_digest)."""
        fd = open_regular(self.part, os.O_RDONLY)
        try:
            self.prefix = hash_fd(fd, self.algo, self.offset)
        finally:
            os.close(fd)
        return self.prefix.hexdigest()

    def restart(self) -> None:
        """Protocol 2: the client's file does not start like the part (its part_digest differs),
        so it sends everything from byte 0; open() truncates the part."""
        self.offset, self.prefix = 0, None

    def open(self, threads: HashThreads | None = None) -> None:
        """Open the part for appending at ``offset``; start hashing (old bytes first), on one of
        ``threads`` unless the body is small."""
        self.fd = open_regular(self.part, os.O_WRONLY | os.O_CREAT)
        os.ftruncate(self.fd, self.offset)       # never trust bytes past the agreed offset
        os.lseek(self.fd, self.offset, os.SEEK_SET)
        prefix = self.prefix.copy() if self.prefix is not None else None
        self.hasher = PartHasher(self.part, self.algo, start=self.offset, hasher=prefix, old=self.offset,
                                 threads=threads if self.file_size - self.offset >= HASH_IN_BACKGROUND else None)

    def write(self, data: bytes | memoryview) -> None:
        if len(data) > self.remaining:
            raise StorageError(Code.BAD_ARGUMENTS, "more bytes than the announced file size")
        write_all(self.fd, data)
        self.written += len(data)
        self.hasher.advance(data)

    def _stop_hashing(self) -> None:
        hasher, self.hasher = self.hasher, None
        if hasher is not None:
            hasher.stop()

    def drop_received(self) -> None:
        """Forget this session's bytes (their frame failed its checksum): back to ``offset``."""
        self._stop_hashing()
        if self.fd >= 0:
            os.ftruncate(self.fd, self.offset)
        self.written = 0

    def keep_for_resume(self) -> int:
        """The client is gone or gave up: make what we have durable (the part and its sidecar),
        so a resume can trust it."""
        self._stop_hashing()
        if self.fd >= 0:
            try:
                os.fsync(self.fd)
            finally:
                os.close(self.fd)
                self.fd = -1
        fsync_quietly(self.sidecar)
        try:
            return os.lstat(self.part).st_size
        except FileNotFoundError:
            return 0

    def commit(self) -> str:
        """Verify, fsync, rename into place, fsync the directory. Returns the digest."""
        hasher, self.hasher = self.hasher, None
        got = hasher.finish() if hasher is not None else hashlib.new(self.algo).hexdigest()
        if self.position != self.file_size or got != self.digest:
            self.discard()
            raise StorageError(Code.LOCAL_ERROR, f"{self.algo} mismatch: you announced {self.digest}, "
                               f"the {self.position} bytes received hash to {got}; upload discarded")
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        # The file this one replaces is held open across the rename, so the rename does not
        # free its blocks then and there (ext4: 0.2 ms per MiB of the old file, 50 ms for
        # 256 MiB, before the 226): whoever calls let_go_of_replaced() frees them, off the path.
        replaced = hold_open(self.target.real)
        try:
            os.replace(self.part, self.target.real)
            fsync_directory(os.path.dirname(self.target.real))
        except BaseException:
            close_quietly(replaced)
            raise
        self.replaced = replaced
        remove_quietly(self.sidecar)
        return got

    def let_go_of_replaced(self) -> int:
        """The fd of the file the commit replaced (-1: none), handed over to be closed."""
        fd, self.replaced = self.replaced, -1
        return fd

    def discard(self) -> None:
        self._stop_hashing()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        remove_quietly(self.part)
        remove_quietly(self.sidecar)


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        pass


def read_sidecar(path: str) -> dict | None:
    try:
        fd = open_regular(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = json.loads(os.read(fd, MAX_SIDECAR_BYTES).decode("utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


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


@dataclass(frozen=True)
class Allowance:
    """What one user may keep: bytes (the quota) and entries (files + directories)."""

    bytes: int
    entries: int = DEFAULT_MAX_ENTRIES


class Storage:
    """Everything the sessions share about files: spaces per user and the digest cache.

    Every method that touches a path is a ``@path_operation``: an OSError in it leaves as the
    StorageError that ftp/oserrors.py maps it to, never as an exception that ends the session.
    """

    def __init__(self) -> None:
        self._spaces: dict[str, UserSpace] = {}
        self._lock = threading.Lock()
        self.digests = DigestCache()
        self.hash_threads = HashThreads()

    def space(self, user: str) -> UserSpace:
        with self._lock:
            return self._spaces.setdefault(user, UserSpace())

    def usage(self, user: str, home: Home) -> tuple[int, int]:
        """(bytes on disk, bytes reserved by uploads in progress). Reserved is read first: an
        upload moving bytes from 'reserved' to 'on disk' meanwhile is then counted twice, never
        zero times."""
        used, reserved, _entries = self.full_usage(user, home)
        return used, reserved

    def full_usage(self, user: str, home: Home) -> tuple[int, int, int]:
        """(bytes on disk, bytes reserved, entries): entries include one for every upload in
        progress whose part is not on the disk yet (it will be an entry when it finishes)."""
        space = self.space(user)
        reserved = space.reserved()
        pending = sum(1 for u in list(space.uploads.values()) if not os.path.lexists(u.part))
        used, entries = home_usage(home.real)
        return used, reserved, entries + pending

    @staticmethod
    def _check_entries(entries: int, allowance: Allowance, what: str) -> None:
        if entries + 1 > allowance.entries:
            raise StorageError(Code.QUOTA_EXCEEDED,
                               f"entry limit reached: {entries} files and directories of {allowance.entries} "
                               f"allowed; remove some before you create {what}")

    # --- put --------------------------------------------------------------------------------

    @path_operation
    def begin_upload(self, user: str, home: Home, allowance: Allowance | int, target: Resolved, file_size: int,
                     algo: str, digest: str | None, overwrite: bool, *, trailer: bool = False) -> Upload:
        """Check everything, pick the resume offset, reserve the quota. 350 follows on success.
        ``trailer`` (protocol 2): the digest comes after the body; ``digest`` is None."""
        if isinstance(allowance, int):
            allowance = Allowance(allowance)
        folder = os.path.dirname(target.real)
        if target.is_home:
            raise StorageError(Code.UNAVAILABLE, "give the file a name")
        if not stat.S_ISDIR(os.stat(folder).st_mode):
            raise StorageError(Code.UNAVAILABLE, f"not a directory: {os.path.dirname(target.virtual)}")
        if os.path.isdir(target.real):
            raise StorageError(Code.UNAVAILABLE, f"{target.virtual} is a directory")
        exists = os.path.lexists(target.real)
        if exists and not overwrite:
            raise StorageError(Code.UNAVAILABLE,
                               f"{target.virtual} exists; send overwrite=true to replace it")
        space = self.space(user)
        with space.lock:   # check + reserve as one step: the heart of a race-free quota
            if target.real in space.uploads:
                raise StorageError(Code.FILE_BUSY, f"{target.virtual} is being uploaded by another session")
            upload = Upload(user, target, file_size, algo, digest, offset=0, trailer=trailer)
            upload.offset = self._resume_offset(upload)
            used, reserved, entries = self.full_usage(user, home)
            if not exists and upload.offset == 0:
                self._check_entries(entries, allowance, target.virtual)
            need = file_size - upload.offset
            if used + reserved + need > allowance.bytes:
                raise StorageError(Code.QUOTA_EXCEEDED,
                                   f"quota exceeded: {used} bytes used + {reserved} reserved + {need} "
                                   f"more > your quota of {allowance.bytes} bytes")
            meta = {"file_size": file_size, "algo": algo, "digest": digest, "path": target.virtual}
            if read_sidecar(upload.sidecar) != meta:    # a resume keeps its sidecar untouched
                write_sidecar(upload.sidecar, meta)
            space.uploads[target.real] = upload
        return upload

    @staticmethod
    def _resume_offset(upload: Upload) -> int:
        """Bytes of a matching earlier part, or 0 (a part of some other file is thrown away)."""
        meta = read_sidecar(upload.sidecar)
        try:
            st = os.lstat(upload.part)
        except FileNotFoundError:
            remove_quietly(upload.sidecar)
            return 0
        # Protocol 1 resumes the same file (same digest). Protocol 2 knows no digest yet: a part of
        # the same size and algorithm is offered, with its part_digest, and the client checks it.
        same = (meta is not None and meta.get("file_size") == upload.file_size
                and meta.get("algo") == upload.algo
                and (upload.trailer or meta.get("digest") == upload.digest))
        if same and stat.S_ISREG(st.st_mode) and st.st_size <= upload.file_size:
            return st.st_size
        remove_quietly(upload.part)
        remove_quietly(upload.sidecar)
        return 0

    def close_later(self, fd: int) -> None:
        """Close ``fd`` on a hash thread: closing the last fd of a replaced file frees its blocks,
        which takes a while for a big one; the session answers and goes on meanwhile."""
        if fd >= 0:
            self.hash_threads.run(lambda ring: close_quietly(fd), threading.Event())

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

    @path_operation
    def open_for_download(self, home: Home, target: Resolved) -> tuple[int, os.stat_result]:
        """An fd on a regular file inside the home. The file we hash is the file we send: a
        replacement during the transfer does not matter, we keep reading the old inode."""
        real = os.path.realpath(target.real)
        home.confine(real, target.virtual)
        if stat.S_ISDIR(os.stat(real).st_mode):
            raise StorageError(Code.UNAVAILABLE, f"{target.virtual} is a directory")
        fd = open_regular(real, os.O_RDONLY)       # a FIFO: 550 at once, not a worker blocked
        return fd, os.fstat(fd)

    @path_operation
    def digest_of(self, fd: int, st: os.stat_result, algo: str, target: Resolved) -> str:
        return self.digests.digest_of(fd, st, algo)

    # --- directories ------------------------------------------------------------------------

    @path_operation
    def check_directory(self, target: Resolved) -> None:
        """cd: the target must be a directory (following links inside the home)."""
        if not stat.S_ISDIR(os.stat(target.real).st_mode):
            raise StorageError(Code.UNAVAILABLE, f"not a directory: {target.virtual}")

    @path_operation
    def list_dir(self, home: Home, target: Resolved) -> list[dict]:
        """Every entry of a directory, sorted by name (ftp.protocol.listing_page cuts pages).
        ``ls`` of anything else that exists lists that one entry, like ``ls FILE`` in a shell."""
        st = os.stat(target.real)
        if not stat.S_ISDIR(st.st_mode):
            folder, name = os.path.split(target.real)
            item = describe(home, folder, name)
            return [item] if item is not None else []
        with os.scandir(target.real) as it:
            items = [item for entry in it if (item := describe(home, target.real, entry.name)) is not None]
        items.sort(key=lambda item: (item["name"], item["type"]))
        return items

    @path_operation
    def make_dir(self, user: str, home: Home, allowance: Allowance | int, target: Resolved) -> None:
        if isinstance(allowance, int):
            allowance = Allowance(allowance)
        if target.is_home or os.path.lexists(target.real):
            raise StorageError(Code.UNAVAILABLE, f"{target.virtual} already exists")
        with self.space(user).lock:
            self._check_entries(self.full_usage(user, home)[2], allowance, target.virtual)
            os.mkdir(target.real, 0o755)

    @path_operation
    def remove(self, user: str, target: Resolved) -> str:
        """rm: a file, a symlink (never its target), an empty directory, or an unfinished upload."""
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
                os.rmdir(target.real)       # ENOTEMPTY: "550 the directory is not empty"
                removed.append("directory")
            elif os.path.lexists(target.real):
                kind = "link" if os.path.islink(target.real) else "file"
                os.unlink(target.real)
                removed.append(kind)
            if not removed:
                raise StorageError(Code.UNAVAILABLE, f"no such file or directory: {target.virtual}")
        return " and ".join(removed)


def shown_name(name: str) -> tuple[str, bool]:
    """A name as the client sees it, and whether it had to be escaped. A name on the disk that
    is not UTF-8 (made outside the protocol) comes from os.scandir with surrogate escapes; JSON
    cannot carry those, so its bytes are shown as ``\\xff`` (and paths with '\\' are refused:
    such a name cannot be confused with a real one, nor used)."""
    try:
        name.encode("utf-8")
        return name, False
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace"), True


def describe(home: Home, folder: str, name: str) -> dict | None:
    """One listing entry; unfinished uploads show up as "partial" under their final name."""
    path = os.path.join(folder, name)
    shown, escaped = shown_name(name)
    flag = {"undecodable": True} if escaped else {}
    try:
        lst = os.lstat(path)
    except OSError:
        return None                          # removed while we listed
    if is_internal_name(name):
        if not name.endswith(PART_SUFFIX):
            return None
        final = shown[1:-len(PART_SUFFIX)]
        meta = read_sidecar(os.path.join(folder, f"{name[:-len(PART_SUFFIX)]}{SIDECAR_SUFFIX}")) or {}
        expected = meta.get("file_size")
        return {"name": final, "type": "partial", "size": lst.st_size,
                "file_size": expected if type(expected) is int else None, **flag}  # noqa: E721
    try:
        if stat.S_ISLNK(lst.st_mode):
            home.confine(path, shown)        # a link leading out of the home is shown, not followed
        st = os.stat(path)
    except (ProtocolError, OSError):
        return {"name": shown, "type": "link", "size": 0, "mtime": 0, **flag}
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
    size = st.st_size if kind == "file" else 0
    return {"name": shown, "type": kind, "size": size, "mtime": int(st.st_mtime), **flag}
