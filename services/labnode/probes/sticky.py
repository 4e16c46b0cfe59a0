"""Lesson sticky, probes: what the demo and `lab.py check sticky` do from the client machine.

    python3 -m labnode.probes.sticky leftover --host sticky-server --port 20020
    python3 -m labnode.probes.sticky coalesce --host sticky-server --port 20020 [--nodelay]
    python3 -m labnode.probes.sticky framed   --host sticky-server --port 20020
    python3 -m labnode.probes.sticky grade-client --host sticky-server --port 20020 \
        --client-cmd "python3 my_client.py"

The probes never guess with sleep(): before each recv() they wait until the kernel reports
(ioctl FIONREAD) that the bytes they want to talk about are already queued in the socket's
receive buffer. So what recv() returns is fixed by the rules of recv(), not by timing.

Each probe prints one observation per line, then `RESULT {"ok": ..., "observed": {...}}`.
"""
import argparse
import fcntl
import shlex
import socket
import struct
import subprocess
import sys
import termios
import time

from labnode.report import result
from sticky.client import END_OF_REPLY, ask, recv_exact

GRADED_COMMANDS = ["big 5120", "echo hi", "lines 3", "sends hello world", "big 100000", "echo done"]




def queued(sock: socket.socket) -> int:
    """Bytes waiting in the socket's receive buffer (what the next recv() can take at once)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def wait_queued(sock: socket.socket, n: int, timeout: float = 10) -> int:
    """Poll the kernel until at least n bytes are queued; return how many are."""
    deadline = time.monotonic() + timeout
    while (have := queued(sock)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {have} of the expected {n} bytes arrived within {timeout} s")
        time.sleep(0.002)
    return have


def preview(data: bytes, width: int = 28) -> str:
    return repr(data[:width]) + ("..." if len(data) > width else "")


def read_line(sock: socket.socket) -> bytes:
    """A short one-line reply, when nothing else is in flight (so we cannot read past it)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(256)
        if not chunk:
            raise EOFError("server closed the connection")
        data += chunk
    return data


