"""Time-window features per (client, server, protocol): what the statistical model scores.

Each pair's traffic is summed over fixed windows aligned to the clock; a window becomes
one row when the capture's time passes its end. Floods, scans, write bursts and
exception storms show up as rows unlike any learned one, even when every single
PDU would pass the baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from icsguard.bounded import remember
from icsguard.detect.targets import Targets
from icsguard.events import CONVERSATIONS, Event, function_kind, refused

WINDOW_SECONDS = 60.0
MAX_OPEN_PAIRS = 10_000          # pairs summed in one window; beyond, new pairs wait for the next
MAX_TARGETS = 4096               # distinct targets counted per pair and window
MAX_ALL_TARGETS = 200_000        # ... and over all pairs of a window (beyond, counts are lower bounds)
MAX_SHAPES = 50_000              # distinct requests remembered with their kind and targets
MIN_COVERAGE = 0.25              # share of a window the traffic must cover for it to make a row
RESTART_WINDOWS = 10             # a silence this many windows long ends one stretch of traffic

FEATURES = ("pdus", "bytes", "requests", "write_share", "read_share", "exception_rate", "distinct_functions",
            "distinct_targets", "new_target_share", "interarrival_mean", "interarrival_std")
FEATURE_TEXT = {
    "pdus": "PDUs", "bytes": "bytes", "requests": "requests", "write_share": "share of writes",
    "read_share": "share of reads",
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


@dataclass(slots=True)
class _Sums:
    pdus: int = 0
    bytes: int = 0
    requests: int = 0
    writes: int = 0
    reads: int = 0
    responses: int = 0
    refused: int = 0
    functions: set = field(default_factory=set)
    targets: set = field(default_factory=set)
    channels: set = field(default_factory=set)     # distinct requests seen: their functions and targets are in
    new_targets: int = 0
    all_targets: int = 0
    last_request: float | None = None
    gaps: int = 0
    gap_sum: float = 0.0
    gap_squares: float = 0.0

    def row(self, scale: float = 1.0) -> tuple[float, ...]:
        """The window's features; ``scale`` brings the counts of a partly covered window to a whole one's."""
        mean = self.gap_sum / self.gaps if self.gaps else 0.0
        std = math.sqrt(max(self.gap_squares / self.gaps - mean * mean, 0.0)) if self.gaps else 0.0
        requests = self.requests or 1
        return (self.pdus * scale, self.bytes * scale, self.requests * scale, self.writes / requests,
                self.reads / requests, self.refused / (self.responses or 1), float(len(self.functions)), float(len(self.targets)),
                self.new_targets / (self.all_targets or 1), mean, std)


class Windows:
    """Sums events into per-pair windows and hands back the rows of windows that closed.
    ``known`` tells whether a (pair, function) target was learned, for new_target_share.

    A window the traffic covers only in part — the capture starts or ends inside it, or
    the traffic stops for RESTART_WINDOWS windows (another capture, a sensor restart) — has
    its counts scaled up to a whole window's; one covered for less than MIN_COVERAGE of its
    length makes no row. Shorter pauses are traffic too: a poller that runs every 90 s
    leaves empty windows between its bursts."""

    def __init__(self, seconds: float = WINDOW_SECONDS,
                 known: Callable[[tuple, str, int | None, int | None], bool] | None = None,
                 targets: Targets | None = None):
        self.seconds = seconds
        self.targets = targets or Targets()
        self.known = known
        self.start: float | None = None      # the open window's start
        self.begin = 0.0                     # when the traffic began covering it
        self.last: float | None = None       # the latest event's time
        self.open: dict[tuple[str, str, str], _Sums] = {}
        self.tracked = 0                     # targets held by the open window, all pairs
        self.shapes: dict[tuple, tuple] = {}  # request (channel) -> (kind, targets, unknown targets)

    def feed(self, event: Event) -> list[Row]:
        if event.proto in CONVERSATIONS:
            return []
        rows: list[Row] = []
        ts = event.ts
        if self.start is None or ts - self.last > RESTART_WINDOWS * self.seconds:   # traffic (re)starts here
            rows = self._close(self.last) if self.start is not None else []
            self.start = math.floor(ts / self.seconds) * self.seconds
            self.begin = ts
        elif ts >= self.start + self.seconds:                        # the next window, traffic flowing
            rows = self._close(self.start + self.seconds)
            self.start = math.floor(ts / self.seconds) * self.seconds
            self.begin = self.start
        if self.last is None or ts > self.last:
            self.last = ts
        request = event.direction == "request"
        key = (event.src, event.dst, event.proto) if request else (event.dst, event.src, event.proto)
        sums = self.open.get(key)
        if sums is None:
            if len(self.open) >= MAX_OPEN_PAIRS:
                return rows
            sums = self.open[key] = _Sums()
        sums.pdus += 1
        sums.bytes += event.fields.get("pdu_length") or 0
        if request:
            sums.requests += 1
            channel = self.targets.channel(event)
            shape = self.shapes.get(channel)
            if shape is None:
                shape = self._shape(key, event)
                remember(self.shapes, channel, shape, MAX_SHAPES)
            kind, found, unknown = shape
            if kind == "write":
                sums.writes += 1
            elif kind == "read":
                sums.reads += 1
            if sums.last_request is not None:
                gap = ts - sums.last_request
                sums.gaps += 1
                sums.gap_sum += gap
                sums.gap_squares += gap * gap
            sums.last_request = ts
            sums.all_targets += len(found)
            sums.new_targets += unknown
            if channel not in sums.channels:               # a poll's repeats add nothing new
                if len(sums.channels) < MAX_TARGETS:
                    sums.channels.add(channel)
                sums.functions.add(event.function)
                for target in found:
                    if len(sums.targets) < MAX_TARGETS and self.tracked < MAX_ALL_TARGETS \
                            and target not in sums.targets:
                        sums.targets.add(target)
                        self.tracked += 1
        else:
            sums.responses += 1
            if refused(event.fields):
                sums.refused += 1
        return rows

    def _shape(self, key: tuple, event: Event) -> tuple[str, tuple, int]:
        """What a request is, once per distinct request (polls repeat a few all day): its
        kind (write, read or other), its targets, and how many of them were never learned."""
        function = event.function
        kind = function_kind(function)
        found = self.targets.of(event)
        learned = key + (function,)
        unknown = 0 if self.known is None else sum(not self.known(learned, *target) for target in found)
        return kind, found, unknown

    def flush(self) -> list[Row]:
        """At the capture's end: the open window, covered up to the last event."""
        return self._close(self.last) if self.start is not None else []

    def _close(self, end: float) -> list[Row]:
        covered = min(end, self.start + self.seconds) - max(self.begin, self.start)
        rows = []
        if covered >= MIN_COVERAGE * self.seconds:
            scale = self.seconds / covered
            rows = [Row(*key, self.start, sums.row(scale)) for key, sums in self.open.items()]
        self.open.clear()
        self.tracked = 0
        return rows
