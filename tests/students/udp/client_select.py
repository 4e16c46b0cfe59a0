"""UDP stop-and-wait client, style: connect()ed non-blocking socket and select() for the timer.

Written from the contract in services/udp/README.md alone (stdlib only).
"""
import argparse
import select
import socket
import sys
import time

RTO = 0.25


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    a = p.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect((a.host, a.port))  # fixes the peer; replies from elsewhere are dropped by the kernel
    s.setblocking(False)
    stop = time.monotonic() + 115
    seq, tries = 0, 0
    while seq < a.count:
        if time.monotonic() > stop:
            sys.exit(f"timed out at message {seq}")
        s.send(f"DATA {seq} message {seq}".encode())
        tries += 1
        timer = time.monotonic() + RTO
        while True:
            wait = timer - time.monotonic()
            if wait <= 0:
                break
            r, _, _ = select.select([s], [], [], wait)
            if not r:
                break
            try:
                data = s.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                continue
            parts = data.split()
            if len(parts) == 2 and parts[0] == b"ACK" and parts[1] == str(seq).encode():
                seq += 1
                break
            # stale/duplicate ACK or anything else: ignore and keep waiting
    print(f"{a.count} messages acknowledged in {tries} sends")


if __name__ == "__main__":
    main()
