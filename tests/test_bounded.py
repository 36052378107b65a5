"""Bounded maps: full ones make room by dropping their oldest entries, in batches."""

from __future__ import annotations

from icsguard.bounded import EVICT_SHARE, remember


def test_a_full_map_drops_its_oldest_sixteenth_for_a_new_key():
    table: dict = {}
    assert [remember(table, n, n * 2, 160) for n in range(160)] == [0] * 160
    assert remember(table, 0, "again", 160) == 0            # a known key: nothing goes
    assert table[0] == "again" and len(table) == 160
    assert remember(table, 160, 320, 160) == 160 // EVICT_SHARE
    assert len(table) == 160 - 160 // EVICT_SHARE + 1
    assert list(table)[:2] == [10, 11] and 160 in table and 0 not in table


def test_churn_keeps_the_newest_within_capacity():
    table: dict = {}
    dropped = sum(remember(table, n, None, 1000) for n in range(20_000))
    assert len(table) <= 1000 and dropped == 20_000 - len(table)
    assert list(table)[-1] == 19_999 and min(table) >= 20_000 - 1000
