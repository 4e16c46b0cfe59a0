"""Mistake: MSG_WAITALL on a socket with a timeout (Python makes it non-blocking: it returns short)."""
import socket

from common import main


def recv_waitall(conn, n):
    data = conn.recv(n, socket.MSG_WAITALL)   # short once a timeout is set
    if not data:
        raise EOFError
    return data


main(read=recv_waitall, timeout=30)
