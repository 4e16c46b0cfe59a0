"""Lesson basic, the server: socket → bind → listen → accept (seed §2.4 基础实例).

The smallest useful TCP server. It answers every connection with one line saying what the
server saw, so the client can learn something about its own connection:

    $ python3 server.py --port 20000
    listening on 0.0.0.0:20000

Read it top to bottom; each step is one call.
"""
import argparse
import signal
import socket


def serve(host: str, port: int) -> None:
    # 1. A TCP socket: AF_INET = IPv4 addresses, SOCK_STREAM = a reliable byte stream (TCP).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        # Without this, restarting the server within a minute fails with "Address already in use":
        # the connections it closed first wait in TIME_WAIT for 60 s. Lesson `loops` shows why.
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # 2. bind() claims (address, port). 0.0.0.0 means "every interface of this machine".
        #    The seed binds 127.0.0.1, the loopback interface: only programs on the *same*
        #    machine can reach that, so a client in another container gets "connection refused".
        server.bind((host, port))
        # 3. listen() turns the socket into a listening socket. The argument is the length of
        #    the queue of connections the kernel has finished but we have not accept()ed yet
        #    (the seed calls it "maximum connections": it is not).
        server.listen(5)
        print(f"listening on {host}:{port}", flush=True)
        number = 0
        while True:
            # 4. accept() waits for the next connection and returns a NEW socket for it.
            #    The listening socket stays as it was, ready for the next client.
            conn, (peer_ip, peer_port) = server.accept()
            number += 1
            with conn:
                local_ip, local_port = conn.getsockname()
                print(f"connection {number}: client {peer_ip}:{peer_port} -> me {local_ip}:{local_port} "
                      f"(new socket fd {conn.fileno()}, listening socket fd {server.fileno()})", flush=True)
                conn.settimeout(10)
                try:
                    data = conn.recv(1024)   # bytes, not str: the network carries bytes
                    # 5. Reply with what we saw. sendall() keeps sending until every byte is out.
                    reply = (f"hello {peer_ip}:{peer_port}, you are connection {number}, "
                             f"you sent {len(data)} bytes: {data!r}\n")
                    conn.sendall(reply.encode("utf-8"))
                except (TimeoutError, ConnectionError):
                    # a silent client (10 s), or one that vanished (reset, broken pipe): next client
                    continue
            # 6. Leaving the `with` block closed the connection's socket; the server goes on.


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default: every interface)")
    parser.add_argument("--port", type=int, default=20000)
    args = parser.parse_args()
    # docker stop sends SIGTERM; turn it into KeyboardInterrupt so `with` blocks close the sockets.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        serve(args.host, args.port)
    except KeyboardInterrupt:
        print("server stopped", flush=True)


if __name__ == "__main__":
    main()
