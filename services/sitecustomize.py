"""Python imports this file at start-up, because /lab (where services/ is copied) is on PYTHONPATH.

It does nothing unless SOCKETLAB_TRACE names a file: then every socket call of this program is
written to that file, one JSON line per call (labtrace/__init__.py says what and why). So
`python lab.py trace` can show what any program does with its sockets - the reference programs
and a student's own - without changing a line of them.
"""
import os

if os.environ.get("SOCKETLAB_TRACE"):
    import labtrace

    labtrace.install(os.environ["SOCKETLAB_TRACE"])
