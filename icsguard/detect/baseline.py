"""The learned baseline: allow-lists of normal operation, and the detector that checks them.

Learned from traffic believed normal: who talks to whom over which protocol or service
(every conversation, not only industrial ones); which functions each pair uses; which
registers, data blocks and nodes each function touches (as ranges); what values each
register or node takes and how fast it changes; and the period of every exchange that
repeats regularly. Anything outside that picture is a finding that says what was new.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from typing import Any

from icsguard.bounded import remember
from icsguard.budget import Budget
from icsguard.detect.folding import Alert, Finding, Folding, compact
from icsguard.detect.peers import LOCAL, peer
from icsguard.detect.rules import signature_id
from icsguard.detect.targets import MAX_LAYOUTS, Target, Targets, holders
from icsguard.events import CONVERSATIONS, ISO_ON_TCP, Event, function_kind, hashable
from icsguard.net.conversations import ANNOUNCEMENTS

MAX_PAIRS = 100_000
MAX_SPACES = 1024          # spaces (units, DBs, nodes) per pair and function; beyond, any is accepted
MAX_RANGES = 256           # address ranges per space; beyond, the hull is kept
NEIGHBOURS = 8             # addresses this close to learned ones count as learned: an HMI's buttons and
                           # setpoints sit side by side (register, coil or byte numbers; not SZLs or blocks)
MAX_VALUES = 100_000       # registers and nodes whose values are learned
MAX_CHANNELS = 50_000      # exchanges whose period is learned or watched
MAX_INTERVALS = 256        # intervals kept per exchange to estimate its period
MAX_QUIET = 16_384         # the values of a layout found in range, remembered (polls repeat a few states)
VALUE_TOLERANCE = 0.25     # a value may exceed the learned range by this share of its span,
VALUE_NOISE = 0.01         # or by this share of its size (a reading that sat at 14017 may read 14018)
RATE_FACTOR = 2.0          # a change this many times faster than any learned one is abnormal
PERIODIC_MIN = 8           # intervals needed to call an exchange periodic
PERIODIC_SPREAD = 0.2      # ... with a median absolute deviation at most this share of the period
PERIOD_MIN_SECONDS = 0.05
PERIOD_WINDOW = 8          # recent intervals compared with the learned period
PACE_BAND = 4.0            # a poller up to this many times slower or faster is drift, not a change
DRIFT_NOTED = 1.5          # ... and from this many times off its period on, drift is noted for the report
PERIODIC_COVERAGE = 0.5    # a periodic exchange ran through at least this share of the learning
RATE_MAX_GAP = 60.0        # seconds: a change across a longer gap says nothing about its rate
MAX_WRITERS = 16           # writers of one value whose last write is kept (beyond, they start afresh)
RATE_MIN_GAP = 1.0         # seconds: rates are taken over at least this (a write and its read-back
                           # milliseconds apart are not a fast change)
TWO_STATE = ("coil", "discrete_input")    # on/off values: their range matters, not their rate
SILENCE_PERIODS = 5        # a periodic exchange missing for this many periods has gone silent
SILENCE_MIN_SECONDS = 10.0
PAUSES_MIN = 3             # learned pauses (intervals past the silence wait) that make a duty cycle,
PAUSE_FACTOR = 2.0         # ... which is silent only after this many times its usual pause,
MAX_PAUSE_SECONDS = 600.0  # ... at most this long (longer gaps are most likely between captures)
MATURE_SECONDS = 3600.0    # a pair watched this long while learning is known: what it never did is news;
                           # one watched for less makes low-severity findings, folded into one per pair
WATCH_GAP = 600.0          # a longer gap between two requests is a break (another capture), not watching

# id, title, severity, ATT&CK for ICS
FINDINGS = {
    "new_talker": ("Baseline: new communication pair", "high", ("T0886",)),
    "new_function": ("Baseline: function never used by this pair", "high", ("T0855",)),
    "new_target": ("Baseline: register, data block or node never accessed by this pair", "medium", ("T0861",)),
    "value_out_of_range": ("Baseline: value outside its learned range", "high", ("T0836",)),
    "rate_of_change": ("Baseline: value changing faster than ever learned", "medium", ("T0836",)),
    "period_change": ("Baseline: periodic exchange changed its period", "low", ("T0814",)),
    "channel_silent": ("Baseline: periodic exchange went silent", "medium", ("T0804", "T0816")),
    "briefly_learned": ("Baseline: something new between hosts watched only briefly while learning", "low",
                        ("T0855", "T0861")),
}
_FINDINGS = {key: Finding(f"baseline.{key}", title, severity, "baseline", mitre, signature_id(f"baseline.{key}"))
             for key, (title, severity, mitre) in FINDINGS.items()}
# A new function or target matters most when it changes something: a function that only
# reads is one grade down, a target written one grade up.
_READING = replace(_FINDINGS["new_function"], severity="medium")
_WRITTEN = replace(_FINDINGS["new_target"], severity="high")
NOVELTY = {"baseline.new_function", "baseline.new_target"}
# In a baseline watched for less than MATURE_SECONDS in all, a new pair is one grade down.
_YOUNG_TALKER = replace(_FINDINGS["new_talker"], severity="medium")


def holder_text(holder: tuple) -> str:
    """A register, node or S7 data-block byte as people write it: ``unit 1 holding_register
    100``, ``node ns=2;i=7``, ``DB1.DBB100``."""
    if holder[0] == "node":
        return f"node {holder[1]}"
    if holder[0] == "s7":
        return f"{holder[1]}.DBB{holder[2]}"
    return f"unit {holder[0]} {holder[1]} {holder[2]}"


@dataclass
class ValueRange:
    low: float
    high: float
    max_rate: float = 0.0
    count: int = 0
    # the last value from each writer ("": the server's own answers), with its time: two HMIs
    # writing one setpoint each change it at their own pace, not at the pace of their interleaving
    recent: dict[str, tuple[float, float]] = field(default_factory=dict)

    def see(self, value: float, ts: float, writer: str = "") -> None:
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value
        self.count += 1
        last = self.recent.get(writer)
        if last is None or not 0 <= ts - last[1] <= RATE_MAX_GAP:
            if len(self.recent) >= MAX_WRITERS:
                self.recent.clear()
            self.recent[writer] = (value, ts)
        elif ts - last[1] >= RATE_MIN_GAP:
            self.max_rate = max(self.max_rate, abs(value - last[0]) / (ts - last[1]))
            self.recent[writer] = (value, ts)


@dataclass
class Channel:
    intervals: list[float] = field(default_factory=list)       # the latest MAX_INTERVALS (a poller that
                                                               # drifted while learning goes on: its pace now)
    count: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    pauses: list[float] = field(default_factory=list)          # intervals of SILENCE_MIN_SECONDS to
                                                               # MAX_PAUSE_SECONDS, the latest MAX_INTERVALS

    def see(self, ts: float) -> None:
        if self.last_ts is not None and ts > self.last_ts:
            interval = ts - self.last_ts
            _keep(self.intervals, interval, self.count)
            if SILENCE_MIN_SECONDS <= interval <= MAX_PAUSE_SECONDS:
                _keep(self.pauses, interval, self.count)
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts
        self.count += 1

    def period(self, span: float) -> float | None:
        """The median interval, when the exchange is regular enough to be called periodic and
        ran through most of the ``span`` learned (a burst of writes is not a poll)."""
        if len(self.intervals) < PERIODIC_MIN or self.first_ts is None or \
                self.last_ts - self.first_ts < PERIODIC_COVERAGE * span:
            return None
        median = statistics.median(self.intervals)
        spread = statistics.median(abs(i - median) for i in self.intervals)
        return median if median >= PERIOD_MIN_SECONDS and spread <= PERIODIC_SPREAD * median else None

    def silence(self, period: float) -> float:
        """How long the exchange may pause before it is silent: a few periods, or, for one
        that learned to pause again and again (bursts every minute), twice its usual pause,
        up to MAX_PAUSE_SECONDS."""
        wait = max(SILENCE_PERIODS * period, SILENCE_MIN_SECONDS)
        pauses = [interval for interval in self.pauses if interval > wait]
        if len(pauses) < PAUSES_MIN:
            return wait
        return max(wait, min(PAUSE_FACTOR * statistics.median(pauses), MAX_PAUSE_SECONDS))


@dataclass
class Baseline:
    """What normal looks like; built by ``learn``, saved in the model file."""
    pairs: dict[tuple, dict[str, int]] = field(default_factory=dict)      # (client, server, proto) -> function counts
    spaces: dict[tuple, dict[str, list[list[int]] | None]] = field(default_factory=dict)
    values: dict[tuple, ValueRange] = field(default_factory=dict)         # (server, proto, holder)
    channels: dict[tuple, Channel] = field(default_factory=dict)
    # (client, server, proto) -> [first request, last request, seconds watched]; a pair missing
    # here (a model file from before) counts as watched long enough
    watched: dict[tuple, list[float]] = field(default_factory=dict)
    events: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    observed: float | None = None          # seconds of traffic learned, breaks left out (None: not known)
    _answers: dict[tuple, bool] = field(default_factory=dict, repr=False, compare=False)

    @property
    def span(self) -> float:
        return self.last_ts - self.first_ts if self.first_ts is not None else 0.0

    def maturity(self, pair: tuple) -> float | None:
        """Seconds the pair was watched while learning, when less than MATURE_SECONDS; None
        for a pair known well enough (or learned before pairs were timed)."""
        seen = self.watched.get(pair)
        return seen[2] if seen is not None and seen[2] < MATURE_SECONDS else None

    @property
    def young(self) -> bool:
        """Whether the whole baseline was watched for less than MATURE_SECONDS."""
        return self.observed is not None and self.observed < MATURE_SECONDS

    def briefly_watched(self) -> list[tuple]:
        """The industrial pairs watched for less than MATURE_SECONDS: their news is weak."""
        return [pair for pair, seen in self.watched.items() if seen[2] < MATURE_SECONDS]

    def maturity_text(self) -> str:
        return maturity_text(self.observed, len(self.briefly_watched()), len(self.watched))

    def learn(self, event: Event, targets: Targets) -> None:
        self.events += 1
        ts = event.ts
        if self.first_ts is None:
            self.first_ts, self.observed = ts, 0.0
        elif self.observed is not None and 0 < ts - self.last_ts <= WATCH_GAP:
            self.observed += ts - self.last_ts
        self.last_ts = ts
        conversation = event.proto in CONVERSATIONS
        if event.direction != "request":
            self._learn_values(event, targets)
            if not conversation:
                self._learn_answered(event)
            return
        pair = (event.src, peer(event.src, event.dst) if conversation else event.dst, event.proto)
        functions = self.pairs.get(pair)
        if functions is None:
            if len(self.pairs) >= MAX_PAIRS:
                return
            functions = self.pairs[pair] = {}
        functions[event.function] = functions.get(event.function, 0) + 1
        if conversation:
            return
        if self.observed is not None:           # (a model from before timing: its pairs count as known)
            _watch(self.watched, pair, ts)
        self._learn_targets(pair + (event.function,), targets.of(event))
        self._learn_values(event, targets)
        key = targets.channel(event)
        channel = self.channels.get(key)
        if channel is None:
            if len(self.channels) >= MAX_CHANNELS:
                return
            channel = self.channels[key] = Channel()
        channel.see(event.ts)

    def _learn_answered(self, event: Event) -> None:
        """A response teaches who talks to whom, not what was asked (functions are the requests'):
        a tap that carries one direction only, or a capture begun mid-poll, shows answers whose
        questions were never seen, and their pair is no new talker next time."""
        pair = (event.dst, event.src, event.proto)
        if pair not in self.pairs:
            if len(self.pairs) >= MAX_PAIRS:
                return
            self.pairs[pair] = {}
        if self.observed is not None:
            _watch(self.watched, pair, event.ts)

    def _learn_targets(self, key: tuple, touched: tuple[Target, ...]) -> None:
        if self._answers:
            self._answers.clear()
        spaces = self.spaces.setdefault(key, {})
        for space, first, last in touched:
            if space not in spaces:
                if len(spaces) >= MAX_SPACES:
                    self.spaces[key] = {"*": None}
                    return
                spaces[space] = [] if first is not None else None
            ranges = spaces[space]
            if ranges is not None and first is not None:
                _add_range(ranges, first, last)

    def _learn_values(self, event: Event, targets: Targets) -> None:
        server = event.dst if event.direction == "request" else event.src
        for holder, value in targets.values(event):
            key = (server, event.proto, holder)
            known = self.values.get(key)
            if known is None:
                if len(self.values) >= MAX_VALUES:
                    continue
                known = self.values[key] = ValueRange(value, value)
            known.see(value, event.ts, event.src if event.direction == "request" else "")

    def covers(self, key: tuple, space: str, first: int | None, last: int | None) -> bool:
        """Whether the learned (pair, function) touched all of first..last in the space, or
        addresses next to it (answers remembered: polls ask the same question all the time)."""
        question = (key, space, first, last)
        answer = self._answers.get(question)
        if answer is None:
            spaces = self.spaces.get(key)
            if spaces is None or ("*" not in spaces and space not in spaces):
                answer = False
            else:
                ranges = spaces.get(space)
                reach = 0 if space == "SZL" or space.startswith("block ") else NEIGHBOURS
                answer = "*" in spaces or ranges is None or first is None or \
                    any(lo - reach <= first and last <= hi + reach for lo, hi in ranges)
            remember(self._answers, question, answer, MAX_VALUES)
        return answer

    def merge(self, other: Baseline) -> None:
        """Add what another baseline learned: a shard's, whose servers are its own (so most
        of what it holds is new here; what both hold, conversations with the Internet or the
        local network, adds up). A shard watched only its servers' traffic: the longer
        watch of the two stands for the capture's."""
        self.events += other.events
        if other.first_ts is not None:
            self.first_ts = other.first_ts if self.first_ts is None else min(self.first_ts, other.first_ts)
            self.last_ts = other.last_ts if self.last_ts is None else max(self.last_ts, other.last_ts)
        if other.observed is not None:
            self.observed = max(self.observed or 0.0, other.observed)
        for pair, functions in other.pairs.items():
            mine = self.pairs.setdefault(pair, {})
            for function, count in functions.items():
                mine[function] = mine.get(function, 0) + count
        for pair, (first, last, seconds) in other.watched.items():
            seen = self.watched.get(pair)
            self.watched[pair] = [first, last, seconds] if seen is None else \
                [min(seen[0], first), max(seen[1], last), seen[2] + seconds]
        for key, spaces in other.spaces.items():
            self.spaces.setdefault(key, {})
            for space, ranges in spaces.items():
                self._learn_targets(key, [(space, None, None)] if ranges is None else
                                    [(space, lo, hi) for lo, hi in ranges])
        for key, value in other.values.items():
            mine = self.values.get(key)
            if mine is None:
                self.values[key] = value
            else:
                mine.low, mine.high = min(mine.low, value.low), max(mine.high, value.high)
                mine.max_rate, mine.count = max(mine.max_rate, value.max_rate), mine.count + value.count
        for key, channel in other.channels.items():
            self.channels.setdefault(key, channel)

    # --- the model file's JSON form ---

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events, "first_ts": self.first_ts, "last_ts": self.last_ts, "observed": self.observed,
            "pairs": [{"client": c, "server": s, "proto": p, "functions": f, "watched": self.watched.get((c, s, p))}
                      for (c, s, p), f in self.pairs.items()],
            "targets": [{"client": c, "server": s, "proto": p, "function": fn, "spaces": sp}
                        for (c, s, p, fn), sp in self.spaces.items()],
            "values": [{"server": s, "proto": p, "holder": list(h), "low": v.low, "high": v.high,
                        "max_rate": v.max_rate, "count": v.count} for (s, p, h), v in self.values.items()],
            "channels": [{"client": c, "server": s, "proto": p, "function": fn, "detail": _thaw(d),
                          "count": ch.count, "first_ts": ch.first_ts, "last_ts": ch.last_ts,
                          "intervals": [round(i, 6) for i in ch.intervals],
                          "pauses": [round(i, 6) for i in ch.pauses]}
                         for (c, s, p, fn, d), ch in self.channels.items() if len(ch.intervals) >= 2],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Baseline:
        baseline = cls(events=int(data["events"]), first_ts=optional_time(data["first_ts"]),
                       last_ts=optional_time(data["last_ts"]), observed=optional_time(data.get("observed")))
        for row in data["pairs"]:
            pair = (row["client"], row["server"], row["proto"])
            baseline.pairs[pair] = {k: int(v) for k, v in row["functions"].items()}
            if row.get("watched") is not None:
                first, last, seconds = map(float, row["watched"])
                baseline.watched[pair] = [first, last, seconds]
        for row in data["targets"]:
            baseline.spaces[(row["client"], row["server"], row["proto"], row["function"])] = {
                space: None if ranges is None else [[int(lo), int(hi)] for lo, hi in ranges]
                for space, ranges in row["spaces"].items()}
        for row in data["values"]:
            baseline.values[(row["server"], row["proto"], tuple(row["holder"]))] = ValueRange(
                float(row["low"]), float(row["high"]), float(row["max_rate"]), int(row["count"]))
        for row in data["channels"]:
            key = (row["client"], row["server"], row["proto"], row["function"], hashable(row["detail"]))
            baseline.channels[key] = Channel([float(i) for i in row["intervals"]], int(row["count"]),
                                             optional_time(row["first_ts"]), optional_time(row["last_ts"]),
                                             [float(i) for i in row["pauses"]])
        return baseline

    def periodic(self) -> dict[tuple, float]:
        """The exchanges regular enough to watch, with their periods."""
        found = {}
        span = self.span
        for key, channel in self.channels.items():
            period = channel.period(span)
            if period is not None:
                found[key] = period
        return found


