"""Lesson basic, probes: what the demo and `lab.py check basic` do from the client machine.

    python3 -m basic.probes accept-new-socket --host basic-server --port 20000
    python3 -m basic.probes connect-ex --host basic-server --port 20001

Each probe prints what it sees, one observation per line, then one line
`RESULT {"ok": ..., "observed": {...}}` for the lab to grade.
"""
import argparse
import errno
import json
import socket
import sys


def result(ok: bool, **observed) -> bool:
    print("RESULT " + json.dumps({"ok": ok, "observed": observed}))
    return ok


def accept_new_socket(host: str, port: int, connections: int = 3) -> bool:
    """Connect several times: every connection gets its own client port and its own server socket."""
    client_ports, seen_ports, replies = [], [], []
    for i in range(connections):
        with socket.create_connection((host, port), timeout=5) as sock:
            my_ip, my_port = sock.getsockname()
            client_ports.append(my_port)
            sock.sendall(b"hello")
            reply = sock.recv(1024).decode("utf-8", "replace").strip()
            replies.append(reply)
            # the server tells us which ip:port it saw on its accepted socket
            seen = reply.split()[1].rstrip(",") if reply.startswith("hello ") else ""
            seen_ports.append(int(seen.rsplit(":", 1)[1]) if ":" in seen else -1)
            print(f"connection {i + 1}: my address {my_ip}:{my_port}; server says: {reply}")
    distinct = len(set(client_ports)) == len(client_ports)
    print(f"client ports {client_ports}: {'all different' if distinct else 'REPEATED'} - the kernel picks a "
          "fresh ephemeral port for each connect(), and accept() hands the server a new socket for each")
    same_view = seen_ports == client_ports
    print(f"the server saw the same ports: {same_view}")
    return result(distinct and same_view and connections >= 2, client_ports=client_ports,
                  server_seen_ports=seen_ports, replies=replies)


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
