"""The shipped Modbus and generic rule packs on the committed pymodbus captures: each capture
raises exactly its alerts (rule, src, dst, count), normal polling none, and the site file's
ports, maintenance windows and writers decide what the site rules say.
"""

from __future__ import annotations

import pytest

from icsguard.detect import yamlfile
from icsguard.detect.site import load_site
from tests.support import PCAPS
from tests.support.rules_modbus import (
    EXPECTED_LIVE,
    HMI,
    PLC,
    RULES,
    SATURDAY_LATE,
    SITE,
    alerts_by_rule,
    evidence_of,
    site_file,
    summary,
)

NIGHT_SHIFT = '[{days: [sat], start: "02:00", end: "04:00"}]'


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
    assert summary(alerts_by_rule(PCAPS / f"{name}.pcap", site_file(tmp_path))) == sorted(EXPECTED_COMMITTED[name])


@pytest.mark.parametrize("ports, alerts", [
    ("{modbus: [5020]}", []),
    ("{modbus: [5000-5030]}", []),
    ("{opcua: [5020], s7comm: [5020]}", [("generic.unusual_port", HMI, PLC, 250)]),   # other protocols' ports
])
def test_unusual_port_follows_the_site_files_ports(tmp_path, ports, alerts):
    """modbus_port5020 is normal polling on 5020: quiet once the site gives Modbus that port."""
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(maintenance=SATURDAY_LATE, writers="$hmi, $ews") + f"ports: {ports}\n")
    assert summary(alerts_by_rule(PCAPS / "modbus_port5020.pcap", load_site(site))) == alerts


def test_normal_polling_is_silent_and_every_request_was_seen(tmp_path):
    """Silence must not come from rules that saw nothing: with a site that makes the
    poller a stranger, the read rule fires on each of its 250 requests."""
    stranger = SITE.format(maintenance=SATURDAY_LATE, writers="$hmi").replace("hmi: [127.0.0.10]", "hmi: [127.0.0.11]")
    (tmp_path / "stranger.yaml").write_text(stranger)
    alerts = alerts_by_rule(PCAPS / "modbus_polling.pcap", load_site(tmp_path / "stranger.yaml"))
    assert summary(alerts) == [("modbus.read_from_unexpected_host", HMI, PLC, 250)]
    assert summary(alerts_by_rule(PCAPS / "modbus_polling.pcap", site_file(tmp_path))) == []


def test_diagnostics_subfunctions(tmp_path):
    alerts = alerts_by_rule(PCAPS / "modbus_diagnostics.pcap", site_file(tmp_path))
    assert evidence_of(alerts["modbus.restart_communications"], "subfunction") == [1]
    assert evidence_of(alerts["modbus.clear_counters"], "subfunction") == [10]
    assert evidence_of(alerts["modbus.device_identification"], "function") == \
        ["report_server_id"] + ["read_device_identification"] * 4


def test_illegal_address_scan_names_the_client(tmp_path):
    alert = alerts_by_rule(PCAPS / "modbus_exceptions.pcap", site_file(tmp_path))["modbus.points_list_scan"]
    assert (alert.src, alert.dst) == (HMI, PLC)
    assert evidence_of(alert, "exception_code") == [2] * 5 and evidence_of(alert, "direction") == ["response"] * 5


def test_write_outside_maintenance(tmp_path):
    """The same seven writes of the HMI: inside the window quiet, outside it an alert each."""
    alerts = alerts_by_rule(PCAPS / "modbus_writes.pcap", site_file(tmp_path, maintenance=NIGHT_SHIFT))
    assert summary(alerts) == [("modbus.write_outside_maintenance", HMI, PLC, 7)]
    assert summary(alerts_by_rule(PCAPS / "modbus_writes.pcap", site_file(tmp_path, maintenance=SATURDAY_LATE))) == []


def test_write_not_permitted_follows_the_writers(tmp_path):
    """The HMI's seven writes when the site lets only the EWS write to the PLC (five kept as evidence)."""
    alerts = alerts_by_rule(PCAPS / "modbus_writes.pcap", site_file(tmp_path, writers="$ews"))
    assert summary(alerts) == [("modbus.write_not_permitted", HMI, PLC, 7)]
    assert sorted(evidence_of(alerts["modbus.write_not_permitted"], "function")) == sorted([
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

