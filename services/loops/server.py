"""Lesson loops, the server: the connection loop (连接循环) and the communication loop (通信循环).

A server that lives through many clients, one after the other. Each message it receives comes
back reversed; the message ``quit`` makes the server close that connection:

    $ python3 server.py --port 20010
    listening on 0.0.0.0:20010

Two loops, nested:

    while True:                      # connection loop: one turn per client
        conn = listener.accept()
        while True:                  # communication loop: one turn per message
            data = conn.recv(1024)
            if data == b'':          # the client closed: leave the inner loop
                break
            conn.sendall(reply)

The server is *iterative*: while it talks to one client it is not calling accept(), so a second
client's connect() still succeeds (the kernel completes the handshake and queues the connection,
see ``listen(5)`` below) but that client gets no reply until the first one leaves. Lesson
socketserver removes that limit with one thread per client.

One simplification is kept on purpose: each recv() is treated as one message. TCP is a byte
stream, so two quick messages may arrive in one recv() (lesson sticky shows it; lesson framing
fixes it). For one person typing at a time it holds well enough to study the loops.
"""
import argparse
import signal
import socket
import sys

IDLE_TIMEOUT = 120   # seconds: an idle client must not block an iterative server forever


def make_listener(host: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # SO_REUSEADDR, set BEFORE bind() and from the very first run: without it, restarting the
    # server right after it closed a connection fails with "OSError: [Errno 98] Address already
    # in use" for 60 s (the seed shows the Windows wording, WinError 10048). The connections this
    # listener accepts inherit the flag, and Linux needs it on the old socket (the one waiting in
    # TIME_WAIT) as well as on the new listener. See reuse.py and the guide.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    # listen(5): up to 5 connections the kernel has completed but we have not accept()ed yet
    # (the accept queue). It is NOT a limit on how many clients the server has in total.
    listener.listen(5)
    return listener


def reverse(text: str) -> str:
    """'abc' -> 'cba'; a trailing newline (from nc or telnet) stays at the end."""
    body = text.rstrip("\r\n")
    return body[::-1] + text[len(body):]


def talk(conn: socket.socket, client: str) -> None:
    """The communication loop: serve one client until it says quit or goes away."""
    conn.settimeout(IDLE_TIMEOUT)
    while True:
        try:
            data = conn.recv(1024)
        except TimeoutError:
            print(f"{client}: idle for {IDLE_TIMEOUT} s, closing so the next client can be served",
                  flush=True)
            conn.sendall(b"error: idle too long, closing\n")
            return
        except ConnectionResetError:
            print(f"{client}: connection reset by the client", flush=True)
            return
        # recv() returns b'' only when the peer has closed its side (its FIN arrived). It is the
        # one way a TCP program learns "no more data, ever". The seed's loop never checks it:
        # on Linux it then calls recv() and send(b'') forever at 100% CPU (on Windows it happens
        # to stop through an exception). Every receive loop needs this check.
        if not data:
            print(f"{client}: client gone (recv returned b''), back to accept()", flush=True)
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            conn.sendall(b"error: please send UTF-8 text\n")
            continue
        if text.strip() == "quit":
            # The server closes first here, so the TIME_WAIT of this connection is on the server.
            print(f"{client}: said quit, closing the connection", flush=True)
            return
        conn.sendall(reverse(text).encode("utf-8"))   # sendall: send() may take only part of it


def serve(listener: socket.socket) -> None:
    """The connection loop: one client after another, for as long as the server runs."""
    while True:
        conn, (ip, port) = listener.accept()
        client = f"{ip}:{port}"
        print(f"{client}: connected", flush=True)
        with conn:                 # closes the connection socket when talk() returns, whatever happens
            try:
                talk(conn, client)
            except OSError as e:   # e.g. BrokenPipeError while replying: drop this client only
                print(f"{client}: {type(e).__name__}: {e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0",
                        help="address to bind (default: every interface; 127.0.0.1 is unreachable "
                             "from other machines and containers)")
    parser.add_argument("--port", type=int, default=20010)
    args = parser.parse_args()
    # docker stop sends SIGTERM; raise KeyboardInterrupt so the `with` blocks close every socket.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with make_listener(args.host, args.port) as listener:
            host, port = listener.getsockname()
            print(f"listening on {host}:{port}", flush=True)
            serve(listener)
    except KeyboardInterrupt:
        print("server stopped", flush=True)
    except OSError as e:   # most often: [Errno 98] Address already in use
        sys.exit(f"cannot listen on {args.host}:{args.port}: {e}")


if __name__ == "__main__":
    main()
