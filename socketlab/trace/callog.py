"""The call side of a trace: the JSON lines services/labtrace writes, read back as ``Call`` records.

One file per node (``/tmp/labtrace-<role>.jsonl``); every process on the node appends to it. A
record is written when its call *returns*, so files are not in time order: ``read_calls`` sorts.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

NODE_LOG = "/tmp/labtrace-{role}.jsonl"
ENV = "SOCKETLAB_TRACE"

RECEIVES = {"recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg"}
SENDS = {"send", "sendall", "sendto"}
WAITS = RECEIVES | {"accept", "connect", "connect_ex"}   # calls whose *return* is the news


@dataclass(frozen=True)
class Call:
    role: str                 # the node: "client", "server", "relay"
    t: int                    # ns since the epoch, when the call began
    dur: int                  # ns it took
    pid: int
    call: str                 # "connect", "sendall", "recv", ...
    fd: int
    local: str | None = None  # "10.77.0.31:40112"
    peer: str | None = None
    req: int | None = None    # bytes asked for
    n: int | None = None      # bytes moved
    head: str = ""
    ret: int | None = None    # accept: the new fd; connect_ex: the errno it returned
    addr: str | None = None   # bind/connect: the address given
    exc: str = ""
    errno: int | None = None
    extra: dict = field(default_factory=dict)   # opt/value (setsockopt), args, argv, thread

    @property
    def end(self) -> int:
        return self.t + self.dur

    @property
    def failed(self) -> bool:
        return bool(self.exc) or (self.call == "connect_ex" and bool(self.ret))

    def as_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if v not in (None, "", {})}
        d.update(d.pop("extra", {}))
        return d


_FIELDS = {"t", "dur", "pid", "call", "fd", "local", "peer", "req", "n", "head", "ret", "addr", "exc", "errno"}


def parse_record(role: str, rec: dict) -> Call:
    known = {k: rec[k] for k in _FIELDS if k in rec}
    extra = {k: v for k, v in rec.items() if k not in _FIELDS}
    return Call(role=role, extra=extra, **known)


def read_calls(role: str, text: str | bytes) -> list[Call]:
    """One node's log; a torn last line (the program was killed mid-write) is skipped."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    calls = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and {"t", "call", "fd", "pid"} <= rec.keys():
            calls.append(parse_record(role, {"dur": 0, **rec}))
    return sorted(calls, key=lambda c: c.t)
