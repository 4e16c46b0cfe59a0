"""``python3 -m labtrace mark --host H --port 9 --token T``: one UDP datagram that ends a capture.

`lab.py trace` sends it once the scenarios are over and stops the packet capture only when the
capture holds it. Every packet before it is then on disk: no sleeping and hoping.
"""
import argparse
import socket
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["mark"])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=9)    # discard: nobody listens, the datagram is dropped
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(f"socketlab-trace-mark {args.token}".encode(), (args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
