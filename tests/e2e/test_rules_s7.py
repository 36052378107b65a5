"""The S7 rule pack against an HMI recorded live (tests/support/s7_peers.py): what it does
all day (s7_peers.normal_hmi: identify the CPU once on connecting, poll DBs, flags, inputs
and outputs, write setpoints and command bits into DBs) raises nothing from the host the
site file names as hmi and lets write to the PLC, and the site file decides which writes
are policed.
"""

from __future__ import annotations

import json

import pytest

from icsguard.analysis import decode
from icsguard.detect.rules import load_rules
from tests.support import run_icsguard
from tests.support.rules_s7 import EWS, HMI, PLC, SITE, SITE_DEPENDENT, STRANGER, alerts_of, site_file, summary


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return site_file(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def shipped(site):
    """All shipped packs, with the site: nothing set aside but the rule of maintenance
    windows, which this site does not give."""
    rules = load_rules(site=site)
    assert set(rules.inactive) == {"modbus.write_outside_maintenance"}
    return rules


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Two captures recorded now from real python-snap7 peers on loopback port 102:
    ``normal``, an HMI's day (s7_peers.normal_hmi), and ``writers``, the same DB setpoint
    written by the HMI, then the EWS, then a host the site does not know."""
    from tests.support.s7_peers import capture, normal_hmi, writers
    folder = tmp_path_factory.mktemp("s7live")
    normal = capture(folder / "normal_hmi.pcap", normal_hmi)
    wrote = capture(folder / "writers.pcap", writers, hosts=(HMI, EWS, STRANGER))
    assert [e["error"] for e in normal + wrote] == [None] * len(normal + wrote)
    assert [e["client_host"] for e in wrote if e["call"] == "connect"] == [HMI, EWS, STRANGER]
    return {"normal": folder / "normal_hmi.pcap", "writers": folder / "writers.pcap"}


def test_writes_policed_by_the_site_file(live, shipped):
    """HMI: allowed. EWS: an operator station but not among the writers. Unknown host:
    neither. Alerts name the writer, never the PLC."""
    assert summary(alerts_of(shipped, live["writers"])) == [
        ("s7.write_from_non_operator", 1, STRANGER, PLC),
        ("s7.write_not_permitted", 1, EWS, PLC),
        ("s7.write_not_permitted", 1, STRANGER, PLC),
    ]


def test_writes_allowed_to_the_ews_too(live, tmp_path):
    site = site_file(tmp_path, SITE.replace("from: [$hmi]", "from: [$hmi, $ews]"))
    assert summary(alerts_of(load_rules(site=site), live["writers"])) == [
        ("s7.write_from_non_operator", 1, STRANGER, PLC),
        ("s7.write_not_permitted", 1, STRANGER, PLC),
    ]


def test_writes_to_a_plc_no_writers_entry_names_are_not_policed(live, tmp_path):
    """writers that name another PLC say nothing about this one; the role rule still holds."""
    site = site_file(tmp_path, SITE.replace("to: [$plc]", "to: [127.0.0.3]"))
    assert summary(alerts_of(load_rules(site=site), live["writers"])) == [
        ("s7.write_from_non_operator", 1, STRANGER, PLC)]


def test_writes_without_a_site_file_raise_nothing(live):
    rules = load_rules()
    assert SITE_DEPENDENT <= set(rules.inactive)
    assert alerts_of(rules, live["writers"]) == []


def test_writes_from_the_command_line(live, tmp_path):
    (tmp_path / "site.yaml").write_text(SITE)
    db = tmp_path / "icsguard.db"
    result = run_icsguard("analyze", live["writers"], "--db", db, "--site", tmp_path / "site.yaml")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in run_icsguard("alerts", "--db", db, "--format", "jsonl").stdout.splitlines()]
    assert sorted((r["rule"], r["src"], r["dst"], r["count"]) for r in rows) == [
        ("s7.write_from_non_operator", STRANGER, PLC, 1),
        ("s7.write_not_permitted", EWS, PLC, 1),
        ("s7.write_not_permitted", STRANGER, PLC, 1),
    ]
    assert {r["evidence"][0]["function"] for r in rows} == {"write_var"}


def test_normal_hmi_traffic_raises_nothing(live, shipped):
    events = list(decode([str(live["normal"])]))
    requests = [e for e in events if e.proto == "s7comm" and e.direction == "request"]
    # the traffic is what it claims to be: SZL identification, polling, DB writes only
    assert sorted({e.function for e in requests}) == ["read_szl", "read_var", "setup_communication", "write_var"]
    assert {e.get("szl_id") for e in requests if e.function == "read_szl"} == {0x001C, 0x0011}
    writes = [e for e in requests if e.function == "write_var"]
    assert len(writes) == 3 and {i["area"] for e in writes for i in e.get("items")} == {"DB"}
    assert {i["area"] for e in requests if e.function == "read_var" for i in e.get("items")} == {"DB", "M", "I", "Q"}
    assert {e.src for e in requests} == {HMI}
    assert alerts_of(shipped, live["normal"]) == []


def test_normal_hmi_from_an_unknown_host_is_only_its_writes(tmp_path):
    """The same everyday traffic from a host the site does not name: the three DB writes,
    and nothing else, become alerts."""
    from tests.support.s7_peers import capture, normal_hmi
    capture(tmp_path / "stranger.pcap", normal_hmi, source=STRANGER, cycles=4)
    assert summary(alerts_of(load_rules(site=site_file(tmp_path)), tmp_path / "stranger.pcap")) == [
        ("s7.write_from_non_operator", 3, STRANGER, PLC),
        ("s7.write_not_permitted", 3, STRANGER, PLC),
    ]

