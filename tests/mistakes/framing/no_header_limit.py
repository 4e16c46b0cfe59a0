"""Mistake: no upper limit on the announced header length. The reader allocates a buffer of the
announced size first (recv_into a bytearray), so a prefix ff ff ff ff asks for 4 GiB: in the lab's
256 MiB container the server is killed, and nobody is served afterwards."""
from common import main


def recv_exact_into(conn, n):
    buf = bytearray(n)               # allocated before a single byte arrives
    view, got = memoryview(buf), 0
    while got < n:
        k = conn.recv_into(view[got:])
        if not k:
            raise EOFError("client left")
        got += k
    return bytes(buf)


main(read=recv_exact_into, max_header=None)    # the mistake: should refuse n > 64 KiB at once
