"""Lesson udp: datagrams keep their edges, get cut, get lost; a client that retries gets through.

Server scenarios (roles "server") need only an echo server: the server under test at its usual
port. ``overflow`` needs the reference server's BLAST command and ``reliable-delivery`` its
record of delivered messages (STATS), so they start a reference server of their own on
port+4. The relay (services/udp/relay.py) is started by the scenarios that need it, with the
options below, on the relay node (or on the client node where there is none).
"""
from __future__ import annotations

import json
import shlex

from ..contract import Contract, RoleContract
from ..scenario import LessonRun, Node, Outcome, scenario, wait_listening

SEED = 42
LOSS = 0.3
RELIABLE_COUNT = 30
RELIABLE_RELAY = ["--loss", str(LOSS), "--duplicate", "0.1", "--reorder", "0.1", "--seed", str(SEED)]
LOSS_RELAY_OFFSET, RELIABLE_RELAY_OFFSET, REFERENCE_SERVER_OFFSET = 2, 3, 4

CONTRACT = Contract("udp", (
    RoleContract("server", "python3 my_server.py --port 20040", (
        "take the port from `--port N`; bind a UDP socket (`SOCK_DGRAM`) to `('0.0.0.0', N)`;",
        "echo every datagram unchanged to the address it came from (`recvfrom` → `sendto(data, addr)`): "
        "empty, 2000 bytes and 65507 bytes (the largest UDP datagram) all come back whole — so receive "
        "with a buffer of at least 65507 bytes (65535 is the usual choice), not `recvfrom(1024)`;",
        "serve any number of senders, one datagram at a time, forever.",
    ), ("print anything.",)),
    RoleContract("client", f"python3 my_client.py --host <relay> --port <port> --count {RELIABLE_COUNT}", (
        "send `DATA <seq> message <seq>` (UTF-8) for seq 0, 1, … count−1 to the given address;",
        "wait for `ACK <seq>` from the server before the next message, and resend after a timeout (the "
        "relay loses, duplicates and reorders datagrams): stop-and-wait with retransmission;",
        "ignore duplicate or stale ACKs, give every socket call a timeout, and exit 0 once every message "
        "was acknowledged, within 120 s.",
    ), ("print anything.",)),
), ("`tests/negative/udp_seed_server.py` (`recvfrom(1024)`) fails `truncation` and `max-size`: its echo "
    "of 2000 or 65507 bytes comes back as 1024. `tests/negative/udp_seed_client.py` sends each message "
    "once and fails `reliable-delivery`: datagram 0 is lost, so the server delivers nothing.",))


def reference(run: LessonRun, program: str) -> list[str]:
    return [run.python, f"{run.workdir}/udp/{program}"]


def start_reference_server(run: LessonRun, name: str, port: int) -> bool:
    run.server.stop(name)                          # a leftover of an interrupted run, if any
    run.server.spawn(name, [*reference(run, "server.py"), "--port", str(port), "--quiet"])
    return wait_listening(run.server, port, "udp")


def start_relay(run: LessonRun, name: str, port: int, target_port: int,
                options: list[str]) -> tuple[Node, str]:
    """Start a relay to the server at target_port; return its node and the address clients use."""
    node = run.nodes.get("relay") or run.client
    node.stop(name)
    node.spawn(name, [*reference(run, "relay.py"), "--port", str(port),
                      "--to", f"{run.server_host}:{target_port}", *options])
    if not wait_listening(node, port, "udp"):
        log = node.read_file(f"/tmp/{name}.log").decode("utf-8", "replace")
        raise RuntimeError(f"the relay did not start on {node.name}:{port}: {log.strip()[-300:]}")
    if node is run.client:
        return node, "127.0.0.1"
    return node, run.probe("my-address", node=node, port=target_port).observed["address"]


def relay_summary(node: Node, name: str) -> dict:
    """The counters the relay prints when it stops."""
    for line in node.read_file(f"/tmp/{name}.log").decode("utf-8", "replace").splitlines():
        if line.startswith("relay summary "):
            return json.loads(line[len("relay summary "):])
    return {}


@scenario("no-connection", "no connect/accept: the server learns each sender's address from its datagram; "
                           "sendto a closed port 'succeeds', only a connected socket hears ECONNREFUSED")
