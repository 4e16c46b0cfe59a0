"""Lesson ftp (seed §3): the homework FTP server and client, with users, quotas and resume.

    protocol.py  messages, codes, limits, FtpConnection (sans-IO: bytes in, events out)
    state.py     the session state machine
    auth.py      scrypt + SCRAM-style challenge-response
    paths.py     confinement to the home directory
    storage.py   quotas, .part files, atomic rename, listings
    users.py     users.json and the admin tool (python3 -m ftp.users)
    server.py    python3 -m ftp.server --port 20060 --root /srv/ftp
    client.py    python3 -m ftp.client --host ftp-server --user alice
    probes.py    what `lab.py demo ftp` / `lab.py check ftp` run on the client machine

The wire format is documented in docs/ftp-protocol.md; the guide is README.md.
"""
