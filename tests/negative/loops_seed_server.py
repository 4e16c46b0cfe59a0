"""Negative control for lesson loops: the seed's §2.4 连接循环/通信循环 server, kept as it was.

Only two things changed so that `lab.py check loops --server` can run it like the reference:
it takes --host/--port (the seed hard-codes 127.0.0.1:20000, which another container cannot
reach; then the check would fail for a dull reason) and prints `listening on HOST:PORT`.

What the check must catch, for real:
* the communication loop never tests `recv() == b''`. When a client leaves without typing
  quit, recv() returns b'' at once, forever, and the loop spins at 100% CPU calling
  send(b''); the server never returns to accept(), so the next client is never served;
* no SO_REUSEADDR: restarting the server right after it closed a connection (after `quit`)
  fails with OSError: [Errno 98] Address already in use.
"""
import argparse
import socket

parser = argparse.ArgumentParser()
parser.add_argument("--host", default="0.0.0.0")
parser.add_argument("--port", type=int, default=20010)
args = parser.parse_args()

# 1.create server socket
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

# 2.Bind ip address and port to symbol the only server
server.bind((args.host, args.port))

# 3.set the limit of connect to server
server.listen(5)
print(f"listening on {args.host}:{args.port}", flush=True)


# Link loop: server can tun long time
while True:
    # 4.start the server to begin listening the request from client
    print('Server is listening request...', flush=True)
    client_connect, client_address = server.accept()
    print('The information of client:\n%s\nThe client ip address:\n%s' % (client_connect, client_address),
          flush=True)

    # Message loop: server and client can communicate long time
    while True:
        try:
            # 5.set the limit of information received from client
            info = client_connect.recv(1024).decode('utf-8')   # bytes

            # when info is quit, just disconnect
            if info == 'quit':
                break

            # 6.send the data after operating
            client_connect.send(info[::-1].encode('utf-8'))
        # when any exception occur, just disconnect
        except Exception:
            break

    # 7.stop the connect to client
    client_connect.close()


# 8.stop the server
server.close()
