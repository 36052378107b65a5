"""Maps that stay small: once full, the oldest entry makes room for the newest (a dict's
insertion order is the entries' age). Every per-connection and per-run table uses it."""

from __future__ import annotations

from typing import Any, Hashable


def remember(mapping: dict, key: Hashable, value: Any, capacity: int) -> bool:
    """Store ``key`` → ``value``; True when the oldest entry had to go to make room."""
    full = key not in mapping and len(mapping) >= capacity
    if full:
        del mapping[next(iter(mapping))]
    mapping[key] = value
    return full
