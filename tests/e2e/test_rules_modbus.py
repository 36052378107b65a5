"""The shipped Modbus and generic rule packs against attack scenarios that a real pymodbus
client and server (tests/support/peers.py) play live, recorded into tmp_path. Each case
lists the exact alerts of the whole rules folder as (rule, src, dst, count), so a rule that
starts firing where it should not fails too.
"""

from __future__ import annotations

import json
import shutil

import pytest

from icsguard.detect.site import load_site
from tests.support import run_icsguard
from tests.support.rules_modbus import (
    EXPECTED_LIVE,
    HMI,
    PLC,
    ROGUE,
    RULES,
    SITE,
    alerts_by_rule,
    evidence_of,
    site_file,
    summary,
)

# Live captures are made whenever the tests run: two windows covering every minute.
ALWAYS = '[{start: "00:00", end: "23:59"}, {start: "23:59", end: "00:00"}]'


# --------------------------------------------------------------------------- #
# Live attack traffic, recorded once for the module
# --------------------------------------------------------------------------- #
# scenario in peers.py -> capture() keyword arguments
LIVE = {
    "force_listen_only": {},
    "broadcast_write": {},
    "whole_map_write": {},
    "unit_id_sweep": {},
    "busy_server": {"busy": True},
    "function_code_scan": {},
    "rogue_client": {},
    "invalid_frames": {},
    "not_modbus": {},
}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Each attack scenario against a fresh pymodbus server on 502, plus an S7 HMI
    session on port 1102 (python-snap7), recorded with tcpdump."""
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    from tests.support import peers, s7_peers
    out = tmp_path_factory.mktemp("rules_live")
    paths = {}
    for name, kwargs in LIVE.items():
        paths[name] = out / f"{name}.pcap"
        peers.capture(paths[name], getattr(peers, name), **kwargs)
    paths["s7_port1102"] = out / "s7_port1102.pcap"
    s7_peers.capture(paths["s7_port1102"], s7_peers.normal_hmi, port=1102, cycles=2)
    return paths


@pytest.fixture(scope="module")
def live_site(tmp_path_factory):
    return site_file(tmp_path_factory.mktemp("live_site"), maintenance=ALWAYS)


@pytest.mark.parametrize("name", list(EXPECTED_LIVE))
def test_attack_scenario_raises_exactly_its_alerts(live, live_site, name):
    assert summary(alerts_by_rule(live[name], live_site)) == sorted(EXPECTED_LIVE[name])


def test_force_listen_only(live, live_site):
    alert = alerts_by_rule(live["force_listen_only"], live_site)["modbus.force_listen_only"]
    assert alert.severity == "high" and alert.proto == "modbus"
    (request,) = alert.evidence                    # the request only; the read after it is normal
    assert (request["function"], request["subfunction"], request["direction"], request["dport"]) == \
        ("diagnostics", 4, "request", 502)


def test_broadcast_write_only_for_unit_zero(live, live_site):
    alert = alerts_by_rule(live["broadcast_write"], live_site)["modbus.broadcast_write"]
    assert evidence_of(alert, "unit_id") == [0]      # the same write to unit 1 is not one
    assert evidence_of(alert, "function") == ["write_single_register"]


def test_whole_map_write_registers_and_coils_not_a_setpoint(live, live_site):
    alert = alerts_by_rule(live["whole_map_write"], live_site)["modbus.write_whole_map"]
    assert [(e["function"], e["quantity"]) for e in alert.evidence] == \
        [("write_multiple_registers", 120), ("write_multiple_coils", 1600)]     # not the 10-register write


def test_unit_id_sweep_counts_distinct_units(live, live_site):
    alert = alerts_by_rule(live["unit_id_sweep"], live_site)["modbus.unit_id_sweep"]
    assert evidence_of(alert, "unit_id") == [5, 6, 7, 8]


def test_server_busy_and_acknowledge(live, live_site):
    alert = alerts_by_rule(live["busy_server"], live_site)["modbus.server_busy"]
    assert (alert.src, alert.dst) == (HMI, PLC)                  # the client it answered
    assert evidence_of(alert, "exception_code") == [6, 5, 5]
    assert evidence_of(alert, "direction") == ["response"] * 3


def test_function_code_scan(live, live_site):
    alerts = alerts_by_rule(live["function_code_scan"], live_site)
    assert evidence_of(alerts["modbus.function_code_scan"], "function_code") == [13, 14, 18, 19]
    assert evidence_of(alerts["modbus.function_code_scan"], "exception_code") == [1] * 4
    assert evidence_of(alerts["generic.unknown_function"], "function") == \
        ["reserved_9", "reserved_10", "reserved_13", "reserved_14", "reserved_18"]    # five kept as evidence


def test_invalid_frames(live, live_site):
    alerts = alerts_by_rule(live["invalid_frames"], live_site)
    assert evidence_of(alerts["modbus.invalid_length"], "malformed") == [
        "PDU of 3 bytes is too short for read_holding_registers",
        "PDU is 7 bytes but its fields describe 5",
        "MBAP length 300 is outside 2..254"]
    assert evidence_of(alerts["generic.malformed_pdu"], "malformed") == ["MBAP length 300 is outside 2..254"]


def test_not_modbus_on_502(live, live_site):
    alert = alerts_by_rule(live["not_modbus"], live_site)["modbus.not_modbus_on_502"]
    assert [(e["malformed"], e["direction"], e["dport"]) for e in alert.evidence] == \
        [("payload on port 502 is not modbus", "request", 502)]


def test_rogue_host_reads_and_writes(live, live_site, tmp_path):
    alerts = alerts_by_rule(live["rogue_client"], live_site)
    assert evidence_of(alerts["modbus.read_from_unexpected_host"], "function") == ["read_holding_registers"]
    assert evidence_of(alerts["modbus.write_not_permitted"], "values") == [(0xDEAD,)]
    # the same traffic where the site makes the rogue an HMI and a writer: quiet
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text(SITE.format(maintenance=ALWAYS, writers="$hmi").replace("127.0.0.10]", "127.0.0.10, 127.0.0.66]"))
    assert summary(alerts_by_rule(live["rogue_client"], load_site(quiet))) == []


def test_rogue_host_from_the_command_line(live, tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(maintenance=ALWAYS, writers="$hmi"))
    db = tmp_path / "icsguard.db"
    result = run_icsguard("analyze", live["rogue_client"], "--db", db, "--rules", RULES, "--site", site)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in run_icsguard("alerts", "--db", db, "--format", "jsonl").stdout.splitlines()]
    assert sorted((r["rule"], r["src"], r["dst"], r["severity"]) for r in rows) == [
        ("modbus.read_from_unexpected_host", ROGUE, PLC, "medium"),
        ("modbus.write_not_permitted", ROGUE, PLC, "high")]


def test_s7_on_an_unusual_port(live, live_site):
    """generic.unusual_port's S7 branch (it once compared proto with a whole list)."""
    alerts = alerts_by_rule(live["s7_port1102"], live_site)
    assert list(alerts) == ["generic.unusual_port"]
    alert = alerts["generic.unusual_port"]
    assert (alert.src, alert.dst) == (HMI, PLC) and alert.count > 10
    assert {(e["proto"], e["dport"]) for e in alert.evidence} <= {("cotp", 1102), ("s7comm", 1102)}


def test_s7_on_a_port_the_site_file_gives_it(live, tmp_path):
    """The same S7 session once the site says S7 runs on 1102 here: nothing."""
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(maintenance=ALWAYS, writers="$hmi, $ews") + "ports: {s7comm: [1102]}\n")
    assert alerts_by_rule(live["s7_port1102"], load_site(site)) == {}