def leftover(host: str, port: int, size: int = 5120, bufsize: int = 1024) -> bool:
    """The seed's client: one recv(1024) per command. The 2nd reply starts with the 1st's leftover."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"big {size}\n".encode())
        print(f"sent 'big {size}'; waiting until the kernel has queued the whole {size}-byte reply")
        have = wait_queued(sock, size)
        r1 = sock.recv(bufsize)
        print(f"FIONREAD={have}; recv({bufsize}) -> {len(r1)} bytes: {preview(r1)} "
              f"(the other {have - len(r1)} bytes stay queued in the kernel)")
        sock.sendall(b"echo hi\n")
        leftover_bytes = have - len(r1)
        print(f"sent 'echo hi' (its reply is b'hi\\n'); waiting for those 3 bytes behind the "
              f"{leftover_bytes} left over")
        have2 = wait_queued(sock, leftover_bytes + 3)
        r2 = sock.recv(bufsize)
        print(f"FIONREAD={have2}; recv({bufsize}) -> {len(r2)} bytes: {preview(r2)}")
        rest = recv_exact(sock, have2 - len(r2))
    stream = r1 + r2 + rest
    out1, out2 = stream[:size], stream[size:]
    continuation = r2 == out1[len(r1):len(r1) + len(r2)]
    print(f"the 'reply' to echo hi is bytes {len(r1)}..{len(r1) + len(r2)} of the reply to big {size}: "
          f"{continuation}")
    print(f"draining the stream: big {size} gave {len(out1)} bytes, echo hi gave {out2!r}; "
          "nothing was lost, only the edges between the replies")
    ok = len(r1) == bufsize and continuation and out2 == b"hi\n" and r2 != b"hi\n"
    return result(ok, size=size, bufsize=bufsize, r1_len=len(r1), r2_len=len(r2),
                  r1_head=r1[:16].decode("utf-8", "replace"), r2_head=r2[:16].decode("utf-8", "replace"),
                  queued_before_r1=have, queued_before_r2=have2, r2_is_continuation=continuation,
                  r2_is_echo_reply=r2 == b"hi\n", out1_len=len(out1), out2=out2.decode("utf-8", "replace"))


def set_nodelay_both_ends(sock: socket.socket) -> tuple[int, str]:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    mine = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    sock.sendall(b"nodelay on\n")
    theirs = read_line(sock).decode("utf-8", "replace").strip()
    print(f"TCP_NODELAY set on our socket (getsockopt -> {mine}); server says: {theirs}")
    return (1 if mine else 0), theirs


def coalesce(host: str, port: int, rounds: int = 20, nodelay: bool = False) -> bool:
    """Two sends that are both queued before we recv() come out of one recv() as one piece."""
    with socket.create_connection((host, port), timeout=10) as sock:
        client_nodelay, server_says = set_nodelay_both_ends(sock) if nodelay else (0, "")
        reads = []
        for _ in range(rounds):
            sock.sendall(b"sends hello world\n")   # the server: sendall(b"hello"); sendall(b"world")
            wait_queued(sock, 10)
            reads.append(sock.recv(1024))
        together = sum(r == b"helloworld" for r in reads)
        print(f"the server made two sendall() calls, b'hello' and b'world'; once FIONREAD showed 10 bytes, "
              f"recv(1024) -> {reads[0]!r}")
        print(f"{together}/{rounds} rounds: the two sends came out of ONE recv as b'helloworld'"
              + (" - with TCP_NODELAY on both ends" if nodelay else ""))
        paced = []
        if not nodelay:
            sock.sendall(b"paced-sends hello world\n")  # the same two sends, 0.2 s apart
            paced.append(sock.recv(1024))
            paced.append(recv_exact(sock, 10 - len(paced[0])))
            print(f"contrast: the same two sends 0.2 s apart while we wait in recv(1024): first recv -> "
                  f"{paced[0]!r}, second -> {paced[1]!r}. Where a recv() ends depends on timing, so a "
                  "program must never rely on it")
    if nodelay:
        print("so Nagle's algorithm is not the cause: the receiver's buffer had both pieces, and recv() "
              "returns everything queued, up to its limit. TCP is a byte stream with no message edges")
    both_ends = client_nodelay == 1 and server_says.startswith("TCP_NODELAY is now 1")
    ok = together == rounds and (both_ends or not nodelay)
    return result(ok, rounds=rounds, coalesced=together, first_recv=reads[0].decode("utf-8", "replace"),
                  nodelay=nodelay, client_nodelay=client_nodelay, server_nodelay_reply=server_says,
                  paced_recvs=[p.decode("utf-8", "replace") for p in paced])


def framed(host: str, port: int) -> bool:
    """The fix: a 4-byte length before each reply. Exact replies even when all are queued together."""
    commands = ["big 5120", "echo hi", "sends hello world"]
    expected = [5120, 3, 10]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall("".join(f"frame {c}\n" for c in commands).encode())
        total = sum(expected) + 4 * len(expected)
        have = wait_queued(sock, total)
        print(f"sent {len(commands)} framed commands at once; FIONREAD={have}: all three replies are queued "
              "back to back in one stream")
        sizes, bodies = [], []
        for command in commands:
            (size,) = struct.unpack("!I", recv_exact(sock, 4))
            body = recv_exact(sock, size)
            sizes.append(size)
            bodies.append(body)
            print(f"  read 4 bytes -> length {size}; recv_exact({size}) -> {preview(body)}  [{command}]")
        left = queued(sock)
    print(f"each reply came out exactly ({sizes}), {left} bytes left over")
    ok = sizes == expected and bodies[1] == b"hi\n" and bodies[2] == b"helloworld" and left == 0
    return result(ok, commands=commands, sizes=sizes, left_over=left, queued_together=have,
                  echo=bodies[1].decode(), sends=bodies[2].decode())


def split_replies(stdout: str) -> list[str]:
    """The client's output, cut at each END_OF_REPLY line."""
    replies, current = [], []
    for line in stdout.splitlines(keepends=True):
        if line.rstrip("\r\n") == END_OF_REPLY:
            replies.append("".join(current))
            current = []
        else:
            current.append(line)
    return replies


