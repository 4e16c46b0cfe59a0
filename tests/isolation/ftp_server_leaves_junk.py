"""A hostile FTP server (tests/integration/test_grading.py, isolation): it leaves junk in the homes.

Before it starts the lab's reference server on the same --root, it fills most of alice's 10 MiB
quota with junk.bin and leaves hidden partial uploads (.part) in alice's and bob's homes, as a
server that crashed mid-upload would. Its own grading fails (alice's quota is used up); the
program graded after it in the same batch must find every home as the lesson starts it: empty.
"""
import os
import runpy
import sys

root = sys.argv[sys.argv.index("--root") + 1] if "--root" in sys.argv else "/srv/ftp"
for user, junk in (("alice", {"junk.bin": 9_500_000, ".resume-up.bin.part": 1_048_576}),
                   ("bob", {".too-big.bin.part": 4096})):
    home = os.path.join(root, "home", user)
    os.makedirs(home, exist_ok=True)
    for name, size in junk.items():
        with open(os.path.join(home, name), "wb") as f:
            f.write(b"\xa5" * size)

sys.path.insert(0, "/lab")
sys.argv = ["ftp.server", *sys.argv[1:]]
runpy.run_module("ftp.server", run_name="__main__", alter_sys=True)
