"""Lesson loops, the interactive client: type a line, the server sends it back reversed.

    $ python3 client.py --host loops-server --port 20010
    >>> hello
    olleh
    >>> quit

Open two of these at once to see that the server is iterative: the second client connects
at once, but its first reply only comes when the first client types ``quit`` (or leaves).
"""
import argparse
import socket

WAIT_NOTICE = 3   # seconds before we explain why no reply has come yet


def receive_reply(sock: socket.socket) -> bytes:
    """Wait for the reply; say what is going on if the server keeps us waiting."""
    sock.settimeout(WAIT_NOTICE)
    while True:
        try:
            return sock.recv(1024)
        except TimeoutError:
            print(f"(no reply after {WAIT_NOTICE} s: an iterative server is still busy with another "
                  "client; our connection waits in its accept queue. Still waiting...)")


def chat(sock: socket.socket) -> None:
    """The client's communication loop."""
    while True:
        try:
            line = input(">>> ")
        except EOFError:           # Ctrl-D: leave like a polite client
            line = "quit"
        if not line:
            continue               # send(b'') sends nothing at all, so there would be no reply to wait for
        sock.sendall(line.encode("utf-8"))
        reply = receive_reply(sock)
        if not reply:              # b'': the server closed the connection (after quit, or it stopped)
            print("(the server closed the connection)")
            return
        print(reply.decode("utf-8", errors="replace"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="loops-server")
    parser.add_argument("--port", type=int, default=20010)
    args = parser.parse_args()
    try:
        with socket.create_connection((args.host, args.port), timeout=10) as sock:
            me, peer = sock.getsockname(), sock.getpeername()
            print(f"connected: me {me[0]}:{me[1]} -> server {peer[0]}:{peer[1]}; type quit to leave")
            chat(sock)
    except KeyboardInterrupt:
        print()
    except OSError as e:
        print(f"cannot talk to {args.host}:{args.port}: {e}")


if __name__ == "__main__":
    main()
