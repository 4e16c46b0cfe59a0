"""Mistake: a correct loops server without SO_REUSEADDR (a restart fails with Errno 98)."""
import argparse
import socket

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, default=20010)
port = p.parse_args().port
with socket.socket() as server:                 # the mistake: no setsockopt(SO_REUSEADDR) before bind
    server.bind(("0.0.0.0", port))
    server.listen(5)
    while True:
        conn, _ = server.accept()
        with conn:
            while True:
                data = conn.recv(1024)
                if not data or data == b"quit":
                    break
                conn.sendall(data.decode()[::-1].encode())
