"""UDP stop-and-wait client, style: asyncio DatagramProtocol, ACKs into a Queue, wait_for timeout.

Written from the contract in services/udp/README.md alone (stdlib only).
"""
import argparse
import asyncio
import sys


class Proto(asyncio.DatagramProtocol):
    def __init__(self, q):
        self.q = q

    def datagram_received(self, data, addr):
        self.q.put_nowait(data)

    def error_received(self, exc):
        pass


async def run(host, port, count):
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()
    transport, _ = await loop.create_datagram_endpoint(lambda: Proto(q), remote_addr=(host, port))
    try:
        for seq in range(count):
            want = f"ACK {seq}"
            while True:
                transport.sendto(f"DATA {seq} message {seq}".encode("utf-8"))
                try:
                    async with asyncio.timeout(0.2):
                        while (await q.get()).decode("utf-8", "replace").strip() != want:
                            pass  # stale or duplicate ACK
                    break
                except TimeoutError:
                    print(f"resend {seq}")
    finally:
        transport.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    a = ap.parse_args()
    try:
        asyncio.run(asyncio.wait_for(run(a.host, a.port, a.count), 115))
    except TimeoutError:
        sys.exit("not every message was acknowledged in time")
    print("all acknowledged")


if __name__ == "__main__":
    main()
