"""The shipped Modbus and generic rule packs against real pymodbus traffic.

Every rule in rules/modbus.yaml and rules/generic.yaml fires on traffic a real pymodbus
client and server (pcaps/peers.py) put on the wire: the committed captures where they
hold the trigger, otherwise attack scenarios recorded live into tmp_path. The same packs
stay silent on normal polling. Each case lists the exact alerts of the whole rules folder
as (rule, src, dst, count), so a rule that starts firing where it should not fails too.
"""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import PCAPS, REPO, run_icsguard

from icsguard.detect import yamlfile
from icsguard.analysis import decode
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import load_rules
from icsguard.detect.site import load_site

RULES = REPO / "rules"
PLC, HMI, ROGUE = "127.0.0.2", "127.0.0.10", "127.0.0.66"

SITE = """\
zones: {{loopback: [127.0.0.0/8]}}
roles: {{plc: [127.0.0.2], hmi: [127.0.0.10], ews: [127.0.0.20]}}
writers: [{{to: [$plc], from: [{writers}]}}]
maintenance: {maintenance}
"""
# The committed captures were recorded on Saturday 2026-11-21 at 23:39 UTC.
SATURDAY_LATE = '[{days: [sat], start: "23:00", end: "23:59"}]'
NIGHT_SHIFT = '[{days: [sat], start: "02:00", end: "04:00"}]'
# Live captures are made whenever the tests run: two windows covering every minute.
ALWAYS = '[{start: "00:00", end: "23:59"}, {start: "23:59", end: "00:00"}]'


def _site(tmp_path, maintenance: str = SATURDAY_LATE, writers: str = "$hmi, $ews"):
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(maintenance=maintenance, writers=writers))
    return load_site(path)


def _alerts(path, site) -> dict[str, object]:
    """Every alert of the whole rules folder on one capture, by rule id."""
    detector = RuleDetector(load_rules([RULES], site))
    alerts = []
    for event in decode([str(path)]):
        alerts += detector.feed(event)
    alerts += detector.flush()
    by_rule = {a.rule: a for a in alerts}
    assert len(by_rule) == len(alerts), "one alert per rule expected in these short captures"
    return by_rule


def _summary(alerts: dict) -> list[tuple]:
    return sorted((a.rule, a.src, a.dst, a.count) for a in alerts.values())