def no_connection(run: LessonRun) -> Outcome:
    probe = run.probe("no-connection")
    o = probe.observed
    if not probe.ok and o.get("replies_from_another_address") and o.get("replies") == ["from A", "from B"]:
        return Outcome(False, f"each sender got its echo, but from {', '.join(o['replies_from_another_address'])}"
                              f", not from the server's address {o.get('server')}", o, probe.transcript,
                       "reply with the socket that received the datagram (server_sock.sendto(data, addr)): a reply "
                       "sent from another socket comes from another port, and a client that used connect() - "
                       "or the lab's relay - only takes datagrams from the address it sent to")
    if not probe.ok:
        senders = f"two senders on ports {o['client_ports']}" if o.get("client_ports") else "two senders"
        return Outcome(False, f"{senders} did not each get their own echo "
                              f"({o.get('probe_error') or o.get('error') or 'see the transcript'})", o,
                       probe.transcript, "answer each datagram to the address recvfrom() returned with it: "
                                         "sock.sendto(data, addr)")
    return Outcome.from_probe(probe, f"2 sockets, 2 ports {o.get('client_ports')}, each got its own echo; "
                                     f"closed port: sendto -> {o.get('sendto_closed_returned')}, "
                                     f"connected recv -> errno {o.get('connected_recv_errno')}")


@scenario("boundaries", "a, bb, ccc queued together are still three recvs; an empty datagram is a real "
                        "message")
def boundaries(run: LessonRun) -> Outcome:
    probe = run.probe("boundaries")
    outcome = Outcome.from_probe(probe, f"received {probe.observed.get('received')} and an empty datagram "
                                        f"({probe.observed.get('empty_datagram_len')} bytes)")
    o = probe.observed
    if not probe.ok and o.get("raw_unchanged") is False and o.get("received") == ["a", "bb", "ccc"]:
        outcome.summary = ("datagrams with edge spaces, '\\r\\n' or non-UTF-8 bytes came back changed: "
                           f"{o.get('raw_echoes')}")
        outcome.fix = ("echo the datagram's bytes unchanged: sock.sendto(data, addr) with data exactly as "
                       "recvfrom() returned it (no decode()/strip()/encode(): spaces and newlines are data, "
                       "and a datagram need not be UTF-8)")
    elif not probe.ok:
        outcome.summary = f"expected the echoes b'a', b'bb', b'ccc' and b''; {outcome.summary}"
        outcome.fix = ("echo every datagram as it came, one sendto() per recvfrom(), including an empty one "
                       "(b'' is a real datagram in UDP, not the end of anything; note that asyncio's "
                       "transport.sendto(b'') sends nothing in Python 3.11: use the socket's sendto)")
    return outcome


@scenario("truncation", "a 2000-byte datagram read with 1024 is cut (MSG_TRUNC), the rest is lost, "
                        "the next is whole")
def truncation(run: LessonRun) -> Outcome:
    probe = run.probe("truncation")
    o = probe.observed
    outcome = Outcome.from_probe(probe, f"echo of {o.get('echo_size')} bytes read as {o.get('received')} "
                                        f"(MSG_TRUNC {o.get('msg_trunc')}), {o.get('lost')} lost; next: "
                                        f"{o.get('next_datagram')!r}")
    if not probe.ok:
        outcome.fix = ("the server must echo the whole 2000-byte datagram: receive with recvfrom(65535), not "
                       "recvfrom(1024) (a datagram larger than the buffer is cut, and the rest is gone)")
    return outcome


@scenario("max-size", "65507 bytes is the largest datagram (echoed whole); 65508 -> EMSGSIZE (errno 90)")
def max_size(run: LessonRun) -> Outcome:
    probe = run.probe("max-size")
    o = probe.observed
    outcome = Outcome.from_probe(probe, f"65507 echoed as {o.get('echo_len')} bytes; 65508 -> errno "
                                        f"{o.get('oversize_errno')} ({o.get('oversize_errno_name')})")
    if not probe.ok:
        outcome.fix = "receive with a buffer of 65535 bytes (recvfrom(65535)) and send back exactly what came"
    return outcome


@scenario("overflow", "a receiver that is not reading loses datagrams with no network fault (RcvbufErrors)",
          roles=())
def overflow(run: LessonRun) -> Outcome:
    port = run.port() + REFERENCE_SERVER_OFFSET
    name = "udp-blast-server"
    try:
        if not start_reference_server(run, name, port):
            return Outcome(False, f"the reference server did not start on port {port}")
        probe = run.probe("overflow", port=port)
    finally:
        run.server.stop(name)
    o = probe.observed
    return Outcome.from_probe(probe, f"{o.get('received')}/{o.get('sent')} kept with SO_RCVBUF "
                                     f"{o.get('rcvbuf_effective')}; RcvbufErrors "
                                     f"+{o.get('rcvbuf_errors_delta')}")


