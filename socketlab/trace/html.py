"""The ladder as one self-contained HTML page: inline SVG and CSS, no script, no external asset.

One ``<svg>`` per scenario: the client's lifeline on the left, the server's on the right, each
segment an arrow between them (class ``seg``, with ``data-flags`` and ``data-len``), each datagram
the relay dropped a dashed line that ends in ✘ (class ``drop``), each call a text beside its
lifeline (class ``call``), notes in italics under the row they explain. The page
opens from a USB stick in a classroom without network, and prints.
"""
from __future__ import annotations

import textwrap
from html import escape

from .ladder import Ladder, Row, call_text, connection_label, drop_label, segment_label

ROW_H = 22
NOTE_H = 16
WIDTH = 1000
TIME_X, CLIENT_X, SERVER_X = 60, 340, 700
CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1040px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
.conns { font: 12px ui-monospace, monospace; color: #555; }
svg { font: 12px ui-monospace, monospace; background: #fcfcfc; border: 1px solid #ddd; }
.life { stroke: #999; stroke-dasharray: 4 3; }
.head { font-weight: bold; }
.time { fill: #888; text-anchor: end; }
.call.client { fill: #06689c; text-anchor: end; } .call.server { fill: #8a2c8a; }
.call.wait { fill: #999; } .call.failed { fill: #c00; font-weight: bold; }
.seg { stroke: #2a7d2a; stroke-width: 1.4; } .seg.ctl { stroke: #c0392b; }
.seglabel { fill: #2a7d2a; text-anchor: middle; } .seglabel.ctl { fill: #c0392b; }
.drop { stroke: #c0392b; stroke-width: 1.4; stroke-dasharray: 3 2; } .droplabel { fill: #c0392b; font-weight: bold; }
.droplabel.text { font-weight: normal; }
.note { fill: #8a6d00; font-style: italic; font-family: system-ui, sans-serif; }
.pass { color: #2a7d2a; } .fail { color: #c00; }
"""


NOTE_COLUMNS = 130      # characters of a note per line in the SVG (which does not wrap text itself)


def _note_lines(row: Row) -> list[str]:
    return textwrap.wrap(row.note, NOTE_COLUMNS) if row.note else []


def _row_height(row: Row) -> int:
    return ROW_H + NOTE_H * len(_note_lines(row))


def ladder_svg(ladder: Ladder) -> str:
    height = 50 + sum(_row_height(r) for r in ladder.rows) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" role="img">',
           "<defs>"
           '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker>'
           "</defs>",
           f'<text class="head" x="{CLIENT_X}" y="20" text-anchor="middle">'
           f'client {escape(ladder.roles.get("client", ""))}</text>',
           f'<text class="head" x="{SERVER_X}" y="20" text-anchor="middle">'
           f'server {escape(ladder.roles.get("server", ""))}</text>',
           f'<text class="time" x="{TIME_X}" y="20">ms</text>',
           f'<line class="life" x1="{CLIENT_X}" y1="30" x2="{CLIENT_X}" y2="{height - 10}"/>',
           f'<line class="life" x1="{SERVER_X}" y1="30" x2="{SERVER_X}" y2="{height - 10}"/>']
    y = 50
    for row in ladder.rows:
        conn = ladder.connections.get(row.conn) if row.conn else None
        ms = f"{(row.t - ladder.start) / 1e6:.3f}"
        out.append(f'<text class="time" x="{TIME_X}" y="{y + 4}">{ms}</text>')
        if row.kind == "segment":
            ctl = " ctl" if any(f in row.seg.flags for f in ("SYN", "FIN", "RST")) else ""
            x1, x2 = (CLIENT_X, SERVER_X) if row.direction == "c2s" else (SERVER_X, CLIENT_X)
            out.append(f'<line class="seg{ctl}" x1="{x1}" y1="{y - 6}" x2="{x2}" y2="{y + 6}" '
                       f'data-flags="{escape(row.seg.flags)}" data-len="{row.seg.length}" '
                       f'data-conn="{row.conn}" marker-end="url(#arrow)"/>')
            out.append(f'<text class="seglabel{ctl}" x="{(CLIENT_X + SERVER_X) // 2}" y="{y - 4}">'
                       f'{escape(segment_label(row.seg))}</text>')
        elif row.kind == "drop":
            # the datagram's path ends at the relay (a third of the way from the side it left)
            x1 = CLIENT_X if row.direction == "c2s" else SERVER_X
            x2 = x1 + (SERVER_X - CLIENT_X) // 3 * (1 if row.direction == "c2s" else -1)
            out.append(f'<line class="drop" x1="{x1}" y1="{y - 6}" x2="{x2}" y2="{y}" data-len="{row.drop.length}" '
                       f'data-index="{row.drop.index}" data-direction="{row.drop.direction}" '
                       f'data-conn="{row.conn}"/>')
            out.append(f'<text class="droplabel" x="{x2}" y="{y + 4}" text-anchor="middle">✘</text>')
            side = 12 if row.direction == "c2s" else -12
            out.append(f'<text class="droplabel text" x="{x2 + side}" y="{y + 4}" '
                       f'text-anchor="{"start" if side > 0 else "end"}">'
                       f'dropped by the relay: {escape(drop_label(row.drop))}</text>')
        else:
            kind = "wait" if row.kind == "wait" else ("failed" if row.call.failed else "")
            x = CLIENT_X - 8 if row.side == "client" else SERVER_X + 8
            classes = " ".join(filter(None, ("call", row.side, kind)))
            out.append(f'<text class="{classes}" x="{x}" y="{y + 4}" data-call="{escape(row.call.call)}">'
                       f'{escape(call_text(row, conn))}</text>')
        if row.note:
            spans = "".join(f'<tspan x="{TIME_X + 20 + (0 if k == 0 else 14)}" dy="{0 if k == 0 else NOTE_H}">'
                            f'{"↳ " if k == 0 else ""}{escape(line)}</tspan>'
                            for k, line in enumerate(_note_lines(row)))
            out.append(f'<text class="note" x="{TIME_X + 20}" y="{y + 4 + NOTE_H}">{spans}</text>')
        y += _row_height(row)
    out.append("</svg>")
    return "\n".join(out)


def render_html(title: str, sections: list[tuple[Ladder, bool, str]], pcap_name: str = "") -> str:
    """``sections``: (ladder, passed, summary) per scenario."""
    body = [f"<h1>{escape(title)}</h1>",
            "<p>Left and right: the socket calls each program made (the call log). Middle: the packets "
            "seen in the server's network namespace (the capture"
            + (f", <code>{escape(pcap_name)}</code>, opens in Wireshark" if pcap_name else "") + "). "
            "Both are stamped by the same clock.</p>"]
    for ladder, passed, summary in sections:
        verdict = '<span class="pass">shown</span>' if passed else '<span class="fail">NOT shown</span>'
        body.append(f"<h2>{escape(ladder.title)}</h2>")
        body.append(f"<p>{verdict}: {escape(summary)}</p>")
        conns = "<br>".join(escape(connection_label(ladder, c)) for c in ladder.connections.values())
        body.append(f'<p class="conns">{conns}'
                    + (f"<br>({ladder.hidden_acks} pure ACKs not shown)" if ladder.hidden_acks else "") + "</p>")
        body.append(ladder_svg(ladder))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