def _keep(kept: list[float], value: float, seen: int) -> None:
    """Keep the latest MAX_INTERVALS values: once full, each new one takes the place of the
    one MAX_INTERVALS before it (their order does not matter to a median)."""
    if len(kept) < MAX_INTERVALS:
        kept.append(value)
    else:
        kept[seen % MAX_INTERVALS] = value


def maturity_text(observed: float | None, briefly: int, pairs: int) -> str:
    """How much a baseline has seen, in a line for the report and `model show`: seconds
    ``observed`` in all, and how many of its timed ``pairs`` were watched only ``briefly``."""
    if observed is None:
        return "not timed (learned before icsguard timed its baselines)"
    hours = f"{MATURE_SECONDS / 3600:g} h"
    text = f"watched {watched_text(observed)} in all"
    if observed < MATURE_SECONDS:
        return text + f", under {hours}: new pairs are medium, their new functions or targets low"
    if briefly:
        return text + f"; {briefly:,} of {pairs:,} pairs watched under {hours}: what they do new is low"
    return text + f"; every pair watched {hours} or more"


def watched_text(seconds: float) -> str:
    """How long something was watched, as people say it."""
    if seconds < 60:
        return "under a minute"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _watch(watched: dict[tuple, list[float]], pair: tuple, ts: float) -> None:
    """Time a pair was watched: its messages' gaps, breaks between captures left out."""
    seen = watched.get(pair)
    if seen is None:
        if len(watched) < MAX_PAIRS:
            watched[pair] = [ts, ts, 0.0]
        return
    if 0 < ts - seen[1] <= WATCH_GAP:
        seen[2] += ts - seen[1]
    if ts > seen[1]:
        seen[1] = ts


