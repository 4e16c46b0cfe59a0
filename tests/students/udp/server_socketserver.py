"""UDP echo server, style: socketserver.UDPServer with a DatagramRequestHandler-free handler.

UDPServer reads max_packet_size bytes per datagram (8192 by default), so it is raised to 65535.
Written from the contract in services/udp/README.md alone (stdlib only).
"""
import argparse
import socketserver


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data, self.client_address)


class Server(socketserver.UDPServer):
    max_packet_size = 65535
    allow_reuse_address = True


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    with Server(("0.0.0.0", ap.parse_args().port), Echo) as srv:
        srv.serve_forever()
