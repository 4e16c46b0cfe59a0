"""compose.yaml is the single source of truth: the lesson model read from it, and its errors."""
from pathlib import Path

import pytest
import yaml

from socketlab.errors import LabError
from socketlab.topology import duration_ns, load, parse

FIXTURES = Path(__file__).parent.parent / "fixtures" / "compose"
LESSONS = ["basic", "loops", "sticky", "framing", "udp", "socketserver", "ftp"]


def test_every_lesson_of_the_course_is_in_compose():
    topology = load()
    assert list(topology.lessons) == LESSONS
    for lesson in topology.lessons.values():
        roles = {s.role for s in lesson.services}
        assert {"server", "client"} <= roles, lesson.id
        assert all(s.name == f"{lesson.id}-{s.role}" for s in lesson.services)
        assert lesson.ports["server"] > 1024


def test_services_carry_the_safety_settings_of_the_spec():
    for lesson in load().lessons.values():
        for spec in lesson.services:
            kw = spec.engine_kwargs()
            assert kw["user"] == "1000:1000", spec.name          # never root
            assert kw["cap_drop"] == ["ALL"], spec.name
            assert kw["init"] is True, spec.name                 # python as PID 1 ignores SIGTERM
            assert kw["mem_limit"] and kw["pids_limit"], spec.name
            if spec.role == "server":
                assert kw["healthcheck"]["interval"] == 1_000_000_000


def test_sticky_remote_shell_runs_read_only():
    spec = load().lesson("sticky").service("server")
    assert spec.engine_kwargs()["read_only"] is True


def test_fixed_subnet_and_addresses_inside_it():
    import ipaddress
    topology = load()
    net = ipaddress.ip_network(topology.subnet)
    addresses = [s.ipv4_address for lesson in topology.lessons.values() for s in lesson.services]
    assert all(ipaddress.ip_address(a) in net for a in addresses)
    assert len(set(addresses)) == len(addresses), "two services share an address"


def test_server_program_is_the_command_before_its_options():
    topology = load()
    assert topology.lesson("basic").server_program == ["python3", "basic/server.py"]
    assert topology.lesson("ftp").server_program[:2] == ["python3", "-m"]


def test_unknown_lesson_names_the_known_ones_and_the_nearest():
    with pytest.raises(LabError) as err:
        load().lesson("stiky")
    assert "sticky" in err.value.fix and "basic" in err.value.fix
    assert err.value.exit_code == 2


@pytest.mark.parametrize("case", sorted(p.name for p in FIXTURES.iterdir()))
def test_bad_compose_files_are_refused_with_a_reason(case):
    raw = yaml.safe_load((FIXTURES / case / "compose.yaml").read_text())
    expected = (FIXTURES / case / "error.txt").read_text().strip()
    with pytest.raises(LabError) as err:
        topology = parse(raw)
        for lesson in topology.lessons.values():
            for spec in lesson.services:
                spec.engine_kwargs()
    assert expected in str(err.value)


@pytest.mark.parametrize("text,ns", [("1s", 10**9), ("500ms", 5 * 10**8), ("1m30s", 90 * 10**9), ("0s", 0)])
def test_durations(text, ns):
    assert duration_ns(text) == ns


def test_compose_has_nothing_docker_compose_v1_rejects():
    raw = yaml.safe_load(Path("compose.yaml").read_text())
    assert "name" not in raw and "version" not in raw
    for svc in raw["services"].values():
        assert "start_interval" not in (svc.get("healthcheck") or {})


def test_cpus_become_the_engines_nano_cpus_on_every_service():
    for lesson in load().lessons.values():
        for spec in lesson.services:
            kw = spec.engine_kwargs()
            assert kw["nano_cpus"] == 1_000_000_000, spec.name      # compose `cpus: 1.0`
            assert kw["read_only"] is True and "/tmp" in kw["tmpfs"], spec.name


def test_compose_has_no_host_mounts_or_published_ports():
    raw = yaml.safe_load(Path("compose.yaml").read_text())
    for name, svc in raw["services"].items():
        assert "volumes" not in svc and "ports" not in svc, name
    with pytest.raises(LabError, match="volumes"):
        parse({"x-lessons": {"a": {}}, "services": {"a-server": {"image": "x", "profiles": ["a"],
                                                                 "volumes": ["/:/host"]}}})


def test_the_workspace_comes_from_compose():
    ws = load().workspace
    assert (ws.host, ws.container, ws.roles) == ("./work", "/work", ("server", "client"))
    assert ws.host_root().name == "work"
