"""The socket side of framing: the few lines that meet a real socket.

Two facts about stream sockets drive everything here (see the Python Socket HOWTO):

* ``recv(n)`` returns *at most* n bytes: whatever the kernel has queued right now, maybe 1.
  It returns ``b''`` only when the peer has closed its side: that is how EOF looks.
* ``send(data)`` may take only part of ``data`` and returns how many bytes it took. The rest
  is not lost, it was simply never sent. ``sendall`` loops until everything is handed over.

So: read with a loop (``recv_exact``), write with ``sendall``, and let the sans-IO decoder in
``codec.py`` find the frame boundaries.
"""
from __future__ import annotations

import hashlib
import socket

from .codec import NEED_DATA, Frame, FrameAssembler, FrameDecoder, encode_header

# Bodies up to this size go out in the same sendall as their header. Two small writes in a
# row (header, then body) can meet Nagle's algorithm and the peer's delayed ACK and wait
# ~40 ms; one write cannot. Larger bodies are sent separately rather than copied.
_COALESCE_LIMIT = 64 * 1024


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Receive exactly n bytes, however the kernel splits them; EOFError if the peer closes first.

    The buffer is a bytearray, which grows in place: ``data += chunk`` on *bytes* would copy
    everything received so far on every call (quadratic in n).
    """
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 65536))
        if not chunk:                               # b'': the peer closed the connection
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes "
                           f"({n - len(buf)} missing)")
        buf += chunk
    return bytes(buf)


def send_frame(sock: socket.socket, fields: dict, body: bytes = b"", checksum: bool = True) -> None:
    """Send one frame: length prefix, JSON header (with "size" and "sha256"), body.

    Always ``sendall``, never ``send``: with or without a header, ``send`` may write only
    part of the buffer, and a frame with missing bytes desynchronises the whole stream.
    """
    digest = hashlib.sha256(body).hexdigest() if checksum else None
    header = encode_header(fields, len(body), digest)
    if len(body) <= _COALESCE_LIMIT:
        sock.sendall(header + bytes(body))
    else:
        sock.sendall(header)
        sock.sendall(body)


def read_frame(sock: socket.socket, decoder: FrameDecoder, recv_size: int = 65536) -> Frame:
    """Read one whole frame (header and body in memory) through ``decoder``.

    Works for any ``recv_size`` from 1 up. Bytes that arrive beyond this frame stay in the
    decoder for the next call, so keep one decoder per connection. Raises EOFError if the peer
    closed between frames, TruncatedFrame (also an EOFError) if it closed mid-frame, or
    another FramingError for bad bytes.
    """
    assembler = FrameAssembler()
    while (frame := assembler.next_frame(decoder)) is NEED_DATA:
        data = sock.recv(recv_size)
        if not data:
            decoder.end_of_stream()                 # raises TruncatedFrame if mid-frame
            raise EOFError("connection closed by the peer (between frames)")
        decoder.receive_data(data)
    return frame
