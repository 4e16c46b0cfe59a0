"""Framing server, style: asyncio streams, StreamReader.readexactly() for every part of a frame.

Written from the contract in services/framing/README.md alone (stdlib only).
"""
import argparse
import asyncio
import hashlib
import json
import struct

MAX_HEADER = 65536
MAX_BODY = 8 * 1024 * 1024


def too_deep(o, limit=32):
    stack = [(o, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d > limit:
                return True
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return False


def frame(header, body=b""):
    header = {**header, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    raw = json.dumps(header).encode()
    return struct.pack("!I", len(raw)) + raw + body


async def handle(reader, writer):
    async def send(header, body=b""):
        writer.write(frame(header, body))
        await writer.drain()

    try:
        while True:
            try:
                prefix = await reader.readexactly(4)
            except asyncio.IncompleteReadError:
                return
            (n,) = struct.unpack("!I", prefix)
            if not 0 < n <= MAX_HEADER:
                await send({"ok": False, "error": f"header length {n} not in 1..{MAX_HEADER}"})
                return
            raw = await reader.readexactly(n)
            try:
                hdr = json.loads(raw.decode("utf-8"))
                if not isinstance(hdr, dict):
                    raise ValueError("header is not a JSON object")
                if too_deep(hdr):
                    raise ValueError("header nested deeper than 32")
                size = hdr.get("size", 0)
                if type(size) is not int or not 0 <= size <= MAX_BODY:
                    raise ValueError(f"bad size {str(size)[:30]}")
            except (ValueError, RecursionError) as e:  # UnicodeDecodeError, JSONDecodeError too
                await send({"ok": False, "error": f"bad header: {str(e)[:200]}"})
                return
            h = hashlib.sha256()
            chunks, left = [], size
            while left:
                c = await reader.read(min(left, 1 << 16))
                if not c:
                    await send({"ok": False, "error": f"connection closed mid-body ({size - left} of {size})"})
                    return
                h.update(c)
                chunks.append(c)
                left -= len(c)
            body, digest = b"".join(chunks), h.hexdigest()
            cmd = hdr.get("cmd")
            if "sha256" in hdr and hdr["sha256"] != digest:
                await send({"ok": False, "error": "sha256 of the body does not match"})
                continue
            if not isinstance(cmd, str):
                await send({"ok": False, "error": "cmd missing or not a string"})
                continue
            word, _, arg = cmd.partition(" ")
            if word == "echo":
                await send({"ok": True, "cmd": cmd}, arg.encode())
            elif word in ("lines", "big") and arg.isdigit() and int(arg) <= MAX_BODY:
                k = int(arg)
                out = (b"".join(b"line %d\n" % i for i in range(1, k + 1)) if word == "lines"
                       else bytes(k))
                await send({"ok": True, "cmd": cmd}, out)
            elif word == "hash":
                await send({"ok": True, "cmd": cmd, "body_size": size, "body_sha256": digest})
            else:
                await send({"ok": False, "error": f"cannot run {cmd[:50]!r}"})
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(handle, "0.0.0.0", port)
    print("listening", port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    asyncio.run(main(ap.parse_args().port))
