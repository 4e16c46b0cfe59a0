"""Lesson udp, the interactive client: every line you type is sent as one datagram.

There is no connect() and no accept(): sendto() puts a datagram on the network addressed to
(host, port), and recvfrom() returns the next datagram that arrives, with its sender's address.
Nothing tells you whether your datagram arrived; if no reply comes within the timeout, you
only know that *something* was lost (your datagram or the reply), never which.

    $ python3 client.py --host udp-server --port 20040
    >> hello              one datagram of 5 bytes; the server echoes it
    >>                    (an empty line) one datagram of 0 bytes: a real message in UDP
    >> STATS              what the server has recorded about you

Scripted: python3 client.py --host udp-server --send hello --send ""

To get messages through a lossy network, with acknowledgements and retries, this client hands
over to reliable_client.py (the form `lab.py check udp` runs a client in):

    python3 client.py --host udp-relay --port 20041 --count 30
"""
import argparse
import os
import socket
import sys

MAX_DATAGRAM = 65507            # 65535 - 20 (IP header) - 8 (UDP header)


def exchange(sock: socket.socket, server: tuple[str, int], text: str, timeout: float) -> None:
    data = text.encode("utf-8", "surrogateescape")
    sent = sock.sendto(data, server)
    print(f"sent one datagram of {sent} bytes to {server[0]}:{server[1]}")
    sock.settimeout(timeout)
    try:
        # 65535: a buffer smaller than the datagram would cut it and throw the rest away.
        reply, sender = sock.recvfrom(65535)
    except TimeoutError:
        print(f"no reply within {timeout} s: the datagram or the reply was lost (UDP will not say which)")
        return
    note = "" if sender == server else f" (not from {server[0]}:{server[1]}: a stray or late datagram?)"
    print(f"reply of {len(reply)} bytes from {sender[0]}:{sender[1]}{note}: "
          f"{reply[:200].decode('utf-8', 'replace')!r}{'...' if len(reply) > 200 else ''}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="udp-server")
    parser.add_argument("--port", type=int, default=20040)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--send", action="append", help="send this text (repeatable); no prompt")
    parser.add_argument("--count", type=int, help="deliver N numbered messages reliably (reliable_client.py)")
    parser.add_argument("--message", action="append", help="deliver this text reliably (reliable_client.py)")
    args, others = parser.parse_known_args()
    if args.count is not None or args.message is not None:
        reliable = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reliable_client.py")
        os.execv(sys.executable, [sys.executable, reliable, *sys.argv[1:]])   # replaces this process
    if others:
        parser.error(f"unrecognized arguments: {' '.join(others)}")
    try:
        # Resolve the name once, so we can compare it with the address replies come from.
        server = (socket.gethostbyname(args.host), args.port)
    except OSError as exc:
        print(f"cannot resolve {args.host}: {exc}", file=sys.stderr)
        return 1
    sys.stdin.reconfigure(errors="surrogateescape")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if args.send is not None:
            for text in args.send:
                exchange(sock, server, text, args.timeout)
            return 0
        print(f"talking to {server[0]}:{server[1]} over UDP; each line is one datagram, Ctrl-D to leave")
        interrupted = False
        while True:
            try:
                text = input(">> ")
            except EOFError:
                return 0
            except KeyboardInterrupt:
                if interrupted:
                    print()
                    return 0
                print("\n(Ctrl-C again, or Ctrl-D, to leave)")
                interrupted = True
                continue
            interrupted = False
            if len(text.encode("utf-8", "surrogateescape")) > MAX_DATAGRAM:
                print(f"(that line is over {MAX_DATAGRAM} bytes, the largest UDP payload; cut to it)")
                text = text.encode("utf-8", "surrogateescape")[:MAX_DATAGRAM].decode("utf-8", "ignore")
            try:
                exchange(sock, server, text, args.timeout)
            except KeyboardInterrupt:
                print("\n(stopped waiting for that reply)")
            except OSError as exc:
                print(f"could not send: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
