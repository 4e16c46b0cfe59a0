"""UDP echo server, style: one socket, a plain recvfrom(65535) loop.

Written from the contract in services/udp/README.md alone (stdlib only).
"""
import argparse
import socket

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
port = ap.parse_args().port
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", port))
print("udp echo on", port, flush=True)
while True:
    data, addr = sock.recvfrom(65535)
    try:
        sock.sendto(data, addr)
    except OSError as e:
        print("sendto", addr, "failed:", e, flush=True)
