"""The sensor watching itself: packets the kernel dropped, TCP bytes that never came (reassembly
gaps), and a tap gone silent, as `health` alerts, so that a sensor never loses traffic without
saying so."""

from __future__ import annotations

import time
from typing import Callable, Mapping

from icsguard.budget import Budget
from icsguard.capture.files import Frame
from icsguard.detect.folding import Alert, Finding, Folding
from icsguard.detect.rules import signature_id

CHECK_SECONDS = 5.0          # how often the capture's drop counters are read
SILENT_SECONDS = 300.0       # no packet for this long: the tap is silent
GAPS_PER_MINUTE = 10         # TCP gaps within a minute that make an alert: a SPAN port losing packets
GAP_MINUTE = 60.0
DROPS = Finding("sensor.packets_dropped", "Sensor: packets dropped before icsguard could read them", "high",
                "sensor", (), signature_id("sensor.packets_dropped"))
GAPS = Finding("sensor.reassembly_gaps", "Sensor: TCP segments never seen (reassembly gaps)", "medium",
               "sensor", (), signature_id("sensor.reassembly_gaps"))
SILENT = Finding("sensor.tap_silent", "Sensor: no packet from the tap", "high", "sensor", (),
                 signature_id("sensor.tap_silent"))


class HealthDetector:
    """Told of every frame (heartbeats included) by the run, with the run's counters; ``drops``
    reads the capture's (received, dropped by the kernel, dropped by the interface). Gaps are
    counted from the start of each minute, and alert once that minute when they reach
    ``gaps_per_minute``: the odd gap is a sensor that joined a connection badly, many are loss."""
    name = "sensor"

    def __init__(self, source: str, drops: Callable[[], tuple[int, int, int]],
                 silent_seconds: float = SILENT_SECONDS, gaps_per_minute: int = GAPS_PER_MINUTE,
                 budget: Budget | None = None):
        self.source = source
        self.drops = drops
        self.counters: dict[str, int] = {}      # the capture's own, for the run's counters
        self.silent_seconds = silent_seconds
        self.gaps_per_minute = gaps_per_minute
        self.folding = Folding(budget=budget)
        self.last_packet = self.next_check = self.minute_start = time.monotonic()
        self.dropped = 0
        self.gaps_before_minute = 0
        self.gaps_alerted = False
        self.silent = False

    def observe(self, frame: Frame, counters: Mapping[str, int]) -> None:
        now = time.monotonic()
        if frame.data:
            self.last_packet = now
            self.silent = False
        elif not self.silent and now - self.last_packet >= self.silent_seconds:
            self.silent = True
            self.folding.add(SILENT, time.time(), "", self.source, self.source,
                             lambda: {"silent_seconds": round(now - self.last_packet, 1)},
                             f"nothing for {now - self.last_packet:.0f} s on {self.source}")
        if now >= self.next_check:
            self.next_check = now + CHECK_SECONDS
            self._check_drops()
            self._check_gaps(now, counters)

    def _check_drops(self) -> None:
        received, kernel, interface = self.drops()
        self.counters["capture.received"] = received
        self.counters["capture.kernel_drops"] = kernel + interface
        new = kernel + interface - self.dropped
        if new > 0:
            self.dropped = kernel + interface
            self.folding.add(DROPS, time.time(), "", self.source, self.source,
                             lambda: {"dropped": new, "received": received},
                             f"{new:,} lost on {self.source} ({kernel + interface:,} in all)")

    def _check_gaps(self, now: float, counters: Mapping[str, int]) -> None:
        gaps = counters.get("tcp.gaps", 0)
        if now - self.minute_start >= GAP_MINUTE:
            self.minute_start, self.gaps_before_minute, self.gaps_alerted = now, gaps, False
        new = gaps - self.gaps_before_minute
        if new >= self.gaps_per_minute and not self.gaps_alerted:
            self.gaps_alerted = True
            lost = counters.get("tcp.gap_bytes", 0)
            self.folding.add(GAPS, time.time(), "", self.source, self.source,
                             lambda: {"gaps": new, "gaps_in_all": gaps, "bytes_missing_in_all": lost},
                             f"{new:,} gaps in TCP streams within {now - self.minute_start:.0f} s on "
                             f"{self.source} ({gaps:,} in all, {lost:,} bytes never seen)")

    def feed(self, event) -> list[Alert]:
        return []

    def flush(self) -> list[Alert]:
        self._check_drops()             # the run's last counters are the capture's last
        return self.folding.flush()
