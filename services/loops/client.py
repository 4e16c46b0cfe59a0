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
import sys

WAIT_NOTICE = 3   # seconds before we explain why no reply has come yet
MAX_LINE = 1024   # the server answers each recv(1024) on its own: a longer line would get two
                  # replies, and every later reply would be one behind (the stream out of step)


def bounded(line: str) -> bytes:
    """The line as bytes, cut to what one server recv() takes (at a character edge); say so."""
    data = line.encode("utf-8", "surrogateescape")   # bytes that were not UTF-8 go as they came
    if len(data) <= MAX_LINE:
        return data
    cut = data[:MAX_LINE].decode("utf-8", "ignore").encode("utf-8")
    print(f"(that line is {len(data)} bytes; the server reads {MAX_LINE} at a time, so only the first "
          f"{len(cut)} are sent)")
    return cut


def receive_reply(sock: socket.socket, expected: int) -> bytes:
    """Wait for the reply (as many bytes as we sent: reversing keeps the length, unless the server
    answers with an error line); say what is going on if the server keeps us waiting."""
    sock.settimeout(WAIT_NOTICE)
    reply = bytearray()
    while len(reply) < expected:
        try:
            chunk = sock.recv(MAX_LINE)
        except TimeoutError:
            print(f"(no reply after {WAIT_NOTICE} s: an iterative server is still busy with another "
                  "client; our connection waits in its accept queue. Still waiting...)")
            continue
        if not chunk or chunk.startswith(b"error:"):
            return bytes(reply) + chunk
        reply += chunk
    return bytes(reply)


def chat(sock: socket.socket) -> None:
    """The client's communication loop."""
    interrupted = False
    while True:
        try:
            line = input(">>> ")
        except EOFError:           # Ctrl-D: leave like a polite client
            line = "quit"
        except KeyboardInterrupt:
            if interrupted:
                line = "quit"
            else:
                print("\n(Ctrl-C again, or quit, to leave)")
                interrupted = True
                continue
        interrupted = False
        if not line:
            print("(an empty line: send(b'') sends nothing, so there would be no reply; type some text)")
            continue
        data = bounded(line)
        sock.sendall(data)
        if line.strip() == "quit":
            expected = 1           # no reply: the server closes, and recv() returns b''
        else:
            expected = len(data)
        reply = receive_reply(sock, expected)
        if not reply:              # b'': the server closed the connection (after quit, or it stopped)
            print("(the server closed the connection)")
            return
        print(reply.decode("utf-8", errors="replace"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="loops-server")
    parser.add_argument("--port", type=int, default=20010)
    args = parser.parse_args()
    sys.stdin.reconfigure(errors="surrogateescape")   # non-UTF-8 bytes are sent; the server explains
    try:
        with socket.create_connection((args.host, args.port), timeout=10) as sock:
            me, peer = sock.getsockname(), sock.getpeername()
            print(f"connected: me {me[0]}:{me[1]} -> server {peer[0]}:{peer[1]}; type quit to leave")
            chat(sock)
    except KeyboardInterrupt:      # Ctrl-C while waiting for a reply: leave without a traceback
        print("\n(stopped waiting; connection closed)")
    except OSError as e:
        print(f"cannot talk to {args.host}:{args.port}: {e}")


if __name__ == "__main__":
    main()
