"""Mistake: a udp echo server that answers from a new socket each time, so the echo comes from
another port than the one the client sent to (a connect()ed client or a relay never sees it)."""
import argparse
import socket

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, default=20040)
port = p.parse_args().port
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
    server.bind(("0.0.0.0", port))
    while True:
        data, addr = server.recvfrom(65535)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:   # the mistake
            other.sendto(data, addr)
