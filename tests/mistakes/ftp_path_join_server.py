"""Mistake: the lab's FTP server with one change — a user's path is joined onto the home with
os.path.join(home, path) and never confined (what the seed does). '../' and absolute paths escape."""
import os
import sys

from ftp import paths, server


def joined(self, cwd, arg, *, follow_last=True):
    real = os.path.join(self.real, cwd.lstrip("/"), arg)     # the mistake: no normalising, no confinement
    return paths.Resolved(os.path.join(cwd, arg), real)


paths.Home.resolve = joined
sys.exit(server.main(sys.argv[1:]))
