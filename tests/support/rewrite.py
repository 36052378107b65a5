"""Test captures made from real ones: the same application bytes, re-cut, re-ordered,
re-encapsulated. The bytes still come from real protocol stacks; only the packaging changes."""

from __future__ import annotations

import struct
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from icsguard.capture.files import read_capture
from icsguard.net.netstack import NetStack

CLIENT_ISN, SERVER_ISN = 1000, 5000


def frames(path: str | Path) -> list:
    return list(read_capture(str(path)))


def write_pcap(path: str | Path, packets: list[tuple[float, bytes]], link_type: int = 1) -> Path:
    """A classic little-endian microsecond pcap."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, link_type))
        for ts, data in packets:
            usec = int(round(ts * 1e6))
            out.write(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(data), len(data)))
            out.write(data)
    return Path(path)


def streams(path: str | Path) -> tuple[tuple, tuple, list[tuple[bool, bytes]]]:
    """The first TCP connection's payloads in capture order: (client, server, [(from_client, bytes)])."""
    stack = NetStack()
    client = server = None
    payloads = []
    for frame in frames(path):
        seg = stack.decode(frame.ts, frame.link_type, frame.data)
        if seg is None:
            continue
        if client is None and seg.flags & 0x02 and not seg.flags & 0x10:
            client, server = (seg.src, seg.sport), (seg.dst, seg.dport)
        if client and seg.payload and {(seg.src, seg.sport), (seg.dst, seg.dport)} == {client, server}:
            if not payloads or payloads[-1][1] != seg.payload or payloads[-1][0] != ((seg.src, seg.sport) == client):
                payloads.append(((seg.src, seg.sport) == client, seg.payload))
    return client, server, payloads


def cut(payloads: list[tuple[bool, bytes]], size: int) -> list[tuple[bool, int, bytes]]:
    """Each direction's stream re-cut into segments of ``size`` bytes: (from_client, offset, bytes)."""
    out, offsets = [], {True: 0, False: 0}
    for from_client, data in payloads:
        for i in range(0, len(data), size):
            out.append((from_client, offsets[from_client], data[i:i + size]))
            offsets[from_client] += len(data[i:i + size])
    return out


def coalesce(payloads: list[tuple[bool, bytes]], per_segment: int) -> list[tuple[bool, int, bytes]]:
    """``per_segment`` consecutive payloads of a direction sent as one segment (many PDUs per segment)."""
    out, offsets = [], {True: 0, False: 0}
    for direction in (True, False):
        mine = [data for from_client, data in payloads if from_client == direction]
        for i in range(0, len(mine), per_segment):
            data = b"".join(mine[i:i + per_segment])
            out.append((direction, offsets[direction], data))
            offsets[direction] += len(data)
    return out


def write_conversation(path: str | Path, client: tuple, server: tuple,
                       segments: list[tuple[bool, int, bytes]], start: float = 1_700_000_000.0) -> Path:
    """A handshake, then the segments as given (any order, duplicates allowed), then FINs."""
    c_ip, c_port = client
    s_ip, s_port = server
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    eth_back = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    packets = [
        eth / IP(src=c_ip, dst=s_ip) / TCP(sport=c_port, dport=s_port, flags="S", seq=CLIENT_ISN),
        eth_back / IP(src=s_ip, dst=c_ip) / TCP(sport=s_port, dport=c_port, flags="SA", seq=SERVER_ISN, ack=CLIENT_ISN + 1),
        eth / IP(src=c_ip, dst=s_ip) / TCP(sport=c_port, dport=s_port, flags="A", seq=CLIENT_ISN + 1, ack=SERVER_ISN + 1),
    ]
    received = {True: 0, False: 0}     # what each side has acknowledged: the furthest byte sent so far
    for from_client, offset, data in segments:
        received[from_client] = max(received[from_client], offset + len(data))
        if from_client:
            packets.append(eth / IP(src=c_ip, dst=s_ip) /
                           TCP(sport=c_port, dport=s_port, flags="PA", seq=CLIENT_ISN + 1 + offset,
                               ack=SERVER_ISN + 1 + received[False]) / data)
        else:
            packets.append(eth_back / IP(src=s_ip, dst=c_ip) /
                           TCP(sport=s_port, dport=c_port, flags="PA", seq=SERVER_ISN + 1 + offset,
                               ack=CLIENT_ISN + 1 + received[True]) / data)
    return write_pcap(path, [(start + i * 0.001, bytes(p)) for i, p in enumerate(packets)])


def relink(frames_in: list, link_type: int, header) -> list[tuple[float, bytes]]:
    """Ethernet frames re-encapsulated: the IP packet behind a new link header."""
    out = []
    for frame in frames_in:
        ethertype = struct.unpack("!H", frame.data[12:14])[0]
        out.append((frame.ts, header(ethertype, frame.data[6:12]) + frame.data[14:]))
    return out


def sll_header(ethertype: int, mac: bytes) -> bytes:
    return struct.pack("!HHH", 0, 772, 6) + mac + b"\x00\x00" + struct.pack("!H", ethertype)


def null_header(ethertype: int, mac: bytes) -> bytes:
    return struct.pack("<I", 2 if ethertype == 0x0800 else 30)


def vlan_frames(frames_in: list, tags: list[tuple[int, int]]) -> list[tuple[float, bytes]]:
    """Ethernet frames with 802.1Q (or QinQ) tags inserted: tags are (tpid, vlan id)."""
    out = []
    for frame in frames_in:
        inserted = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in tags)
        out.append((frame.ts, frame.data[:12] + inserted + frame.data[12:]))
    return out


def corrupt(payloads: list[list], rng, payloads_hit: int = 6) -> list[list]:
    """A copy of [from_client, bytes] payloads with a few random bytes changed in a few of them."""
    mutated = [list(p) for p in payloads]
    for _ in range(payloads_hit):
        i = rng.randrange(len(mutated))
        data = bytearray(mutated[i][1])
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        mutated[i][1] = bytes(data)
    return mutated
