"""Mistake: the communication loop never checks recv() == b'' (it spins when a client just closes)."""
import argparse
import socket

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, default=20010)
port = p.parse_args().port
with socket.socket() as server:
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(5)
    while True:
        conn, _ = server.accept()
        with conn:
            while True:
                data = conn.recv(1024)          # b'' forever once the client closed
                if data == b"quit":
                    break
                try:
                    conn.sendall(data.decode()[::-1].encode())
                except OSError:
                    pass
