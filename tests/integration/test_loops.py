"""Lesson loops across two containers: connection loop, communication loop, Address already in use."""
import pytest

from socketlab.scenarios import loops

pytestmark = pytest.mark.integration
LESSON = "loops"


def test_server_outlives_many_clients_each_on_a_new_port(module_lab):
    o = loops.many_clients(module_lab).observed
    assert o["served"] == o["clients"] == 10
    assert o["ports_distinct"]


def test_iterative_server_makes_b_wait_until_a_leaves(module_lab):
    o = loops.iterative(module_lab).observed
    assert o["a_reply"] == "cba"
    assert o["b_state_while_waiting"] == "ESTABLISHED"     # the kernel completed B's handshake
    assert o["b_timed_out"] is True                        # ... but nobody recv()s for B yet
    assert o["b_reply_after_a_left"] == "x"


def test_empty_recv_ends_the_loop_without_spinning(module_lab):
    outcome = loops.client_gone(module_lab)
    o = outcome.observed
    assert o["server_log_says_gone"] and o["next_client_served"]
    assert o["cpu_percent"] <= 10
    assert outcome.passed


def test_restart_after_quit_with_reuseaddr(module_lab):
    o = loops.restart_after_quit(module_lab).observed
    assert o["server_closed_first"] and o["time_wait_on_server"]
    assert o["exit_status_on_sigterm"] == 0
    assert o["restarted"] and o["served_after_restart"]


def test_address_in_use_matrix_needs_reuseaddr_on_both_listeners(module_lab):
    outcome = loops.address_in_use(module_lab)
    o = outcome.observed
    assert o["matches_expected"], o["matrix"]
    assert [row["errno"] for row in o["matrix"]] == [row["expected_errno"] for row in o["matrix"]]
    assert o["only_new_listener_reuse_errno"] == 98        # setting it only on the restarted server fails
    assert o["time_wait_on_server_when_server_closed_first"]
    assert o["time_wait_on_client_when_client_closed_first"]
