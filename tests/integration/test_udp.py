"""Lesson udp across containers: datagrams, truncation, loss, a seeded relay, retries."""
import pytest

from socketlab.scenarios import udp

pytestmark = pytest.mark.integration
LESSON = "udp"


def test_no_connection_the_server_learns_each_sender(module_lab):
    o = udp.no_connection(module_lab).observed
    assert o["unconnected_recv"] == "timeout"
    assert o["connected_recv_errno"] == 111                  # ICMP port unreachable, on a connected socket


def test_boundaries_are_kept_and_empty_datagrams_are_real(module_lab):
    o = udp.boundaries(module_lab).observed
    assert o["received"] == ["a", "bb", "ccc"]
    assert o["empty_datagram_len"] == 0


def test_a_big_datagram_read_into_a_small_buffer_is_truncated(module_lab):
    o = udp.truncation(module_lab).observed
    assert o["echo_size"] == 2000 and o["received"] == 1024 and o["msg_trunc"]
    assert o["lost"] == 976 and o["next_datagram"] == "next"


def test_largest_datagram_and_emsgsize(module_lab):
    o = udp.max_size(module_lab).observed
    assert o["echo_len"] == 65507 and o["oversize_errno"] == 90


def test_a_blasting_sender_loses_datagrams_without_any_network_fault(module_lab):
    o = udp.overflow(module_lab).observed
    assert o["received"] < 1000
    assert o["rcvbuf_errors_delta"] >= 1000 - o["received"] - 5   # visible in /proc/net/snmp


def test_seeded_relay_loses_exactly_the_predicted_datagrams(module_lab):
    o = udp.relay_loss(module_lab).observed
    assert o["missing"] == o["predicted_missing"] and o["missing"]
    assert o["runs_identical"]


def test_retrying_client_delivers_everything_in_order(module_lab):
    outcome = udp.reliable_delivery(module_lab)
    o = outcome.observed
    assert o["delivered"] == 30 and o["in_order"] and outcome.passed
