"""The sensor watching itself: packets the kernel dropped, and a tap gone silent, as `health`
alerts, so that a sensor never loses traffic without saying so."""

from __future__ import annotations

import time
from typing import Callable

from icsguard.budget import Budget
from icsguard.capture.files import Frame
from icsguard.detect.folding import Alert, Finding, Folding
from icsguard.detect.rules import signature_id

CHECK_SECONDS = 5.0          # how often the capture's drop counters are read
SILENT_SECONDS = 300.0       # no packet for this long: the tap is silent
DROPS = Finding("sensor.packets_dropped", "Sensor: packets dropped before icsguard could read them", "high",
                "sensor", (), signature_id("sensor.packets_dropped"))
SILENT = Finding("sensor.tap_silent", "Sensor: no packet from the tap", "high", "sensor", (),
                 signature_id("sensor.tap_silent"))


class HealthDetector:
    """Told of every frame (heartbeats included) by the run; ``drops`` reads the capture's
    (received, dropped by the kernel, dropped by the interface)."""
    name = "sensor"

    def __init__(self, source: str, drops: Callable[[], tuple[int, int, int]],
                 silent_seconds: float = SILENT_SECONDS, budget: Budget | None = None):
        self.source = source
        self.drops = drops
        self.counters: dict[str, int] = {}      # the capture's own, for the run's counters
        self.silent_seconds = silent_seconds
        self.folding = Folding(budget=budget)
        self.last_packet = self.next_check = time.monotonic()
        self.dropped = 0
        self.silent = False

    def observe(self, frame: Frame) -> None:
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
            received, kernel, interface = self.drops()
            self.counters["capture.received"] = received
            self.counters["capture.kernel_drops"] = kernel + interface
            new = kernel + interface - self.dropped
            if new > 0:
                self.dropped = kernel + interface
                self.folding.add(DROPS, time.time(), "", self.source, self.source,
                                 lambda: {"dropped": new, "received": received},
                                 f"{new:,} lost on {self.source} ({kernel + interface:,} in all)")

    def feed(self, event) -> list[Alert]:
        return []

    def flush(self) -> list[Alert]:
        return self.folding.flush()
