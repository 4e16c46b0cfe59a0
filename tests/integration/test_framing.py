"""Lesson framing across two containers: the codec's promises hold over a real network."""
import pytest

from socketlab.scenarios import framing

pytestmark = pytest.mark.integration
LESSON = "framing"


def test_any_recv_size_reads_the_same_verified_reply(module_lab):
    o = framing.recv_sizes(module_lab).observed
    assert o["recv_sizes"] == [1, 5, 4096]
    assert o["identical"] and o["sha256_ok"]
    assert len(set(o["body_sizes"])) == 1
    assert o["prefix_hex"] == f"{o['header_length']:08x}"          # '!I': big-endian, unsigned
    assert o["recv_calls"][0] > o["recv_calls"][2]                  # recv(1) needs many more calls


def test_trickled_bytes_split_the_prefix_and_recv_exact_still_works(module_lab):
    o = framing.trickle(module_lab).observed
    assert o["prefix_split"] and sum(o["prefix_recv_sizes"]) == 4 and len(o["prefix_recv_sizes"]) > 1
    assert o["reply_ok"]


def test_pipelined_frames_are_cut_apart_exactly(module_lab):
    o = framing.pipelined(module_lab).observed
    assert o["requests_pipelined_ok"] and o["hash_reply_ok"] and o["echo_reply_ok"]
    assert o["frames_in_one_recv"] == 2
    assert o["seed_overread_bytes"] > 0                             # the seed's recv(1024) loop eats frame 2


def test_eight_mib_bodies_both_ways(module_lab):
    o = framing.big_body(module_lab).observed
    assert o["download_bytes"] == 8 * 1024 * 1024 and o["download_sha256_ok"]
    assert o["upload_server_size"] == 8 * 1024 * 1024 and o["upload_sha256_match"]


def test_truncated_stream_is_a_clear_error(module_lab):
    o = framing.truncated(module_lab).observed
    assert o["error_type"] == "TruncatedFrame"
    assert o["received_body_bytes"] + o["missing_bytes"] == o["announced_size"]


def test_oversized_header_length_is_rejected_after_four_bytes(module_lab):
    o = framing.oversize_header(module_lab).observed
    assert o["announced_header_length"] == 2**32 - 1 and o["signed_value"] == -1
    assert o["bytes_read_before_error"] == 4
    assert o["error_type"] == "HeaderTooLarge"


def test_bad_frames_get_errors_and_the_server_keeps_serving(module_lab):
    o = framing.bad_input(module_lab).observed
    assert o["not_rejected"] == []
    assert o["continued_after_recoverable"] and o["served_while_another_idles"] and o["still_serves"]
    assert o["server_died_after"] is None and o["not_tried"] == [] and len(o["tried"]) == len(o["cases"])


def test_reference_client_prints_exact_replies_under_every_sending_mode(module_lab):
    outcome = framing.client(module_lab)
    assert outcome.passed and outcome.observed["all_passed"]
    # a corrupt body, an {"ok": false} reply and an oversize prefix on a connection kept open all end
    # in a prompt non-zero exit
    assert {"corrupt", "refused", "oversize"} <= set(outcome.observed["passed"])
    assert outcome.observed["seconds"]["oversize"] < 5


def test_the_reference_server_survives_the_hostile_clients_that_grade_student_servers(module_lab):
    trickled = framing.trickled_request(module_lab)
    assert trickled.passed, trickled.summary
    assert trickled.observed["reply_body"] == "trickled request"
    pipelined = framing.pipelined_requests(module_lab)
    assert pipelined.passed and pipelined.observed["echoes_ok"] == [True, True, True], pipelined.summary
    assert pipelined.observed["body_first_hash_ok"] and pipelined.observed["after_body_echoes_ok"] == [True, True]
    vanished = framing.client_vanishes(module_lab)
    assert vanished.passed and vanished.observed["still_serves"] is True
