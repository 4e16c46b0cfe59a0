"""Mistake: a correct basic server, except that it binds 127.0.0.1 (unreachable from other machines)."""
import argparse
import socket

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, default=20000)
port = p.parse_args().port
with socket.socket() as server:
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))      # the mistake
    server.listen(5)
    while True:
        conn, addr = server.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(f"hi {addr[0]}:{addr[1]}\n".encode())
