"""Folding findings into alerts: repeats join until a gap, a posture finding never closes."""

from __future__ import annotations

import pytest

from icsguard.detect.folding import AGGREGATE_SECONDS, Finding, Folding
from icsguard.detect.rules import load_rules
from icsguard.detect.yamlfile import FileError

pytestmark = pytest.mark.unit


def _fold(finding: Finding, times: list[float]) -> list:
    folding = Folding()
    closed = []
    for ts in times:
        closed += folding.add(finding, ts, "opcua", "10.0.0.5", "10.0.0.9", lambda: {})
    return closed + folding.flush()


def test_a_posture_finding_is_one_alert_however_far_apart_its_sightings():
    times = [0.0, AGGREGATE_SECONDS * 3, AGGREGATE_SECONDS * 9]
    attack = _fold(Finding("a.rule", "t", "low"), times)
    posture = _fold(Finding("p.rule", "t", "low", category="posture"), times)
    assert [a.count for a in attack] == [1, 1, 1] and {a.category for a in attack} == {"attack"}
    assert [(a.count, a.category, a.last_ts) for a in posture] == [(3, "posture", times[-1])]


def test_categories_come_from_the_detector_unless_a_rule_says_posture(tmp_path):
    assert Finding("b", "t", "low", "baseline").category == "anomaly"
    assert Finding("s", "t", "low", "sensor").category == "health"
    rules = tmp_path / "r.yaml"
    rules.write_text("- {id: x.y, title: T, severity: low, category: posture, match: {function: f}}\n")
    assert load_rules([rules]).rules[0].category == "posture"
    rules.write_text("- {id: x.y, title: T, severity: low, category: weak, match: {function: f}}\n")
    with pytest.raises(FileError, match="category 'weak' is not one of attack, posture"):
        load_rules([rules])
