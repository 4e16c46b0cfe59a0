"""FTP client mistake controls, each one change away from a correct client.

Each mistake is written down as the edit that makes it: (old text, new text) pairs applied to the
correct program tests/students/ftp/client_plain.py (an independent positive control). So the
control is exactly "the correct program, changed once", and there is no second copy of the rest
to drift. ``write(name, directory)`` makes the program; `python -m tests.ftp_client_mistakes DIR`
writes them all, to run one by hand: `python lab.py check ftp --client DIR/ftp_client_skips_rm.py`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

BASE = Path(__file__).resolve().parent / "students" / "ftp" / "client_plain.py"

# name -> (the mistake, in words; the edits that make it)
MISTAKES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    'exit0_on_failure': (
        'exits 0 even when a command failed (the contract says non-zero at the first failure)',
        [
            ('        return 1\n',
             '        return 0   # MISTAKE: a failed command still exits 0\n'),
        ]),
    'header_single_recv': (
        'reads the length prefix and the JSON header with one recv() each (no recv_exact); bodies are read in a loop',
        [
            ('    (length,) = struct.unpack("!I", recv_exact(sock, 4))\n',
             '    (length,) = struct.unpack("!I", sock.recv(4))   # MISTAKE: one recv() taken as 4 bytes\n'),
            ('    raw = recv_exact(sock, length)\n',
             '    raw = sock.recv(length)                          # MISTAKE: one recv() taken as the header\n'),
        ]),
    'ignores_resume_offset': (
        'ignores the resume offset of the 350 reply and re-sends the file from byte 0',
        [
            ('    send_header(sock, {"op": "data", "offset": offset, "size": size - offset})\n',
             '    send_header(sock, {"op": "data", "offset": 0, "size": size})  # MISTAKE: offset ignored\n'),
            (('        f.seek(offset)\n'
              '        left = size - offset\n'),
             '        left = size\n'),
        ]),
    'native_byteorder': (
        "length prefix in native byte order, signed (struct 'i' like the seed) instead of '!I'",
        [
            ('    sock.sendall(struct.pack("!I", len(raw)) + raw + body)\n',
             '    sock.sendall(struct.pack("i", len(raw)) + raw + body)\n'),
            ('    sock.sendall(struct.pack("!I", len(raw)) + raw)\n',
             '    sock.sendall(struct.pack("i", len(raw)) + raw)\n'),
            ('    (length,) = struct.unpack("!I", recv_exact(sock, 4))\n',
             '    (length,) = struct.unpack("i", recv_exact(sock, 4))\n'),
        ]),
    'no_server_signature': (
        "does not verify the server's SCRAM server_signature in the 230 reply",
        [
            (('    if not hmac.compare_digest(want, got):\n'
              '        raise FtpError("the server\'s signature is wrong: it does not hold alice\'s verifier")\n'),
             '    # MISTAKE: server_signature is never checked (any server that says 230 is trusted)\n'),
        ]),
    'single_recv': (
        'treats one recv() as a whole frame (header and download body), no recv_exact loop',
        [
            (('    buf = bytearray()\n'
              '    while len(buf) < n:\n'
              '        chunk = sock.recv(min(n - len(buf), CHUNK))\n'
              '        if not chunk:\n'
              '            raise FtpError(f"connection closed by the server ({len(buf)} of {n} bytes read)")\n'
              '        buf += chunk\n'
              '    return bytes(buf)\n'),
             ('    if n == 0:\n'
              '        return b""\n'
              '    return sock.recv(n)   # MISTAKE: one recv() is taken to be the whole frame part\n')),
            (('        left = body_size\n'
              '        while left:\n'
              '            chunk = sock.recv(min(CHUNK, left))\n'
              '            if not chunk:\n'
              '                raise FtpError(f"download cut after {body_size - left} of {body_size} bytes; "\n'
              '                               "run get again to resume")\n'
              '            f.write(chunk)\n'
              '            h.update(chunk)\n'
              '            body_hash.update(chunk)\n'
              '            left -= len(chunk)\n'),
             ('        chunk = recv_exact(sock, body_size)   # MISTAKE: the whole body in one recv()\n'
              '        f.write(chunk)\n'
              '        h.update(chunk)\n'
              '        body_hash.update(chunk)\n')),
        ]),
    'skips_rm': (
        'has no rm command and skips unknown commands with a warning, still exiting 0',
        [
            ('    "rm": (simple("rm", 250), 1, 1),\n',
             ''),
            (('    if name not in COMMANDS:\n'
              '        raise FtpError(f"unknown command {name!r}; commands: {\', \'.join(COMMANDS)}")\n'),
             ('    if name not in COMMANDS:   # MISTAKE: an unknown command is only warned about\n'
              '        print(f"unknown command {name!r}, skipped", file=sys.stderr)\n'
              '        return\n')),
        ]),
}


def edited(base: Path, edits: list[tuple[str, str]], name: str) -> str:
    """BASE's text with the edits applied (each must apply exactly once)."""
    text = base.read_text(encoding="utf-8")
    for old, new in edits:
        if text.count(old) != 1:
            raise ValueError(f"mistake {name}: {old!r} is not in {base.name} exactly once; update the edit")
        text = text.replace(old, new)
    return text


def write_program(path: Path, text: str) -> Path:
    """Write a generated control atomically (test workers share the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path


def program(name: str) -> str:
    """The correct client with the mistake's edits applied."""
    comment, edits = MISTAKES[name]
    return (f"# MISTAKE: {comment}\n# ruff: noqa  (tests/students/ftp/client_plain.py, changed once)\n"
            + edited(BASE, edits, name))


def write(name: str, directory: Path) -> Path:
    """Write the mistake's program as DIRECTORY/ftp_client_NAME.py."""
    return write_program(directory / f"ftp_client_{name}.py", program(name))


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    for mistake in MISTAKES:
        print(write(mistake, out))
