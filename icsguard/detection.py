"""Detection: Events through the rules into Alerts.

Rule tests are answered per field and remembered (see RuleSet), so the cost per event
grows with the fields the rules test, not with the number of rules. Thresholds ("five exceptions from one source
in 60 s") keep their state per group, bounded; repeats of one rule between the same two
hosts fold into one alert with a count, first and last time and a few events as evidence.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from icsguard.bounded import remember
from icsguard.events import Event
from icsguard.rules import Rule, RuleSet, resolve

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


class Detector:
    def __init__(self, rules: RuleSet, muted: set[tuple[str, str | None]] | None = None):
        self.rules = rules
        self.muted = muted or set()
        self.open: dict[tuple[str, str, str], Alert] = {}
        self.groups: dict[tuple, deque | dict] = {}
        self.matches = 0
        self.suppressed = 0

    def feed(self, event: Event) -> list[Alert]:
        """Alerts that are complete now (a repeat came too late to join them)."""
        closed: list[Alert] = []
        for rule in self.rules.matching(event):
            if rule.threshold is not None and not self._over_threshold(rule, event):
                continue
            if (rule.id, _actors(event)[0]) in self.muted or (rule.id, None) in self.muted:
                self.suppressed += 1
                continue
            self.matches += 1
            closed += self._raise(rule, event)
        return closed

    def flush(self) -> list[Alert]:
        """Every alert still open: at the end of a capture."""
        alerts = list(self.open.values())
        self.open.clear()
        return alerts

    def _raise(self, rule: Rule, event: Event) -> list[Alert]:
        src, dst = _actors(event)
        key = (rule.id, src, dst)
        alert = self.open.get(key)
        closed = []
        if alert is not None and event.ts - alert.last_ts <= AGGREGATE_SECONDS:
            alert.count += 1
            alert.last_ts = event.ts
            if len(alert.evidence) < MAX_EVIDENCE:
                alert.evidence.append(compact(event))
            return closed
        if alert is not None:
            closed.append(self.open.pop(key))
        elif len(self.open) >= MAX_OPEN:
            closed.append(self.open.pop(next(iter(self.open))))
        self.open[key] = Alert(event.ts, rule.severity, rule.id, rule.title, event.proto, src, dst,
                               mitre=rule.mitre, first_ts=event.ts, last_ts=event.ts,
                               evidence=[compact(event)], sid=rule.sid)
        return closed

    def _over_threshold(self, rule: Rule, event: Event) -> bool:
        """Whether this match makes ``count`` within ``seconds`` for its group (or, with
        ``distinct``, is a new value that makes ``count`` different values of that field)."""
        threshold = rule.threshold
        group = (rule.id, *(_hashable(resolve(event, tuple(name.split(".")))) for name in threshold.by))
        state = self.groups.get(group)
        if state is None:
            state = {} if threshold.distinct else deque(maxlen=threshold.count)
            remember(self.groups, group, state, MAX_GROUPS)
        horizon = event.ts - threshold.seconds
        if threshold.distinct is None:
            state.append(event.ts)
            return len(state) == threshold.count and state[0] >= horizon
        value = _hashable(resolve(event, tuple(threshold.distinct.split("."))))
        new = state.pop(value, None) is None
        state[value] = event.ts                       # newest last
        while state and next(iter(state.values())) < horizon:
            del state[next(iter(state))]
        while len(state) > threshold.count * 4:       # enough to know the count is reached
            del state[next(iter(state))]
        return new and len(state) >= threshold.count  # each further new value counts once


def _actors(event: Event) -> tuple[str, str]:
    """Who acted and on whom: on a response (an exception, a refused login) that is the
    client it answers, not the server that answered."""
    return (event.dst, event.src) if event.direction == "response" else (event.src, event.dst)


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value
