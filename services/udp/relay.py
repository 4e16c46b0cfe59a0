"""Lesson udp, the relay: a bad network you can replay. It loses, delays, duplicates and reorders.

Put it between a client and a server; the client talks to the relay, the relay to the server:

    client  --->  relay :20041  --->  udp-server :20040
            <---              <---
    $ python3 relay.py --port 20041 --to udp-server:20040 --loss 0.3 --seed 42

Why not `tc qdisc ... netem loss 30%`? netem is the kernel's network emulator, and many kernels
(this lab's machines, WSL2, Docker Desktop) do not ship it ("Specified qdisc kind is unknown");
`python lab.py doctor` says whether yours has it. The relay is plain Python and runs everywhere.
It is reproducible: every datagram's fate comes from a random generator seeded with --seed, so
datagram number 7 of a flow meets the same fate on every run. (netem can be seeded too, with
`netem ... seed N` in recent iproute2/kernels; the reason for the relay is only that netem is
absent here.)

A flow is one client address (ip:port). Each new flow starts its own generators (one per
direction) from the seed, so a client that opens a new socket sees the same fates again.
Every datagram draws exactly four numbers (loss, duplicate, reorder, jitter), whatever the
options, so adding --duplicate does not change which datagrams are lost.

    --loss P        drop the datagram with probability P
    --duplicate P   deliver it twice
    --reorder P     hold it back until the next datagram of the same direction has gone
                    (at most --hold ms), so the two arrive swapped
    --delay MS      delay every datagram; --jitter MS adds 0..MS more
    --one-way       impair only client -> server (replies pass untouched)

TCP mode, for testing what a client does when a connection dies mid-transfer (lesson ftp):

    $ python3 relay.py --tcp --port 20061 --to ftp-server:20060 --cut-after 100000

passes each connection through and closes both sides once --cut-after bytes have gone in
one direction (exactly that many are delivered).
"""
import argparse
import heapq
import json
import random
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

MAX_DATAGRAM = 65535
MAX_FLOWS = 256
FLOW_IDLE = 120.0               # seconds before a silent flow is forgotten


# --- fates: a pure function of (seed, direction, datagram number) --------------------------------

@dataclass(frozen=True)
class Fate:
    index: int          # 0 for the first datagram of this flow and direction
    drop: bool
    copies: int         # 1, or 2 when duplicated
    hold: bool          # reorder: let the next datagram overtake this one
    delay: float        # seconds


@dataclass(frozen=True)
class Impairment:
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0


class FateStream:
    """The fates of one direction of one flow, in order."""

    def __init__(self, seed: int, direction: str, impairment: Impairment) -> None:
        # A str seed is hashed with SHA-512: the same numbers in every process and every run.
        self.rng = random.Random(f"{seed}/{direction}")
        self.impairment = impairment
        self.count = 0

    def next(self) -> Fate:
        imp = self.impairment
        u_loss, u_dup, u_hold, u_jitter = (self.rng.random() for _ in range(4))
        fate = Fate(self.count, drop=u_loss < imp.loss, copies=2 if u_dup < imp.duplicate else 1,
                    hold=u_hold < imp.reorder, delay=(imp.delay_ms + u_jitter * imp.jitter_ms) / 1000)
        self.count += 1
        return fate


def plan(seed: int, direction: str, n: int, impairment: Impairment) -> list[Fate]:
    """The fates of the first n datagrams of a flow: what the relay *will* do, computed offline."""
    stream = FateStream(seed, direction, impairment)
    return [stream.next() for _ in range(n)]


# --- the UDP relay ------------------------------------------------------------------------------

@dataclass
class Counters:
    received: int = 0
    dropped: int = 0
    duplicated: int = 0
    held: int = 0
    sent: int = 0


@dataclass
class Flow:
    client: tuple[str, int]
    upstream: socket.socket             # our socket towards the server, one per client
    fates: dict[str, FateStream]
    held: dict[str, tuple] = field(default_factory=dict)   # direction -> (deadline, sends)
    last_seen: float = 0.0


