"""The sensor's own health alerts, on a clock the test turns: kernel drops, reassembly gaps
against their threshold, and a silent tap."""

from __future__ import annotations

import pytest

from icsguard.capture.files import Frame
from icsguard.detect import health
from icsguard.detect.health import HealthDetector

PACKET = Frame(1.0, 1, b"\x00" * 60, "iface tap0", 1)
HEARTBEAT = Frame(0.0, 1, b"", "iface tap0", 1)


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(health.time, "monotonic", lambda: now[0])
    return now


class Capture:
    def __init__(self):
        self.received = self.dropped = 0

    def drops(self) -> tuple[int, int, int]:
        return self.received, self.dropped, 0


def _rules(alerts) -> list[tuple[str, int]]:
    return [(a.rule, a.count) for a in alerts]


def test_kernel_drops_alert_and_the_last_count_is_read_at_the_end(clock):
    capture = Capture()
    sensor = HealthDetector("iface tap0", capture.drops)
    capture.received = 100
    sensor.observe(PACKET, {})
    assert sensor.counters == {"capture.received": 100, "capture.kernel_drops": 0}
    capture.received, capture.dropped = 200, 7
    clock[0] += health.CHECK_SECONDS
    sensor.observe(PACKET, {})
    capture.dropped = 9                  # after the last check: flush reads them
    alerts = sensor.flush()
    assert _rules(alerts) == [("sensor.packets_dropped", 2)]
    assert alerts[0].src == alerts[0].dst == "iface tap0" and alerts[0].detector == "sensor"
    assert sensor.counters["capture.kernel_drops"] == 9


def test_reassembly_gaps_alert_once_a_minute_when_they_reach_the_threshold(clock):
    sensor = HealthDetector("iface tap0", Capture().drops, gaps_per_minute=10)
    counters = {"tcp.gaps": 0, "tcp.gap_bytes": 0}
    for gaps in (3, 9):
        clock[0] += health.CHECK_SECONDS
        counters["tcp.gaps"] = gaps
        sensor.observe(PACKET, counters)
    assert sensor.folding.raised == 0                      # 9 in the first minute: under the threshold
    for gaps in (10, 30):
        clock[0] += health.CHECK_SECONDS
        counters["tcp.gaps"], counters["tcp.gap_bytes"] = gaps, gaps * 100
        sensor.observe(PACKET, counters)
    assert sensor.folding.raised == 1                      # once in the minute, however many more
    clock[0] += health.GAP_MINUTE                          # a new minute, starting from 30
    sensor.observe(PACKET, counters)
    counters["tcp.gaps"] = 35
    clock[0] += health.CHECK_SECONDS
    sensor.observe(PACKET, counters)
    assert sensor.folding.raised == 1
    counters["tcp.gaps"] = 40
    clock[0] += health.CHECK_SECONDS
    sensor.observe(PACKET, counters)
    alerts = sensor.flush()
    assert _rules(alerts) == [("sensor.reassembly_gaps", 2)]
    assert alerts[0].evidence[0]["gaps_in_all"] == 10 and "(10 in all, 1,000 bytes never seen)" in alerts[0].title


def test_a_silent_tap_alerts_once_until_packets_come_back(clock):
    sensor = HealthDetector("iface tap0", Capture().drops, silent_seconds=30)
    sensor.observe(PACKET, {})
    clock[0] += 29
    sensor.observe(HEARTBEAT, {})
    assert sensor.folding.raised == 0
    for _ in range(3):
        clock[0] += 5
        sensor.observe(HEARTBEAT, {})
    assert sensor.folding.raised == 1
    sensor.observe(PACKET, {})
    clock[0] += 31
    sensor.observe(HEARTBEAT, {})
    assert sensor.folding.raised == 2
