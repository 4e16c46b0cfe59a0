"""Style: socketserver.TCPServer (iterative) with a BaseRequestHandler doing one recv().

allow_reuse_address is a class attribute so it is read before bind().
"""
import argparse
import socketserver


class OneShotHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data = self.request.recv(1024)
        host, port = self.client_address
        self.request.sendall(b"hello " + host.encode() + b":" + str(port).encode() + b" got " + data)


class Server(socketserver.TCPServer):
    allow_reuse_address = True


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    with Server(("0.0.0.0", a.port), OneShotHandler) as server:
        server.serve_forever()