# what every connection of a protocol opens or closes with: on a pair learned after its
# connection was up (learning began mid-session), a reconnect, not a new function
CONNECTING = {
    "opcua": frozenset({"Hello", "OpenSecureChannel", "OpenSecureChannelRequest", "GetEndpointsRequest",
                        "CreateSessionRequest", "ActivateSessionRequest", "CloseSessionRequest",
                        "CloseSecureChannel", "CloseSecureChannelRequest"}),
    "s7comm": frozenset({"setup_communication"}),
}


def _reconnecting(proto: str, function: str) -> bool:
    return function in CONNECTING.get(proto, ())


def _announced(known: str, service: str, learned: dict[str, int]) -> bool:
    """An announcement to the local network by a host that learned to announce itself."""
    return known == LOCAL and service in ANNOUNCEMENTS and not ANNOUNCEMENTS.isdisjoint(learned)


def optional_time(value: Any) -> float | None:
    """A time read from a model file: epoch seconds, or None (never learned, never updated)."""
    return None if value is None else float(value)


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _add_range(ranges: list[list[int]], first: int, last: int) -> None:
    """Add first..last to sorted ranges, merging those that overlap or touch."""
    for lo, hi in ranges:
        if lo <= first and last <= hi:
            return
    ranges.append([first, last])
    ranges.sort()
    merged = [ranges[0]]
    for lo, hi in ranges[1:]:
        if lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    if len(merged) > MAX_RANGES:
        merged = [[merged[0][0], merged[-1][1]]]
    ranges[:] = merged


