"""Joining shards' findings in the parent: the rules that count across servers see every
shard's events in time order, and hold back only what a slower shard might still precede."""

from __future__ import annotations

import struct

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from icsguard.capture.files import read_captures
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import load_rules
from icsguard.events import Event
from icsguard.pipeline import Pipeline
from icsguard.runstats import RunStats
from icsguard.shards import REORDER_SECONDS, Joined, ShardDelta, placed_servers
from tests.support.rewrite import write_pcap

CLIENT = "10.0.0.66"


def _refusal(ts: float, server: str) -> Event:
    """An illegal-data-address answer to a scanning client."""
    return Event(ts, "modbus", server, 502, CLIENT, 40000, "response", "read_holding_registers", 3, "", "x.pcap", 1,
                 {"unit_id": 1, "exception_code": 2})


def _delta(shard: int, read_to: float, events: list[Event], final: bool = False) -> ShardDelta:
    return ShardDelta(shard, RunStats(last_ts=read_to), [], [], [], [], events, [], final)


def test_a_scan_of_servers_in_two_shards_is_counted_once_both_have_read_that_far():
    across = load_rules().across_servers()
    assert "modbus.points_list_scan" in {rule.id for rule in across.rules}      # 5 answers a minute, by client
    joined = Joined(["x.pcap"], 2, RuleDetector(across), len(across.rules))
    joined.add(_delta(0, 100.0 + REORDER_SECONDS + 10, [_refusal(100.0 + n, "10.0.0.1") for n in range(3)]))
    assert len(joined.waiting) == 3 and joined.drain() == []          # shard 1 may still hold earlier answers
    joined.add(_delta(1, 101.5, [_refusal(101.5, "10.0.0.2")]))
    assert len(joined.waiting) == 4 and joined.drain() == []          # shard 1 read only to 101.5: nothing is sure
    joined.add(_delta(1, 104.0 + REORDER_SECONDS + 10, [_refusal(104.0, "10.0.0.2")]))
    assert joined.waiting == []
    joined.across.flush()
    alerts = joined.drain()
    joined.count()
    assert [(a.rule, a.src, a.count) for a in alerts] == [("modbus.points_list_scan", CLIENT, 1)]
    assert joined.stats.counters["rules.matches"] == 1
    joined.add(_delta(0, 0.0, [_refusal(900.0, "10.0.0.1")], final=True))
    assert len(joined.waiting) == 1                                    # shard 1 has not finished
    joined.add(_delta(1, 0.0, [], final=True))
    assert joined.waiting == []


def test_a_shard_hands_on_each_event_of_the_rules_counted_across_servers_once_and_counts_the_others():
    rules = load_rules()
    across = {rule.id for rule in rules.across_servers().rules}
    assert "modbus.points_list_scan" in across and "modbus.server_busy" not in across      # by client; by pair
    busy = [Event(100.0 + n, "modbus", "10.0.0.1", 502, CLIENT, 40000, "response", "read_holding_registers", 3,
                  "", "x.pcap", 1, {"unit_id": 1, "exception_code": 6}) for n in range(3)]
    refusals = [_refusal(100.5 + n, "10.0.0.1") for n in range(6)]
    events = sorted(busy + refusals, key=lambda event: event.ts)
    handed: list[Event] = []
    shard = RuleDetector(rules, elsewhere=(frozenset(across), handed.append))
    alone = RuleDetector(rules)
    for event in events:
        shard.feed(event)
        alone.feed(event)
    assert handed == refusals                                          # once each, in order
    assert [alert.rule for alert in shard.flush()] == ["modbus.server_busy"]
    assert sorted(alert.rule for alert in alone.flush()) == ["modbus.points_list_scan", "modbus.server_busy"]


def test_the_busiest_servers_are_placed_in_different_shards_and_each_shard_keeps_its_own(tmp_path):
    """Three Modbus servers polled 60, 30 and 25 times: their addresses' hashes put all three in
    one of two shards; placed by their traffic, the busiest has a shard to itself."""
    frames = []
    for server, polls in (("10.0.0.1", 60), ("10.0.0.2", 30), ("10.0.0.3", 25)):
        for n in range(polls):
            mbap = struct.pack(">HHHB", n, 0, 6, 1) + struct.pack(">BHH", 3, 0, 1)
            packet = Ether() / IP(src=CLIENT, dst=server) / TCP(sport=40000, dport=502, flags="PA", seq=1000 + 12 * n)
            frames.append((1_800_000_000.0 + n + int(server[-1]) / 10, bytes(packet / mbap)))
    capture = str(write_pcap(tmp_path / "three.pcap", sorted(frames)))
    placed = placed_servers([capture], 2)
    assert placed == {"10.0.0.1": 0, "10.0.0.2": 1, "10.0.0.3": 1}
    for shard, servers in ((0, {"10.0.0.1"}), (1, {"10.0.0.2", "10.0.0.3"})):
        events = list(Pipeline(shard=(shard, 2), placed=placed).run(read_captures([capture])))
        assert len(events) == (60 if shard == 0 else 55)
        assert {event.dst for event in events} == servers
