"""Mistake (loops): reverses the message's BYTES, not its text: data[::-1].

'héllo' is UTF-8 with two-byte characters; reversed bytes are not valid UTF-8.
Decode, reverse the str, encode. Fails many-clients: "reverse the text, not the bytes".
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
            if not data or data == b"quit":
                break
            conn.sendall(data[::-1])                        # MISTAKE: bytes reversed
