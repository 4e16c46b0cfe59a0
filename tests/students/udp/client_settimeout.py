"""UDP stop-and-wait client, style: plain socket, settimeout(0.2) and a resend loop.

Written from the contract in services/udp/README.md alone (stdlib only).
"""
import argparse
import socket
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--count", type=int, default=30)
a = ap.parse_args()
addr = (socket.gethostbyname(a.host), a.port)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(0.2)
deadline = time.monotonic() + 110
sent = 0
for seq in range(a.count):
    msg = f"DATA {seq} message {seq}".encode("utf-8")
    want = f"ACK {seq}".encode()
    acked = False
    while not acked:
        if time.monotonic() > deadline:
            print(f"gave up at seq {seq}", file=sys.stderr)
            sys.exit(1)
        sock.sendto(msg, addr)
        sent += 1
        end = time.monotonic() + 0.2
        while True:
            left = end - time.monotonic()
            if left <= 0:
                print(f"seq {seq}: timeout, resending")
                break
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(65535)
            except socket.timeout:
                continue
            except ConnectionRefusedError:
                continue
            if data.strip() == want:
                acked = True
                break
            print(f"ignoring {data[:40]!r} while waiting for {want!r}")
print(f"all {a.count} acknowledged, {sent} datagrams sent")
