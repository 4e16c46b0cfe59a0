"""Mistake (socketserver): each recv(1024) is treated as one line (no line framing).

The handler touches only its own connection (no shared state), but a 3 kB line arrives in
several recv() chunks and gets answered piece by piece. Read lines: self.rfile.
Fails twenty-parallel: "one recv() is not one line".
"""
import argparse
import socketserver


class Upper(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(1024)                 # MISTAKE: a chunk, not a line
            if not data:
                break
            self.request.sendall(data.strip().upper() + b"\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
Server(("0.0.0.0", parser.parse_args().port), Upper).serve_forever()
