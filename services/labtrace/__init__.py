"""The socket-call log: what a program asks of its sockets, and what the kernel answers.

``install(path)`` replaces the methods of ``socket.socket`` with thin wrappers that call the real
method and then append one JSON line to ``path``::

    {"t": 1764626400123456789, "dur": 51234, "pid": 7, "call": "recv", "fd": 3,
     "local": "10.77.0.31:40112", "peer": "10.77.0.30:20020", "req": 1024, "n": 10,
     "head": "b'helloworld'"}

t      wall clock when the call began (time.time_ns: the same clock in every container of a host,
       so calls line up with the packet capture); dur: nanoseconds the call took
req/n  bytes asked for (recv(1024), sendall of 10 bytes) / bytes the call really moved
head   the first 32 of those bytes; exc/errno: what the call raised, if it raised
flags  recv flags given (["MSG_PEEK", "MSG_TRUNC"]); msg_flags: what recvmsg() says happened
       (["MSG_TRUNC"]: the datagram was longer than the buffer, the rest is gone)

Nothing changes when tracing is off: sitecustomize.py imports this module only when
SOCKETLAB_TRACE is set, so an untraced program never even loads it. The file is opened with
O_APPEND and every record is one ``os.write``, so the threads and child processes of a program
(and several programs) can share one file without mixing their lines.
"""
from __future__ import annotations

import _socket
import json
import os
import socket
import sys
import threading
import time

HEAD = 32          # bytes of data kept per call
_out = -1          # the log's file descriptor
_pid = os.getpid()
_connected: dict[int, tuple[str | None, str | None]] = {}   # fd -> (local, peer) once connected
_first = True


def _fmt(addr) -> str | None:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr) if addr else None


def _ends(sock) -> tuple[str | None, str | None]:
    """(local, peer) of a socket; remembered per fd once both are known (they cannot change then)."""
    fd = _socket.socket.fileno(sock)
    if fd in _connected:
        return _connected[fd]
    try:
        local = _fmt(_socket.socket.getsockname(sock))
    except OSError:
        local = None
    try:
        peer = _fmt(_socket.socket.getpeername(sock))
    except OSError:
        return local, None
    _connected[fd] = (local, peer)
    return local, peer


def _head(data) -> str:
    return repr(bytes(memoryview(data)[:HEAD]))


def _write(rec: dict) -> None:
    global _first
    if _first:
        _first = False
        rec["argv"] = list(sys.argv)
    try:
        os.write(_out, (json.dumps(rec) + "\n").encode())
    except (OSError, ValueError):
        pass   # a full disk must not break the program we are watching


def _record(sock, call: str, t: int, fd: int, exc: BaseException | None, **fields) -> None:
    rec = {"t": t, "dur": time.time_ns() - t, "pid": _pid, "call": call, "fd": fd}
    if fd >= 0 and "local" not in fields:
        rec["local"], rec["peer"] = _ends(sock)
    rec.update((k, v) for k, v in fields.items() if v is not None)
    if threading.current_thread() is not threading.main_thread():
        rec["thread"] = threading.current_thread().name
    if exc is not None:
        rec["exc"] = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError) and exc.errno is not None:
            rec["errno"] = exc.errno
    _write(rec)


# -- what each call's arguments and result mean ---------------------------------------------------
def _sent(args, ret, exc) -> dict:
    data = args[0] if args else b""
    size = memoryview(data).nbytes if not isinstance(data, str) else len(data)
    moved = size if ret is None and exc is None else (ret if isinstance(ret, int) else None)
    return {"req": size, "n": moved, "head": repr(data[:HEAD]) if isinstance(data, str) else _head(data)}


_MSG_FLAGS = [(getattr(socket, name), name) for name in ("MSG_PEEK", "MSG_TRUNC", "MSG_WAITALL", "MSG_DONTWAIT",
                                                          "MSG_CTRUNC") if hasattr(socket, name)]


