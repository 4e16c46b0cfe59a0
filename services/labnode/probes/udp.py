"""Lesson udp, probes: what the demo and `lab.py check udp` do from the client machine.

    python3 -m labnode.probes.udp no-connection --host udp-server --port 20040
    python3 -m labnode.probes.udp boundaries    --host udp-server --port 20040
    python3 -m labnode.probes.udp truncation    --host udp-server --port 20040
    python3 -m labnode.probes.udp max-size      --host udp-server --port 20040
    python3 -m labnode.probes.udp overflow      --host udp-server --port 20040 [--count 1000 --rcvbuf 4096]
    python3 -m labnode.probes.udp relay-loss    --host udp-relay  --port 20041 [--count 30 --loss 0.3 --seed 42]
    python3 -m labnode.probes.udp delivered     --host udp-server --port 20040 --count 30
    python3 -m labnode.probes.udp my-address    --host udp-server --port 20040

Synchronisation reads the kernel, not the clock: /proc/net/udp shows, for each socket, the bytes
queued in its receive buffer (rx_queue, counted as the kernel's memory per datagram) and how
many datagrams it dropped; /proc/net/snmp counts RcvbufErrors for the whole machine. The one
exception is "nothing more will come": a UDP receiver can only conclude that by waiting, and
the probes that need it say so.

Each probe prints one observation per line, then `RESULT {"ok": ..., "observed": {...}}`.
"""
import argparse
import errno
import json
import socket
import sys
import time
from collections.abc import Callable

from labnode.report import result
from udp.relay import Impairment, plan

MAX_UDP_PAYLOAD = 65507




# --- kernel state -------------------------------------------------------------------------------

def udp_counters() -> dict[str, int]:
    """The Udp: line of /proc/net/snmp (this machine / container), as a dict."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:])))


def socket_queue(sock: socket.socket) -> tuple[int, int]:
    """(bytes queued, datagrams dropped) for this socket, from its row in /proc/net/udp."""
    port = sock.getsockname()[1]
    with open("/proc/net/udp") as f:
        for row in f.read().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                return int(fields[4].split(":")[1], 16), int(fields[-1])
    raise LookupError(f"no UDP socket on port {port} in /proc/net/udp")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(0.002)


def udp_socket(timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))          # a port now, so /proc/net/udp can find us
    sock.settimeout(timeout)
    return sock


def truesize(sock: socket.socket, server: tuple[str, int], payload: bytes) -> int:
    """How much receive-buffer memory one echoed datagram like ``payload`` takes (then read it)."""
    sock.sendto(payload, server)
    wait_until(lambda: socket_queue(sock)[0] > 0, 5, "the echo")
    size = socket_queue(sock)[0]
    sock.recvfrom(65535)
    return size


# --- probes -------------------------------------------------------------------------------------

def no_connection(host: str, port: int, closed_port: int) -> bool:
    """No handshake, no accept: the server learns each sender's address from the datagram itself."""
    server = (socket.gethostbyname(host), port)
    replies, ports, senders = [], [], []
    a, b = udp_socket(), udp_socket()
    with a, b:
        for name, sock in (("A", a), ("B", b)):
            sock.sendto(f"from {name}".encode(), server)
        for name, sock in (("A", a), ("B", b)):
            reply, sender = sock.recvfrom(65535)
            replies.append(reply.decode("utf-8", "replace"))
            ports.append(sock.getsockname()[1])
            senders.append(f"{sender[0]}:{sender[1]}")
            print(f"socket {name} (port {ports[-1]}) sent one datagram, no connect(), and got back {reply!r} "
                  f"from {senders[-1]}")
    print("the server has one socket for everyone: recvfrom() told it who sent each datagram, and it "
          "answered each with sendto(reply, that_address)")
    # A port where nothing listens: an unconnected socket hears nothing about it.
    closed = (server[0], closed_port)
    with udp_socket(timeout=0.5) as sock:
        returned = sock.sendto(b"hello", closed)
        try:
            sock.recvfrom(65535)
            unconnected = "a reply?"
        except TimeoutError:
            unconnected = "timeout"
        except ConnectionRefusedError:
            unconnected = "ECONNREFUSED"
    print(f"sendto(b'hello', {closed}) returned {returned}: 'sent' means handed to the network, not "
          f"received; recvfrom -> {unconnected} (an unconnected socket is not told about ICMP errors)")
    connected_errno = connected_refused(closed)
    print(f"a connect()ed UDP socket: send(b'hello'); recv() -> errno {connected_errno} "
          f"({errno.errorcode.get(connected_errno, '-')}): the ICMP 'port unreachable' reached the socket")
    elsewhere = sorted({s for s in senders if s != f"{server[0]}:{port}"})
    if elsewhere:
        print(f"the echoes came from {', '.join(elsewhere)}, not from the server's own {server[0]}:{port}: a "
              "client that used connect() (or a relay) only takes datagrams from the address it sent to")
    ok = (replies == ["from A", "from B"] and len(set(ports)) == 2 and returned == 5 and not elsewhere
          and unconnected == "timeout" and connected_errno == errno.ECONNREFUSED)
    return result(ok, replies=replies, client_ports=ports, reply_from=senders, server=f"{server[0]}:{port}",
                  replies_from_another_address=elsewhere,
                  closed_port=closed_port, sendto_closed_returned=returned, unconnected_recv=unconnected,
                  connected_recv_errno=connected_errno)


