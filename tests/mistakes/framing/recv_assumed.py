"""Mistake: recv(n) assumed to return n bytes (a frame read with bare recv calls)."""
from common import main


def recv_once(conn, n):
    data = conn.recv(n)          # the mistake: may return fewer than n bytes
    if not data:
        raise EOFError
    return data


main(read=recv_once)
