"""Mistake: the body loop always asks recv(1024), even when fewer body bytes remain, so it reads
past the body into the next frame whenever requests are queued back to back (the seed's loop)."""
from common import main, recv_exact


def read_body_1024(conn, size):
    body = b""
    while len(body) < size:
        chunk = conn.recv(1024)      # the mistake: should be recv(min(1024, size - len(body)))
        if not chunk:
            raise EOFError("client left")
        body += chunk
    return body


main(read=recv_exact, read_body=read_body_1024)
