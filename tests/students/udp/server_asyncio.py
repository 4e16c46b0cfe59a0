"""UDP echo server, style: asyncio DatagramProtocol.

Written from the contract in services/udp/README.md alone (stdlib only).
"""
import argparse
import asyncio


class EchoProtocol(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)

    def error_received(self, exc):
        print("error:", exc, flush=True)


async def main(port):
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(EchoProtocol, local_addr=("0.0.0.0", port))
    print("udp asyncio echo on", port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    asyncio.run(main(ap.parse_args().port))
