"""Lesson socketserver across two containers: ThreadingTCPServer, allow_reuse_address, shutdown."""
import pytest

from socketlab.scenarios import socketserver

pytestmark = pytest.mark.integration
LESSON = "socketserver"


def test_b_is_answered_while_a_idles(module_lab):
    o = socketserver.b_while_a_idles(module_lab).observed
    assert o["b_reply"] == "ABC" and o["a_still_connected"]
    assert o["threads_with_clients"] > o["threads_idle"]


def test_twenty_parallel_clients_all_correct_and_unmixed(module_lab):
    o = socketserver.twenty_parallel(module_lab).observed
    assert o["clients"] == o["connected_at_once"] == o["correct"] == 20
    assert o["mixed"] == 0 and not o["errors"]


def test_allow_reuse_address_only_works_as_a_class_attribute(module_lab):
    o = socketserver.allow_reuse_address(module_lab).observed
    assert o["instance_attribute_after_init"] == 0
    assert o["class_attribute"] == 1


def test_clean_shutdown(module_lab):
    o = socketserver.clean_shutdown(module_lab).observed
    assert o["idle_client_got_eof"] and o["exit_status"] == 0
    assert o["connect_after_errno"] == 111


def test_restart_on_the_same_port(module_lab):
    o = socketserver.restart_same_port(module_lab).observed
    assert o["restarted"] and o["served_after_restart"]
