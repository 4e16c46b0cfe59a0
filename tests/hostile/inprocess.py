"""A lesson server run inside the test process, so hostile tests can use tiny limits."""
from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def served_in_process(module, **limits) -> Iterator[tuple[str, int]]:
    """Run ``module.serve_forever`` on 127.0.0.1 in a thread, with ``limits`` (module constants
    such as IDLE_TIMEOUT=1.5) set for the duration; yields the address. Short limits make the
    attacks cheap: nothing waits for the real timeouts."""
    saved = {name: getattr(module, name) for name in limits}
    for name, value in limits.items():
        setattr(module, name, value)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        try:
            module.serve_forever(listener)
        except OSError:                    # the listener was shut down: the test module is over
            pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for name, value in saved.items():
            setattr(module, name, value)
