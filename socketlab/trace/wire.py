"""The packet side of a trace: a pcap file in, one ``Segment`` per TCP segment or UDP datagram out.

Why dpkt: it is pure Python (nothing to compile, the same wheel on every machine), maintained,
and reads pcap files by itself - no libpcap on the host, unlike pcapy or scapy's faster paths, and
far smaller than scapy. We need exactly what it does: pcap records -> Ethernet/IP/TCP/UDP headers.
The capture is written by tcpdump in the server's network namespace (capture.py) with nanosecond
timestamps from the kernel's clock, the same clock ``time.time_ns()`` reads in every container.
"""
from __future__ import annotations

import io
import socket
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal

import dpkt

HEAD = 32
MARK = b"socketlab-trace-mark "   # the datagram that ends a capture (services/labtrace/__main__.py)

_FLAG_NAMES = ((dpkt.tcp.TH_SYN, "SYN"), (dpkt.tcp.TH_FIN, "FIN"), (dpkt.tcp.TH_RST, "RST"),
               (dpkt.tcp.TH_PUSH, "PSH"), (dpkt.tcp.TH_ACK, "ACK"))


@dataclass(frozen=True)
class Segment:
    t: int            # ns since the epoch, when the server's network interface saw it
    proto: str        # "tcp" or "udp"
    src: str          # "10.77.0.31:40112"
    dst: str
    flags: str = ""   # "SYN", "SYN-ACK", "ACK", "PSH-ACK", "FIN-ACK", "RST-ACK" ("" for UDP)
    length: int = 0   # payload bytes
    seq: int = 0
    ack: int = 0
    head: str = ""    # repr() of the first payload bytes
    fragments: int = 1   # UDP: IP fragments the datagram came in (a 2000-byte datagram: 2 at MTU 1500)
    payload: bytes = field(default=b"", repr=False, compare=False)   # for the notes; not in as_dict()

    @property
    def is_pure_ack(self) -> bool:
        return self.proto == "tcp" and self.flags == "ACK" and not self.length

    def as_dict(self) -> dict:
        d = asdict(self)
        del d["payload"]
        return d


def flag_text(flags: int) -> str:
    """TCP flags the way people say them: SYN, SYN-ACK, PSH-ACK, FIN-ACK, RST."""
    return "-".join(name for bit, name in _FLAG_NAMES if flags & bit) or "none"


def _endpoint(addr: bytes, port: int) -> str:
    if len(addr) == 16:
        return f"[{socket.inet_ntop(socket.AF_INET6, addr)}]:{port}"
    return f"{socket.inet_ntop(socket.AF_INET, addr)}:{port}"


def read_pcap(data: bytes) -> list[Segment]:
    """Every TCP segment and UDP datagram in a pcap (Ethernet or Linux cooked), in capture order.

    The capture's own end marker is dropped; so is anything that is neither TCP nor UDP.
    """
    if not data:
        return []
    reader = dpkt.pcap.Reader(io.BytesIO(data))
    link = reader.datalink()
    out: list[Segment] = []
    first_fragment: dict[tuple, int] = {}      # (src, dst, IP id) -> index in out of the datagram's first piece
    for ts, frame in reader:
        # a nanosecond pcap gives Decimal seconds (exact), a microsecond one a float
        t = int(ts * 10**9) if isinstance(ts, Decimal) else round(ts * 1e6) * 1000
        try:
            packet = (dpkt.sll.SLL(frame) if link == dpkt.pcap.DLT_LINUX_SLL else dpkt.ethernet.Ethernet(frame)).data
        except (dpkt.UnpackError, IndexError):
            continue
        if not isinstance(packet, dpkt.ip.IP | dpkt.ip6.IP6):
            continue
        l4 = packet.data
        if isinstance(packet, dpkt.ip.IP) and packet.offset:
            # a later IP fragment: no UDP header of its own; it belongs to the datagram whose first
            # fragment carried the same IP id (the length already came from that UDP header)
            at = first_fragment.get((packet.src, packet.dst, packet.id))
            if at is not None:
                out[at] = replace(out[at], fragments=out[at].fragments + 1)
            continue
        if isinstance(l4, dpkt.tcp.TCP):
            payload = bytes(l4.data)
            out.append(Segment(t, "tcp", _endpoint(packet.src, l4.sport), _endpoint(packet.dst, l4.dport),
                               flag_text(l4.flags), len(payload), l4.seq, l4.ack,
                               repr(payload[:HEAD]) if payload else "", payload=payload))
        elif isinstance(l4, dpkt.udp.UDP):
            payload = bytes(l4.data)
            if payload.startswith(MARK):
                continue
            # the UDP header's length is the whole datagram's, also when only its first fragment is here
            length = max(l4.ulen - 8, len(payload)) if l4.ulen else len(payload)
            if isinstance(packet, dpkt.ip.IP) and packet.mf:
                first_fragment[(packet.src, packet.dst, packet.id)] = len(out)
            out.append(Segment(t, "udp", _endpoint(packet.src, l4.sport), _endpoint(packet.dst, l4.dport),
                               "", length, head=repr(payload[:HEAD]), payload=payload))
    return out


def write_pcap(segments: list[tuple[int, bytes]], nano: bool = True) -> bytes:
    """A pcap file of raw Ethernet frames (for tests): [(t_ns, frame), ...]."""
    buf = io.BytesIO()
    writer = dpkt.pcap.Writer(buf, snaplen=65535, nano=nano)
    for t, frame in segments:
        writer.writepkt(frame, ts=Decimal(t) / 10**9)
    return buf.getvalue()


def has_mark(data: bytes, token: str) -> bool:
    return (MARK + token.encode()) in data
