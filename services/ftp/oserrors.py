"""From an OS error to a reply: the one table that turns ``OSError`` into an FTP reply code.

Every operation on a path can fail in ways the client caused (a name through a file, a path too
long), the disk caused (full, read-only, broken) or nobody caused (too many open files). The
seed answered none of them: the exception ended the session. Here the file-system layer
(ftp/storage.py) runs every path operation under ``os_errors_as_replies``, so an ``OSError``
leaves it only as a ``StorageError`` with the code from OS_ERROR_REPLIES below, and the session
sends that reply and goes on:

    os.mkdir("home/alice/file/sub")  ──►  OSError(ENOTDIR)  ──►  550 "/file/sub: a part of the path is not a directory"

Why one table instead of an ``except`` in every command: a command written later (or an errno
nobody thought of) gets an answer too, and the same error gets the same code everywhere.
Socket errors never pass through here: they are the session's business, not the disk's.
"""
from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ftp.protocol import Code, ProtocolError


class StorageError(ProtocolError):
    """A file-system refusal with the reply code it deserves (550, 552, 450, 452...)."""


#: errno -> (reply code, what to tell the user). 4xx: may work later; 5xx: will not.
OS_ERROR_REPLIES: dict[int, tuple[int, str]] = {
    errno.ENOENT: (Code.UNAVAILABLE, "no such file or directory"),
    errno.ENOTDIR: (Code.UNAVAILABLE, "a part of the path is not a directory"),
    errno.EISDIR: (Code.UNAVAILABLE, "is a directory"),
    errno.EEXIST: (Code.UNAVAILABLE, "already exists"),
    errno.ENOTEMPTY: (Code.UNAVAILABLE, "the directory is not empty"),
    errno.EACCES: (Code.UNAVAILABLE, "permission denied on the server's disk"),
    errno.EPERM: (Code.UNAVAILABLE, "operation not permitted on the server's disk"),
    errno.EROFS: (Code.UNAVAILABLE, "the server's disk is read-only"),
    errno.EMLINK: (Code.UNAVAILABLE, "too many links in that directory"),
    errno.ENXIO: (Code.UNAVAILABLE, "not a regular file"),
    errno.ENAMETOOLONG: (Code.NAME_NOT_ALLOWED, "the path is too long for the server's disk"),
    errno.ELOOP: (Code.NAME_NOT_ALLOWED, "too many symbolic links (a loop?)"),
    errno.EINVAL: (Code.NAME_NOT_ALLOWED, "a name the server's disk does not accept"),
    errno.EILSEQ: (Code.NAME_NOT_ALLOWED, "a name the server's disk does not accept"),
    errno.ENOSPC: (Code.INSUFFICIENT_STORAGE, "the server's disk is full"),
    errno.EDQUOT: (Code.INSUFFICIENT_STORAGE, "the server's disk quota is used up"),
    errno.EFBIG: (Code.INSUFFICIENT_STORAGE, "the file is too large for the server's disk"),
    errno.EBUSY: (Code.FILE_BUSY, "busy on the server"),
    errno.ETXTBSY: (Code.FILE_BUSY, "busy on the server"),
    errno.EAGAIN: (Code.FILE_BUSY, "busy on the server; try again"),
    errno.EMFILE: (Code.LOCAL_ERROR, "the server has too many open files; try again"),
    errno.ENFILE: (Code.LOCAL_ERROR, "the server has too many open files; try again"),
    errno.ENOMEM: (Code.LOCAL_ERROR, "the server is out of memory; try again"),
    errno.EIO: (Code.LOCAL_ERROR, "an I/O error on the server's disk"),
    errno.EXDEV: (Code.LOCAL_ERROR, "cannot move across file systems on the server"),
}

UNKNOWN_OS_ERROR = (Code.LOCAL_ERROR, "the server's disk failed")


def reply_for_os_error(exc: OSError, shown: str) -> StorageError:
    """The StorageError (code + one sentence naming the user's path) for an OSError."""
    code, text = OS_ERROR_REPLIES.get(exc.errno, UNKNOWN_OS_ERROR)
    if exc.errno not in OS_ERROR_REPLIES and exc.strerror:
        text = f"{text} ({exc.strerror})"
    return StorageError(code, f"{shown}: {text}")


@contextmanager
def os_errors_as_replies(shown: str) -> Iterator[None]:
    """``with os_errors_as_replies("/docs/a.txt"): os.mkdir(...)``: an OSError becomes a StorageError."""
    try:
        yield
    except OSError as exc:
        raise reply_for_os_error(exc, shown) from None


F = TypeVar("F", bound=Callable[..., Any])


def path_operation(function: F) -> F:
    """Decorate a Storage method whose first argument after ``self`` (or first) has ``.virtual``
    (a ``Resolved`` path): any OSError inside it becomes the reply for that path."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        target = next((a for a in args if hasattr(a, "virtual")), None)
        with os_errors_as_replies(target.virtual if target is not None else "that path"):
            return function(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
