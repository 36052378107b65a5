"""IP layer: fragments and IPv6 carrying real Modbus, and the memory caps under hostile input."""

from __future__ import annotations

import random

from scapy.layers.inet import IP, TCP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether

from icsguard.net import reassembly
from icsguard.net.netstack import NetStack, Segment
from icsguard.net.reassembly import GAP, Reassembler
from tests.support import PCAPS, decoded
from tests.support.rewrite import frames, write_pcap

POLLING = PCAPS / "modbus_polling.pcap"


def _view(events):
    return [(e["direction"], e["transaction_id"], e["function"], e.get("address"), e.get("values")) for e in events]


def test_ipv4_fragments_in_any_order_are_reassembled(tmp_path):
    rng = random.Random(3)
    packets = []
    for frame in frames(POLLING):
        ether = Ether(frame.data)
        pieces = fragment(ether[IP], fragsize=8) if ether[IP].payload and len(ether[IP]) > 60 else [ether[IP]]
        rng.shuffle(pieces)
        packets += [(frame.ts, bytes(Ether(src=ether.src, dst=ether.dst) / piece)) for piece in pieces]
    path = write_pcap(tmp_path / "frag.pcap", packets)
    assert len(packets) > 2 * len(frames(POLLING))
    assert _view(decoded(path)) == _view(decoded(POLLING))


def _as_ipv6(frame_data: bytes, fragment_size: int | None = None) -> list[bytes]:
    ether = Ether(frame_data)
    ip, tcp = ether[IP], ether[TCP].copy()
    src, dst = "fd00::" + ip.src.split(".")[-1], "fd00::" + ip.dst.split(".")[-1]
    tcp.chksum = None
    segment = bytes(IPv6(src=src, dst=dst) / tcp)[40:]     # TCP with its IPv6 checksum
    if fragment_size and 40 + 8 + len(segment) > fragment_size:
        pieces = fragment6(IPv6(src=src, dst=dst) / IPv6ExtHdrFragment() / TCP(segment), fragment_size)
    else:
        pieces = [IPv6(src=src, dst=dst, nh=6) / TCP(segment)]
    return [bytes(Ether(src=ether.src, dst=ether.dst, type=0x86DD) / p) for p in pieces]


def test_ipv6_with_and_without_fragments(tmp_path):
    plain = [(f.ts, d) for f in frames(POLLING) for d in _as_ipv6(f.data)]
    fragmented = [(f.ts, d) for f in frames(POLLING) for d in _as_ipv6(f.data, 64)]
    assert len(fragmented) > len(plain)
    reference = _view(decoded(POLLING))
    for name, packets in (("v6.pcap", plain), ("v6frag.pcap", fragmented)):
        events = decoded(write_pcap(tmp_path / name, packets))
        assert _view(events) == reference, name
        assert events[0]["src"].startswith("fd00::")


def _segment(seq: int, payload: bytes, sport: int = 40000, flags: int = 0x18) -> Segment:
    return Segment("10.0.0.1", sport, "10.0.0.2", 502, seq, 0, flags, payload, None)


def test_out_of_order_flood_stays_within_the_caps():
    r = Reassembler()
    r.feed(0.0, _segment(1000, b"x" * 10))                  # joins mid-stream: expects 1010 next
    for i in range(10_000):                                 # never fills the hole at 1010
        r.feed(0.001 * i, _segment(2000 + i * 100, b"y" * 100))
        conn = next(iter(r.connections.values()))
        d = conn.directions[("10.0.0.1", 40000)]
        assert len(d.pending) <= reassembly.MAX_PENDING_SEGMENTS + 1
        assert d.pending_bytes <= reassembly.MAX_PENDING_BYTES + 100
    assert r.counters["tcp.gaps"] >= 1
    assert r.pool.held <= reassembly.MAX_PENDING_BYTES


