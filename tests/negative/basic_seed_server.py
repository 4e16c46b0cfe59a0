# Negative control for lesson `basic`: the seed's §2.4 server, as written (in Python 3).
# It binds 127.0.0.1, so no other machine can reach it, and it serves exactly one client.
# `python lab.py check basic --server tests/negative/basic_seed_server.py` must FAIL.
import socket
import sys

port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 20000

# 1.create server socket
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# 2.Bind ip address and port to symbol the only server
server.bind(('127.0.0.1', port))
# 3.set the limit of connect to server
server.listen(5)
print('Server is listening request...', flush=True)
client_connect, client_address = server.accept()
print('The information of client:\n%s\nThe client ip address:\n%s' % (client_connect, client_address))
# 5.stop the connect to client
client_connect.close()
# 6.stop the server
server.close()
