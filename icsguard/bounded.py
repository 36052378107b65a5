"""Maps that stay small: once full, the oldest entries make room for the newest (a dict's
insertion order is the entries' age). Every per-connection and per-run table uses it."""

from __future__ import annotations

from itertools import islice
from typing import Any, Callable, Hashable

EVICT_SHARE = 16      # once full, this share (1/16) of the oldest entries goes at once


def remember(mapping: dict, key: Hashable, value: Any, capacity: int) -> int:
    """Store ``key`` → ``value``; the number of oldest entries that had to go to make room.
    They go in batches: taking one at a time from the front of a dict makes each removal
    scan past every slot freed before it, which under churn costs more than the work."""
    evicted = 0
    if key not in mapping and len(mapping) >= capacity:
        oldest = list(islice(mapping, max(1, capacity // EVICT_SHARE)))
        for old in oldest:
            del mapping[old]
        evicted = len(oldest)
    mapping[key] = value
    return evicted


def made_from(memo: dict, make: Callable[..., Any], sources: tuple, capacity: int) -> Any:
    """``make(*sources)``, made once while the sources are held here: looked up by the
    objects' identities, not their contents (held, no other object can take their ids).
    Decoders hand every repeat of a PDU the same decoded objects, so what a later step
    makes of them is remembered at the cost of one look-up."""
    key = (make, *map(id, sources))
    held = memo.get(key)
    if held is not None:
        return held[1]
    made = make(*sources)
    remember(memo, key, (sources, made), capacity)
    return made
