"""On the FTP client's machine: set the server up for a client check (check ftp --client).

    python3 -m labnode.ftpprep cut-upload --host ftp-server --port 20060 --file F [--seed S --size N] --remote R \
        --cut-after 1048576
    python3 -m labnode.ftpprep remove --host ftp-server --port 20060 R [R ...]

``cut-upload`` leaves an interrupted upload on the server: a protocol-1 put (the digest in the
put, as a version-1 client sends it, so the part resumes for any client that puts the same
file) whose connection is closed after N body bytes. It then waits, bounded, until the server has
let go of the upload: a fresh put of the same file is answered 350 with offset N (and aborted at
once, keeping the part). ``remove`` deletes files (missing ones are fine).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time

from ftp.client import FtpClient, FtpError, TransferCut
from ftp.protocol import Abort, Put
from ftp.users import DEMO_USERS
from labnode.report import emit_result, say


class Version1Client(FtpClient):
    """The lab's client, speaking protocol 1 even to a version-2 server: the digest goes in the put."""

    @property
    def streams_digest(self) -> bool:
        return False


def session(args: argparse.Namespace) -> FtpClient:
    client = Version1Client(args.host, args.port, timeout=20)
    client.login(args.user, args.password or DEMO_USERS[args.user][0])
    return client


def cmd_cut_upload(args: argparse.Namespace) -> int:
    if args.seed is not None:                   # make the file first (as `labnode make-file` does)
        with open(args.file, "wb") as f:
            f.write(random.Random(args.seed).randbytes(args.size))
    size = os.path.getsize(args.file)
    with open(args.file, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    client = session(args)
    try:
        try:
            client.rm(args.remote)              # a file of that name from an earlier run
        except FtpError:
            pass
        client.put(args.file, args.remote, cut_after=args.cut_after)
        say(f"put {args.remote}: NOT cut (the file has only {size} bytes)")
    except TransferCut as exc:
        say(f"put {args.file} {args.remote} ({size} bytes): connection closed after {exc.sent} body bytes")
    finally:
        client.close()
    offset, code = None, None
    for _ in range(50):                     # the server lets go of the upload when it reads our FIN
        probe = session(args)
        try:
            reply = probe.request(Put(args.remote, size, digest, "sha256", True), check=False)
            code = reply.code
            if reply.code == 350:
                offset = reply.fields.get("offset")
                probe.request(Abort(), check=False)        # 226: the part stays for the resume
            probe.quit()
        except FtpError as exc:
            code = exc.code
        finally:
            probe.close()
        if code != 450:
            break
        time.sleep(0.1)
    say(f"the server now offers to resume {args.remote} at byte {offset} (put answered {code})")
    return emit_result(offset == args.cut_after, {"remote": args.remote, "size": size, "sha256": digest,
                                                  "cut_after": args.cut_after, "offered_offset": offset,
                                                  "put_code": code})


def cmd_remove(args: argparse.Namespace) -> int:
    client = session(args)
    removed = []
    for name in args.names:
        try:
            client.rm(name)
            removed.append(name)
        except FtpError:
            pass
    client.quit()
    say(f"removed {removed or 'nothing'}")
    return emit_result(True, {"removed": removed})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m labnode.ftpprep", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in (("cut-upload", cmd_cut_upload), ("remove", cmd_remove)):
        p = sub.add_parser(name)
        p.add_argument("--host", required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--user", default="alice")
        p.add_argument("--password")
        p.set_defaults(fn=fn)
        if name == "cut-upload":
            p.add_argument("--file", required=True)
            p.add_argument("--remote", required=True)
            p.add_argument("--cut-after", type=int, required=True)
            p.add_argument("--seed", type=int, help="write --file first: --size seeded random bytes")
            p.add_argument("--size", type=int, default=0)
        else:
            p.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
