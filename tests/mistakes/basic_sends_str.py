"""Mistake: a basic server that sends a str instead of bytes. send() raises TypeError on the first
client, and the exception ends the server: the check must say the server exited, and show why."""
import argparse
import socket

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, default=20000)
port = p.parse_args().port
with socket.socket() as server:
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(5)
    while True:
        conn, addr = server.accept()
        with conn:
            conn.recv(1024)
            conn.send(f"hi {addr[0]}:{addr[1]}\n")      # the mistake: a str, not bytes
