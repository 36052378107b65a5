"""The S7 rule tests' site file and alert helpers."""

from __future__ import annotations

from icsguard.analysis import decode
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.site import load_site

PLC, HMI, EWS, STRANGER = "127.0.0.2", "127.0.0.10", "127.0.0.20", "127.0.0.66"


SITE = f"""\
zones: {{control: [127.0.0.0/24]}}
roles: {{plc: [{PLC}], hmi: [{HMI}], ews: [{EWS}]}}
writers: [{{to: [$plc], from: [$hmi]}}]
"""


SITE_DEPENDENT = {"s7.write_not_permitted", "s7.write_from_non_operator",
                  "s7plus.set_or_invoke_from_unexpected_host"}


def site_file(tmp_path, text: str = SITE, name: str = "site.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return load_site(path)


def alerts_of(rules, *captures) -> list:
    detector = RuleDetector(rules)
    alerts = []
    for event in decode([str(c) for c in captures]):
        alerts += detector.feed(event)
    return alerts + detector.flush()


def summary(alerts) -> list[tuple]:
    """(rule, count, src, dst) of every alert, sorted."""
    return sorted((a.rule, a.count, a.src, a.dst) for a in alerts)

