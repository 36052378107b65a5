"""A bounded cache of decoded PDUs.

Industrial polling repeats the same few PDUs endlessly, so remembering what a
byte string decoded to saves almost every Scapy dissection.
"""

from __future__ import annotations

from typing import Any, Hashable

from icsguard.bounded import remember

DEFAULT_ENTRIES = 50_000


class DecodeCache:
    __slots__ = ("entries", "capacity", "hits", "misses")

    def __init__(self, capacity: int = DEFAULT_ENTRIES):
        self.entries: dict[Hashable, Any] = {}
        self.capacity = capacity
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any:
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: Hashable, value: Any) -> None:
        remember(self.entries, key, value, self.capacity)   # oldest out first: cheap and good enough
