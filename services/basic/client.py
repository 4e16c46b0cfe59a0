"""Lesson basic, the client: socket → connect → sendall → recv → close (seed §2.4).

    $ python3 client.py --host basic-server --port 20000 --message hello
    connected from 10.77.0.11:41236 to 10.77.0.10:20000
    server says: hello 10.77.0.11:41236, you are connection 1, you sent 5 bytes: b'hello'

Without --message it asks you for lines, one connection per line, so you can watch the client
port change every time.
"""
import argparse
import socket


def talk(host: str, port: int, message: str) -> str:
    # The seed hard-codes 127.0.0.1. In the lab the server is another machine (container):
    # use its name on the network, which Docker's DNS turns into its address.
    with socket.create_connection((host, port), timeout=5) as sock:
        me, server = sock.getsockname(), sock.getpeername()
        print(f"connected from {me[0]}:{me[1]} to {server[0]}:{server[1]}")
        sock.sendall(message.encode("utf-8"))   # str must become bytes before it can be sent
        reply = sock.recv(1024)
        return reply.decode("utf-8", "replace").rstrip("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="basic-server")
    parser.add_argument("--port", type=int, default=20000)
    parser.add_argument("--message", help="send this once and exit")
    args = parser.parse_args()
    if args.message is not None:
        print("server says:", talk(args.host, args.port, args.message))
        return
    print(f"type a line to send it to {args.host}:{args.port} (one connection per line); Ctrl-D quits")
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return
        try:
            print("server says:", talk(args.host, args.port, line))
        except OSError as exc:
            print(f"could not talk to {args.host}:{args.port}: {exc}")


if __name__ == "__main__":
    main()