class UdpRelay:
    def __init__(self, port: int, target: tuple[str, int], seed: int, impairment: Impairment,
                 one_way: bool = False, hold_ms: float = 100, host: str = "0.0.0.0",
                 quiet: bool = False) -> None:
        self.target = target
        self.seed = seed
        self.impairment = impairment
        self.one_way = one_way
        self.hold = hold_ms / 1000
        self.quiet = quiet
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.listener.bind((host, port))
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.flows: dict[tuple[str, int], Flow] = {}
        self.queue: list[tuple[float, int, socket.socket, bytes, tuple | None]] = []   # a heap by due time
        self.order = 0
        self.counters = {"up": Counters(), "down": Counters()}

    # The queue of datagrams waiting to go out, ordered by (due time, order of scheduling).
    def schedule(self, due: float, sock: socket.socket, payload: bytes, address: tuple | None) -> None:
        self.order += 1
        heapq.heappush(self.queue, (due, self.order, sock, payload, address))

    def send_due(self, now: float) -> None:
        while self.queue and self.queue[0][0] <= now:
            _, _, sock, payload, address = heapq.heappop(self.queue)
            try:
                if address:
                    sock.sendto(payload, address)   # back to a client, from the relay's own port
                else:
                    sock.send(payload)              # to the server, on this flow's connected socket
            except OSError as exc:          # e.g. the server is not running (ICMP port unreachable)
                self.log(f"could not forward {len(payload)} bytes: {exc}")

    def flow_for(self, client: tuple[str, int], now: float) -> Flow | None:
        flow = self.flows.get(client)
        if flow is None:
            if len(self.flows) >= MAX_FLOWS:
                self.forget(min(self.flows.values(), key=lambda f: f.last_seen))
            upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                upstream.connect(self.target)       # UDP connect(): fixes the peer, sends nothing
            except OSError as exc:
                upstream.close()
                self.log(f"cannot reach {self.target[0]}:{self.target[1]}: {exc}")
                return None
            impaired = Impairment() if self.one_way else self.impairment
            flow = Flow(client, upstream, {"up": FateStream(self.seed, "up", self.impairment),
                                           "down": FateStream(self.seed, "down", impaired)})
            self.flows[client] = flow
            self.selector.register(upstream, selectors.EVENT_READ, flow)
            self.log(f"new flow from {client[0]}:{client[1]} (fates restart from seed {self.seed})")
        flow.last_seen = now
        return flow

    def forget(self, flow: Flow) -> None:
        self.selector.unregister(flow.upstream)
        flow.upstream.close()
        del self.flows[flow.client]

    def forward(self, flow: Flow, direction: str, payload: bytes, now: float) -> None:
        fate = flow.fates[direction].next()
        counters = self.counters[direction]
        counters.received += 1
        sock, address = (flow.upstream, None) if direction == "up" else (self.listener, flow.client)
        what = f"{direction:<4} #{fate.index:<4} {len(payload):>5} bytes {payload[:20]!r}"
        if fate.drop:
            counters.dropped += 1
            self.log(f"{what}: DROPPED {self.where(flow, direction)}")
            return
        sends = [(sock, payload, address)] * fate.copies
        counters.duplicated += fate.copies - 1
        counters.sent += fate.copies
        held = flow.held.pop(direction, None)
        if fate.hold and held is None:
            counters.held += 1
            flow.held[direction] = (now + self.hold, sends)
            self.log(f"{what}: held back until the next one has gone (reorder)")
            return
        due = now + fate.delay
        for s in sends:
            self.schedule(due, *s)
        if held:                             # the one we held goes right after this one
            for s in held[1]:
                self.schedule(due, *s)
        self.log(f"{what}: {'DUPLICATED, ' if fate.copies > 1 else ''}sent"
                 f"{f' after {fate.delay * 1000:.0f} ms' if fate.delay else ''}"
                 f"{', then the held one' if held else ''}")

    def where(self, flow: Flow, direction: str) -> str:
        """When, and which datagram: "at <wall-clock s.ns> from <ip:port> to <ip:port>" (as received).

        The wall clock (not the monotonic one) is the clock packet captures and `lab.py trace`
        use, so a drop can be put in its place among the packets."""
        t = time.time_ns()
        if direction == "up":
            src, dst = flow.client, self.listener.getsockname()
        else:
            src, dst = flow.upstream.getpeername(), flow.upstream.getsockname()
        return f"at {t // 10**9}.{t % 10**9:09d} from {src[0]}:{src[1]} to {dst[0]}:{dst[1]}"

    def release_held(self, now: float) -> None:
        for flow in self.flows.values():
            for direction, (deadline, sends) in list(flow.held.items()):
                if deadline <= now:          # nothing came to overtake it: let it go
                    del flow.held[direction]
                    for s in sends:
                        self.schedule(now, *s)
                    self.log(f"{direction:<4} the held datagram goes now: nothing overtook it within "
                             f"{self.hold * 1000:.0f} ms")

    def next_wakeup(self, now: float) -> float | None:
        times = [self.queue[0][0]] if self.queue else []
        times += [d for f in self.flows.values() for d, _ in f.held.values()]
        return max(0.0, min(times) - now) if times else None

    def serve_forever(self) -> None:
        host, port = self.listener.getsockname()
        print(f"listening on {host}:{port} (udp relay to {self.target[0]}:{self.target[1]}, "
              f"seed {self.seed}, {self.impairment}{', one way' if self.one_way else ''})", flush=True)
        while True:
            now = time.monotonic()
            for key, _ in self.selector.select(self.next_wakeup(now)):
                now = time.monotonic()
                try:
                    if key.data is None:                    # from a client
                        payload, client = self.listener.recvfrom(MAX_DATAGRAM)
                        flow = self.flow_for(client, now)
                        if flow:
                            self.forward(flow, "up", payload, now)
                    else:                                   # from the server, for key.data's client
                        payload = key.fileobj.recv(MAX_DATAGRAM)
                        key.data.last_seen = now
                        self.forward(key.data, "down", payload, now)
                except OSError as exc:   # ConnectionRefusedError: ICMP "port unreachable" from the server
                    self.log(f"receive error: {exc}")
            now = time.monotonic()
            self.release_held(now)
            self.send_due(now)
            for flow in [f for f in self.flows.values() if now - f.last_seen > FLOW_IDLE]:
                self.forget(flow)

    def summary(self) -> dict:
        return {d: vars(c) for d, c in self.counters.items()}

    def log(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)


