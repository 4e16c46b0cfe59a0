"""Style: minimal -- a one-byte reply that does not name the client (the contract: 'reply in its own words',
'at least one byte'); the listener closes each connection after the reply."""
import socket
import sys

port = int(sys.argv[sys.argv.index("--port") + 1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen()
while True:
    c, _ = s.accept()
    c.recv(5)
    c.sendall(b"!")
    c.close()