def _flag_names(flags) -> list[str] | None:
    if not isinstance(flags, int) or not flags:
        return None
    return [name for bit, name in _MSG_FLAGS if flags & bit] or [str(flags)]


def _received(args, ret, exc) -> dict:
    flags = _flag_names(args[1]) if len(args) > 1 else None
    if exc is not None:
        return {"req": args[0] if args and isinstance(args[0], int) else None, "flags": flags}
    data = ret[0] if isinstance(ret, tuple) else ret
    out = {"req": args[0] if args else None, "n": len(data), "head": _head(data), "flags": flags}
    if isinstance(ret, tuple):
        out["peer"] = _fmt(ret[1])
    return out


def _received_into(args, ret, exc) -> dict:
    buf = args[0] if args else None
    size = args[1] if len(args) > 1 and args[1] else (memoryview(buf).nbytes if buf is not None else None)
    flags = _flag_names(args[2]) if len(args) > 2 else None
    if exc is not None:
        return {"req": size, "flags": flags}
    n = ret[0] if isinstance(ret, tuple) else ret
    out = {"req": size, "n": n, "head": _head(memoryview(buf)[:min(n, HEAD)]), "flags": flags}
    if isinstance(ret, tuple):
        out["peer"] = _fmt(ret[1])
    return out


def _received_msg(args, ret, exc) -> dict:
    """recvmsg(bufsize[, ancbufsize[, flags]]) -> (data, ancdata, msg_flags, address)."""
    flags = _flag_names(args[2]) if len(args) > 2 else None
    if exc is not None:
        return {"req": args[0] if args else None, "flags": flags}
    data, _, msg_flags, address = ret
    return {"req": args[0] if args else None, "n": len(data), "head": _head(data), "flags": flags,
            "msg_flags": _flag_names(msg_flags), "peer": _fmt(address) if address else None}


def _sendto(args, ret, exc) -> dict:
    return {**_sent(args, ret, exc), "peer": _fmt(args[-1]) if len(args) >= 2 else None}


def _address(args, ret, exc) -> dict:
    return {"addr": _fmt(args[0]) if args else None}


def _connect_ex(args, ret, exc) -> dict:
    return {"addr": _fmt(args[0]) if args else None, "ret": ret}


def _plain(args, ret, exc) -> dict:
    return {"args": [a if isinstance(a, int | str) else repr(a) for a in args] or None}


def _setsockopt(args, ret, exc) -> dict:
    names = {(socket.SOL_SOCKET, socket.SO_REUSEADDR): "SO_REUSEADDR",
             (socket.IPPROTO_TCP, socket.TCP_NODELAY): "TCP_NODELAY",
             (socket.SOL_SOCKET, socket.SO_RCVBUF): "SO_RCVBUF", (socket.SOL_SOCKET, socket.SO_SNDBUF): "SO_SNDBUF",
             (socket.SOL_SOCKET, socket.SO_LINGER): "SO_LINGER",
             (socket.SOL_SOCKET, getattr(socket, "SO_REUSEPORT", -1)): "SO_REUSEPORT",
             (socket.SOL_SOCKET, socket.SO_KEEPALIVE): "SO_KEEPALIVE",
             (socket.SOL_SOCKET, socket.SO_BROADCAST): "SO_BROADCAST"}
    value = args[2] if len(args) > 2 else None
    return {"opt": names.get((args[0], args[1]), f"{args[0]}/{args[1]}") if len(args) > 1 else None,
            "value": value if isinstance(value, int) else (repr(value) if value is not None else None)}


DESCRIBE = {"bind": _address, "connect": _address, "connect_ex": _connect_ex, "listen": _plain,
            "send": _sent, "sendall": _sent, "sendto": _sendto, "recv": _received, "recvfrom": _received,
            "recv_into": _received_into, "recvfrom_into": _received_into, "recvmsg": _received_msg,
            "shutdown": _plain,
            "setsockopt": _setsockopt}


