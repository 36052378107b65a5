"""Findings folded into Alerts, the same way for every detector: repeats of one finding
between the same two hosts become one alert with a count, first and last time and a few
events as evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from icsguard.budget import Budget
from icsguard.events import Event

AGGREGATE_SECONDS = 600.0     # a repeat later than this after the last one opens a new alert
MAX_EVIDENCE = 5
FLOOD_SOURCES = 16           # a finding open on one target from this many sources: more are one flood alert
MANY = "*"                   # the source of a flood alert: many hosts (as a mute for every source)
MAX_LIST = 10                 # elements kept of a list field in evidence
# attack: an act against the process or a device; anomaly: a departure from the learned baseline;
# posture: a weak configuration seen on the wire, raised once per (rule, client, server);
# health: the sensor itself
CATEGORIES = ("attack", "anomaly", "posture", "health")
DETECTOR_CATEGORY = {"rule": "attack", "baseline": "anomaly", "ml": "anomaly", "sensor": "health"}


@dataclass
class Alert:
    """The Alert record of DESIGN.md."""
    ts: float
    severity: str
    rule: str
    title: str
    proto: str
    src: str
    dst: str
    detector: str = "rule"
    mitre: tuple[str, ...] = ()
    count: int = 1
    first_ts: float = 0.0
    last_ts: float = 0.0
    evidence: list[dict[str, Any]] = field(default_factory=list)
    status: str = "new"
    id: int | None = None
    sid: int = 0
    category: str = "attack"


def compact(event: Event) -> dict[str, Any]:
    """An event as evidence: every field, long lists cut to their first elements."""
    out = event.to_dict()
    for key, value in out.items():
        if isinstance(value, (list, tuple)) and len(value) > MAX_LIST:
            out[key] = list(value[:MAX_LIST]) + [f"... {len(value) - MAX_LIST} more"]
    return out


@dataclass(frozen=True)
class Finding:
    """One reason to alert, before repeats are folded: what every detector produces."""
    rule: str
    title: str
    severity: str
    detector: str = "rule"
    mitre: tuple[str, ...] = ()
    sid: int = 0
    category: str = ""          # "": the detector's (a rule's findings are attacks unless it says posture)

    def __post_init__(self) -> None:
        if not self.category:
            object.__setattr__(self, "category", DETECTOR_CATEGORY[self.detector])


class Folding:
    """Repeats of one finding (rule and severity) between the same two hosts fold into one
    alert until a gap of AGGREGATE_SECONDS (a posture finding, a standing weakness, never
    closes: one alert per client and server however often it is seen); muted (rule, source) pairs raise nothing. A
    finding raised on one target from more than FLOOD_SOURCES sources at once (a scan or a
    flood from spoofed addresses) folds into one alert from MANY. Shared by the rule engine,
    the baseline and the model, so their alerts read and count alike. Each of the three may
    keep a third of the budget's alerts still folding repeats in; beyond, the oldest is closed."""

    def __init__(self, muted: set[tuple[str, str | None]] | None = None, budget: Budget | None = None):
        self.muted = muted or set()
        self.capacity = (budget or Budget()).entries("open_alerts") // 3
        self.open: dict[tuple[str, str, str, str], Alert] = {}
        self.crowds: dict[tuple[str, str, str], int] = {}     # (rule, severity, target) -> open alerts
        self.touched: dict[int, Alert] = {}     # alerts new or grown since the last drain()
        self.raised = 0
        self.suppressed = 0

    def add(self, finding: Finding, ts: float, proto: str, src: str, dst: str,
            evidence: Callable[[], dict[str, Any]], detail: str | None = None,
            subject: str | None = None) -> list[Alert]:
        """Alerts that are complete now (a repeat came too late to join them). ``evidence``
        makes the evidence entry, called only when it is kept; ``detail`` completes the
        title of a new alert (what was new, which features deviated); ``subject`` folds
        findings about several destinations into one (every Internet host is one peer)."""
        if (finding.rule, src) in self.muted or (finding.rule, None) in self.muted:
            self.suppressed += 1
            return []
        self.raised += 1
        target = subject or dst
        key = (finding.rule, finding.severity, src, target)
        alert = self.open.get(key)
        if alert is None and self.crowds.get((finding.rule, finding.severity, target), 0) >= FLOOD_SOURCES:
            src, key = MANY, (finding.rule, finding.severity, MANY, target)
            alert = self.open.get(key)
        closed = []
        if alert is not None and (ts - alert.last_ts <= AGGREGATE_SECONDS or finding.category == "posture"):
            alert.count += 1
            alert.last_ts = ts
            if len(alert.evidence) < MAX_EVIDENCE:
                alert.evidence.append(evidence())
            self.touched[id(alert)] = alert
            return closed
        if alert is not None:
            closed.append(self._close(key))
        elif len(self.open) >= self.capacity:
            closed.append(self._close(next(iter(self.open))))
        if src == MANY:
            title = f"{finding.title}: from more than {FLOOD_SOURCES} sources at once"
        else:
            title = f"{finding.title}: {detail}" if detail else finding.title
            crowd = (finding.rule, finding.severity, target)
            self.crowds[crowd] = self.crowds.get(crowd, 0) + 1
        alert = self.open[key] = Alert(ts, finding.severity, finding.rule, title, proto, src, dst,
                                       detector=finding.detector, mitre=finding.mitre, first_ts=ts, last_ts=ts,
                                       evidence=[evidence()], sid=finding.sid, category=finding.category)
        self.touched[id(alert)] = alert
        return closed

    def _close(self, key: tuple[str, str, str, str]) -> Alert:
        if key[2] != MANY:
            crowd = (key[0], key[1], key[3])
            left = self.crowds[crowd] - 1
            if left:
                self.crowds[crowd] = left
            else:
                del self.crowds[crowd]
        return self.open.pop(key)

    def drain(self) -> list[Alert]:
        """The alerts raised or grown since the last call, for the store to write as they fold."""
        alerts = list(self.touched.values())
        self.touched.clear()
        return alerts

    def flush(self) -> list[Alert]:
        """Every alert still open: at the end of a capture."""
        alerts = list(self.open.values())
        self.open.clear()
        self.crowds.clear()
        return alerts
