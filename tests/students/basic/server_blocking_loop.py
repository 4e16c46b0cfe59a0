"""Style: plain blocking loop with socket.socket(), setsockopt, bind('0.0.0.0'), listen, accept.

Lesson basic: one recv() per client, a reply naming the client's address, back to accept().
"""
import argparse
import socket

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
args = ap.parse_args()

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", args.port))
listener.listen(5)
print(f"listening on 0.0.0.0:{args.port}", flush=True)

while True:
    conn, addr = listener.accept()
    try:
        data = conn.recv(1024)
        print(f"from {addr}: {data!r}", flush=True)
        conn.sendall(f"you are {addr[0]}:{addr[1]}, you said {data.decode('utf-8', 'replace')}\n".encode("utf-8"))
    except OSError as e:
        print(f"client {addr}: {e}", flush=True)
    finally:
        conn.close()
