"""Style: sock.makefile('rwb'): write 'frame CMD\\n' lines, then f.read(4) and f.read(n) (buffered reads return exactly n)."""
import argparse
import socket
import struct
import sys

p = argparse.ArgumentParser()
p.add_argument("--host")
p.add_argument("--port", type=int)
p.add_argument("--command", action="append", default=[])
args = p.parse_args()

sock = socket.create_connection((args.host, args.port))
f = sock.makefile("rwb")
for command in args.command:
    f.write(("frame " + command + "\n").encode())
    f.flush()
    header = f.read(4)
    if len(header) != 4:
        sys.exit("server closed the connection")
    size = struct.unpack("!I", header)[0]
    body = f.read(size)
    if len(body) != size:
        sys.exit(f"short reply: {len(body)} of {size}")
    sys.stdout.buffer.write(body if body.endswith(b"\n") else body + b"\n")
    sys.stdout.buffer.write(b"--- end of reply ---\n")
f.close()
sock.close()
sys.stdout.flush()
