"""Lesson basic, the client: socket → connect → sendall → recv → close (seed §2.4).

    $ python3 client.py --host basic-server --port 20000 --message hello
    connected from 10.77.0.11:41236 to 10.77.0.10:20000
    server says: hello 10.77.0.11:41236, you are connection 1, you sent 5 bytes: b'hello'

Without --message it asks you for lines, one connection per line, so you can watch the client
port change every time. A line is sent as at most 1024 bytes: the server reads one recv(1024).
"""
import argparse
import socket
import sys

MAX_MESSAGE = 1024   # the server reads one recv(1024): more would be left unread


def bounded(text: str) -> bytes:
    """The line as bytes, cut to what the server reads (at a character edge); say so when cut."""
    data = text.encode("utf-8", "surrogateescape")   # surrogateescape: bytes that were not UTF-8 go as they came
    if len(data) <= MAX_MESSAGE:
        return data
    cut = data[:MAX_MESSAGE].decode("utf-8", "ignore").encode("utf-8")
    print(f"(that line is {len(data)} bytes; the server reads at most {MAX_MESSAGE}, so only the first "
          f"{len(cut)} are sent)")
    return cut


def talk(host: str, port: int, message: str) -> str:
    # The seed hard-codes 127.0.0.1. In the lab the server is another machine (container):
    # use its name on the network, which Docker's DNS turns into its address.
    data = bounded(message)                    # str must become bytes before it can be sent
    with socket.create_connection((host, port), timeout=5) as sock:
        me, server = sock.getsockname(), sock.getpeername()
        print(f"connected from {me[0]}:{me[1]} to {server[0]}:{server[1]}")
        sock.sendall(data)
        reply = bytearray()
        while chunk := sock.recv(4096):        # the server closes after its reply: b'' ends it
            reply += chunk
        return reply.decode("utf-8", "replace").rstrip("\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="basic-server")
    parser.add_argument("--port", type=int, default=20000)
    parser.add_argument("--message", help="send this once and exit")
    args = parser.parse_args()
    sys.stdin.reconfigure(errors="surrogateescape")   # a non-UTF-8 byte is sent, not a traceback
    if args.message is not None:
        try:
            print("server says:", talk(args.host, args.port, args.message))
        except OSError as exc:                 # e.g. ConnectionRefusedError: nothing listens there
            print(f"could not talk to {args.host}:{args.port}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print()
            return 130
        return 0
    print(f"type a line to send it to {args.host}:{args.port} (one connection per line); Ctrl-D quits")
    interrupted = False
    while True:
        try:
            line = input("> ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            if interrupted:
                print()
                return 0
            print("\n(Ctrl-C again, or Ctrl-D, to leave)")
            interrupted = True
            continue
        interrupted = False
        if not line:
            # send(b'') sends nothing at all: the server would wait for bytes and we for a reply.
            print("(an empty line: send(b'') sends nothing, so nothing was sent; type some text)")
            continue
        try:
            print("server says:", talk(args.host, args.port, line))
        except OSError as exc:
            print(f"could not talk to {args.host}:{args.port}: {type(exc).__name__}: {exc}")
        except KeyboardInterrupt:
            print("\n(stopped waiting; that connection is closed)")


if __name__ == "__main__":
    sys.exit(main())
