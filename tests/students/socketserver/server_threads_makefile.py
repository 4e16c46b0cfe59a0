"""Style: hand-written threads (one per client) and conn.makefile('rwb') for line reading; SO_REUSEADDR before bind()."""
import argparse
import socket
import threading


def worker(conn):
    with conn, conn.makefile("rwb") as f:
        for line in f:                       # iterates line by line, b'' ends it
            text = line.decode("utf-8", "replace").rstrip("\n")
            f.write(text.upper().encode("utf-8") + b"\n")
            f.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    port = ap.parse_args().port
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(64)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=worker, args=(c,), daemon=True).start()


main()
