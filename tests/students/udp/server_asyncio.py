"""UDP echo server, style: asyncio DatagramProtocol.

Python 3.11's transport.sendto(b'') silently sends nothing, so an empty datagram is echoed
through the socket itself (found by the check's `boundaries` scenario).
Written from the contract in services/udp/README.md alone (stdlib only).
"""
import argparse
import asyncio
import socket


class EchoProtocol(asyncio.DatagramProtocol):
    def __init__(self, sock):
        self.sock = sock

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if data:
            self.transport.sendto(data, addr)
        else:
            try:
                self.sock.sendto(b"", addr)
            except OSError as e:
                print("empty echo failed:", e, flush=True)

    def error_received(self, exc):
        print("error:", exc, flush=True)


async def main(port):
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    sock.setblocking(False)
    await loop.create_datagram_endpoint(lambda: EchoProtocol(sock), sock=sock)
    print("udp asyncio echo on", port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    asyncio.run(main(ap.parse_args().port))
