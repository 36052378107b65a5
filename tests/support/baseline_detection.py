"""Running the baseline and the model over captures, as analyze --model does."""

from __future__ import annotations

from icsguard.analysis import decode
from icsguard.detect.baseline import MATURE_SECONDS, BaselineDetector
from icsguard.detect.model import ModelDetector

PLC, HMI, HISTORIAN, ROGUE = "127.0.0.2", "127.0.0.10", "127.0.0.11", "127.0.0.66"


def detect(learned, *paths) -> list:
    """Every baseline and model alert over the captures, as ``analyze --model`` raises them."""
    detectors = [BaselineDetector(learned.baseline)]
    if learned.model.ready:
        detectors.append(ModelDetector(learned.model, learned.baseline))
    alerts = []
    for event in decode([str(p) for p in paths], conversations=True):
        for detector in detectors:
            alerts += detector.feed(event)
    for detector in detectors:
        alerts += detector.flush()
    for alert in alerts:                 # every alert explains itself
        whys = [entry["why"] for entry in alert.evidence]
        assert whys and all(isinstance(why, str) and why for why in whys), alert
        assert alert.title.endswith(": " + whys[0]), alert.title
        assert alert.detector == ("ml" if alert.rule.startswith("ml.") else "baseline")
    return alerts


def whys_of(alert) -> list[str]:
    return [entry["why"] for entry in alert.evidence]



def watched_long(learned):
    """A model learned from a minute or two of live peers, taken as watched for an hour: the
    tests that use it check what is new, not how sure the baseline is of it."""
    baseline = learned.baseline
    baseline.observed = max(baseline.observed or 0.0, MATURE_SECONDS)
    for seen in baseline.watched.values():
        seen[2] = max(seen[2], MATURE_SECONDS)
    return learned