# --- the TCP relay: pass bytes through, cut the connection after N bytes ------------------------

def pump(src: socket.socket, dst: socket.socket, budget: int | None, cut: threading.Event, name: str) -> None:
    passed = 0
    try:
        while not cut.is_set():
            data = src.recv(65536)
            if not data:                           # EOF: pass the half-close on
                dst.shutdown(socket.SHUT_WR)
                return
            if budget is not None and passed + len(data) >= budget:
                dst.sendall(data[:budget - passed])
                print(f"{name}: cut after exactly {budget} bytes", flush=True)
                cut.set()
                return
            dst.sendall(data)
            passed += len(data)
    except OSError:
        cut.set()
    finally:
        if cut.is_set():
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)   # wakes the other pump, sends FIN to both peers
                except OSError:
                    pass


def relay_tcp_connection(client: socket.socket, peer: str, target: tuple[str, int],
                         cut_after: int | None) -> None:
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError as exc:
        print(f"{peer}: cannot reach {target[0]}:{target[1]}: {exc}", flush=True)
        client.close()
        return
    upstream.settimeout(None)
    cut = threading.Event()
    down = threading.Thread(target=pump, args=(upstream, client, cut_after, cut, f"{peer} server->client"),
                            daemon=True)
    down.start()
    pump(client, upstream, cut_after, cut, f"{peer} client->server")
    down.join()
    client.close()
    upstream.close()
    print(f"{peer}: closed", flush=True)


def serve_tcp(port: int, target: tuple[str, int], cut_after: int | None, host: str = "0.0.0.0") -> None:
    with socket.create_server((host, port)) as listener:
        print(f"listening on {host}:{listener.getsockname()[1]} (tcp relay to {target[0]}:{target[1]}"
              f"{f', cut after {cut_after} bytes' if cut_after else ''})", flush=True)
        while True:
            client, (ip, client_port) = listener.accept()
            peer = f"{ip}:{client_port}"
            threading.Thread(target=relay_tcp_connection, args=(client, peer, target, cut_after),
                             daemon=True).start()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability is between 0 and 1, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=20041)
    parser.add_argument("--to", type=address, default=("udp-server", 20040), metavar="HOST:PORT")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--loss", type=probability, default=0.0)
    parser.add_argument("--duplicate", type=probability, default=0.0)
    parser.add_argument("--reorder", type=probability, default=0.0)
    parser.add_argument("--delay", type=float, default=0.0, metavar="MS")
    parser.add_argument("--jitter", type=float, default=0.0, metavar="MS")
    parser.add_argument("--hold", type=float, default=100.0, metavar="MS", help="reorder: longest hold")
    parser.add_argument("--one-way", action="store_true", help="impair only client -> server")
    parser.add_argument("--quiet", action="store_true", help="do not log every datagram")
    parser.add_argument("--tcp", action="store_true", help="relay TCP connections instead (see --cut-after)")
    parser.add_argument("--cut-after", type=int, default=None, metavar="N",
                        help="tcp: close both sides after N bytes in one direction")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.tcp:
        try:
            serve_tcp(args.port, args.to, args.cut_after, args.host)
        except KeyboardInterrupt:
            print("relay stopped", flush=True)
        return 0
    impairment = Impairment(args.loss, args.duplicate, args.reorder, args.delay, args.jitter)
    relay = UdpRelay(args.port, args.to, args.seed, impairment, args.one_way, args.hold, args.host,
                     args.quiet)
    try:
        relay.serve_forever()
    except KeyboardInterrupt:
        print("relay summary " + json.dumps(relay.summary()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
