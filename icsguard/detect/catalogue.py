"""Every alert id icsguard can raise, the rule packs' and the detectors' own: a mute of a
misspelt id would otherwise be kept and silence nothing."""

from __future__ import annotations

from icsguard.detect import baseline, health, identity, model
from icsguard.detect.rules import RuleSet


def alert_ids(rules: RuleSet) -> set[str]:
    detectors = {finding.rule for finding in (health.DROPS, health.GAPS, health.SILENT, model.FINDING,
                                                             identity.CHANGED, identity.NEW_MAC)}
    return ({rule.id for rule in rules.rules} | set(rules.inactive) | detectors
            | {f"baseline.{key}" for key in baseline.FINDINGS})
