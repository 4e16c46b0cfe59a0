# Negative control for lesson `udp` (client side): a client in the seed's style, with no retries.
# It sends each message once and waits 0.2 s for the ACK; if none comes it prints "lost" and
# goes on. Through the lossy relay the server then delivers only the messages before the first
# loss. `python lab.py check udp --client tests/negative/udp_seed_client.py` must FAIL.
from socket import *
import sys

host = sys.argv[sys.argv.index("--host") + 1] if "--host" in sys.argv else "udp-relay"
port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 20041
count = int(sys.argv[sys.argv.index("--count") + 1]) if "--count" in sys.argv else 20

client = socket(AF_INET, SOCK_DGRAM)
client.settimeout(0.2)
for i in range(count):
    msg = 'DATA %d message %d' % (i, i)
    client.sendto(msg.encode('utf-8'), (host, port))
    try:
        data, addr = client.recvfrom(1024)
        print(data.decode('utf-8'))
    except timeout:
        print('message %d lost' % i)
client.close()
