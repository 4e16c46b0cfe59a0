"""Lesson socketserver, the server: ThreadingTCPServer, one thread per client (seed §2.7).

Every line a client sends comes back in upper case:

    $ python3 server.py --port 20050
    listening on 0.0.0.0:20050

The standard library's ``socketserver`` splits a server in two, as the seed says:

* a *server* class owns the listening socket and runs the connection loop (连接循环):
  ``TCPServer`` accepts clients one at a time; ``ThreadingTCPServer`` (= ``ThreadingMixIn`` +
  ``TCPServer``) starts a new thread for each accepted connection;
* a *request handler* class runs the communication loop (通信循环) for one client:
  ``handle()`` is called once per connection, with the connected socket in ``self.request``.
  ``StreamRequestHandler`` adds ``self.rfile``/``self.wfile`` (file objects on the socket), so
  ``readline()`` gives us line framing for free.

So while client A sits idle in its thread, client B is served in another: the limit of lesson
loops (B waited until A left) is gone.

Note: this directory has no ``__init__.py`` on purpose. A package called ``socketserver`` on
the path could hide the standard library module of the same name; run the files by path.
"""
import argparse
import signal
import socket
import socketserver
import threading

MAX_LINE = 64 * 1024     # longest line we accept: a client must not make us buffer without limit
IDLE_TIMEOUT = 300       # seconds; an idle client does not keep its thread forever


class UpperCaseHandler(socketserver.StreamRequestHandler):
    """The communication loop for one client: read a line, send it back upper-cased."""

    timeout = IDLE_TIMEOUT   # StreamRequestHandler.setup() applies it with settimeout()

    def setup(self) -> None:
        super().setup()
        self.server.track(self.request)

    def handle(self) -> None:
        client = "{}:{}".format(*self.client_address)
        print(f"{client}: connected, served by thread {threading.current_thread().name}", flush=True)
        try:
            self.serve_lines(client)
        except OSError as e:   # idle timeout, reset, broken pipe: drop this client, keep serving the others
            print(f"{client}: {type(e).__name__}: {e}", flush=True)

    def serve_lines(self, client: str) -> None:
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                # b'': the client closed (or the server is shutting down, see close_connections)
                print(f"{client}: client gone", flush=True)
                return
            if len(line) > MAX_LINE:
                print(f"{client}: line longer than {MAX_LINE} bytes, closing", flush=True)
                self.wfile.write(b"error: line longer than %d bytes, closing\n" % MAX_LINE)
                return
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                self.wfile.write(b"error: please send UTF-8 text\n")
                continue
            self.wfile.write(text.upper().encode("utf-8"))   # wfile.write() sends it all (sendall)

    def finish(self) -> None:
        self.server.untrack(self.request)
        super().finish()
        # No self.request.close() here (the seed has one): the server closes the connection
        # itself after handle() returns (shutdown_request), for every request.


class UpperCaseServer(socketserver.ThreadingTCPServer):
    """ThreadingTCPServer that can be restarted at once and stopped cleanly."""

    # A CLASS attribute, read by server_bind() while __init__ runs, i.e. before bind().
    # The seed sets `server.allow_reuse_address = True` on the instance AFTER construction:
    # by then bind() has already happened without SO_REUSEADDR, so the line does nothing
    # (getsockopt says 0) and a quick restart fails with "Address already in use".
    allow_reuse_address = True
    # Handler threads are not daemons and server_close() waits for them (block_on_close):
    # a stop never cuts a reply in half. close_connections() makes them finish quickly.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[socketserver.BaseRequestHandler]) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self.closing = False
        super().__init__(address, handler)

    def track(self, conn: socket.socket) -> None:
        with self.connections_lock:
            self.connections.add(conn)
            if self.closing:          # accepted just before the stop: end it too
                self._hang_up(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self.connections_lock:
            self.connections.discard(conn)

    def close_connections(self) -> None:
        """Wake every handler blocked in readline(): after shutdown(), its recv() returns b''."""
        with self.connections_lock:
            self.closing = True
            for conn in self.connections:
                self._hang_up(conn)

    @staticmethod
    def _hang_up(conn: socket.socket) -> None:
        try:
            conn.shutdown(socket.SHUT_RDWR)   # our FIN goes out: the client sees EOF, recv() here gets b''
        except OSError:
            pass                              # the client is already gone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0",
                        help="address to bind (default: every interface; not 127.0.0.1, which other "
                             "machines cannot reach)")
    parser.add_argument("--port", type=int, default=20050)
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())   # docker stop
    signal.signal(signal.SIGINT, lambda *_: stop.set())    # Ctrl-C
    try:
        server = UpperCaseServer((args.host, args.port), UpperCaseHandler)
    except OSError as e:   # most often: [Errno 98] Address already in use
        raise SystemExit(f"cannot listen on {args.host}:{args.port}: {e}") from None
    with server:
        host, port = server.server_address
        print(f"listening on {host}:{port}", flush=True)
        reuse = server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        print(f"SO_REUSEADDR on the listening socket: {reuse}", flush=True)
        # serve_forever() is the connection loop. It runs in its own thread because shutdown()
        # must be called from ANOTHER thread: it asks the loop to stop and waits until it has.
        accept_loop = threading.Thread(target=server.serve_forever, name="accept-loop")
        accept_loop.start()
        stop.wait()
        print("stopping: no new connections; closing the open ones", flush=True)
        server.shutdown()            # the connection loop ends; the listening socket stays open...
        server.close_connections()   # ...every handler sees EOF and returns...
        accept_loop.join()
    # ...and leaving `with` ran server_close(): listening socket closed, handler threads joined.
    print("server stopped", flush=True)


if __name__ == "__main__":
    main()
