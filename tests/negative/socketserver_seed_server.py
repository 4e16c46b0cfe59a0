"""Negative control for lesson socketserver: the seed's §2.7 server, kept as it was.

Changed only so that `lab.py check socketserver --server` can run it like the reference: it
takes --host/--port (the seed hard-codes 192.168.20.76:8000) and prints `listening on HOST:PORT`.

What the check must catch, for real: `server.allow_reuse_address = True` is set on the instance
AFTER the constructor has already bound the socket, so it does nothing (SO_REUSEADDR stays 0).
After the server stops while a client is connected (it closes first, so the connection's
TIME_WAIT stays on the server's port), starting it again on the same port fails with
OSError: [Errno 98] Address already in use.
(ThreadingTCPServer itself is fine: the concurrency scenarios pass, as they should.)
"""
import argparse
import socketserver


class MyServer(socketserver.BaseRequestHandler):

    def handle(self):
        print(self.request, flush=True)
        while True:
            try:
                cmd = self.request.recv(1024)
                if not cmd:
                    break
                self.request.send(cmd.upper())
            except Exception as error_info:
                print(error_info, flush=True)
                break
        self.request.close()


if __name__ == '__main__':
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=20050)
    args = parser.parse_args()
    server = socketserver.ThreadingTCPServer((args.host, args.port), MyServer)
    server.allow_reuse_address = True
    print(f"listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()
