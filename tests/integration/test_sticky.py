"""Lesson sticky across two containers: a byte stream has no message boundaries."""
import pytest

from socketlab.scenarios import sticky

pytestmark = pytest.mark.integration
LESSON = "sticky"


def test_second_reply_starts_with_the_leftover_of_the_first(module_lab):
    o = sticky.leftover(module_lab).observed
    assert o["r1_len"] == 1024                               # recv(1024) returned part of the 5120-byte reply
    assert o["r2_is_continuation"] and not o["r2_is_echo_reply"]
    assert o["queued_before_r1"] == 5120                     # synchronised on FIONREAD, not on sleeps
    assert o["r2_head"].startswith("big@00001024")


def test_two_queued_sends_read_as_one(module_lab):
    o = sticky.coalesce(module_lab).observed
    assert o["first_recv"] == "helloworld"
    assert o["coalesced"] == o["rounds"]
    assert o["paced_recvs"] == ["hello", "world"]            # contrast: a receiver already waiting


def test_tcp_nodelay_does_not_cure_it(module_lab):
    o = sticky.nodelay_no_cure(module_lab).observed
    assert o["client_nodelay"] == 1 and "TCP_NODELAY is now 1" in o["server_nodelay_reply"]
    assert o["first_recv"] == "helloworld"


def test_length_prefix_cuts_replies_apart(module_lab):
    o = sticky.framed(module_lab).observed
    assert o["sizes"] == [5120, 3, 10] and o["left_over"] == 0


def test_reference_client_prints_exact_replies(module_lab):
    outcome = sticky.client_exact_replies(module_lab)
    assert outcome.passed and all(outcome.observed["exact"])
