"""Lesson basic, probes: what the demo and `lab.py check basic` do from the client machine.

    python3 -m labnode.probes.basic accept-new-socket --host basic-server --port 20000
    python3 -m labnode.probes.basic connect-ex --host basic-server --port 20001

Each probe prints what it sees, one observation per line, then one line
`RESULT {"ok": ..., "observed": {...}}` for the lab to grade.
"""
import argparse
import errno
import re
import socket
import sys

from labnode.report import result


def accept_new_socket(host: str, port: int, connections: int = 3) -> bool:
    """Connect several times: every connection gets its own client port and its own server socket.

    Any reply counts: the lesson's contract says the server answers, not in which words. When the
    reply names the client's ip:port (the reference server does), that is shown too.
    """
    client_ports, seen_ports, replies, problem = [], [], [], ""
    for i in range(connections):
        try:
            sock = socket.create_connection((host, port), timeout=5)
        except OSError as exc:
            problem = (f"connection {i + 1} failed: {exc}" if i == 0 else
                       f"connection {i + 1} was refused after {i} served: {exc}")
            print(problem)
            break
        with sock:
            my_ip, my_port = sock.getsockname()
            client_ports.append(my_port)
            sock.sendall(b"hello")
            try:
                reply = sock.recv(1024)
            except TimeoutError:
                problem = f"connection {i + 1}: no reply within 5 s to b'hello' (5 bytes, no newline)"
                print(problem)
                break
            except ConnectionError as exc:
                reply, problem = b"", f"connection {i + 1}: {exc}"
            text = reply.decode("utf-8", "replace").strip()
            replies.append(text)
            if not reply:
                problem = problem or f"connection {i + 1}: the server closed the connection without replying"
                print(problem)
                break
            found = re.search(r"(\d+\.\d+\.\d+\.\d+):(\d+)", text)
            seen_ports.append(int(found.group(2)) if found else None)
            print(f"connection {i + 1}: my address {my_ip}:{my_port}; server says: {text[:120]}")
    distinct = len(set(client_ports)) == len(client_ports)
    served = len(replies) if not problem else sum(1 for r in replies if r)
    if client_ports:
        print(f"client ports {client_ports}: {'all different' if distinct else 'REPEATED'} - the kernel picks a "
              "fresh ephemeral port for each connect(), and accept() hands the server a new socket for each")
    if served and seen_ports[:served] == client_ports[:served]:
        print("the server's replies name the same ports: it saw each client's real address")
    ok = not problem and served == connections and distinct
    return result(ok, client_ports=client_ports, server_seen_ports=seen_ports, replies=replies,
                  served=served, connections=connections, problem=problem)


def bytes_not_str(host: str, port: int) -> bool:
    """send() wants bytes: a str raises TypeError before anything reaches the network."""
    with socket.create_connection((host, port), timeout=5) as sock:
        try:
            sock.send("hello")  # type: ignore[arg-type]
            error = ""
        except TypeError as exc:
            error = str(exc)
        print(f"sock.send('hello') -> TypeError: {error}")
        sock.sendall("hello".encode("utf-8"))  # noqa: UP012 (the lesson: str must be encoded)
        reply = sock.recv(1024)
        print(f"sock.sendall('hello'.encode('utf-8')) works; recv() returns {type(reply).__name__}: {reply[:40]!r}")
    return result(bool(error) and isinstance(reply, bytes), type_error=error, reply_type=type(reply).__name__)


def connect_ex(host: str, port: int, expect: str = "ECONNREFUSED") -> bool:
    """connect_ex returns the error number instead of raising it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            code = sock.connect_ex((host, port))
        except TimeoutError:
            code = errno.ETIMEDOUT
    name = errno.errorcode.get(code, str(code)) if code else "OK"
    print(f"connect_ex(({host!r}, {port})) -> {code} ({name})")
    if code == errno.ECONNREFUSED:
        print("the other machine's kernel answered the SYN with a RST: nothing listens on that address:port")
    return result(name == expect, errno=code, errno_name=name, host=host, port=port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=["accept-new-socket", "bytes-not-str", "connect-ex"])
    parser.add_argument("--host", default="basic-server")
    parser.add_argument("--port", type=int, default=20000)
    parser.add_argument("--expect", default="ECONNREFUSED", help="connect-ex: the errno name expected")
    args = parser.parse_args(argv)
    try:
        if args.probe == "accept-new-socket":
            ok = accept_new_socket(args.host, args.port)
        elif args.probe == "bytes-not-str":
            ok = bytes_not_str(args.host, args.port)
        else:
            ok = connect_ex(args.host, args.port, args.expect)
    except OSError as exc:
        print(f"could not talk to {args.host}:{args.port}: {exc}")
        ok = result(False, error=str(exc))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