def connected_refused(address: tuple[str, int], tries: int = 3) -> int:
    """errno that recv() raises on a connected UDP socket after sending to a closed port (0 if none)."""
    with udp_socket(timeout=0.5) as sock:
        sock.connect(address)
        for _ in range(tries):       # the kernel rate-limits ICMP errors; one more try is cheap
            try:
                sock.send(b"hello")
                sock.recv(65535)
            except ConnectionRefusedError as exc:
                return exc.errno
            except TimeoutError:
                continue
    return 0


# echoed byte for byte: edge spaces and line ends are data, and a datagram need not be UTF-8
RAW_PAYLOADS = (b"  two spaces each side  ", b"line\r\n", b"\xff\xfe not utf-8 \x00\n")


def boundaries(host: str, port: int) -> bool:
    """Three datagrams queued together are still three recvs; an empty datagram is a message."""
    server = (socket.gethostbyname(host), port)
    with udp_socket() as sock:
        one = truesize(sock, server, b"x")
        for payload in (b"a", b"bb", b"ccc"):
            sock.sendto(payload, server)
        wait_until(lambda: socket_queue(sock)[0] >= 3 * one, 5, "three echoes")
        print(f"sent b'a', b'bb', b'ccc'; /proc/net/udp shows all three echoes queued "
              f"({socket_queue(sock)[0]} bytes of buffer, {one} per datagram)")
        received = [sock.recvfrom(65535)[0] for _ in range(3)]
        print(f"three recvfrom(65535) calls -> {received}: one datagram each, never merged "
              "(TCP would have given b'abbccc' to one recv)")
        sock.sendto(b"", server)
        empty, sender = sock.recvfrom(65535)
        print(f"sendto(b'') -> the server echoed it; recvfrom() -> ({empty!r}, {sender}): a real, empty "
              "message. (In TCP, recv() == b'' means the other side closed.)")
        raw_echoes = []
        for payload in RAW_PAYLOADS:
            sock.sendto(payload, server)
            try:
                raw_echoes.append(sock.recvfrom(65535)[0])
            except TimeoutError:
                raw_echoes.append(None)
        raw_ok = raw_echoes == list(RAW_PAYLOADS)
        print(f"sent {len(RAW_PAYLOADS)} datagrams with edge spaces, CR LF and bytes that are not UTF-8: "
              + ("each came back byte for byte" if raw_ok else
                 "; ".join(f"sent {p!r}, got {'no echo within 5 s' if e is None else repr(e)}"
                           for p, e in zip(RAW_PAYLOADS, raw_echoes) if e != p)))
    ok = received == [b"a", b"bb", b"ccc"] and empty == b"" and raw_ok
    return result(ok, received=[r.decode("utf-8", "replace") for r in received], empty_datagram_len=len(empty),
                  raw_unchanged=raw_ok, raw_echoes=[None if e is None else repr(e) for e in raw_echoes],
                  empty_from=f"{sender[0]}:{sender[1]}", truesize=one)


