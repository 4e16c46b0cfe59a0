# Negative control for lesson `framing`: the seed's §2.5 "自定义报头" server, made runnable in
# Python 3 and speaking the lesson's request format ({"cmd": ...} headers) with the lesson's
# whitelisted fake shell instead of shell=True. Everything else is the seed's recipe:
#   - struct.pack('i') / unpack('i'): native byte order (little-endian on x86) and signed,
#     where the protocol says '!I' (network order, unsigned);
#   - recv(4) and recv(header_length) assumed to return exactly that many bytes;
#   - the body loop `while recv_size < total: data += conn.recv(1024)`: it over-reads into the
#     next request, copies quadratically (bytes +=), and spins forever if the client stops early;
#   - send() instead of sendall(); no timeouts; one client at a time; errors end the connection
#     with no reply at all.
# `python lab.py check framing --server tests/negative/framing_seed_server.py` must FAIL.
# Set SEED_HEADER_FORMAT='!I' to fix only the byte order and watch the other bugs fail on their own.
import hashlib
import json
import os
import struct
import sys
from socket import AF_INET, SOCK_STREAM, socket

from framing.server import RequestError, run_command   # the lesson's safe fake shell

HEADER_FORMAT = os.environ.get("SEED_HEADER_FORMAT", "i")
port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 20030
host = sys.argv[sys.argv.index("--host") + 1] if "--host" in sys.argv else "0.0.0.0"

servers = socket(AF_INET, SOCK_STREAM)
servers.bind((host, port))
servers.listen(5)
print('The server is started... listening on %s:%s' % (host, port), flush=True)

# Link loop
while True:
    print('Waiting for client links...', flush=True)
    connection, client_address = servers.accept()
    print('Has been linked %s' % client_address[0], flush=True)

    # Communication cycle
    while True:
        try:
            # Receive the fixed length of header
            header_length_bytes = connection.recv(4)
            if not header_length_bytes:
                break
            header_length = struct.unpack(HEADER_FORMAT, header_length_bytes)[0]

            # Receive the header
            header_bytes = connection.recv(header_length)
            header_dic = json.loads(header_bytes.decode('utf-8'))

            # Receive the body
            total_size = header_dic.get('size', 0)
            receive_size = 0
            total_data = b''
            while receive_size < total_size:
                receive_data = connection.recv(1024)
                receive_size += len(receive_data)
                total_data += receive_data

            # Execute the client's command
            try:
                extra, stdout = run_command(header_dic['cmd'], len(total_data),
                                            hashlib.sha256(total_data).hexdigest())
                header_dic = dict(ok=True, cmd=header_dic['cmd'], **extra)
            except RequestError as error_info:
                stdout = b''
                header_dic = {'ok': False, 'error': str(error_info)}

            # Make the header
            header_dic['size'] = len(stdout)
            header_dic['sha256'] = hashlib.sha256(stdout).hexdigest()
            header_bytes = json.dumps(header_dic).encode('utf-8')

            # Make the fixed length of header
            header_length = struct.pack(HEADER_FORMAT, len(header_bytes))

            # Send the fixed length of header
            connection.send(header_length)

            # Send the header
            connection.send(header_bytes)

            # Send the result
            connection.send(stdout)

        except Exception as error_info:
            print(error_info, flush=True)
            break

    connection.close()
