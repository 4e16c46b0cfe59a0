# Negative control for lesson `framing`: the seed's §2.5 "自定义报头" client, in the one-shot
# form the check uses (same options as framing/client.py: --host --port --command... --mode).
# The seed's recipe as written:
#   - struct.pack('i') / unpack('i'): native byte order (little-endian on x86) and signed;
#   - `struct.unpack('i', client.recv(4))`: assumes recv(4) returns 4 bytes (a trickled reply
#     gives 1: struct.error);
#   - `client.recv(header_length)`: assumes the whole header arrives at once;
#   - body loop `while receive_size < total_size: total_data += client.recv(1024)`: reads past
#     the end of the body into the next frame, copies quadratically, spins forever on EOF;
#   - send() instead of sendall(); decode('gbk') (here it prints what it got, as the seed does).
# `python lab.py check framing --client tests/negative/framing_seed_client.py` must FAIL.
# Set SEED_HEADER_FORMAT='!I' to fix only the byte order and watch the other bugs fail on their own.
import hashlib
import json
import os
import struct
import sys
from socket import AF_INET, SOCK_STREAM, socket

HEADER_FORMAT = os.environ.get("SEED_HEADER_FORMAT", "i")
host = sys.argv[sys.argv.index("--host") + 1] if "--host" in sys.argv else "framing-server"
port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 20030
mode = sys.argv[sys.argv.index("--mode") + 1] if "--mode" in sys.argv else "normal"
commands = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--command"]

client = socket(AF_INET, SOCK_STREAM)
client.connect((host, port))

for cmd in commands:
    # Make and send the request the same way (length, header)
    request = json.dumps({'cmd': cmd, 'mode': mode, 'size': 0}).encode('utf-8')
    client.send(struct.pack(HEADER_FORMAT, len(request)))
    client.send(request)

    # Receive the fixed length of header
    header_length = struct.unpack(HEADER_FORMAT, client.recv(4))

    # Receive the header
    header_bytes = client.recv(header_length[0])
    header_dic = json.loads(header_bytes.decode('utf-8'))

    # Receive the message
    total_size = header_dic['size']
    receive_size = 0
    total_data = b''
    while receive_size < total_size:
        receive_data = client.recv(1024)
        receive_size += len(receive_data)
        total_data += receive_data

    if hashlib.sha256(total_data).hexdigest() == header_dic['sha256']:
        print(total_data.decode('gbk'))
    else:
        print('Data is not complete.')
