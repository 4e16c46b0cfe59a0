"""What a check runs on a lab node, beside the program under test.

kernel: the kernel's socket and process tables; report: RESULT lines; ``python3 -m labnode``: node tools.
"""
