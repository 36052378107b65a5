"""What one run saw: filled by the pipeline and the detectors, written by the store.

Apart from the pipeline so that reading or writing a database never loads the decoders.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RunStats:
    """What one run saw; the report and the ``runs`` table are made from it."""
    captures: list[str] = field(default_factory=list)
    packets: int = 0
    bytes: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    longest_silence: float = 0.0     # seconds between two packets, at most
    counters: Counter = field(default_factory=Counter)
    hosts: dict[str, str] = field(default_factory=dict)    # IP → MAC, as seen on the wire
    started: float = field(default_factory=time.time)
    finished: float | None = None
    error: str | None = None

    @property
    def pdus(self) -> int:
        return sum(v for k, v in self.counters.items() if k.endswith(".pdus"))

    @property
    def malformed(self) -> int:
        return sum(v for k, v in self.counters.items() if k.endswith(".malformed"))