def grade_client(host: str, port: int, client_cmd: str, commands: list[str] | None = None) -> bool:
    """Run a client in scripted mode; every reply it prints must be exactly the server's reply."""
    commands = commands or GRADED_COMMANDS
    with socket.create_connection((host, port), timeout=10) as sock:
        expected = [ask(sock, c).decode("utf-8", "replace") for c in commands]   # the truth, framed
    argv = shlex.split(client_cmd) + ["--host", host, "--port", str(port)]
    for c in commands:
        argv += ["--command", c]
    print("$ " + shlex.join(argv))
    try:
        # bytes, not text: a client may print bytes that are not UTF-8 (a stray length prefix)
        proc = subprocess.run(argv, capture_output=True, timeout=60)
        timed_out = False
        exit_code = proc.returncode
        stdout = proc.stdout.decode("utf-8", "replace")
        stderr = proc.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as exc:
        exit_code, stderr, timed_out = -1, "client did not finish within 60 s", True
        partial = exc.stdout or ""
        stdout = partial.decode("utf-8", "replace") if isinstance(partial, bytes) else partial
    printed = split_replies(stdout)
    exact, prefixed = [], []
    for i, (command, want) in enumerate(zip(commands, expected)):
        got = printed[i] if i < len(printed) else None
        good = got is not None and got in (want, want + "\n")
        exact.append(good)
        if got is None:
            print(f"{command!r}: expected {len(want)} bytes, the client printed no reply")
        elif good:
            print(f"{command!r}: {len(want)} bytes, exactly the server's reply")
        elif got.endswith(want) or got.endswith(want + "\n"):
            extra = len(got) - len(want) - (1 if got.endswith(want + "\n") else 0)
            prefixed.append(command)
            print(f"{command!r}: the reply is there, but after {extra} extra byte(s) {got[:extra]!r} - "
                  "the client printed something before the reply (e.g. the 4-byte length)")
        else:
            at = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            print(f"{command!r}: expected {len(want)} bytes {want[:20]!r}..., the client printed "
                  f"{len(got)} bytes {got[:20]!r}... - WRONG from byte {at}")
    if exit_code != 0:
        print(f"the client exited with {exit_code}: {stderr.strip()[-300:]}")
    ok = exit_code == 0 and all(exact) and len(printed) == len(commands)
    last_error = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    refused = {c: got.strip()[:120] for c, got in zip(commands, printed) if got.startswith("error: ")}
    return result(ok, commands=commands, expected_bytes=[len(w) for w in expected],
                  printed_bytes=[len(p) for p in printed], exact=exact, printed_before_reply=prefixed,
                  all_exact=all(exact), replies_printed=len(printed), client_exit=exit_code,
                  timed_out=timed_out, client_error=last_error if exit_code != 0 else "",
                  server_refused=refused)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=["leftover", "coalesce", "framed", "grade-client"])
    parser.add_argument("--host", default="sticky-server")
    parser.add_argument("--port", type=int, default=20020)
    parser.add_argument("--size", type=int, default=5120, help="leftover: size of the first reply")
    parser.add_argument("--rounds", type=int, default=20, help="coalesce: how many times")
    parser.add_argument("--nodelay", action="store_true", help="coalesce: TCP_NODELAY on both ends")
    parser.add_argument("--client-cmd", default="python3 sticky/client.py", help="grade-client: the client")
    args = parser.parse_args(argv)
    try:
        if args.probe == "leftover":
            ok = leftover(args.host, args.port, args.size)
        elif args.probe == "coalesce":
            ok = coalesce(args.host, args.port, args.rounds, args.nodelay)
        elif args.probe == "framed":
            ok = framed(args.host, args.port)
        else:
            ok = grade_client(args.host, args.port, args.client_cmd)
    except (OSError, EOFError, struct.error) as exc:
        print(f"could not complete the probe against {args.host}:{args.port}: {type(exc).__name__}: {exc}")
        ok = result(False, error=f"{type(exc).__name__}: {exc}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
