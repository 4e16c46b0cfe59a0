"""Framing server, style: socketserver.ThreadingTCPServer, reading with self.rfile.read(n).

rfile is a buffered reader: read(n) blocks until n bytes or EOF, so a short result means the
peer closed. Written from the contract in services/framing/README.md alone (stdlib only).
"""
import argparse
import hashlib
import json
import socketserver
import struct

HEADER_LIMIT = 65536
BODY_LIMIT = 8 << 20


class Reject(Exception):
    pass


def nesting(o, level=1):
    if isinstance(o, dict):
        vals = list(o.values())
    elif isinstance(o, list):
        vals = o
    else:
        return level - 1
    if level > 33:
        return level
    return max([level] + [nesting(v, level + 1) for v in vals])


class FrameHandler(socketserver.StreamRequestHandler):
    timeout = 120  # an idle connection is dropped eventually; other clients never wait for it

    def reply(self, header, body=b""):
        header["size"] = len(body)
        header["sha256"] = hashlib.sha256(body).hexdigest()
        raw = json.dumps(header, ensure_ascii=False).encode("utf-8")
        self.wfile.write(struct.pack("!I", len(raw)) + raw + body)
        self.wfile.flush()

    def read_body(self, size):
        """Read exactly size bytes in 64 KiB pieces, hashing as they come."""
        parts, h, left = [], hashlib.sha256(), size
        while left:
            piece = self.rfile.read(min(left, 65536))
            if not piece:
                return None
            parts.append(piece)
            h.update(piece)
            left -= len(piece)
        return b"".join(parts), h.hexdigest()

    def handle(self):
        while True:
            prefix = self.rfile.read(4)
            if len(prefix) < 4:
                return
            (hlen,) = struct.unpack("!I", prefix)
            if hlen == 0 or hlen > HEADER_LIMIT:
                self.reply({"ok": False, "error": f"bad header length {hlen} (allowed 1..{HEADER_LIMIT})"})
                return
            raw = self.rfile.read(hlen)
            if len(raw) < hlen:
                return
            try:
                try:
                    header = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    raise Reject("header is not valid UTF-8")
                except RecursionError:
                    raise Reject("header is nested too deeply")
                except ValueError:
                    raise Reject("header is not valid JSON")
                if not isinstance(header, dict):
                    raise Reject("header must be a JSON object")
                if nesting(header) > 32:
                    raise Reject("header is nested deeper than 32 levels")
                size = header.get("size", 0)
                if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= BODY_LIMIT:
                    raise Reject("size must be an integer from 0 to 8 MiB")
            except Reject as e:
                self.reply({"ok": False, "error": str(e)})
                return
            got = self.read_body(size)
            if got is None:
                return  # vanished mid-body
            body, digest = got
            want = header.get("sha256")
            if want is not None and want != digest:
                self.reply({"ok": False, "error": "sha256 mismatch"})
                continue
            cmd = header.get("cmd")
            if not isinstance(cmd, str):
                self.reply({"ok": False, "error": "cmd must be a string"})
                continue
            verb, _, rest = cmd.partition(" ")
            try:
                if verb == "echo":
                    self.reply({"ok": True}, rest.encode("utf-8"))
                elif verb == "lines":
                    n = int(rest)
                    if not 0 <= n <= 500000:
                        raise ValueError
                    self.reply({"ok": True}, b"".join(b"line %d\n" % i for i in range(1, n + 1)))
                elif verb == "big":
                    n = int(rest)
                    if not 0 <= n <= BODY_LIMIT:
                        raise ValueError
                    self.reply({"ok": True}, b"x" * n)
                elif verb == "hash":
                    self.reply({"ok": True, "body_size": len(body), "body_sha256": digest})
                else:
                    self.reply({"ok": False, "error": f"unknown command: {verb}"})
            except ValueError:
                self.reply({"ok": False, "error": f"bad argument in {cmd!r}"})


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 64


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    port = ap.parse_args().port
    with Server(("0.0.0.0", port), FrameHandler) as srv:
        print("serving on port", port, flush=True)
        srv.serve_forever()