class BaselineDetector:
    """Checks Events against a Baseline: ``feed(event) -> alerts``, ``flush() -> alerts``."""
    name = "baseline"

    def __init__(self, baseline: Baseline, muted: set[tuple[str, str | None]] | None = None,
                 targets: Targets | None = None, budget: Budget | None = None):
        """``targets``: the run's, shared with the model's windows so each request is worked out once."""
        self.baseline = baseline
        self.targets = targets or Targets()
        self.folding = Folding(muted, budget)
        # one entry per periodic exchange, so that a request's channel is looked up once
        self.watch = {key: _Watch(period, baseline.channels[key].silence(period))
                      for key, period in baseline.periodic().items()}
        self.seen: list[tuple[tuple, _Watch]] = []             # ... those seen in this run, for the sweep
        self.active: dict[tuple, float] = {}                  # (client, server, proto) -> last request,
        self.watched = {key[:3] for key in self.watch}         # ... for the pairs of periodic exchanges
        self.layouts: dict[tuple, list] = {}                   # (server, proto, layout) -> per value: what it may be
        self.values: dict[tuple, tuple[float, float]] = {}    # holder -> (last value, when)
        self.quiet: dict[tuple, None] = {}                     # PDUs' values known to be in range
        self.valued = {(server, proto) for server, proto, _ in baseline.values}
        self.checked: dict[tuple, None] = {}                   # requests whose targets were all learned
        # requests without values found known, as a whole -> (pair, pair watched, periodic exchange)
        self.steady: dict[tuple, tuple] = {}
        # (client, server, proto, function) -> [learned period, latest pace, first and last seen]:
        # pollers off their period within PACE_BAND, noted, not alerted; those changed since take_drifts
        self.drifts: dict[tuple, list[float]] = {}
        self.drifted: set[tuple] = set()
        self.next_sweep = 0.0

    def feed(self, event: Event) -> list[Alert]:
        closed: list[Alert] = []
        if event.ts >= self.next_sweep:           # silences up to this event, before it counts
            for finding, key, last, why in self._sweep(event.ts):
                closed += self.folding.add(finding, event.ts, key[2], key[0], key[1],
                                           lambda: {"why": why, "last_seen": last, "function": key[3]}, why)
        found = self.findings(event)
        if found:
            conversation = event.proto in CONVERSATIONS
            for finding, src, dst, why in found:
                closed += self.folding.add(finding, event.ts, event.proto, src, dst,
                                           lambda: dict(compact(event), why=why), why,
                                           peer(src, dst) if conversation else None)
        return closed

    def flush(self) -> list[Alert]:
        return self.folding.flush()

    def findings(self, event: Event) -> list[tuple[Finding, str, str, str]]:
        """(finding, who acted, on whom, why) for one event; silences are found by _sweep."""
        request = event.direction == "request"
        conversation = event.proto in CONVERSATIONS
        if not request and conversation:
            return []
        if request and not conversation:
            channel = self.targets.channel(event)
            steady = self.steady.get(channel)
            if steady is not None:          # asked before and known: only its pace is left to follow
                pair, watched, watch = steady
                if watched:
                    self.active[pair] = event.ts
                found = self._check_period(event, channel, watch) if watch is not None else []
                return self._briefly_learned(pair, found) if found else found
        client, server = (event.src, event.dst) if request else (event.dst, event.src)
        known = peer(client, server) if conversation else server
        pair = (client, known, event.proto)
        functions = self.baseline.pairs.get(pair)
        if functions is None and event.proto == "cotp" and \
                any((client, server, proto) in self.baseline.pairs for proto in ISO_ON_TCP):
            return []           # a new connection of a pair learned over S7 (learning began mid-session)
        if functions is None:
            where = "" if known == server else f" to {server}"
            found = [(_YOUNG_TALKER if self.baseline.young else _FINDINGS["new_talker"], client, server,
                      f"{client} never sent {event.proto} to {known} while learning "
                      f"({event.proto} {event.function}{where})")]
        elif request and event.function not in functions and \
                not _announced(known, event.function, functions) and not _reconnecting(event.proto, event.function):
            # (only requests: responses name functions their own way)
            used = ", ".join(sorted(functions)[:8]) or "only its answers"
            finding = _READING if function_kind(event.function) == "read" else _FINDINGS["new_function"]
            found = [(finding, client, server,
                      f"{event.function} never used from {client} to {known} (learned: {used})")]
        else:
            found = []
        if conversation:
            return self._briefly_learned(pair, found) if found else found
        layout, stated = self.targets.slots(event)
        if layout is not None:                     # whoever asks, a register keeps its range
            found += self._check_values(event, client, server, layout, stated)
        watched = request and pair in self.watched
        if watched:
            self.active[pair] = event.ts
        if request and not found:
            if channel not in self.checked:          # the same request again: its targets are known
                found += self._check_targets(event)
                if not found:
                    remember(self.checked, channel, None, MAX_CHANNELS)
            watch = self.watch.get(channel)
            if not found and layout is None and function_kind(event.function) != "write":
                # a read (or control) request without values: the same answer next time
                remember(self.steady, channel, (pair, watched, watch), MAX_CHANNELS)
            if watch is not None:
                found += self._check_period(event, channel, watch)
        return self._briefly_learned(pair, found) if found else found

    def _briefly_learned(self, pair: tuple, found: list) -> list[tuple[Finding, str, str, str]]:
        """A new function or target of a pair watched only briefly while learning is weak
        news (a function used once an hour is new to a baseline that saw a minute): one
        low-severity finding for all of them, which folds into one alert per pair."""
        if pair[2] in CONVERSATIONS:          # one event a conversation: the baseline's own time counts
            seconds = self.baseline.observed if self.baseline.young else None
        else:
            seconds = self.baseline.maturity(pair)
        if seconds is None:
            return found
        return [(_FINDINGS["briefly_learned"], src, dst, f"{why} (watched {watched_text(seconds)} while learning)")
                if finding.rule in NOVELTY else (finding, src, dst, why) for finding, src, dst, why in found]

    def _check_targets(self, event: Event) -> list[tuple[Finding, str, str, str]]:
        key = (event.src, event.dst, event.proto, event.function)
        for space, first, last in self.targets.of(event):
            if not self.baseline.covers(key, space, first, last):
                at = space if first is None else f"{space} {first}" if first == last else f"{space} {first}-{last}"
                finding = _WRITTEN if function_kind(event.function) == "write" else _FINDINGS["new_target"]
                return [(finding, event.src, event.dst,
                         f"{event.function} on {at}: never accessed by {event.src} on {event.dst}")]
        return []

    def _check_values(self, event: Event, src: str, dst: str, layout: tuple,
                      stated: Any) -> list[tuple[Finding, str, str, str]]:
        """Values (as Targets.slots states them) against their learned ranges and rates. Polls
        repeat the same values: the same values in the same layout, once found in range with
        no rate to follow, are not looked at again."""
        server = event.dst if event.direction == "request" else event.src
        if (server, event.proto) not in self.valued:
            return []
        where = (server, event.proto, layout)
        quiet = where + (stated if stated.__class__ is bytes else tuple(stated),)
        try:
            if quiet in self.quiet:
                return []
        except TypeError:            # an array value: not remembered
            quiet = None
        found = []
        followed = False
        known_slots = self.layouts.get(where)
        if known_slots is None:
            known_slots = [self._bound((server, event.proto, holder)) for holder in holders(layout)]
            remember(self.layouts, where, known_slots, MAX_LAYOUTS)
        for bound, value in zip(known_slots, stated):
            if not bound or value.__class__ not in (int, float):
                continue
            key, lowest, highest, fastest = bound
            if value < lowest or value > highest:
                learned = self.baseline.values[key]
                found.append((_FINDINGS["value_out_of_range"], src, dst,
                              f"{holder_text(key[2])} = {value:g}, learned {learned.low:g}..{learned.high:g}"))
            if fastest:
                followed = True
                track = key if event.direction != "request" else key + (event.src,)     # a writer's own pace
                previous = self.values.get(track)
                gap = event.ts - previous[1] if previous is not None else -1.0
                if not 0 <= gap <= RATE_MAX_GAP:
                    remember(self.values, track, (value, event.ts), MAX_VALUES)
                elif gap >= RATE_MIN_GAP:
                    rate = abs(value - previous[0]) / gap
                    if rate > fastest:
                        found.append((_FINDINGS["rate_of_change"], src, dst,
                                      f"{holder_text(key[2])} changed {rate:.3g}/s, "
                                      f"learned at most {self.baseline.values[key].max_rate:.3g}/s"))
                    self.values[track] = (value, event.ts)
        if quiet is not None and not found and not followed:
            remember(self.quiet, quiet, None, MAX_QUIET)
        return found

    def _bound(self, key: tuple) -> tuple:
        """What a register, node or DB byte may read: (key, lowest, highest, fastest change;
        0 for none followed), or () when nothing was learned of it."""
        known = self.baseline.values.get(key)
        if known is None:
            return ()
        holder = key[2]
        if holder[1] in TWO_STATE:           # on/off: its range, exactly, and no rate
            return key, known.low, known.high, 0.0
        margin = max(VALUE_TOLERANCE * (known.high - known.low), VALUE_NOISE * max(-known.low, known.high))
        # an S7 byte's rate says little: the low byte of a number wraps whenever it counts on
        return key, known.low - margin, known.high + margin, \
            0.0 if holder[0] == "s7" else RATE_FACTOR * known.max_rate

    def _check_period(self, event: Event, key: tuple, watch: _Watch) -> list[tuple[Finding, str, str, str]]:
        """Every PERIOD_WINDOW intervals, their mean and median against the learned period; a
        change is reported once, until the exchange is back within PACE_BAND of its period."""
        watch.silent = False
        last, recent, period = watch.last, watch.recent, watch.period
        watch.last = event.ts
        if last is None:
            self.seen.append((key, watch))
            return []
        if event.ts > last:
            recent.append(event.ts - last)
        if len(recent) < PERIOD_WINDOW:
            return []
        # both the median and the mean must be off: a poller catching up after a stall keeps
        # its mean, and one long pause between bursts moves the mean but not the median
        middle, now = statistics.median(recent), sum(recent) / len(recent)
        recent.clear()
        low, high = period / PACE_BAND, period * PACE_BAND
        if low <= now <= high and low <= middle <= high:
            # a poller that drifted slower may pause as many of its own periods as it learned to,
            # and one that pauses between bursts pauses longer by as much as its bursts slowed
            watch.wait = max(watch.learned_wait * max(1.0, middle / period), SILENCE_PERIODS * middle)
            if not 1 / DRIFT_NOTED < middle / period < DRIFT_NOTED:
                self._note_drift(key[:4], period, middle, event.ts)
        if low <= now <= high or low <= middle <= high or (middle < period) != (now < period):
            watch.changed = False
            return []
        if watch.changed:
            return []
        watch.changed = True
        return [(_FINDINGS["period_change"], event.src, event.dst,
                 f"{event.function} every {now:.3g} s, learned every {period:.3g} s")]

    def _note_drift(self, key: tuple, period: float, pace: float, ts: float) -> None:
        noted = self.drifts.get(key)
        if noted is None:
            remember(self.drifts, key, [period, pace, ts, ts], MAX_CHANNELS)
        else:
            noted[1], noted[3] = pace, ts
        self.drifted.add(key)

    def take_drifts(self) -> list[tuple[tuple, tuple[float, float, float, float]]]:
        """The drifts noted or moved since the last call: ((client, server, proto, function),
        (learned period, latest pace, first seen, last seen))."""
        taken = [(key, tuple(self.drifts[key])) for key in self.drifted if key in self.drifts]
        self.drifted.clear()
        return taken

    def _sweep(self, now: float) -> list[tuple[Finding, tuple, float, str]]:
        """Periodic exchanges seen in this run that stopped while their client asked the
        server nothing else either (an HMI that changes screens polls other registers; one
        that stops polling is down, cut off or silenced): checked once a second of capture time."""
        self.next_sweep = now + 1.0
        found = []
        for key, watch in self.seen:
            last, period, wait = watch.last, watch.period, watch.wait
            if not watch.silent and now - last > wait and now - self.active.get(key[:3], last) > wait:
                watch.silent = True
                found.append((_FINDINGS["channel_silent"], key, last,
                              f"{key[3]} from {key[0]} to {key[1]} every {period:.3g} s, "
                              f"silent for {now - last:.1f} s"))
        return found


class _Watch:
    """A periodic exchange as this run sees it."""
    __slots__ = ("period", "learned_wait", "wait", "last", "recent", "changed", "silent")

    def __init__(self, period: float, wait: float):
        self.period = period
        self.learned_wait = wait           # silent after this long without it, as learned,
        self.wait = wait                   # ... or as long as the pace it keeps within the band
        self.last: float | None = None
        self.recent: list[float] = []      # intervals since the last comparison
        self.changed = False               # off its period, reported
        self.silent = False                # gone silent, reported
