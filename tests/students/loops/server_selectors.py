"""Style: single-threaded selectors event loop serving many clients at once (non-blocking sockets).

Each readable connection: one recv() = one message; reply with one sendall() (the socket is
switched to blocking just for that short write so one call sends everything).
"""
import argparse
import selectors
import socket


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    port = ap.parse_args().port

    sel = selectors.DefaultSelector()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", port))
    lsock.listen(32)
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, None)

    def drop(conn):
        sel.unregister(conn)
        conn.close()

    while True:
        for key, _mask in sel.select():
            if key.data is None:
                try:
                    conn, _addr = lsock.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, "client")
                continue
            conn = key.fileobj
            try:
                data = conn.recv(1024)
            except BlockingIOError:
                continue
            except OSError:
                drop(conn)
                continue
            if not data or data == b"quit":
                drop(conn)
                continue
            reply = data.decode("utf-8", "replace")[::-1].encode("utf-8")
            conn.setblocking(True)
            conn.settimeout(5)
            try:
                conn.sendall(reply)
            except OSError:
                drop(conn)
                continue
            conn.setblocking(False)


if __name__ == "__main__":
    main()
