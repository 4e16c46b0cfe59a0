"""Style: selectors, non-blocking sockets, one event loop; each connection: one recv, one reply, close.

Replies go out with send() in a loop driven by EVENT_WRITE, so a slow client blocks nobody.
"""
import argparse
import selectors
import socket

sel = selectors.DefaultSelector()


def on_accept(listener):
    try:
        conn, addr = listener.accept()
    except BlockingIOError:
        return
    conn.setblocking(False)
    sel.register(conn, selectors.EVENT_READ, ("read", addr, b""))


def on_read(conn, addr):
    try:
        data = conn.recv(1024)
    except BlockingIOError:
        return
    except OSError:
        sel.unregister(conn)
        conn.close()
        return
    reply = f"[{addr[0]}:{addr[1]}] ".encode() + (data or b"(nothing)") + b"\n"
    sel.modify(conn, selectors.EVENT_WRITE, ("write", addr, reply))


def on_write(conn, addr, pending):
    try:
        n = conn.send(pending)
    except BlockingIOError:
        return
    except OSError:
        n = len(pending)
    pending = pending[n:]
    if pending:
        sel.modify(conn, selectors.EVENT_WRITE, ("write", addr, pending))
    else:
        sel.unregister(conn)
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    port = ap.parse_args().port
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", port))
    lsock.listen(64)
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, ("accept", None, None))
    while True:
        for key, _ in sel.select():
            kind, addr, extra = key.data
            if kind == "accept":
                on_accept(key.fileobj)
            elif kind == "read":
                on_read(key.fileobj, addr)
            else:
                on_write(key.fileobj, addr, extra)


if __name__ == "__main__":
    main()
