"""The FTP exercise across two containers: every homework item, asserted from the client machine
and checked on the server machine's disk."""
import pytest

from socketlab.scenarios import ftp

pytestmark = pytest.mark.integration
LESSON = "ftp"


def test_1_login_is_challenge_response_and_users_are_indistinguishable(module_lab):
    o = ftp.login(module_lab).observed
    assert o["challenge_code"] == 331 and o["login_code"] == 230
    assert o["password_on_wire"] is False
    assert o["unknown_same_shape"] and o["unknown_salt_stable"] and o["refusals_identical"]


def test_1_passwords_are_stored_with_a_salted_slow_kdf(module_lab):
    o = ftp.password_storage(module_lab).observed
    assert o["cleartext_users"] == [] and o["fast_hashes"] == []
    assert set(o["slow_kdf_users"]) >= {"alice", "bob"}


def test_1_failed_logins_are_limited(module_lab):
    o = ftp.login_limit(module_lab).observed
    assert o["codes"] == [530, 530, 421] and o["closed"] and o["new_session_ok"]


def test_2_3_two_users_at_once_each_in_their_own_home(module_lab):
    o = ftp.two_users(module_lab).observed
    assert o["cross_visible"] is False and o["both_alive"]


def test_3_5_traversal_absolute_sibling_nul_and_symlinks_are_refused(module_lab):
    o = ftp.isolation(module_lab).observed
    assert o["leaked_files"] == [] and o["server_files_named_evil"] == []
    assert all(code in (550, 553) for code in o["codes"].values()), o["codes"]
    assert o["symlink_type"] == "link"


def test_4_quota_differs_per_user_and_refusals_leave_nothing(module_lab):
    o = ftp.quota(module_lab).observed
    assert o["bob_limit"] != o["alice_limit"]
    assert o["bob_put_code"] == 552
    assert o["bob_used_before"] == o["bob_used_after"] and o["server_leftovers"] == []
    assert o["zero_byte_code"] == 226


def test_4_concurrent_uploads_cannot_exceed_the_quota_together(module_lab):
    o = ftp.concurrent_quota(module_lab).observed
    assert o["first_code"] == 350 and o["second_code"] == 552
    assert o["used_after"] <= o["limit"]


def test_7_put_and_get_keep_the_sha256(module_lab):
    o = ftp.put_get_checksum(module_lab).observed
    assert o["local_sha256"] == o["server_sha256"] == o["downloaded_sha256"] == o["server_file_sha256"]
    assert o["server_internal_files"] == []


def test_9_interrupted_upload_resumes_from_the_durable_offset(module_lab):
    o = ftp.resume_upload(module_lab).observed
    assert o["server_final_during_cut"] is False           # never a partial file under the final name
    assert o["server_partials_during_cut"]
    assert o["resume_offset"] == o["partial_size"] == 1024 * 1024
    assert o["server_partials_after"] == []


def test_9_interrupted_download_resumes_and_a_changed_file_restarts(module_lab):
    o = ftp.resume_download(module_lab).observed
    assert o["resumed_from"] == 1024 * 1024
    assert o["changed_file_restart_offset"] == 0


def test_8_progress_is_monotonic_throttled_and_complete(module_lab):
    o = ftp.progress(module_lab).observed
    assert o["monotonic"]
    assert o["put_last"][0] == o["put_last"][1] and o["get_last"][0] == o["get_last"][1]


def test_10_11_max_sessions_refuses_politely(module_lab):
    o = ftp.max_sessions(module_lab).observed
    assert o["greeted"] == 3 and o["refused_code"] == 421 and o["closed_after_refusal"]
    assert o["after_release_code"] == 220


def test_bad_input_battery_gets_clear_errors_and_the_server_keeps_serving(module_lab):
    o = ftp.bad_input(module_lab).observed
    assert len(o["cases"]) >= 30 and o["failed"] == []
    assert o["still_serving"]


def test_client_batch_mode_round_trip(module_lab):
    o = ftp.client_batch(module_lab).observed
    assert o["exit_code"] == 0 and o["original_sha256"] == o["copy_sha256"]


def test_a_demo_after_the_guide_runs_on_a_fresh_server_and_leaves_the_students_files(module_lab):
    """The guide's steps leave files in alice's home; the demo must still pass, and keep them."""
    from socketlab.runner import run_scenarios
    from socketlab.scenarios.ftp import homes, quota, session
    server = module_lab.server
    server.run(["sh", "-c", f"mkdir -p {homes(module_lab)}/alice && head -c 9000000 /dev/zero "
                            f"> {homes(module_lab)}/alice/guide-big.bin"])
    try:
        with session(module_lab) as fresh:
            assert fresh.port() != module_lab.port()
        [report] = run_scenarios(module_lab, [quota])
        assert report.passed, report.summary
        assert server.run(["test", "-s", f"{homes(module_lab)}/alice/guide-big.bin"]).ok
    finally:
        server.run(["rm", "-f", f"{homes(module_lab)}/alice/guide-big.bin"])
