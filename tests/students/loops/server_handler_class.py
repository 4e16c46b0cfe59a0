"""Style: object-oriented -- a ReverseServer class with small helper methods, no makefile(), raw recv loop.

Each method does one thing: open_listener(), serve_forever(), talk(conn), reply_for(data).
"""
import argparse
import socket


class ReverseServer:
    QUIT = b"quit"

    def __init__(self, port: int, host: str = "0.0.0.0"):
        self.port = port
        self.host = host
        self.listener = None
        self.served = 0

    def open_listener(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(8)
        self.listener = s

    @staticmethod
    def reply_for(data: bytes) -> bytes:
        return data.decode("utf-8")[::-1].encode("utf-8")

    def talk(self, conn: socket.socket) -> None:
        while True:
            chunk = conn.recv(2048)
            if chunk == b"":
                return
            if chunk == self.QUIT:
                return
            try:
                out = self.reply_for(chunk)
            except UnicodeDecodeError:
                out = b"error: not UTF-8"
            conn.sendall(out)

    def serve_forever(self) -> None:
        self.open_listener()
        while True:
            conn, addr = self.listener.accept()
            self.served += 1
            try:
                self.talk(conn)
            except OSError as exc:
                print(f"client {addr}: {exc}")
            finally:
                conn.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ReverseServer(ap.parse_args().port).serve_forever()
