"""The OPC UA rule tests' site file and alert helpers."""

from __future__ import annotations

from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import load_rules
from icsguard.detect.site import load_site
from tests.support import REPO

RULES = REPO / "rules" / "opcua.yaml"


SERVER, CLIENT, ROGUE = "127.0.0.2", "127.0.0.10", "127.0.0.66"


# the harness's hosts: the PLC-like server, the HMI; 127.0.0.66 is named nowhere
SITE = f"""\
zones: {{control: [127.0.0.0/24]}}
roles: {{plc: [{SERVER}], hmi: [{CLIENT}], ews: [127.0.0.20]}}
writers: [{{to: [$plc], from: [$hmi]}}]
"""


# the same plant, but the file does not name 127.0.0.10: it is neither HMI nor writer
OTHER_HMI_SITE = SITE.replace(f"hmi: [{CLIENT}]", "hmi: [127.0.0.30]")


def site_file(tmp_path, text: str = SITE):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_site(path)


def alerts_by_rule(events, site) -> dict[str, object]:
    """Alerts by rule id (each rule folds into one alert per client and server here)."""
    rules = load_rules([RULES], site=site)
    assert not rules.inactive
    detector = RuleDetector(rules)
    alerts = []
    for event in events:
        alerts += detector.feed(event)
    alerts += detector.flush()
    by_rule = {}
    for alert in alerts:
        assert alert.rule not in by_rule, f"{alert.rule} raised twice: {alerts}"
        by_rule[alert.rule] = alert
    return by_rule

