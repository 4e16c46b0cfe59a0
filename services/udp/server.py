"""Lesson udp, the server: a UDP echo server that also keeps a record of what it received.

UDP (基于UDP的套接字, seed §2.6, which the seed left empty) has no connection: no listen(), no
accept(), no per-client socket. One socket receives every client's datagrams; recvfrom() says
who sent each one, and sendto() answers that address. Each datagram is a whole message: it
arrives complete or not at all, and one recvfrom() returns exactly one datagram.

What the server does with a datagram:

    DATA <seq> <payload>   stop-and-wait receiver: deliver it if <seq> is the next one expected,
                           reply "ACK <seq>" (again for a duplicate: our first ACK may be lost)
    STATS                  reply a JSON record: per sender address, datagrams, bytes, messages
                           delivered in order, duplicates (see reliable_client.py)
    RESET                  forget every record
    BLAST <count> <size>   send <count> datagrams of <size> bytes back at once (to show that a
                           receiver that is not reading loses datagrams, with no network fault)
    anything else          echo it back unchanged, including the empty datagram

    $ python3 server.py --port 20040
    listening on 0.0.0.0:20040 (udp)
"""
import argparse
import json
import signal
import socket
from collections import OrderedDict
from dataclasses import dataclass, field

# The largest UDP payload over IPv4: 65535 (IP total length) - 20 (IP header) - 8 (UDP header).
MAX_DATAGRAM = 65507
MAX_PEERS = 1000            # remember at most this many sender addresses
MAX_KEPT = 10_000           # messages kept per sender
MAX_BLAST = 10_000
BLAST_SIZES = range(16, 1473)   # up to 1472: fits one Ethernet frame (1500 - 20 - 8), no fragments


@dataclass
class Peer:
    """What one sender address has sent us."""
    datagrams: int = 0
    bytes: int = 0
    next_seq: int = 0                       # the DATA sequence number we expect next
    delivered: list[bytes] = field(default_factory=list)
    duplicates: int = 0
    ahead: int = 0                          # DATA beyond next_seq (a sender that did not wait)

    def as_dict(self, address: str, listed: int = 200) -> dict:
        return {"addr": address, "datagrams": self.datagrams, "bytes": self.bytes,
                "delivered": self.next_seq, "duplicates": self.duplicates, "ahead": self.ahead,
                "messages": [m.decode("utf-8", "replace") for m in self.delivered[:listed]]}


class Records:
    def __init__(self) -> None:
        self.peers: OrderedDict[str, Peer] = OrderedDict()

    def peer(self, address: str) -> Peer:
        if address not in self.peers:
            if len(self.peers) >= MAX_PEERS:
                self.peers.popitem(last=False)      # forget the oldest sender
            self.peers[address] = Peer()
        return self.peers[address]

    def stats(self, you: str) -> bytes:
        report = {"you": you, "peers": [p.as_dict(a) for a, p in list(self.peers.items())[-50:]]}
        text = json.dumps(report).encode("utf-8")
        while len(text) > MAX_DATAGRAM:             # it must fit in one datagram
            report["peers"] = [dict(p, messages=p["messages"][:10]) for p in report["peers"][-10:]]
            text = json.dumps(report).encode("utf-8")
        return text


def receive_data(peer: Peer, seq: int, payload: bytes) -> bytes | None:
    """Stop-and-wait, receiver side. Returns the ACK to send, or None."""
    if seq == peer.next_seq:
        if len(peer.delivered) < MAX_KEPT:
            peer.delivered.append(payload)
        peer.next_seq += 1
        return b"ACK %d" % seq
    if seq < peer.next_seq:
        # Delivered already: the sender did not get our ACK (lost, or late) and sent it again.
        # Deliver nothing, but ACK again, or the sender would retry forever.
        peer.duplicates += 1
        return b"ACK %d" % seq
    peer.ahead += 1            # a gap: an earlier message is missing; ignore this one
    return None


def blast(sock: socket.socket, address: tuple[str, int], count: int, size: int) -> int:
    """Send ``count`` numbered datagrams as fast as sendto() goes. Returns how many were sent."""
    sent = 0
    for i in range(count):
        head = b"%08d " % i
        sock.sendto(head + b"." * (size - len(head)), address)
        sent += 1
    return sent


def handle(sock: socket.socket, records: Records, data: bytes, address: tuple[str, int]) -> str:
    """Answer one datagram; return a line for the log."""
    who = f"{address[0]}:{address[1]}"
    peer = records.peer(who)
    peer.datagrams += 1
    peer.bytes += len(data)
    words = data.split(b" ", 2)
    if words[0] == b"DATA" and len(words) >= 2 and words[1].isdigit():
        seq = int(words[1])
        ack = receive_data(peer, seq, words[2] if len(words) > 2 else b"")
        if ack:
            sock.sendto(ack, address)
        answer = ack.decode() if ack else "ignored (an earlier one is missing)"
        return f"DATA {seq}: {answer}; next expected {peer.next_seq}"
    if data == b"STATS":
        sock.sendto(records.stats(who), address)
        return "STATS"
    if data == b"RESET":
        records.peers.clear()
        sock.sendto(b"OK records cleared", address)
        return "RESET"
    if words[0] == b"BLAST":
        try:
            count, size = int(words[1]), int(words[2])
            if not (0 < count <= MAX_BLAST and size in BLAST_SIZES):
                raise ValueError
        except (ValueError, IndexError):
            sock.sendto(f"ERR usage: BLAST <count 1-{MAX_BLAST}> <size {BLAST_SIZES.start}-"
                        f"{BLAST_SIZES.stop - 1}>".encode(), address)
            return "BLAST refused"
        return f"BLAST: sent {blast(sock, address, count, size)} datagrams of {size} bytes"
    sock.sendto(data, address)         # echo, even b'': an empty datagram is a real message
    return f"echo {len(data)} bytes {data[:24]!r}{'...' if len(data) > 24 else ''}"


def serve(host: str, port: int, rcvbuf: int = 0, quiet: bool = False) -> None:
    # SOCK_DGRAM = UDP. No listen(), no accept(): the socket is ready once it is bound.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((host, port))
        effective = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        print(f"listening on {host}:{sock.getsockname()[1]} (udp, receive buffer {effective} bytes)",
              flush=True)
        records = Records()
        while True:
            # Ask for the largest possible datagram: with recvfrom(1024) a 2000-byte datagram
            # is cut to 1024 bytes and the rest is thrown away, silently.
            data, address = sock.recvfrom(MAX_DATAGRAM)
            try:
                line = handle(sock, records, data, address)
            except OSError as exc:          # e.g. the sender's address is unreachable: keep serving
                line = f"could not answer: {exc}"
            if not quiet:
                print(f"{address[0]}:{address[1]} {len(data)} bytes -> {line}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default: every interface)")
    parser.add_argument("--port", type=int, default=20040)
    parser.add_argument("--rcvbuf", type=int, default=0, help="SO_RCVBUF to ask for (the kernel doubles it)")
    parser.add_argument("--quiet", action="store_true", help="do not log every datagram")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        serve(args.host, args.port, args.rcvbuf, args.quiet)
    except KeyboardInterrupt:
        print("server stopped", flush=True)


if __name__ == "__main__":
    main()