def _safely(describe, args, ret, exc) -> dict:
    """Odd arguments (a str for send, a wrong type) are the program's bug to see, never ours to raise."""
    try:
        return describe(args, ret, exc)
    except Exception:
        return {"args": [repr(a)[:HEAD] for a in args]}


def _wrap(name: str, describe):
    real = getattr(socket.socket, name)

    def traced(self, *args, **kwargs):
        t = time.time_ns()
        fd = _socket.socket.fileno(self)
        if name in ("connect", "connect_ex", "bind"):
            _connected.pop(fd, None)
        try:
            ret = real(self, *args, **kwargs)
        except BaseException as exc:
            _record(self, name, t, fd, exc, **_safely(describe, args, None, exc))
            raise
        _record(self, name, t, fd, None, **_safely(describe, args, ret, None))
        return ret

    traced.__name__ = traced.__qualname__ = name
    traced.__doc__ = real.__doc__
    return traced


def _wrap_init():
    real = socket.socket.__init__

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):   # noqa: A002 (socket's own names)
        t = time.time_ns()
        real(self, family, type, proto, fileno)
        fd = _socket.socket.fileno(self)
        _connected.pop(fd, None)
        if fileno is None:       # accept() and dup() wrap an fd that already exists: not a new socket
            kind = {socket.SOCK_STREAM: "SOCK_STREAM", socket.SOCK_DGRAM: "SOCK_DGRAM"}.get(
                self.type, str(int(self.type)))
            _record(self, "socket", t, fd, None, local=None, peer=None, args=[self.family.name, kind])
    return __init__


def _wrap_accept():
    real = socket.socket.accept

    def accept(self):
        t = time.time_ns()
        fd = _socket.socket.fileno(self)
        try:
            conn, addr = real(self)
        except BaseException as exc:
            _record(self, "accept", t, fd, exc, local=None, peer=None)
            raise
        local, peer = _ends(conn)
        _record(self, "accept", t, fd, None, local=local, peer=peer, ret=_socket.socket.fileno(conn))
        return conn, addr
    accept.__doc__ = real.__doc__
    return accept


def _wrap_close():
    real = socket.socket.close

    def close(self):
        t = time.time_ns()
        fd = _socket.socket.fileno(self)
        if fd < 0:               # closing an already closed socket: nothing happens, nothing to show
            return real(self)
        local, peer = _ends(self)
        _connected.pop(fd, None)
        try:
            real(self)
        except BaseException as exc:
            _record(self, "close", t, fd, exc, local=local, peer=peer)
            raise
        _record(self, "close", t, fd, None, local=local, peer=peer)
    close.__doc__ = real.__doc__
    return close


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()
    _connected.clear()


_originals: dict[str, object] = {}


def install(path: str) -> None:
    """Trace every socket call of this process (and its children) into ``path``; idempotent."""
    global _out
    if _out >= 0:
        return
    _out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    for name in [*DESCRIBE, "__init__", "accept", "close"]:
        _originals[name] = socket.socket.__dict__.get(name)    # None: inherited from _socket.socket
    for name, describe in DESCRIBE.items():
        setattr(socket.socket, name, _wrap(name, describe))
    socket.socket.__init__ = _wrap_init()
    socket.socket.accept = _wrap_accept()
    socket.socket.close = _wrap_close()
    if not _originals.get("_fork_hook"):
        os.register_at_fork(after_in_child=_after_fork)
        _originals["_fork_hook"] = True


def uninstall() -> None:
    """Put the real methods back and close the log (for tests and benchmarks)."""
    global _out
    if _out < 0:
        return
    for name, original in _originals.items():
        if name == "_fork_hook":
            continue
        if original is None:
            delattr(socket.socket, name)
        else:
            setattr(socket.socket, name, original)
    os.close(_out)
    _out = -1
    _connected.clear()
