"""Lesson basic across two containers: client in one, server in the other, by network name."""
import pytest

from socketlab.scenarios import basic

pytestmark = pytest.mark.integration
LESSON = "basic"


def test_each_accept_gives_a_new_socket_and_a_new_client_port(module_lab):
    outcome = basic.accept_new_socket(module_lab)
    ports = outcome.observed["client_ports"]
    assert len(ports) == 3 and len(set(ports)) == 3
    assert outcome.observed["server_seen_ports"] == ports       # the server sees the client's real port
    assert all(f"connection {i}" in r for i, r in enumerate(outcome.observed["replies"], 1))
    assert outcome.passed


def test_sockets_carry_bytes_not_str(module_lab):
    outcome = basic.bytes_not_str(module_lab)
    assert "bytes-like object is required" in outcome.observed["type_error"]
    assert outcome.observed["reply_type"] == "bytes"


def test_connect_ex_to_a_closed_port_returns_econnrefused(module_lab):
    outcome = basic.connect_ex_refused(module_lab)
    assert outcome.observed["errno"] == 111 and outcome.observed["errno_name"] == "ECONNREFUSED"


def test_server_bound_to_loopback_is_unreachable_from_the_other_container(module_lab):
    outcome = basic.loopback_unreachable(module_lab)
    assert outcome.observed["listening"] is True
    assert outcome.observed["remote_errno_name"] == "ECONNREFUSED"
    assert outcome.observed["local_errno_name"] == "OK"
