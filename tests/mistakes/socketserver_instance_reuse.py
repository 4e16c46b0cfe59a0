"""Mistake: allow_reuse_address set on the instance, after the constructor has already bound."""
import argparse
import socketserver


class Upper(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line.upper())


p = argparse.ArgumentParser()
p.add_argument("--port", type=int, default=20050)
server = socketserver.ThreadingTCPServer(("0.0.0.0", p.parse_args().port), Upper)
server.allow_reuse_address = True          # the mistake: too late, bind() already happened
server.daemon_threads = True
server.serve_forever()
