# Negative control for lesson `udp` (server side): the echo server everyone writes first.
# recvfrom(1024) cuts every datagram longer than 1024 bytes and throws the rest away, silently,
# so a 2000-byte or 65507-byte datagram comes back as 1024 bytes.
# `python lab.py check udp --server tests/negative/udp_seed_server.py` must FAIL.
from socket import *
import sys

port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 20040

server = socket(AF_INET, SOCK_DGRAM)
server.bind(('0.0.0.0', port))
print('listening on 0.0.0.0:%d' % port, flush=True)
while True:
    msg, addr = server.recvfrom(1024)
    server.sendto(msg, addr)
