"""Style: thread per client (threading.Thread, daemon) -- the contract allows serving several at once.

The main thread only accepts; each worker runs the communication loop for its connection.
"""
import argparse
import socket
import threading


def serve_client(conn: socket.socket, addr) -> None:
    name = threading.current_thread().name
    with conn:
        while True:
            try:
                msg = conn.recv(1024)
            except OSError:
                break
            if not msg:
                print(f"{name}: {addr} closed", flush=True)
                break
            s = msg.decode("utf-8", "replace")
            if s == "quit":
                break
            conn.sendall("".join(reversed(s)).encode("utf-8"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    port = ap.parse_args().port
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(16)
    while True:
        conn, addr = srv.accept()
        threading.Thread(target=serve_client, args=(conn, addr), daemon=True).start()


if __name__ == "__main__":
    main()
