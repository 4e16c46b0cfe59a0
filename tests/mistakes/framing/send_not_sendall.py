"""Mistake: send() instead of sendall() (with a timeout, send() takes what fits and returns)."""
from common import main


def send_once(conn, data):
    conn.send(data)              # the mistake: the rest of a big reply is never sent


main(send=send_once, timeout=30)
