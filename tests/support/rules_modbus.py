"""The Modbus rule tests' site file and alert helpers."""

from __future__ import annotations

from icsguard.analysis import decode
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import load_rules
from icsguard.detect.site import load_site
from tests.support import REPO

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


def site_file(tmp_path, maintenance: str = SATURDAY_LATE, writers: str = "$hmi, $ews"):
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(maintenance=maintenance, writers=writers))
    return load_site(path)


def alerts_by_rule(path, site) -> dict[str, object]:
    """Every alert of the whole rules folder on one capture, by rule id."""
    detector = RuleDetector(load_rules([RULES], site))
    alerts = []
    for event in decode([str(path)]):
        alerts += detector.feed(event)
    alerts += detector.flush()
    by_rule = {a.rule: a for a in alerts}
    assert len(by_rule) == len(alerts), "one alert per rule expected in these short captures"
    return by_rule


def summary(alerts: dict) -> list[tuple]:
    return sorted((a.rule, a.src, a.dst, a.count) for a in alerts.values())


def evidence_of(alert, key: str) -> list:
    return [e.get(key) for e in alert.evidence]


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

