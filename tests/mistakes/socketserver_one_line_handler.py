"""Mistake (socketserver): the handler answers ONE line and returns, which closes the connection.

A client may send many lines on one connection; loop over self.rfile until EOF instead.
Fails b-while-a-idles / twenty-parallel: "the handler returns after one line".
"""
import argparse
import socketserver


class Upper(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(self.rfile.readline().upper())   # MISTAKE: no loop, returns after one line


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
Server(("0.0.0.0", parser.parse_args().port), Upper).serve_forever()
