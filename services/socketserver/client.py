"""Lesson socketserver, the interactive client: type a line, the server sends it back in upper case.

    $ python3 socketserver/client.py --host socketserver-server --port 20050
    [+_+] hello
    HELLO

Open several at once (or keep one idle and use another): each gets its own thread on the
server, so nobody waits for anybody, unlike the iterative server of lesson loops.
"""
import argparse
import socket
import sys

MAX_LINE = 64 * 1024 - 1   # the server closes the connection on a line longer than 64 KiB


def read_line(sock_file) -> str | None:
    """One reply line, or None when the server closed the connection."""
    line = sock_file.readline()
    return line.decode("utf-8", errors="replace").rstrip("\n") if line else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="socketserver-server")
    parser.add_argument("--port", type=int, default=20050)
    args = parser.parse_args()
    sys.stdin.reconfigure(errors="surrogateescape")
    try:
        with socket.create_connection((args.host, args.port), timeout=10) as sock, \
                sock.makefile("rb") as replies:
            me = sock.getsockname()
            print(f"connected from {me[0]}:{me[1]}; Ctrl-D to leave")
            interrupted = False
            while True:
                try:
                    msg = input("[+_+] ").strip()
                except EOFError:
                    break
                except KeyboardInterrupt:
                    if interrupted:
                        print()
                        break
                    print("\n(Ctrl-C again, or Ctrl-D, to leave)")
                    interrupted = True
                    continue
                interrupted = False
                if not msg:
                    print("(an empty line: nothing sent; type some text)")
                    continue
                data = msg.encode("utf-8", "surrogateescape")
                if len(data) > MAX_LINE:
                    print(f"(that line is {len(data)} bytes; the server takes {MAX_LINE}, so only those "
                          "are sent)")
                    data = data[:MAX_LINE].decode("utf-8", "ignore").encode("utf-8")
                # One line = one message: the newline is the frame boundary the server's
                # readline() waits for, so the reply can't get mixed up with the next one.
                sock.sendall(data + b"\n")
                reply = read_line(replies)
                if reply is None:
                    print("(the server closed the connection)")
                    break
                print(reply)
    except KeyboardInterrupt:
        print()
    except OSError as e:
        print(f"cannot talk to {args.host}:{args.port}: {e}")


if __name__ == "__main__":
    main()
