"""The memory budget: every table and buffer of a run draws on one budget, gives back what it
held, and counts what it had to drop; floods of alerts fold into one."""

from __future__ import annotations

from icsguard.analysis import decode
from icsguard.budget import Budget
from icsguard.capture.files import read_captures
from icsguard.detect.folding import MANY, Finding, Folding
from icsguard.pipeline import Pipeline
from icsguard.protocols.pairing import ENTRY_BYTES, Outstanding
from icsguard.runstats import RunStats
from tests.support import PCAPS
from tests.support.rewrite import cut, streams, write_conversation


def test_every_held_byte_is_given_back(tmp_path):
    """After a run, the pool is empty: partial PDUs, chunks, fragments, first bytes and
    unanswered requests were all given back when their connections closed."""
    client, server, payloads = streams(PCAPS / "opcua_none_username.pcap")
    cut_short = write_conversation(tmp_path / "cut.pcap", client, server, cut(payloads[:-3], 7))
    captures = sorted(PCAPS.glob("*.pcap")) + [cut_short]
    budget = Budget()
    stats = RunStats()
    events = list(Pipeline(stats, conversations=True, budget=budget).run(read_captures(map(str, captures))))
    assert len(events) > 1000
    assert budget.buffers.peak > 0 and budget.buffers.held == 0


def test_a_small_budget_still_decodes_and_counts_what_it_drops(tmp_path):
    """A budget far too small for the traffic: connections beyond it are evicted (counted),
    decoding goes on."""
    budget = Budget(process_mb=0)                 # the least state a run may have
    stats = RunStats()
    pipeline = Pipeline(stats, budget=budget)
    pipeline.reassembler.max_connections = 2
    events = list(pipeline.run(read_captures([str(p) for p in sorted(PCAPS.glob("modbus_*.pcap"))])))
    assert len(events) == len(list(decode([str(p) for p in sorted(PCAPS.glob("modbus_*.pcap"))])))
    assert budget.buffers.held == 0


def test_a_flood_from_many_sources_is_one_alert():
    folding = Folding()
    finding = Finding("modbus.not_modbus_on_502", "Non-Modbus traffic on the Modbus port", "medium")
    for n in range(1000):
        folding.add(finding, 1000.0 + n / 100, "modbus", f"10.0.{n // 256}.{n % 256}", "10.0.0.2", dict)
    alerts = folding.flush()
    flood = [a for a in alerts if a.src == MANY]
    assert len(alerts) == 17 and len(flood) == 1
    assert flood[0].count == 1000 - 16 and flood[0].dst == "10.0.0.2" and "16 sources" in flood[0].title
    folding.add(finding, 2000.0, "modbus", "10.9.9.9", "10.0.0.3", dict)      # another target: its own alert
    assert [a.src for a in folding.flush()] == ["10.9.9.9"]


def test_unanswered_requests_are_charged_and_given_back_once():
    """A request remembered with nothing to pass on (an S7comm-plus request with no object id)
    is still given back when it is answered."""
    pool = Budget().buffers
    outstanding = Outstanding(4, pool)
    for key in range(10):
        outstanding.ask(key, None if key % 2 else {"function": "read"})
    assert pool.held == 4 * ENTRY_BYTES                  # the six oldest made room, given back
    assert outstanding.answer(9) is None and pool.held == 3 * ENTRY_BYTES
    assert outstanding.answer(8) == {"function": "read"} and outstanding.answer(8) is None
    outstanding.release()
    assert pool.held == 0