def test_connection_table_is_capped_and_idle_connections_expire():
    r = Reassembler()
    r.max_connections = 100
    for port in range(1000, 1300):
        r.feed(1.0, _segment(1, b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x01", sport=port))
    assert len(r.connections) == 100
    assert r.counters["tcp.connections_evicted"] == 200
    closed = r.feed(1.0 + reassembly.IDLE_TIMEOUT + reassembly.SWEEP_INTERVAL + 1, _segment(1, b"z", sport=5000))
    assert r.counters["tcp.connections_idle_closed"] == 100
    assert len([c for c in closed if c.kind == "close"]) == 100
    assert len(r.connections) == 1


def test_a_connection_both_sides_finished_is_closed_at_once():
    """Polling connections opened and closed by the thousand must not wait 15 idle minutes
    each: the second FIN ends the connection (its sessions freed), the last ACK starts
    nothing, and a side that finished alone (a half-close) still delivers what its peer sends."""
    r = Reassembler()
    server = ("10.0.0.2", 502)
    r.feed(0.0, _segment(999, b"", flags=0x02))                                   # SYN
    r.feed(0.0, Segment(*server, "10.0.0.1", 40000, 4999, 1000, 0x12, b"", None))  # SYN-ACK
    r.feed(0.1, _segment(1000, b"q" * 12))
    r.feed(0.2, _segment(1012, b"", flags=0x11))                                  # the client's FIN
    chunks = r.feed(0.3, Segment(*server, "10.0.0.1", 40000, 5000, 1013, 0x18, b"a" * 11, None))
    assert [c.kind for c in chunks] == ["data"] and len(r.connections) == 1       # half-closed: still open
    chunks = r.feed(0.4, Segment(*server, "10.0.0.1", 40000, 5011, 1013, 0x11, b"", None))   # the server's FIN
    assert [c.kind for c in chunks] == ["close"] and not r.connections
    assert r.feed(0.5, _segment(1013, b"", flags=0x10)) == [] and not r.connections      # the last ACK


def test_gap_is_announced_when_the_receiver_acknowledges_unseen_bytes():
    r = Reassembler()
    r.feed(0.0, _segment(1000, b"a" * 10))
    r.feed(0.1, _segment(1020, b"c" * 10))                  # 1010..1019 never captured
    ack = Segment("10.0.0.2", 502, "10.0.0.1", 40000, 5000, 1030, 0x10, b"", None)
    chunks = r.feed(0.2, ack)
    assert [c.kind for c in chunks] == [GAP, "data"]
    assert chunks[1].data == b"c" * 10


def test_fragment_flood_is_bounded():
    stack = NetStack()
    for i in range(5000):
        packet = bytes(IP(src="10.0.0.1", dst="10.0.0.2", id=i, flags="MF", frag=0) / (b"p" * 64))
        assert stack.decode(0.0, 101, packet) is None
    assert len(stack.fragments.pending) <= 1024
    assert stack.counters["ip.fragments_evicted"] >= 5000 - 1024


def test_plain_tcp_frames_are_named_as_decode_names_them():
    """A shard passes over other shards' frames, and a known connection's usual segments go on,
    by their raw flow: for every frame named plain, the netstack decodes the same addresses,
    ports, sequence numbers, flags and payload and counts nothing; frames cut short,
    fragmented, tagged or not TCP are left to the netstack."""
    import socket
    import struct as packing
    from collections import Counter

    from icsguard.capture.files import read_capture
    from icsguard.net.netstack import plain_flow, plain_tcp4_at, plain_tcp_fields
    named = 0
    for path in sorted(PCAPS.glob("*.pcap")):
        for frame in read_capture(str(path)):
            where = plain_tcp4_at(frame.link_type, frame.data)
            if where is None:
                continue
            named += 1
            counters = Counter()
            segment = NetStack(counters).decode(frame.ts, frame.link_type, frame.data)
            assert plain_flow(frame.data, where[0]) == socket.inet_aton(segment.src) + \
                socket.inet_aton(segment.dst) + packing.pack("!HH", segment.sport, segment.dport)
            assert plain_tcp_fields(frame.data, where) == (segment.seq, segment.ack, segment.flags, segment.payload)
            assert not counters
            for broken in (frame.data[:-1], frame.data[:34], frame.data[:20] + b"\x20" + frame.data[21:],
                           frame.data[:12] + b"\x81\x00" + frame.data[14:]):
                assert plain_tcp4_at(frame.link_type, broken) is None or NetStack(Counter()).decode(
                    frame.ts, frame.link_type, broken) is not None
    assert named > 1000
