"""Style: pipelined -- send every 'frame CMD' line in one sendall(), then split the byte stream with a
growing bytearray buffer (header, body, header, body ...). Replies arrive in order, so edges are known."""
import argparse
import socket
import struct
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--command", action="append", required=True)
    a = ap.parse_args()
    sock = socket.create_connection((a.host, a.port), timeout=50)
    sock.sendall(b"".join(b"frame " + c.encode() + b"\n" for c in a.command))
    buf = bytearray()
    replies = []
    need = None
    while len(replies) < len(a.command):
        if need is None and len(buf) >= 4:
            need = struct.unpack_from("!I", buf)[0]
            del buf[:4]
            continue
        if need is not None and len(buf) >= need:
            replies.append(bytes(buf[:need]))
            del buf[:need]
            need = None
            continue
        chunk = sock.recv(65536)
        if not chunk:
            print("server closed early", file=sys.stderr)
            return 1
        buf += chunk
    sock.close()
    for r in replies:
        sys.stdout.buffer.write(r + (b"" if r.endswith(b"\n") else b"\n") + b"--- end of reply ---\n")
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
