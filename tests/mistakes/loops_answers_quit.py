"""Mistake (loops): 'quit' is answered like any message ('tiuq') and the connection stays open.

When the message is quit, close the connection. Fails client-gone: "close the connection
instead of answering it".
"""
import argparse
import socket

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
port = parser.parse_args().port
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", port))
server.listen()
while True:
    conn, _ = server.accept()
    with conn:
        while True:
            data = conn.recv(1024)
            if not data:                                    # MISTAKE: no check for b"quit"
                break
            conn.sendall(data.decode("utf-8")[::-1].encode("utf-8"))
