"""Mistake (udp): the echo server decodes, strip()s and re-encodes each datagram.

Spaces and newlines are data, and a datagram need not be UTF-8: echo the bytes unchanged.
Fails boundaries: "unchanged".
"""
import argparse
import socket

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", parser.parse_args().port))
while True:
    data, addr = sock.recvfrom(65535)
    sock.sendto(data.decode("utf-8", "replace").strip().encode("utf-8"), addr)   # MISTAKE
