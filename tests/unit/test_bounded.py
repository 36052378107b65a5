"""Bounded maps: full ones make room by dropping their oldest entries, in batches."""

from __future__ import annotations

from icsguard.bounded import EVICT_SHARE, made_from, remember


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


def test_made_from_remembers_by_identity_not_contents():
    """The same objects give what was made of them without making it again; equal but
    distinct ones are made anew (a decoder's repeats share objects, other PDUs do not)."""
    memo: dict = {}
    calls = []

    def joined(a, b):
        calls.append((a, b))
        return a + b
    first, second = [1], [2]
    made = made_from(memo, joined, (first, second), 100)
    assert made == [1, 2] and made_from(memo, joined, (first, second), 100) is made
    assert made_from(memo, joined, ([1], second), 100) == [1, 2] and len(calls) == 2
    assert made_from(memo, list, (first,), 100) == [1] and len(memo) == 3     # the maker is part of the key
    for n in range(500):
        made_from(memo, joined, ([n], second), 100)
    assert len(memo) <= 100
