# Negative control for lesson `sticky`: the seed's §2.5 client, in the scripted form the check uses.
# One recv(1024) per command, decoded as text: the reply to "echo hi" after "big 5120" is the
# rest of the previous reply (粘包). `python lab.py check sticky --client tests/negative/sticky_seed_client.py`
# must FAIL. (Changes from the seed: commands end with "\n", the server reads one command per line;
# and utf-8 instead of gbk, so the failure is about the bytes, not the encoding.)
import socket
import sys

host = sys.argv[sys.argv.index("--host") + 1] if "--host" in sys.argv else "sticky-server"
port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 20020
commands = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--command"]

ip_port = (host, port)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
res = s.connect_ex(ip_port)

for msg in commands:
    s.send((msg + "\n").encode('utf-8'))
    data = s.recv(1024)
    print(data.decode('utf-8', 'replace'))
    print("--- end of reply ---")
s.close()
