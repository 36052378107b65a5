"""Detection: Events into Alerts — the rule engine, and the folding all detectors share.

Rule tests are answered per field and remembered (see RuleSet), so the cost per event
grows with the fields the rules test, not with the number of rules. Thresholds ("five exceptions from one source
in 60 s") keep their state per group, bounded; repeats of one rule between the same two
hosts fold into one alert with a count, first and last time and a few events as evidence.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from icsguard.bounded import remember
from icsguard.events import Event
from icsguard.detect.rules import Rule, RuleSet, resolve

AGGREGATE_SECONDS = 600.0     # a repeat later than this after the last one opens a new alert
MAX_EVIDENCE = 5
MAX_OPEN = 10_000             # alerts still folding repeats in; beyond, the oldest is closed
MAX_GROUPS = 100_000          # threshold groups remembered; beyond, the oldest is forgotten
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
            return closed
        if alert is not None:
            closed.append(self.open.pop(key))
        elif len(self.open) >= MAX_OPEN:
            closed.append(self.open.pop(next(iter(self.open))))
        title = f"{finding.title}: {detail}" if detail else finding.title
        self.open[key] = Alert(ts, finding.severity, finding.rule, title, proto, src, dst,
                               detector=finding.detector, mitre=finding.mitre, first_ts=ts, last_ts=ts,
                               evidence=[evidence()], sid=finding.sid)
        return closed

    def flush(self) -> list[Alert]:
        """Every alert still open: at the end of a capture."""
        alerts = list(self.open.values())
        self.open.clear()
        return alerts


class Detector:
    """The rule engine as a detector: ``feed(event) -> alerts``, ``flush() -> alerts``."""

    def __init__(self, rules: RuleSet, muted: set[tuple[str, str | None]] | None = None):
        self.rules = rules
        self.folding = Folding(muted)
        self.groups: dict[tuple, deque | dict] = {}
        self.findings: dict[str, Finding] = {}

    @property
    def matches(self) -> int:
        return self.folding.raised

    @property
    def suppressed(self) -> int:
        return self.folding.suppressed

    def feed(self, event: Event) -> list[Alert]:
        """Alerts that are complete now (a repeat came too late to join them)."""
        closed: list[Alert] = []
        for rule in self.rules.matching(event):
            if rule.threshold is not None and not self._over_threshold(rule, event):
                continue
            finding = self.findings.get(rule.id)
            if finding is None:
                finding = self.findings[rule.id] = Finding(rule.id, rule.title, rule.severity,
                                                           mitre=rule.mitre, sid=rule.sid)
            src, dst = actors(event)
            closed += self.folding.add(finding, event.ts, event.proto, src, dst, lambda: compact(event))
        return closed

    def flush(self) -> list[Alert]:
        return self.folding.flush()

    def _over_threshold(self, rule: Rule, event: Event) -> bool:
        """Whether this match makes ``count`` within ``seconds`` for its group (or, with
        ``distinct``, is a new value that makes ``count`` different values of that field)."""
        threshold = rule.threshold
        group = (rule.id, *(hashable(resolve(event, tuple(name.split(".")))) for name in threshold.by))
        state = self.groups.get(group)
        if state is None:
            state = {} if threshold.distinct else deque(maxlen=threshold.count)
            remember(self.groups, group, state, MAX_GROUPS)
        horizon = event.ts - threshold.seconds
        if threshold.distinct is None:
            state.append(event.ts)
            return len(state) == threshold.count and state[0] >= horizon
        value = hashable(resolve(event, tuple(threshold.distinct.split("."))))
        new = state.pop(value, None) is None
        state[value] = event.ts                       # newest last
        while state and next(iter(state.values())) < horizon:
            del state[next(iter(state))]
        while len(state) > threshold.count * 4:       # enough to know the count is reached
            del state[next(iter(state))]
        return new and len(state) >= threshold.count  # each further new value counts once


def actors(event: Event) -> tuple[str, str]:
    """Who acted and on whom: on a response (an exception, a refused login) that is the
    client it answers, not the server that answered."""
    return (event.dst, event.src) if event.direction == "response" else (event.src, event.dst)


def hashable(value: Any) -> Any:
    """A value usable as a key: lists become tuples, mappings sorted tuples of items."""
    if isinstance(value, (list, tuple)):
        return tuple(hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, hashable(v)) for k, v in value.items()))
    return value