def truncation(host: str, port: int, size: int = 2000, bufsize: int = 1024) -> bool:
    """A datagram bigger than the buffer is cut; the rest is thrown away, not kept for later."""
    server = (socket.gethostbyname(host), port)
    with udp_socket() as sock:
        sock.sendto(b"x" * size, server)
        sock.sendto(b"next", server)
        wait_until(lambda: socket_queue(sock)[0] > 0, 5, "the echo")
        real = sock.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC)
        print(f"sent {size} bytes and then b'next'; recv_into(..., MSG_PEEK|MSG_TRUNC) says the echo waiting "
              f"is {real} bytes (Linux returns the real length with MSG_TRUNC)")
        if real != size:
            print(f"the server's echo is only {real} of {size} bytes: the SERVER cut the datagram (it reads "
                  "with a buffer that is too small, e.g. recvfrom(1024))")
        data, _, flags, _ = sock.recvmsg(bufsize)
        truncated = bool(flags & socket.MSG_TRUNC)
        print(f"recvmsg({bufsize}) -> {len(data)} bytes, MSG_TRUNC {'set' if truncated else 'NOT set'}: "
              f"the other {real - len(data)} bytes are gone (recvfrom({bufsize}) would not even tell you)")
        following = sock.recv(65535)
        print(f"the next recv -> {following!r}: the next datagram, whole; nothing of the cut one is left "
              "over (TCP would have handed you the rest of the bytes)")
    ok = real == size and len(data) == bufsize and truncated and following == b"next"
    return result(ok, sent=size, echo_size=real, bufsize=bufsize, received=len(data), msg_trunc=truncated,
                  lost=real - len(data), next_datagram=following.decode("utf-8", "replace"))


def max_size(host: str, port: int) -> bool:
    """65507 bytes is the largest UDP payload over IPv4; one byte more and sendto() refuses."""
    server = (socket.gethostbyname(host), port)
    with udp_socket() as sock:
        sent = sock.sendto(b"m" * MAX_UDP_PAYLOAD, server)
        echo = sock.recv(65535)
        print(f"sendto({MAX_UDP_PAYLOAD} bytes) -> {sent}; the echo came back with {len(echo)} bytes "
              "(65535 IP packet - 20 IP header - 8 UDP header)")
        if len(echo) != sent:
            print(f"the server cut the datagram to {len(echo)} bytes: its recvfrom() buffer is smaller than "
                  f"{MAX_UDP_PAYLOAD}")
        try:
            sock.sendto(b"m" * (MAX_UDP_PAYLOAD + 1), server)
            too_big = 0
            print(f"sendto({MAX_UDP_PAYLOAD + 1} bytes) was accepted?!")
        except OSError as exc:
            too_big = exc.errno
            print(f"sendto({MAX_UDP_PAYLOAD + 1} bytes) -> OSError errno {exc.errno} "
                  f"({errno.errorcode.get(exc.errno)}): {exc.strerror}. Nothing was sent")
    ok = sent == MAX_UDP_PAYLOAD and len(echo) == MAX_UDP_PAYLOAD and too_big == errno.EMSGSIZE
    return result(ok, max_sent=sent, echo_len=len(echo), oversize=MAX_UDP_PAYLOAD + 1, oversize_errno=too_big,
                  oversize_errno_name=errno.errorcode.get(too_big, ""))


