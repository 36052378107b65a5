"""Findings folded into Alerts, the same way for every detector: repeats of one finding
between the same two hosts become one alert with a count, first and last time and a few
events as evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from icsguard.events import Event

AGGREGATE_SECONDS = 600.0     # a repeat later than this after the last one opens a new alert
MAX_EVIDENCE = 5
MAX_OPEN = 10_000             # alerts still folding repeats in; beyond, the oldest is closed
MAX_LIST = 10                 # elements kept of a list field in evidence


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


class Folding:
    """Repeats of one finding (rule and severity) between the same two hosts fold into one
    alert until a gap of AGGREGATE_SECONDS; muted (rule, source) pairs raise nothing.
    Shared by the rule engine, the baseline and the model, so their alerts read and count alike."""

    def __init__(self, muted: set[tuple[str, str | None]] | None = None):
        self.muted = muted or set()
        self.open: dict[tuple[str, str, str, str], Alert] = {}
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
        key = (finding.rule, finding.severity, src, subject or dst)
        alert = self.open.get(key)
        closed = []
        if alert is not None and ts - alert.last_ts <= AGGREGATE_SECONDS:
            alert.count += 1
            alert.last_ts = ts
            if len(alert.evidence) < MAX_EVIDENCE:
                alert.evidence.append(evidence())
            self.touched[id(alert)] = alert
            return closed
        if alert is not None:
            closed.append(self.open.pop(key))
        elif len(self.open) >= MAX_OPEN:
            closed.append(self.open.pop(next(iter(self.open))))
        title = f"{finding.title}: {detail}" if detail else finding.title
        alert = self.open[key] = Alert(ts, finding.severity, finding.rule, title, proto, src, dst,
                                       detector=finding.detector, mitre=finding.mitre, first_ts=ts, last_ts=ts,
                                       evidence=[evidence()], sid=finding.sid)
        self.touched[id(alert)] = alert
        return closed

    def drain(self) -> list[Alert]:
        """The alerts raised or grown since the last call, for the store to write as they fold."""
        alerts = list(self.touched.values())
        self.touched.clear()
        return alerts

    def flush(self) -> list[Alert]:
        """Every alert still open: at the end of a capture."""
        alerts = list(self.open.values())
        self.open.clear()
        return alerts