@scenario("relay-loss", f"through the relay (loss {LOSS}, seed {SEED}) exactly the predicted datagrams go "
                        "missing, the same on every run")
def relay_loss(run: LessonRun) -> Outcome:
    port = run.port() + LOSS_RELAY_OFFSET
    name = "udp-loss-relay"
    node, host = start_relay(run, name, port, run.port(), ["--loss", str(LOSS), "--seed", str(SEED)])
    try:
        args = ("--count", "30", "--loss", str(LOSS), "--seed", str(SEED))
        first = run.probe("relay-loss", *args, host=host, port=port)
        second = run.probe("relay-loss", *args, host=host, port=port)
    finally:
        node.stop(name)
    missing = first.observed.get("missing")
    same = missing is not None and missing == second.observed.get("missing")
    observed = dict(first.observed, second_run_missing=second.observed.get("missing"), runs_identical=same,
                    relay_node=node.name)
    transcript = [*first.transcript,
                  "the same again, from a new socket (a new flow, so the relay's fates restart):",
                  *second.transcript[-2:]]
    passed = first.ok and second.ok and same
    reordered = [p for p in (first, second) if p.observed.get("in_order") is False]
    summary = (f"{first.observed.get('received')}/30 came back; missing {missing}, "
               + ("as predicted, " if first.ok else f"predicted {first.observed.get('predicted_missing')}, ")
               + f"{'identical' if same else 'DIFFERENT'} on a second run")
    fix = "" if passed else "echo each datagram once, at once, to the address it came from"
    if not passed and reordered:
        summary += f"; the echoes came back in another order than sent ({len(reordered)} of 2 runs)"
        fix = ("serve one datagram at a time, in the order they arrive: a thread per datagram (ThreadingUDPServer, "
               "a thread pool) can send the echoes out of order - on some runs only - and the relay's seeded "
               "losses then fall on other datagrams than predicted")
    return Outcome(passed, summary, observed, transcript, fix)


@scenario("reliable-delivery", f"stop-and-wait with retransmission delivers all {RELIABLE_COUNT} messages "
                               "in order through loss, duplicates and reordering", roles=("client",))
def reliable_delivery(run: LessonRun) -> Outcome:
    server_port = run.port() + REFERENCE_SERVER_OFFSET
    relay_port = run.port() + RELIABLE_RELAY_OFFSET
    server_name, relay_name = "udp-record-server", "udp-reliable-relay"
    node = None
    try:
        if not start_reference_server(run, server_name, server_port):
            return Outcome(False, f"the reference server did not start on port {server_port}")
        node, host = start_relay(run, relay_name, relay_port, server_port, RELIABLE_RELAY)
        argv = [*run.client_cmd, "--host", host, "--port", str(relay_port), "--count", str(RELIABLE_COUNT)]
        client = run.client.run(run.in_workdir(argv), timeout=120)
        probe = run.probe("delivered", "--count", str(RELIABLE_COUNT), port=server_port)
    finally:
        if node is not None:
            node.stop(relay_name)
        run.server.stop(server_name)
    relay = relay_summary(node, relay_name) if node is not None else {}
    lines = client.stdout.strip().splitlines()
    transcript = [f"$ {shlex.join(argv)}", *lines[:3], *(["..."] if len(lines) > 5 else []), *lines[3:][-2:],
                  *client.stderr.strip().splitlines()[-3:], *probe.transcript]
    if relay:
        transcript.append(f"the relay: client->server {relay['up']}, server->client {relay['down']}")
    observed = dict(probe.observed, client_exit=client.exit_code, relay=relay)
    passed = probe.ok and client.exit_code == 0
    o = probe.observed
    fix = ""
    if not probe.ok:
        fix = ("datagrams get lost: after each `DATA <seq> ...` wait for `ACK <seq>` with a timeout "
               "(settimeout), and send it again when none came; ignore ACKs for other seqs")
    elif client.exit_code != 0:
        fix = "every message was delivered: exit 0 once the last ACK came"
    return Outcome(passed, f"the server delivered {o.get('delivered')}/{RELIABLE_COUNT} in order "
                           f"({o.get('duplicates')} duplicates ignored); client exit {client.exit_code}",
                   observed, transcript, fix)
