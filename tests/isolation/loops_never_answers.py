"""A loops server that accepts every client and never answers (tests/integration/test_check_batch.py):
each scenario waits out its own timeouts, so its check outlasts a short --timeout."""
import socket
import sys
import time

port = int(sys.argv[sys.argv.index("--port") + 1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", port))
server.listen()
held = []
while True:
    conn, _ = server.accept()
    held.append(conn)          # kept open, never read, never answered
    time.sleep(0)
