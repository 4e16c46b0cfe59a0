"""Keeping each user inside their home directory (家目录), the part the seed got dangerously wrong.

The seed built paths with ``path + os.sep + name`` from whatever the client sent, so
``get ../../../etc/passwd`` read any file the server could read, and ``put`` wrote anywhere.
Every path a client sends goes through ``Home.resolve`` here, in two independent steps:

1. **Lexically**, on the *virtual* path the user sees (``/`` is their home): an absolute path
   counts from the home (``/etc/passwd`` means ``<home>/etc/passwd``), ``..`` may climb up to
   the home and no further (553), ``.`` is skipped, and names that are internal to the server
   (unfinished uploads ``.<name>.part``) are refused.
2. **On the real file system**: ``os.path.realpath`` follows every symlink, then
   ``os.path.commonpath`` checks that the result is still under the home, component by
   component. A plain string test ``real.startswith(home)`` is the classic bug: for the home
   ``/srv/ftp/home/alice`` it also accepts ``/srv/ftp/home/alice2/secret`` (a *sibling prefix*).

What remains is a race (time of check to time of use): a symlink swapped in between the check
and the open. Users cannot create symlinks through this protocol, and files are opened with
O_NOFOLLOW on the last component; a server with untrusted local users too would walk the path
with ``dir_fd`` and O_NOFOLLOW on every component.
"""
from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from ftp.protocol import MAX_NAME_BYTES, PART_SUFFIX, SIDECAR_SUFFIX, Code, ProtocolError


class PathError(ProtocolError):
    """A path that may not be used; ``code`` is 553 (outside home, bad name) or 550."""


@dataclass(frozen=True)
class Resolved:
    virtual: str    # what the user sees: "/docs/a.txt"
    real: str       # where it is on the server's disk: "/srv/ftp/home/alice/docs/a.txt"

    @property
    def name(self) -> str:
        return posixpath.basename(self.virtual)

    @property
    def is_home(self) -> bool:
        return self.virtual == "/"


def is_internal_name(name: str) -> bool:
    """Names the server uses for unfinished uploads: ``.<name>.part`` and its ``.part.json``."""
    return name.startswith(".") and (name.endswith(PART_SUFFIX) or name.endswith(SIDECAR_SUFFIX))


def check_component(name: str) -> None:
    if "/" in name or "\\" in name:
        raise PathError(Code.NAME_NOT_ALLOWED, f"{name!r}: '\\' is not allowed in names (use '/' between)")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise PathError(Code.NAME_NOT_ALLOWED, f"a name is longer than {MAX_NAME_BYTES} bytes")
    if is_internal_name(name):
        raise PathError(Code.NAME_NOT_ALLOWED, f"{name!r} is reserved for unfinished uploads")


def virtual_path(cwd: str, arg: str) -> str:
    """Join ``arg`` to ``cwd`` and normalise, never climbing above "/" (the home).

    >>> virtual_path("/docs", "../a.txt")
    '/a.txt'
    >>> virtual_path("/docs", "/etc/passwd")      # absolute = from the home, not from the disk root
    '/etc/passwd'
    """
    if "\x00" in arg:
        raise PathError(Code.NAME_NOT_ALLOWED, "a path may not contain a NUL byte")
    parts: list[str] = [] if arg.startswith("/") else [p for p in cwd.split("/") if p]
    for part in arg.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PathError(Code.NAME_NOT_ALLOWED, f"{arg!r} leads outside your home directory")
            parts.pop()
            continue
        check_component(part)
        parts.append(part)
    return "/" + "/".join(parts)


class Home:
    """One user's home directory on the server's disk."""

    def __init__(self, path: str) -> None:
        # Resolve the home itself once: the root may be reached through a symlink (/tmp on macOS).
        self.real = os.path.realpath(path)

    def resolve(self, cwd: str, arg: str, *, follow_last: bool = True) -> Resolved:
        """The virtual and real path of ``arg`` typed in ``cwd``, or PathError (553).

        ``follow_last=False`` is for ``rm``: the last component may be a symlink leading out of
        the home, and it is the link itself that goes (unlink never follows it), so only the
        directory it sits in must be inside the home.
        """
        virtual = virtual_path(cwd, arg)
        real = os.path.join(self.real, *[p for p in virtual.split("/") if p])
        if follow_last or virtual == "/":
            self.confine(real, arg)
        else:
            self.confine(os.path.dirname(real), arg)
        return Resolved(virtual, real)

    def confine(self, real: str, shown: str) -> None:
        """Follow every symlink; the destination must still be inside the home."""
        target = os.path.realpath(real)
        if os.path.commonpath([self.real, target]) != self.real:
            raise PathError(Code.NAME_NOT_ALLOWED, f"{shown!r} leads outside your home directory")

    def virtual_of(self, real: str) -> str:
        rel = os.path.relpath(real, self.real)
        return "/" if rel == "." else "/" + rel.replace(os.sep, "/")
