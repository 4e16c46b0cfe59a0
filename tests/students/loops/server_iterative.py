"""Style: plain iterative server -- the lesson's two nested loops (connection loop, communication loop).

SO_REUSEADDR before bind(); b'' ends the inner loop; 'quit' closes the connection.
"""
import argparse
import socket

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
port = parser.parse_args().port

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", port))
listener.listen(5)
print("loops server on port", port, flush=True)

while True:                                  # connection loop
    conn, addr = listener.accept()
    print("client", addr, flush=True)
    with conn:
        while True:                          # communication loop
            try:
                data = conn.recv(1024)
            except ConnectionError:
                break
            if not data:
                print("client gone", addr, flush=True)
                break
            text = data.decode("utf-8", errors="replace")
            if text == "quit":
                print("quit from", addr, flush=True)
                break
            conn.sendall(text[::-1].encode("utf-8"))
