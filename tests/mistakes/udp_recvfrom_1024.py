"""Mistake: a tidy UDP echo server that reads with recvfrom(1024) (longer datagrams are cut)."""
import argparse
import socket

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, default=20040)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.bind(("0.0.0.0", p.parse_args().port))
    while True:
        data, addr = sock.recvfrom(1024)        # the mistake
        sock.sendto(data, addr)
