"""Style: socketserver.ThreadingTCPServer subclass, class-level allow_reuse_address, StreamRequestHandler + rfile.readline."""
import argparse
import socketserver


class UpperHandler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line:
                break
            self.wfile.write(line.rstrip(b"\r\n").upper() + b"\n")


class UpperServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    with UpperServer(("0.0.0.0", ap.parse_args().port), UpperHandler) as srv:
        srv.serve_forever()