def overflow(host: str, port: int, count: int = 1000, size: int = 1000, rcvbuf: int = 4096) -> bool:
    """A receiver that is not reading keeps what fits in its buffer; the kernel drops the rest."""
    server = (socket.gethostbyname(host), port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind(("0.0.0.0", 0))
        sock.settimeout(5)
        effective = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        print(f"asked for SO_RCVBUF={rcvbuf}; the kernel set {effective} (it doubles the value, for its own "
              "bookkeeping)")
        sock.sendto(b"BLAST 1 %d" % size, server)          # one datagram first: how big is one in memory?
        wait_until(lambda: socket_queue(sock)[0] > 0, 5, "the first datagram")
        one = socket_queue(sock)[0]
        sock.recv(65535)
        before, drops_before = udp_counters(), socket_queue(sock)[1]
        sock.sendto(b"BLAST %d %d" % (count, size), server)
        print(f"asked the server to send {count} datagrams of {size} bytes at once; we do not read meanwhile "
              "(a busy program)")

        def all_accounted() -> bool:
            queued, drops = socket_queue(sock)
            return queued // one + drops - drops_before >= count
        wait_until(all_accounted, 10, f"all {count} datagrams to arrive or be dropped")
        after = udp_counters()
        drops = socket_queue(sock)[1] - drops_before
        sock.setblocking(False)
        kept = 0
        try:
            while True:
                sock.recv(65535)
                kept += 1
        except BlockingIOError:
            pass
    rcvbuf_errors = after.get("RcvbufErrors", 0) - before.get("RcvbufErrors", 0)
    print(f"received {kept} of {count}; this socket dropped {drops}; /proc/net/snmp Udp RcvbufErrors rose by "
          f"{rcvbuf_errors} - with no network fault at all: the receive buffer ({effective} bytes, {one} per "
          "datagram) was full")
    ok = kept + drops == count and 0 < kept < count and rcvbuf_errors >= drops > 0
    return result(ok, sent=count, size=size, rcvbuf_requested=rcvbuf, rcvbuf_effective=effective,
                  truesize=one, received=kept, socket_drops=drops, rcvbuf_errors_delta=rcvbuf_errors)


def predicted_arrivals(count: int, seed: int, loss: float,
                       one_way: bool) -> tuple[list[int], list[int], list[int]]:
    """Which of datagrams 0..count-1 come back through the relay (loss only): (arrive, lost up, lost down)."""
    impairment = Impairment(loss=loss)
    up = plan(seed, "up", count, impairment)
    reached_server = [f.index for f in up if not f.drop]
    down = plan(seed, "down", len(reached_server), Impairment() if one_way else impairment)
    lost_down = [reached_server[f.index] for f in down if f.drop]
    arrive = [i for i in reached_server if i not in lost_down]
    return arrive, [f.index for f in up if f.drop], lost_down


def relay_loss(host: str, port: int, count: int = 30, loss: float = 0.3, seed: int = 42,
               one_way: bool = False, quiet: float = 1.0) -> bool:
    """Through the seeded relay, exactly the predicted datagrams go missing, on every run."""
    relay = (socket.gethostbyname(host), port)
    with udp_socket(timeout=quiet) as sock:
        for i in range(count):
            sock.sendto(b"seq %d" % i, relay)
        print(f"sent seq 0..{count - 1} through the relay at {relay[0]}:{port} (loss {loss} each way, "
              f"seed {seed}); each comes back only if both the datagram and its echo survive")
        got = []
        while True:
            # The only way to know that nothing more is coming is to wait: UDP never says "lost".
            try:
                got.append(int(sock.recv(65535).split()[1]))
            except TimeoutError:
                break
    missing = sorted(set(range(count)) - set(got))
    arrive, lost_up, lost_down = predicted_arrivals(count, seed, loss, one_way)
    predicted_missing = sorted(set(range(count)) - set(arrive))
    print(f"back: {len(got)}/{count}; missing {missing}")
    print(f"predicted from the seed alone: lost on the way in {lost_up}, echo lost on the way back "
          f"{lost_down}; match: {missing == predicted_missing}")
    ok = missing == predicted_missing and 0 < len(missing) < count and got == sorted(got)
    return result(ok, sent=count, received=len(got), missing=missing, predicted_missing=predicted_missing,
                  lost_up=lost_up, lost_down=lost_down, in_order=got == sorted(got), seed=seed, loss=loss)


def delivered(host: str, port: int, count: int) -> bool:
    """Ask the server (STATS) what it delivered: every message, once, in order, from one sender."""
    server = (socket.gethostbyname(host), port)
    with udp_socket(timeout=1.0) as sock:
        for _ in range(5):                 # STATS and its reply can be lost like any datagram
            sock.sendto(b"STATS", server)
            try:
                stats = json.loads(sock.recv(65535))
                break
            except TimeoutError:
                continue
        else:
            raise TimeoutError("the server did not answer STATS")
    senders = [p for p in stats["peers"] if p["delivered"] or p["duplicates"] or p["ahead"]]
    expected = [f"message {i}" for i in range(count)]
    for p in senders:
        print(f"the server's record for {p['addr']}: {p['datagrams']} DATA datagrams, {p['delivered']} "
              f"delivered in order, {p['duplicates']} duplicates ignored, {p['ahead']} out of order ignored")
    best = max(senders, key=lambda p: p["delivered"], default=None)
    messages = best["messages"] if best else []
    print(f"delivered messages: {len(messages)}/{count}"
          + (f"; first missing: {expected[len(messages)]!r}" if len(messages) < count else ", all in order"))
    ok = len(senders) == 1 and messages == expected
    return result(ok, expected=count, delivered=len(messages), in_order=messages == expected[:len(messages)],
                  senders=len(senders), datagrams=best["datagrams"] if best else 0,
                  duplicates=best["duplicates"] if best else 0, ahead=best["ahead"] if best else 0)


def my_address(host: str, port: int) -> bool:
    """The address this machine uses to reach host (connect() on UDP sends nothing)."""
    with udp_socket() as sock:
        sock.connect((host, port))
        ip = sock.getsockname()[0]
    print(f"this machine reaches {host} from {ip}")
    return result(True, address=ip)


# each probe by name, called with the parsed command line
PROBES = {
    "no-connection": lambda a: no_connection(a.host, a.port, a.closed_port or a.port + 9),
    "boundaries": lambda a: boundaries(a.host, a.port),
    "truncation": lambda a: truncation(a.host, a.port),
    "max-size": lambda a: max_size(a.host, a.port),
    "overflow": lambda a: overflow(a.host, a.port, a.count or 1000, a.size, a.rcvbuf),
    "relay-loss": lambda a: relay_loss(a.host, a.port, a.count or 30, a.loss, a.seed, a.one_way),
    "delivered": lambda a: delivered(a.host, a.port, a.count or 20),
    "my-address": lambda a: my_address(a.host, a.port),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=PROBES)
    parser.add_argument("--host", default="udp-server")
    parser.add_argument("--port", type=int, default=20040)
    parser.add_argument("--closed-port", type=int, default=0, help="no-connection: a port with nothing on it")
    parser.add_argument("--count", type=int, default=0, help="datagrams or messages to send / expect")
    parser.add_argument("--size", type=int, default=1000, help="overflow: bytes per datagram")
    parser.add_argument("--rcvbuf", type=int, default=4096, help="overflow: SO_RCVBUF to ask for")
    parser.add_argument("--loss", type=float, default=0.3, help="relay-loss: the relay's --loss")
    parser.add_argument("--seed", type=int, default=42, help="relay-loss: the relay's --seed")
    parser.add_argument("--one-way", action="store_true", help="relay-loss: the relay runs with --one-way")
    args = parser.parse_args(argv)
    try:
        ok = PROBES[args.probe](args)
    except (OSError, LookupError, ValueError) as exc:
        print(f"could not complete the probe against {args.host}:{args.port}: {type(exc).__name__}: {exc}")
        ok = result(False, error=f"{type(exc).__name__}: {exc}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
