"""Style: socket.create_server(('', port)) -- the empty host means every interface (INADDR_ANY).

The listening socket is used as a context manager, each connection socket too.
"""
import argparse
import socket
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description="basic server (create_server style)")
    ap.add_argument("--port", type=int, default=20000)
    port = ap.parse_args().port
    with socket.create_server(("", port), backlog=16) as srv:
        sys.stderr.write(f"serving on port {port}\n")
        while True:
            conn, (ip, cport) = srv.accept()
            with conn:
                msg = conn.recv(4096)
                conn.sendall(b"ok " + msg + b" from " + f"{ip}:{cport}".encode())


if __name__ == "__main__":
    sys.exit(main())
