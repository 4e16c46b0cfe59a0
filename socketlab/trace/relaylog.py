"""The relay's side of a trace: the datagrams services/udp/relay.py dropped, read from its log.

The relay prints one line per datagram; a dropped one reads::

    up   #6        5 bytes b'seq 6': DROPPED at 1764626400.123456789 from 10.77.0.51:45980 to 0.0.0.0:20042

direction (up: client to server), its number in that direction of the flow (the fate index the
seed decides), its size and first bytes, and then when (the wall clock, the clock of the capture
and of the call log) and which datagram: its source and destination as the relay received it.
A drop leaves no packet behind it, so this line is the only record; the ladder draws it as ✘.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

LINE = re.compile(r"^(?P<direction>up|down)\s+#(?P<index>\d+)\s+(?P<length>\d+) bytes (?P<head>.*): DROPPED "
                  r"at (?P<s>\d+)\.(?P<ns>\d{9}) from (?P<src>\S+) to (?P<dst>\S+)\s*$")


@dataclass(frozen=True)
class Drop:
    role: str          # the node the relay ran on
    t: int             # ns since the epoch
    direction: str     # "up" (towards the server) or "down"
    index: int         # the datagram's number in this direction of its flow (0 = the first)
    length: int
    head: str          # repr() of its first bytes (the relay prints at most 20)
    src: str           # "10.77.0.51:45980", as the relay received it
    dst: str           # "0.0.0.0:20042": the relay's own end may be a wildcard

    def as_dict(self) -> dict:
        return asdict(self)


def read_drops(role: str, text: str | bytes) -> list[Drop]:
    """Every DROPPED line of a relay's log (other lines, and torn ones, are skipped), in time order."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    drops = []
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m:
            drops.append(Drop(role, int(m["s"]) * 10**9 + int(m["ns"]), m["direction"], int(m["index"]),
                              int(m["length"]), m["head"], m["src"], m["dst"]))
    return sorted(drops, key=lambda d: d.t)
