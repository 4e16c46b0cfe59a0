"""Lesson sticky, the seed's client (§2.5): one recv(1024) per command. Run it and watch 粘包.

    $ python3 naive_client.py --host sticky-server --port 20020
    >> big 5120          prints 1024 bytes: the first 16 lines
    >> echo hi           prints big@00001024 ... : the NEXT 1024 bytes of the previous reply!

The only changes from the seed: each command ends with "\\n" (this server reads one command per
line), connect() errors are not ignored (the seed calls connect_ex and drops its result), and
the bytes are decoded as UTF-8 (the seed's client decodes 'gbk', a Windows console encoding).

The bug is on one line, marked below. recv(1024) means "give me what has arrived, at most 1024
bytes", not "give me the reply": a 5120-byte reply needs at least five recv() calls, and this
client makes one, so the remaining 4096 bytes wait in the kernel and come out as the answer to
the next command. ``client.py`` is the fix.
"""
import argparse
import socket
import sys

END_OF_REPLY = "--- end of reply ---"


def ask_like_the_seed(sock: socket.socket, command: str) -> bytes:
    sock.sendall(command.encode("utf-8") + b"\n")
    return sock.recv(1024)          # <- THE BUG: one recv is not one reply


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="sticky-server")
    parser.add_argument("--port", type=int, default=20020)
    parser.add_argument("--command", action="append", default=[], help="run without a prompt (repeatable)")
    args = parser.parse_args()
    with socket.create_connection((args.host, args.port), timeout=30) as sock:
        if args.command:
            for command in args.command:
                text = ask_like_the_seed(sock, command).decode("utf-8", errors="replace")
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
                print(END_OF_REPLY, flush=True)
            return 0
        while True:
            try:
                command = input(">> ").strip()
            except (EOFError, KeyboardInterrupt):     # Ctrl-D or Ctrl-C: leave without a traceback
                print()
                return 0
            if not command:
                continue
            if len(command.encode("utf-8")) > 4000:  # the server refuses lines over 4096 bytes
                print("(that line is over 4000 bytes; the server refuses it, so it was not sent)")
                continue
            if command == "quit":
                return 0
            data = ask_like_the_seed(sock, command)
            print(data.decode("utf-8", errors="replace"))
            print(f"({len(data)} bytes from one recv(1024)"
                  f"{': there may be more waiting in the kernel' if len(data) == 1024 else ''})")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:        # Ctrl-C while waiting for a reply
        print()
        sys.exit(130)
    except OSError as exc:           # refused, reset, timed out: one sentence, not a traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
