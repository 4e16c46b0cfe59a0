"""The probes of each lesson's check: what `lab.py demo` and `lab.py check` do on a lab node.

    python3 -m labnode.probes.<lesson> <probe> --host H --port N [options]

Each prints its observations, one per line, then one RESULT line (labnode.report). They live
here, not in the lesson folders, so a lesson folder holds only what students read and run.
"""