def _evidence(alert, key: str) -> list:
    return [e.get(key) for e in alert.evidence]


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
# scenario -> the exact alerts of the rules folder (site: HMI may write, always maintenance)
EXPECTED_LIVE = {
    "force_listen_only": [("modbus.force_listen_only", HMI, PLC, 1)],
    "broadcast_write": [("modbus.broadcast_write", HMI, PLC, 1)],
    "whole_map_write": [("modbus.write_whole_map", HMI, PLC, 2)],
    "unit_id_sweep": [("modbus.unit_id_sweep", HMI, PLC, 4)],             # units 5..8 of 1..8
    "busy_server": [("modbus.server_busy", HMI, PLC, 3)],                 # 3rd, 4th, 5th exception
    "function_code_scan": [("generic.unknown_function", HMI, PLC, 6),
                           ("modbus.function_code_scan", HMI, PLC, 4)],   # 3rd..6th refusal
    "rogue_client": [("modbus.read_from_unexpected_host", ROGUE, PLC, 1),
                     ("modbus.write_not_permitted", ROGUE, PLC, 1)],
    "invalid_frames": [("generic.malformed_pdu", HMI, PLC, 1),            # the 3rd malformed frame
                       ("modbus.invalid_length", HMI, PLC, 3)],
    "not_modbus": [("modbus.not_modbus_on_502", HMI, PLC, 1)],
}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Each attack scenario against a fresh pymodbus server on 502, plus an S7 HMI
    session on port 1102 (python-snap7), recorded with tcpdump."""
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    import peers
    import s7_peers
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
    return _site(tmp_path_factory.mktemp("live_site"), maintenance=ALWAYS)


@pytest.mark.parametrize("name", list(EXPECTED_LIVE))
def test_attack_scenario_raises_exactly_its_alerts(live, live_site, name):
    assert _summary(_alerts(live[name], live_site)) == sorted(EXPECTED_LIVE[name])


def test_force_listen_only(live, live_site):
    alert = _alerts(live["force_listen_only"], live_site)["modbus.force_listen_only"]
    assert alert.severity == "high" and alert.proto == "modbus"
    (request,) = alert.evidence                    # the request only; the read after it is normal
    assert (request["function"], request["subfunction"], request["direction"], request["dport"]) == \
        ("diagnostics", 4, "request", 502)


def test_broadcast_write_only_for_unit_zero(live, live_site):
    alert = _alerts(live["broadcast_write"], live_site)["modbus.broadcast_write"]
    assert _evidence(alert, "unit_id") == [0]      # the same write to unit 1 is not one
    assert _evidence(alert, "function") == ["write_single_register"]


def test_whole_map_write_registers_and_coils_not_a_setpoint(live, live_site):
    alert = _alerts(live["whole_map_write"], live_site)["modbus.write_whole_map"]
    assert [(e["function"], e["quantity"]) for e in alert.evidence] == \
        [("write_multiple_registers", 120), ("write_multiple_coils", 1600)]     # not the 10-register write


def test_unit_id_sweep_counts_distinct_units(live, live_site):
    alert = _alerts(live["unit_id_sweep"], live_site)["modbus.unit_id_sweep"]
    assert _evidence(alert, "unit_id") == [5, 6, 7, 8]


def test_server_busy_and_acknowledge(live, live_site):
    alert = _alerts(live["busy_server"], live_site)["modbus.server_busy"]
    assert (alert.src, alert.dst) == (HMI, PLC)                  # the client it answered
    assert _evidence(alert, "exception_code") == [6, 5, 5]
    assert _evidence(alert, "direction") == ["response"] * 3


def test_function_code_scan(live, live_site):
    alerts = _alerts(live["function_code_scan"], live_site)
    assert _evidence(alerts["modbus.function_code_scan"], "function_code") == [13, 14, 18, 19]
    assert _evidence(alerts["modbus.function_code_scan"], "exception_code") == [1] * 4
    assert _evidence(alerts["generic.unknown_function"], "function") == \
        ["reserved_9", "reserved_10", "reserved_13", "reserved_14", "reserved_18"]    # five kept as evidence


def test_invalid_frames(live, live_site):
    alerts = _alerts(live["invalid_frames"], live_site)
    assert _evidence(alerts["modbus.invalid_length"], "malformed") == [
        "PDU of 3 bytes is too short for read_holding_registers",
        "PDU is 7 bytes but its fields describe 5",
        "MBAP length 300 is outside 2..254"]
    assert _evidence(alerts["generic.malformed_pdu"], "malformed") == ["MBAP length 300 is outside 2..254"]


def test_not_modbus_on_502(live, live_site):
    alert = _alerts(live["not_modbus"], live_site)["modbus.not_modbus_on_502"]
    assert [(e["malformed"], e["direction"], e["dport"]) for e in alert.evidence] == \
        [("payload on port 502 is not modbus", "request", 502)]


def test_rogue_host_reads_and_writes(live, live_site, tmp_path):
    alerts = _alerts(live["rogue_client"], live_site)
    assert _evidence(alerts["modbus.read_from_unexpected_host"], "function") == ["read_holding_registers"]
    assert _evidence(alerts["modbus.write_not_permitted"], "values") == [(0xDEAD,)]
    # the same traffic where the site makes the rogue an HMI and a writer: quiet
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text(SITE.format(maintenance=ALWAYS, writers="$hmi").replace("127.0.0.10]", "127.0.0.10, 127.0.0.66]"))
    assert _summary(_alerts(live["rogue_client"], load_site(quiet))) == []


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
    alerts = _alerts(live["s7_port1102"], live_site)
    assert list(alerts) == ["generic.unusual_port"]
    alert = alerts["generic.unusual_port"]
    assert (alert.src, alert.dst) == (HMI, PLC) and alert.count > 10
    assert {(e["proto"], e["dport"]) for e in alert.evidence} <= {("cotp", 1102), ("s7comm", 1102)}


def test_s7_on_a_port_the_site_file_gives_it(live, tmp_path):
    """The same S7 session once the site says S7 runs on 1102 here: nothing."""
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(maintenance=ALWAYS, writers="$hmi, $ews") + "ports: {s7comm: [1102]}\n")
    assert _alerts(live["s7_port1102"], load_site(site)) == {}


# --------------------------------------------------------------------------- #
# Committed captures: triggers they already hold, and normal traffic
# --------------------------------------------------------------------------- #
EXPECTED_COMMITTED = {
    # normal polling on 502 (the HMI, within its role): not one alert
    "modbus_polling": [],
    "modbus_sll2": [],
    # normal polling on 5020: the one alert it must raise
    "modbus_port5020": [("generic.unusual_port", HMI, PLC, 250)],
    # the HMI writing inside the maintenance window: quiet
    "modbus_writes": [],
    "modbus_diagnostics": [("modbus.clear_counters", HMI, PLC, 1),
                           ("modbus.device_identification", HMI, PLC, 5),      # 4 x FC 43/14, FC 17
                           ("modbus.restart_communications", HMI, PLC, 1)],
    # 10 illegal-address answers (fires from the 5th), FC 65 unknown; only 2 illegal-function
    # answers, below function_code_scan's 3
    "modbus_exceptions": [("generic.unknown_function", HMI, PLC, 1),
                          ("modbus.device_identification", HMI, PLC, 2),
                          ("modbus.points_list_scan", HMI, PLC, 6)],
}


@pytest.mark.parametrize("name", list(EXPECTED_COMMITTED))
def test_committed_capture_raises_exactly_its_alerts(tmp_path, name):
    assert _summary(_alerts(PCAPS / f"{name}.pcap", _site(tmp_path))) == sorted(EXPECTED_COMMITTED[name])


@pytest.mark.parametrize("ports, alerts", [
    ("{modbus: [5020]}", []),
    ("{modbus: [5000-5030]}", []),
    ("{opcua: [5020], s7comm: [5020]}", [("generic.unusual_port", HMI, PLC, 250)]),   # other protocols' ports
])
def test_unusual_port_follows_the_site_files_ports(tmp_path, ports, alerts):
    """modbus_port5020 is normal polling on 5020: quiet once the site gives Modbus that port."""
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(maintenance=SATURDAY_LATE, writers="$hmi, $ews") + f"ports: {ports}\n")
    assert _summary(_alerts(PCAPS / "modbus_port5020.pcap", load_site(site))) == alerts


def test_normal_polling_is_silent_and_every_request_was_seen(tmp_path):
    """Silence must not come from rules that saw nothing: with a site that makes the
    poller a stranger, the read rule fires on each of its 250 requests."""
    stranger = SITE.format(maintenance=SATURDAY_LATE, writers="$hmi").replace("hmi: [127.0.0.10]", "hmi: [127.0.0.11]")
    (tmp_path / "stranger.yaml").write_text(stranger)
    alerts = _alerts(PCAPS / "modbus_polling.pcap", load_site(tmp_path / "stranger.yaml"))
    assert _summary(alerts) == [("modbus.read_from_unexpected_host", HMI, PLC, 250)]
    assert _summary(_alerts(PCAPS / "modbus_polling.pcap", _site(tmp_path))) == []


def test_diagnostics_subfunctions(tmp_path):
    alerts = _alerts(PCAPS / "modbus_diagnostics.pcap", _site(tmp_path))
    assert _evidence(alerts["modbus.restart_communications"], "subfunction") == [1]
    assert _evidence(alerts["modbus.clear_counters"], "subfunction") == [10]
    assert _evidence(alerts["modbus.device_identification"], "function") == \
        ["report_server_id"] + ["read_device_identification"] * 4


def test_illegal_address_scan_names_the_client(tmp_path):
    alert = _alerts(PCAPS / "modbus_exceptions.pcap", _site(tmp_path))["modbus.points_list_scan"]
    assert (alert.src, alert.dst) == (HMI, PLC)
    assert _evidence(alert, "exception_code") == [2] * 5 and _evidence(alert, "direction") == ["response"] * 5


def test_write_outside_maintenance(tmp_path):
    """The same seven writes of the HMI: inside the window quiet, outside it an alert each."""
    alerts = _alerts(PCAPS / "modbus_writes.pcap", _site(tmp_path, maintenance=NIGHT_SHIFT))
    assert _summary(alerts) == [("modbus.write_outside_maintenance", HMI, PLC, 7)]
    assert _summary(_alerts(PCAPS / "modbus_writes.pcap", _site(tmp_path, maintenance=SATURDAY_LATE))) == []


def test_write_not_permitted_follows_the_writers(tmp_path):
    """The HMI's seven writes when the site lets only the EWS write to the PLC (five kept as evidence)."""
    alerts = _alerts(PCAPS / "modbus_writes.pcap", _site(tmp_path, writers="$ews"))
    assert _summary(alerts) == [("modbus.write_not_permitted", HMI, PLC, 7)]
    assert sorted(_evidence(alerts["modbus.write_not_permitted"], "function")) == sorted([
        "write_single_coil", "write_single_coil", "write_single_register", "write_multiple_coils",
        "write_multiple_registers"])


# --------------------------------------------------------------------------- #
# Every rule of the two packs is covered above
# --------------------------------------------------------------------------- #
SITE_TESTS = {"modbus.write_outside_maintenance", "modbus.write_not_permitted", "modbus.read_from_unexpected_host"}


def test_every_modbus_and_generic_rule_fires_somewhere():
    shipped = {entry["id"] for name in ("modbus.yaml", "generic.yaml") for entry in yamlfile.load(RULES / name)}
    fired = {row[0] for rows in [*EXPECTED_LIVE.values(), *EXPECTED_COMMITTED.values()] for row in rows}
    assert fired | SITE_TESTS == shipped
    assert len(shipped) == 18
