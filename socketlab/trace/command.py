"""`python lab.py trace <lesson> [--scenario NAME] [-o FILE.html] [--json] [--acks]`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..output import emit_json, say
from ..topology import Topology


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("lesson")
    sp.add_argument("--scenario", action="append", metavar="NAME", help="trace only this scenario (repeatable)")
    sp.add_argument("-o", "--output", metavar="FILE.html", help="also write the ladder as one HTML page, and "
                    "the capture beside it (FILE.pcap)")
    sp.add_argument("--json", action="store_true", help="print the merged events as JSON")
    sp.add_argument("--acks", action="store_true", help="show every pure ACK (hidden by default)")


def write_outputs(result, output: Path) -> tuple[Path, Path]:
    from .html import render_html
    html_path = output if output.suffix else output.with_suffix(".html")
    pcap_path = html_path.with_suffix(".pcap")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    sections = [(s.ladder, s.report.passed, s.report.summary) for s in result.scenarios]
    html_path.write_text(render_html(f"SocketLab trace: {result.lesson}", sections, pcap_path.name), encoding="utf-8")
    pcap_path.write_bytes(result.pcap)
    return html_path, pcap_path


def cmd_trace(args, topology: Topology) -> int:
    from ..engine import connect
    from .ladder import render_text
    from .session import trace_lesson
    topology.lesson(args.lesson)

    def progress(sc, rep) -> None:
        say(f"  {'shown' if rep.passed else 'NOT shown':<9}  {sc.name}  ({rep.seconds:.1f} s)")

    say(f"tracing {args.lesson}: socket-call log and packet capture on, in a throw-away instance")
    result = trace_lesson(connect(), topology, args.lesson, args.scenario, say,
                          os.environ.get("SOCKETLAB_PROJECT", "socketlab"), getattr(args, "acks", False), progress)
    if args.json:
        emit_json(result.as_dict())
    else:
        for s in result.scenarios:
            print(render_text(s.ladder))
            print(f"   {'✔ shown' if s.report.passed else '✘ NOT shown'}: {s.report.summary}\n")
        sys.stdout.flush()
    if args.output:
        html_path, pcap_path = write_outputs(result, Path(args.output))
        say(f"wrote {html_path} and {pcap_path} ({len(result.segments)} packets, {len(result.calls)} socket calls)")
    return 0 if result.passed else 1
