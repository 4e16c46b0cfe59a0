"""`lab.py trace`: see the wire. Socket calls and packets of a lesson's scenarios, in one ladder.

    session.py   run the scenarios in a throw-away instance with both recorders on
    callog.py    read the socket-call log (written by services/labtrace via sitecustomize)
    capture.py   the tcpdump sidecar in the server's network namespace
    wire.py      read the pcap (dpkt)
    ladder.py    merge both by connection and time; draw the ladder as text
    notes.py     what each lesson's ladder should point at
    html.py      the ladder as one self-contained HTML page (inline SVG)
    command.py   the command itself (`cmd_trace`, registered in socketlab/cli.py)
"""
