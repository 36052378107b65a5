"""TCP reassembly on a real Modbus conversation re-cut, duplicated, re-ordered and holed."""

from __future__ import annotations

import json
import random
import struct
from collections import Counter

from icsguard.analysis import decode
from icsguard.runstats import RunStats
from tests.support import PCAPS, decoded
from tests.support.rewrite import coalesce, cut, streams, write_conversation

POLLING = PCAPS / "modbus_polling.pcap"


def _pdus(events):
    """Order-free view: re-cutting changes which packet completes a PDU, not what the PDU says."""
    return Counter((e["direction"], e["transaction_id"], e["function"], e.get("address"),
                    tuple(e.get("values") or ())) for e in events if e["function"] != "malformed")


def _run(path):
    stats = RunStats()
    events = [json.loads(e.to_json()) for e in decode([str(path)], stats=stats)]
    return events, stats.counters


def _reference():
    client, server, payloads = streams(POLLING)
    return client, server, payloads, _pdus(decoded(POLLING))


def test_rewritten_conversation_matches_the_original(tmp_path):
    client, server, payloads, expected = _reference()
    path = write_conversation(tmp_path / "same.pcap", client, server, cut(payloads, 10_000))
    assert _pdus(decoded(path)) == expected
    assert sum(expected.values()) >= 100


def test_one_pdu_over_many_segments(tmp_path):
    client, server, payloads, expected = _reference()
    for size in (1, 3, 7):
        path = write_conversation(tmp_path / f"cut{size}.pcap", client, server, cut(payloads, size))
        assert _pdus(decoded(path)) == expected, size


def test_many_pdus_per_segment(tmp_path):
    client, server, payloads, expected = _reference()
    path = write_conversation(tmp_path / "coalesced.pcap", client, server, coalesce(payloads, 25))
    events, counters = _run(path)
    assert _pdus(events) == expected
    frames_with_many = Counter(e["frame"] for e in events)
    assert max(frames_with_many.values()) == 25


def test_retransmissions_and_overlaps_are_not_decoded_twice(tmp_path):
    client, server, payloads, expected = _reference()
    segments = cut(payloads, 5)
    noisy = []
    for i, seg in enumerate(segments):
        noisy.append(seg)
        if i % 3 == 0:
            noisy.append(seg)                                   # exact retransmission
        if i % 7 == 0 and i + 1 < len(segments) and segments[i + 1][0] == seg[0]:
            nxt = segments[i + 1]
            noisy.append((seg[0], seg[1], seg[2] + nxt[2][:2]))  # overlaps into the next segment
    events, counters = _run(write_conversation(tmp_path / "retx.pcap", client, server, noisy))
    assert _pdus(events) == expected
    assert counters["tcp.retransmitted_segments"] >= len(segments) // 3
    assert counters["tcp.overlaps"] > 0


def test_out_of_order_segments_are_put_back_in_order(tmp_path):
    client, server, payloads, expected = _reference()
    segments = cut(payloads, 4)
    rng = random.Random(7)
    shuffled, run = [], []
    for seg in segments + [None]:     # shuffle each run of one direction: a response still follows its request
        if run and (seg is None or seg[0] != run[0][0]):
            rng.shuffle(run)
            shuffled.extend(run)
            run = []
        if seg is not None:
            run.append(seg)
    events, counters = _run(write_conversation(tmp_path / "ooo.pcap", client, server, shuffled))
    assert _pdus(events) == expected
    assert counters["tcp.out_of_order_segments"] > 0
    assert counters["tcp.gaps"] == 0


def test_missing_segment_costs_only_the_pdus_it_carried(tmp_path):
    client, server, payloads, expected = _reference()
    segments = cut(payloads, 6)                     # an MBAP header is 7 bytes: PDUs span segments
    lost = len(segments) // 2
    holed = segments[:lost] + segments[lost + 1:]
    events, counters = _run(write_conversation(tmp_path / "hole.pcap", client, server, holed))
    got = _pdus(events)
    assert counters["tcp.gaps"] == 1
    lost_requests = {key[1] for key in expected - got if key[0] == "request"}
    assert len(lost_requests) == 1                            # the request the hole cut into
    invented = got - expected
    # its response is still decoded, only without the request's address to pair with
    assert [(k[0], k[1], k[3]) for k in invented] == [("response", tid, None) for tid in lost_requests]
    later = [e for e in events if e["frame"] > lost + 3]
    assert len(later) > 50                                    # it resynchronised and went on


def test_connection_joined_mid_stream(tmp_path):
    client, server, payloads, expected = _reference()
    segments = cut(payloads, 10_000)[10:]           # the capture starts after ten PDUs
    path = write_conversation(tmp_path / "mid.pcap", client, server, segments)
    raw = path.read_bytes()
    pos = 24                                        # drop the handshake: the pcap header, then three records
    for _ in range(3):
        caplen = struct.unpack("<I", raw[pos + 8:pos + 12])[0]
        pos += 16 + caplen
    path.write_bytes(raw[:24] + raw[pos:])
    events, counters = _run(path)
    assert counters["tcp.midstream"] == 2
    got = _pdus(events)
    assert not got - expected
    assert sum(got.values()) == sum(expected.values()) - 10     # all but the ten PDUs before the capture began


def test_connections_followed_by_raw_flow_decode_as_the_general_path(tmp_path, monkeypatch):
    """The usual segments of an open connection go by their raw flow (Reassembler.feed_known),
    the rest by the general path: on clean, re-cut, retransmitted, re-ordered and holed
    conversations and on every project capture, the events, the counters and the hosts are
    those of the general path alone (which a pipeline that needs every segment takes)."""
    from icsguard.capture.files import read_captures
    from icsguard.net.reassembly import Reassembler
    from icsguard.pipeline import Pipeline
    followed = Counter()
    known = Reassembler.feed_known

    def counted(self, *args):
        payload = known(self, *args)
        followed[payload is not None] += 1
        return payload
    monkeypatch.setattr(Reassembler, "feed_known", counted)
    client, server, payloads, _ = _reference()
    segments = cut(payloads, 5)
    rng = random.Random(3)
    messy = [seg for i, seg in enumerate(segments) for _ in range(2 if i % 5 == 0 else 1)]   # retransmissions
    for start in range(0, len(messy) - 4, 40):              # a few reorderings
        run = messy[start:start + 3]
        rng.shuffle(run)
        messy[start:start + 3] = run
    captures = [write_conversation(tmp_path / "clean.pcap", client, server, cut(payloads, 10_000)),
                write_conversation(tmp_path / "messy.pcap", client, server, messy[:200] + messy[201:]),
                *sorted(PCAPS.glob("*.pcap"))]
    for path in captures:
        general, followed_stats = RunStats(), RunStats()
        expected = list(Pipeline(general, conversations=True, on_segment=lambda frame, segment: None)
                        .run(read_captures([str(path)])))
        assert list(Pipeline(followed_stats, conversations=True).run(read_captures([str(path)]))) == expected
        assert followed_stats.counters == general.counters and followed_stats.hosts == general.hosts
    assert followed[True] > 1000 and followed[False] > 0
