"""Alerts as they are raised, and a stats record a minute, appended to a file in Suricata's
EVE layout for a SIEM to tail; reopened on request (SIGHUP, after the file was rotated)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from icsguard.detect.folding import Alert
from icsguard.output import exports

STATS_SECONDS = 60.0


class EveFile:
    def __init__(self, path: str):
        self.path = path
        self.started = time.time()
        self.next_stats = time.monotonic() + STATS_SECONDS
        self.reopen_requested = False
        self.file = self._open()

    def _open(self):
        try:
            return open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise OSError(f"{self.path}: cannot append ({exc.strerror})") from None

    def record(self, run_id: int, raised: list[Alert], counters: dict[str, int]) -> None:
        """After each of the run's commits: the alerts first raised since the last, and every
        minute the run's counters. The file is reopened first when that was asked for."""
        if self.reopen_requested:
            self.reopen_requested = False
            self.file.close()
            self.file = self._open()
        for alert in raised:
            self.file.write(json.dumps(exports.eve(_row(alert, run_id))) + "\n")
        if time.monotonic() >= self.next_stats:
            self.next_stats = time.monotonic() + STATS_SECONDS
            self.file.write(json.dumps(stats(counters, time.time() - self.started)) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def stats(counters: dict[str, int], uptime: float) -> dict:
    """Suricata's stats record: the counters Suricata has a name for, under that name (its schema
    admits no others; the rest are in the database and icsguard report)."""
    return {"timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f%z"), "event_type": "stats",
            "stats": {"uptime": int(uptime),
                      "capture": {"kernel_packets": counters.get("capture.received", 0),
                                  "kernel_drops": counters.get("capture.kernel_drops", 0)},
                      "decoder": {"pkts": counters.get("capture.received", 0)},
                      "tcp": {"reassembly_gap": counters.get("tcp.gaps", 0)},
                      "detect": {"alert": sum(v for k, v in counters.items() if k.endswith(".findings"))}}}


def _row(alert: Alert, run_id: int) -> dict:
    """An alert as the store keeps it, which is what the exports read."""
    return {"id": alert.id, "ts": alert.ts, "severity": alert.severity, "rule": alert.rule, "title": alert.title,
            "proto": alert.proto, "src": alert.src, "dst": alert.dst, "detector": alert.detector,
            "mitre": json.dumps(list(alert.mitre)), "count": alert.count, "first_ts": alert.first_ts,
            "last_ts": alert.last_ts, "evidence": json.dumps(alert.evidence, default=str), "status": alert.status,
            "run_id": run_id, "sid": alert.sid, "category": alert.category}
