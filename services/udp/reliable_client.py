"""Lesson udp, a client that gets every message through a lossy network: stop-and-wait.

UDP promises nothing: a datagram arrives whole, or never, or twice, or after a later one. If
every message must arrive, the sender has to find out (the receiver acknowledges) and try again
(a timer). This is the simplest way to do it, stop-and-wait (停等协议):

    for each message, numbered 0, 1, 2, ...:
        send   "DATA <seq> <message>"
        wait   up to --timeout for "ACK <seq>"
        no ACK in time?  send the same datagram again (a retransmission)
        got it?          only now go on to the next message

The sequence numbers do two jobs. The server delivers a message only if it carries the number
it expects next, so a retransmission of a message that did arrive (its ACK was lost) is not
delivered twice. And the client ignores an ACK with an old number (a late or duplicated ACK
for a message that is already done). TCP does the same, with a window of many bytes in flight
instead of one message; that is why TCP "is reliable".

    $ python3 reliable_client.py --host udp-relay --port 20041 --count 20
"""
import argparse
import socket
import sys
import time


class DeliveryError(Exception):
    pass


def send_reliably(sock: socket.socket, seq: int, message: bytes, timeout: float, max_tries: int) -> int:
    """Send one message until it is acknowledged; return how many times it was sent."""
    datagram = b"DATA %d " % seq + message
    expected_ack = b"ACK %d" % seq
    for attempt in range(1, max_tries + 1):
        sock.send(datagram)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                reply = sock.recv(2048)
            except TimeoutError:
                break                   # no ACK in time: the message or its ACK is lost; resend
            if reply == expected_ack:
                return attempt
            # Anything else is an ACK for an earlier message, arriving late or twice: ignore it
            # and keep waiting for ours, until the same deadline.
    raise DeliveryError(f"message {seq} not acknowledged after {max_tries} tries")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="udp-relay")
    parser.add_argument("--port", type=int, default=20041)
    parser.add_argument("--count", type=int, default=20, help="send messages 'message 0' .. 'message N-1'")
    parser.add_argument("--message", action="append", default=[], help="send this text instead (repeatable)")
    parser.add_argument("--timeout", type=float, default=0.2, help="seconds to wait for an ACK")
    parser.add_argument("--max-tries", type=int, default=30)
    args = parser.parse_args()
    messages = [m.encode("utf-8") for m in args.message] or [b"message %d" % i for i in range(args.count)]
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            # connect() on a UDP socket sends nothing. It fixes the peer, so send() needs no
            # address and recv() accepts datagrams from that peer only (no stray senders).
            sock.connect((args.host, args.port))
            for seq, message in enumerate(messages):
                tries = send_reliably(sock, seq, message, args.timeout, args.max_tries)
                sent += tries
                print(f"{message.decode('utf-8', 'replace')!r}: ACK {seq} after {tries} "
                      f"{'try' if tries == 1 else 'tries'}", flush=True)
        except ConnectionRefusedError:
            # An ICMP "port unreachable" came back: nothing is bound to that port.
            print(f"nothing is listening on {args.host}:{args.port} (udp)", file=sys.stderr)
            return 1
        except (DeliveryError, OSError) as exc:
            print(f"giving up: {exc}", file=sys.stderr)
            return 1
    print(f"delivered {len(messages)}/{len(messages)} messages in order: {sent} datagrams sent, "
          f"{sent - len(messages)} retransmissions", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
