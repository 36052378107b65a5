"""Time-window features per (client, server, protocol): what the statistical model scores.

Each pair's traffic is summed over fixed windows aligned to the clock; a window becomes
one row when the capture's time passes its end. Floods, scans, write bursts and
exception storms show up as rows unlike any learned one, even when every single
PDU would pass the baseline. Only whole windows become rows: the window the capture
starts in and the one it ends in hold a fraction of their traffic, which would read
as "quieter than ever learned" wherever the capture happened to be cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from icsguard.baseline import targets
from icsguard.events import CONVERSATIONS, Event, refused

WINDOW_SECONDS = 60.0
MAX_OPEN_PAIRS = 10_000          # pairs summed in one window; beyond, new pairs wait for the next
MAX_TARGETS = 4096               # distinct targets counted per pair and window

FEATURES = ("pdus", "requests", "write_share", "read_share", "exception_rate", "distinct_functions",
            "distinct_targets", "new_target_share", "interarrival_mean", "interarrival_std")
FEATURE_TEXT = {
    "pdus": "PDUs", "requests": "requests", "write_share": "share of writes", "read_share": "share of reads",
    "exception_rate": "share of refused responses", "distinct_functions": "distinct functions",
    "distinct_targets": "distinct registers/blocks/nodes", "new_target_share": "share of never-seen targets",
    "interarrival_mean": "mean seconds between requests", "interarrival_std": "spread of seconds between requests",
}


class Row(NamedTuple):
    client: str
    server: str
    proto: str
    start: float                     # the window's start, epoch seconds
    values: tuple[float, ...]        # in FEATURES order


@dataclass
class _Sums:
    pdus: int = 0
    requests: int = 0
    writes: int = 0
    reads: int = 0
    responses: int = 0
    refused: int = 0
    functions: set = field(default_factory=set)
    targets: set = field(default_factory=set)
    new_targets: int = 0
    all_targets: int = 0
    last_request: float | None = None
    gaps: int = 0
    gap_sum: float = 0.0
    gap_squares: float = 0.0

    def row(self) -> tuple[float, ...]:
        mean = self.gap_sum / self.gaps if self.gaps else 0.0
        std = math.sqrt(max(self.gap_squares / self.gaps - mean * mean, 0.0)) if self.gaps else 0.0
        requests = self.requests or 1
        return (float(self.pdus), float(self.requests), self.writes / requests, self.reads / requests,
                self.refused / (self.responses or 1), float(len(self.functions)), float(len(self.targets)),
                self.new_targets / (self.all_targets or 1), mean, std)


class Windows:
    """Sums events into per-pair windows and hands back the rows of windows that closed.
    ``known`` tells whether a (pair, function) target was learned, for new_target_share."""

    def __init__(self, seconds: float = WINDOW_SECONDS,
                 known: Callable[[tuple, str, int | None], bool] | None = None):
        self.seconds = seconds
        self.known = known
        self.start: float | None = None
        self.first: float | None = None      # the first event's time: windows begun before it are cut
        self.open: dict[tuple[str, str, str], _Sums] = {}

    def feed(self, event: Event) -> list[Row]:
        if self.first is None:
            self.first = event.ts
        if event.proto in CONVERSATIONS:
            return []
        rows: list[Row] = []
        start = math.floor(event.ts / self.seconds) * self.seconds
        if self.start is None:
            self.start = start
        elif start > self.start:
            if self.start >= self.first:
                rows = [Row(*key, self.start, sums.row()) for key, sums in self.open.items()]
            self.open.clear()
            self.start = start
        request = event.direction == "request"
        key = (event.src, event.dst, event.proto) if request else (event.dst, event.src, event.proto)
        sums = self.open.get(key)
        if sums is None:
            if len(self.open) >= MAX_OPEN_PAIRS:
                return rows
            sums = self.open[key] = _Sums()
        sums.pdus += 1
        if request:
            sums.requests += 1
            function = event.function.lower()
            sums.functions.add(event.function)
            if "write" in function:
                sums.writes += 1
            elif "read" in function:
                sums.reads += 1
            if sums.last_request is not None:
                gap = event.ts - sums.last_request
                sums.gaps += 1
                sums.gap_sum += gap
                sums.gap_squares += gap * gap
            sums.last_request = event.ts
            learned = key + (event.function,)
            for target in targets(event):
                sums.all_targets += 1
                if len(sums.targets) < MAX_TARGETS:
                    sums.targets.add(target)
                if self.known is not None and not self.known(learned, *target):
                    sums.new_targets += 1
        else:
            sums.responses += 1
            if refused(event.fields):
                sums.refused += 1
        return rows

    def flush(self) -> list[Row]:
        """At the capture's end: the open window was cut short by it, so it makes no row."""
        self.open.clear()
        return []
