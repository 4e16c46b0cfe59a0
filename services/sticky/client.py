"""Lesson sticky, the client that gets it right: every reply is read whole, never more, never less.

TCP delivers a *stream of bytes*. It keeps their order and loses none, but it does not keep the
edges of your send() calls: one recv() may return half a reply, or the end of one reply and the
start of the next. So the receiver must learn from the bytes themselves where a reply ends.

This client asks the server to put each reply's length in front of it (the ``frame`` prefix):

    request:  b"frame big 5120\\n"
    reply:    struct.pack("!I", 5120) + the 5120 bytes

and then reads exactly 4 bytes, and exactly that many more (``recv_exact``). That is all the
fix is. Compare ``naive_client.py``, the seed's client: one ``recv(1024)`` per command.

Interactive:
    $ python3 client.py --host sticky-server --port 20020
    >> big 5120
Scripted (the form ``lab.py check sticky --client my_client.py`` runs your client in):
    $ python3 client.py --host sticky-server --command "big 5120" --command "echo hi"
    ...each reply, then a line "--- end of reply ---"
"""
import argparse
import socket
import struct
import sys

END_OF_REPLY = "--- end of reply ---"
MAX_COMMAND = 4096 - len("frame \n")   # the server refuses command lines over 4096 bytes
HEADER = struct.Struct("!I")    # '!' network byte order, 'I' unsigned 32-bit: the same on every machine


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Receive exactly n bytes. recv(k) returns *up to* k bytes: as many as have arrived."""
    buffer = bytearray()            # bytearray += is cheap; bytes += copies everything each time
    while len(buffer) < n:
        chunk = sock.recv(min(n - len(buffer), 65536))
        if not chunk:               # b'' means the server closed the connection (end of stream)
            raise EOFError(f"the server closed the connection after {len(buffer)} of {n} bytes")
        buffer += chunk
    return bytes(buffer)


def ask(sock: socket.socket, command: str) -> bytes:
    """Send one command and return its whole reply, however TCP chose to cut it."""
    if "\n" in command:
        raise ValueError("one command per line")
    # A command ends with "\n": that is how the server knows where a command ends.
    sock.sendall(f"frame {command}\n".encode())
    (size,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    return recv_exact(sock, size)


def show(reply: bytes) -> str:
    # Decode once, after the whole reply is in: a chunk boundary may cut a UTF-8 character in
    # two. The server's text is UTF-8 (the seed decodes 'gbk', a Windows console encoding).
    return reply.decode("utf-8", errors="replace")


def run_commands(sock: socket.socket, commands: list[str]) -> None:
    for command in commands:
        text = show(ask(sock, command))
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        print(END_OF_REPLY, flush=True)


def bounded(command: str) -> str:
    """The command cut to what the server accepts (at a character edge); say so when cut."""
    data = command.encode("utf-8", "surrogateescape")
    if len(data) <= MAX_COMMAND:
        return command
    print(f"(that line is {len(data)} bytes; the server accepts {MAX_COMMAND}, so only those are sent)")
    return data[:MAX_COMMAND].decode("utf-8", "ignore")


def interactive(sock: socket.socket, address: tuple[str, int]) -> None:
    """The prompt. A lost server is explained and the next command connects again; Ctrl-C while
    waiting gives up that reply (the connection too: the rest of it would come out later)."""
    print("connected; commands: big N, lines N, echo TEXT, sends A B, help; quit to leave")
    interrupted = False
    while True:
        try:
            command = input(">> ").strip()
        except EOFError:
            return
        except KeyboardInterrupt:
            if interrupted:
                print()
                return
            print("\n(Ctrl-C again, or quit, to leave)")
            interrupted = True
            continue
        interrupted = False
        if not command:
            print("(an empty line: nothing to ask; try help)")   # no command, no reply to wait for
            continue
        if command == "quit":
            return
        try:
            if sock is None:
                sock = socket.create_connection(address, timeout=30)
                print(f"(connected again to {address[0]}:{address[1]})")
            reply = ask(sock, bounded(command).encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        except KeyboardInterrupt:
            print("\n(stopped waiting; the next command opens a new connection)")
            sock = _closed(sock)
            continue
        except (OSError, EOFError) as exc:
            print(f"(the server went away: {exc}; the next command connects again)")
            sock = _closed(sock)
            continue
        print(show(reply), end="" if reply.endswith(b"\n") else "\n")
        print(f"({len(reply)} bytes, exactly the length the server announced)")


def _closed(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.close()
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="sticky-server")
    parser.add_argument("--port", type=int, default=20020)
    parser.add_argument("--command", action="append", default=[],
                        help="run this command and print its reply (repeatable); no prompt")
    args = parser.parse_args()
    sys.stdin.reconfigure(errors="surrogateescape")
    try:
        with socket.create_connection((args.host, args.port), timeout=30) as sock:
            if args.command:
                run_commands(sock, args.command)
            else:
                interactive(sock, (args.host, args.port))
    except KeyboardInterrupt:
        print()
        return 130
    except (OSError, EOFError) as exc:
        print(f"error talking to {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
