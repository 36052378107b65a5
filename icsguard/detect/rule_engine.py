"""The rule engine as a detector: Events matched against the rules, thresholds applied,
findings folded into Alerts.

Rule tests are answered per field and remembered (see RuleSet), so the cost per event
grows with the fields the rules test, not with the number of rules. Thresholds ("five
exceptions from one source in 60 s") keep their state per group, bounded.
"""

from __future__ import annotations

from collections import deque
from operator import itemgetter
from typing import Any, Callable

from icsguard.bounded import remember
from icsguard.budget import Budget
from icsguard.detect.folding import Alert, Finding, Folding, compact
from icsguard.detect.rules import COMMON_INDEX, Rule, RuleSet, resolve
from icsguard.events import Event, hashable


class RuleDetector:
    """The rule engine as a detector: ``feed(event) -> alerts``, ``flush() -> alerts``."""

    def __init__(self, rules: RuleSet, muted: set[tuple[str, str | None]] | None = None,
                 budget: Budget | None = None, elsewhere: tuple[frozenset[str], Callable[[Event], None]] | None = None):
        """``budget``: how many threshold groups are remembered (beyond, the oldest are forgotten).
        ``elsewhere``: (rule ids, hand): rules counted by someone else (a shard's parent counts those
        that count across servers), to whom each event they match is handed, once; matched here
        with the others, so that an event is matched once."""
        budget = budget or Budget()
        self.rules = rules
        self.elsewhere, self.hand = elsewhere or (frozenset(), None)
        self.folding = Folding(muted, budget)
        self.max_groups = budget.entries("rule_groups")
        self.groups: dict[tuple, deque | dict] = {}
        self.findings: dict[str, Finding] = {}
        self.keys: dict[str, tuple[Callable, Callable | None]] = {}    # rule id -> (group key, distinct value)

    @property
    def matches(self) -> int:
        return self.folding.raised

    @property
    def suppressed(self) -> int:
        return self.folding.suppressed

    def feed(self, event: Event) -> list[Alert]:
        """Alerts that are complete now (a repeat came too late to join them)."""
        closed: list[Alert] = []
        handed = False
        for rule in self.rules.matching(event):
            if rule.id in self.elsewhere:
                if not handed:
                    self.hand(event)
                    handed = True
                continue
            if rule.threshold is not None and not self._over_threshold(rule, event):
                continue
            finding = self.findings.get(rule.id)
            if finding is None:
                finding = self.findings[rule.id] = Finding(rule.id, rule.title, rule.severity,
                                                           mitre=rule.mitre, sid=rule.sid, category=rule.category)
            src, dst = actors(event)
            closed += self.folding.add(finding, event.ts, event.proto, src, dst, lambda: compact(event))
        return closed

    def flush(self) -> list[Alert]:
        return self.folding.flush()

    def _over_threshold(self, rule: Rule, event: Event) -> bool:
        """Whether this match makes ``count`` within ``seconds`` for its group (or, with
        ``distinct``, is a new value that makes ``count`` different values of that field)."""
        threshold = rule.threshold
        keys = self.keys.get(rule.id)
        if keys is None:
            keys = self.keys[rule.id] = (values_of(threshold.by),
                                         values_of((threshold.distinct,)) if threshold.distinct else None)
        group = (rule.id, keys[0](event))
        state = self.groups.get(group)
        if state is None:
            state = {} if threshold.distinct else deque(maxlen=threshold.count)
            remember(self.groups, group, state, self.max_groups)
        horizon = event.ts - threshold.seconds
        if threshold.distinct is None:
            state.append(event.ts)
            return len(state) == threshold.count and state[0] >= horizon
        value = keys[1](event)
        new = state.pop(value, None) is None
        state[value] = event.ts                       # newest last
        while state and next(iter(state.values())) < horizon:
            del state[next(iter(state))]
        while len(state) > threshold.count * 4:       # enough to know the count is reached
            del state[next(iter(state))]
        return new and len(state) >= threshold.count  # each further new value counts once


def values_of(names: tuple[str, ...]) -> Callable[[Event], Any]:
    """What a threshold groups by, or counts distinct, as one function of the event: a
    common field straight from the Event's tuple, any other through its path."""
    if all(name in COMMON_INDEX for name in names):
        return itemgetter(*(COMMON_INDEX[name] for name in names))
    paths = [tuple(name.split(".")) for name in names]
    if len(paths) == 1:
        path = paths[0]
        return lambda event: hashable(resolve(event, path))
    return lambda event: tuple(hashable(resolve(event, path)) for path in paths)


def actors(event: Event) -> tuple[str, str]:
    """Who acted and on whom: on a response (an exception, a refused login) that is the
    client it answers, not the server that answered."""
    return (event.dst, event.src) if event.direction == "response" else (event.src, event.dst)
