"""Link, IP, TCP and UDP headers decoded straight from bytes.

This is the per-packet hot path, so it uses struct and slicing only; Scapy is
kept for the application layer.
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from typing import NamedTuple

from icsguard.net.ipfrag import FragmentReassembler

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
VLAN_TAGS = (0x8100, 0x88A8, 0x9100)

LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_LOOP = 0, 1, 101, 108
LINK_SLL, LINK_IPV4, LINK_IPV6, LINK_SLL2 = 113, 228, 229, 276
LINK_RAW_ALIASES = (12, 14)
SUPPORTED_LINKS = {
    LINK_NULL: "BSD loopback", LINK_ETHERNET: "Ethernet", LINK_RAW: "raw IP",
    12: "raw IP", 14: "raw IP", LINK_LOOP: "OpenBSD loopback", LINK_SLL: "Linux cooked",
    LINK_IPV4: "raw IPv4", LINK_IPV6: "raw IPv6", LINK_SLL2: "Linux cooked v2",
}
BSD_AF_INET6 = (10, 24, 28, 30)  # the value differs between BSDs (and Linux)
IPV6_EXTENSIONS = (0, 43, 60, 51)
IPPROTO_TCP, IPPROTO_UDP, IPV6_FRAGMENT = 6, 17, 44

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10

_tcp_header = struct.Struct("!HHIIBB")
_udp_ports = struct.Struct("!HH")
_seq_ack = struct.Struct("!II")
MAX_CACHED_ADDRESSES = 65536
_ipv4_text: dict[bytes, str] = {}


def plain_flow(data: bytes, tcp: int) -> bytes:
    """A plain TCP frame's 12 bytes of addresses and ports, given where its TCP header starts."""
    return data[26:38] if tcp == 34 else data[26:34] + data[tcp:tcp + 4]


def plain_tcp_fields(data: bytes, where: tuple[int, int, int]) -> tuple[int, int, int, bytes]:
    """(sequence number, acknowledgement, flags, payload) of a plain TCP frame."""
    tcp, payload, end = where
    seq, ack = _seq_ack.unpack_from(data, tcp + 4)
    return seq, ack, data[tcp + 13], data[payload:end]


def plain_tcp4_at(link_type: int, data: bytes) -> tuple[int, int, int] | None:
    """Where a plain TCP frame has its TCP header, its payload and its end; None for any other.
    A plain frame is an Ethernet, IPv4, TCP frame that ``NetStack.decode`` would take without
    counting anything: no VLAN tag, not a fragment, every length fitting. A reader that only
    needs to know whose flow a frame is (a shard passing over other shards' traffic, a known
    connection's usual segment) can stop at its flow (plain_flow)."""
    if link_type != LINK_ETHERNET or len(data) < 54 or data[12] != 8 or data[13] or data[23] != IPPROTO_TCP \
            or data[14] >> 4 != 4 or data[20] & 0x3F or data[21]:
        return None
    header = (data[14] & 0x0F) * 4
    total = (data[16] << 8) | data[17]
    tcp = 14 + header
    if header < 20 or total < header + 20 or 14 + total > len(data):
        return None
    offset = (data[tcp + 12] >> 4) * 4
    if offset < 20 or offset > total - header:
        return None
    return tcp, tcp + offset, 14 + total


def _ntop4(raw: bytes) -> str:
    """inet_ntoa with memory: a plant has few hosts and each packet names two."""
    text = _ipv4_text.get(raw)
    if text is None:
        if len(_ipv4_text) >= MAX_CACHED_ADDRESSES:
            _ipv4_text.clear()
        text = _ipv4_text[raw] = socket.inet_ntoa(raw)
    return text


class Segment(NamedTuple):
    """One TCP segment (or UDP datagram) with the addresses it travelled between."""
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    src_mac: bytes | None
    transport: int = IPPROTO_TCP


class UnsupportedLink(Exception):
    def __init__(self, link_type: int):
        names = ", ".join(sorted(set(SUPPORTED_LINKS.values())))
        super().__init__(f"link type {link_type} is not supported (supported: {names})")


class NetStack:
    """Turns frames into TCP segments and UDP datagrams, counting everything it cannot use."""

    def __init__(self, counters: Counter | None = None):
        self.counters = counters if counters is not None else Counter()
        self.fragments = FragmentReassembler(self.counters)

    def decode(self, ts: float, link_type: int, data: bytes) -> Segment | None:
        plain = plain_tcp4_at(link_type, data)
        if plain is not None:
            return self.plain_segment(data, plain)
        return self.decode_other(ts, link_type, data)

    def decode_other(self, ts: float, link_type: int, data: bytes) -> Segment | None:
        """A frame its reader already found not plain (plain_tcp4_at): VLAN tags, other links,
        fragments, UDP, anything odd."""
        mac = None
        if link_type == LINK_ETHERNET:
            if len(data) < 14:
                self.counters["link.truncated"] += 1
                return None
            ethertype = (data[12] << 8) | data[13]
            offset = 14
            while ethertype in VLAN_TAGS and len(data) >= offset + 4:
                ethertype = (data[offset + 2] << 8) | data[offset + 3]
                offset += 4
            mac = data[6:12]
            ip = data[offset:]
        elif link_type == LINK_SLL2:
            if len(data) < 20:
                self.counters["link.truncated"] += 1
                return None
            ethertype = (data[0] << 8) | data[1]
            if data[11] == 6:
                mac = data[12:18]
            ip = data[20:]
        elif link_type == LINK_SLL:
            if len(data) < 16:
                self.counters["link.truncated"] += 1
                return None
            ethertype = (data[14] << 8) | data[15]
            if data[4:6] == b"\x00\x06":
                mac = data[6:12]
            ip = data[16:]
        elif link_type in (LINK_RAW, LINK_IPV4, LINK_IPV6) or link_type in LINK_RAW_ALIASES:
            ethertype = ETH_IPV4 if data[:1] and data[0] >> 4 == 4 else ETH_IPV6
            ip = data
        elif link_type in (LINK_NULL, LINK_LOOP):
            if len(data) < 4:
                self.counters["link.truncated"] += 1
                return None
            family = struct.unpack("!I" if link_type == LINK_LOOP else "=I", data[:4])[0]
            if family > 0xFFFF:  # written on a host of the other byte order
                family = struct.unpack("<I" if link_type == LINK_LOOP else "!I", data[:4])[0]
            ethertype = ETH_IPV4 if family == 2 else ETH_IPV6 if family in BSD_AF_INET6 else 0
            ip = data[4:]
        else:
            raise UnsupportedLink(link_type)
        if ethertype == ETH_IPV4:
            return self._ipv4(ts, ip, mac)
        if ethertype == ETH_IPV6:
            return self._ipv6(ts, ip, mac)
        self.counters["link.not_ip"] += 1
        return None

    def plain_segment(self, data: bytes, where: tuple[int, int, int]) -> Segment:
        """The segment of a plain TCP frame (most of a plant's), straight from the frame: one copy."""
        tcp, payload, end = where
        sport, dport, seq, ack, _, flags = _tcp_header.unpack_from(data, tcp)
        return Segment(_ntop4(data[26:30]), sport, _ntop4(data[30:34]), dport, seq, ack, flags,
                       data[payload:end], data[6:12])

    def _ipv4(self, ts: float, ip: bytes, mac: bytes | None) -> Segment | None:
        if len(ip) < 20 or ip[0] >> 4 != 4:
            self.counters["ip.malformed"] += 1
            return None
        header_len = (ip[0] & 0x0F) * 4
        total = (ip[2] << 8) | ip[3]
        if header_len < 20 or total < header_len:
            self.counters["ip.malformed"] += 1
            return None
        if total > len(ip):
            self.counters["ip.truncated"] += 1
            return None
        proto = ip[9]
        src, dst = ip[12:16], ip[16:20]
        body = ip[header_len:total]
        frag = ((ip[6] << 8) | ip[7])
        if frag & 0x3FFF:  # more-fragments flag or a non-zero offset
            key = (src, dst, ip[4:6], proto)
            body = self.fragments.add(ts, key, (frag & 0x1FFF) * 8, bool(frag & 0x2000), body)
            if body is None:
                return None
        if proto == IPPROTO_TCP:
            return self._tcp(body, _ntop4(src), _ntop4(dst), mac)
        if proto == IPPROTO_UDP:
            return self._udp(body, _ntop4(src), _ntop4(dst), mac)
        self.counters["ip.not_tcp_or_udp"] += 1
        return None

    def _ipv6(self, ts: float, ip: bytes, mac: bytes | None) -> Segment | None:
        if len(ip) < 40 or ip[0] >> 4 != 6:
            self.counters["ip.malformed"] += 1
            return None
        payload_len = (ip[4] << 8) | ip[5]
        if 40 + payload_len > len(ip):
            self.counters["ip.truncated"] += 1
            return None
        proto = ip[6]
        body = ip[40:40 + payload_len]
        src, dst = ip[8:24], ip[24:40]
        while proto in IPV6_EXTENSIONS or proto == IPV6_FRAGMENT:
            if len(body) < 8:
                self.counters["ip.malformed"] += 1
                return None
            if proto == IPV6_FRAGMENT:
                frag = (body[2] << 8) | body[3]
                key = (src, dst, body[4:8], body[0])
                proto = body[0]
                body = self.fragments.add(ts, key, frag & 0xFFF8, bool(frag & 1), body[8:])
                if body is None:
                    return None
                continue
            size = (body[1] + 2) * 4 if proto == 51 else (body[1] + 1) * 8
            proto, body = body[0], body[size:]
        if proto == IPPROTO_TCP:
            return self._tcp(body, socket.inet_ntop(socket.AF_INET6, src),
                             socket.inet_ntop(socket.AF_INET6, dst), mac)
        if proto == IPPROTO_UDP:
            return self._udp(body, socket.inet_ntop(socket.AF_INET6, src),
                             socket.inet_ntop(socket.AF_INET6, dst), mac)
        self.counters["ip.not_tcp_or_udp"] += 1
        return None

    def _tcp(self, tcp: bytes, src: str, dst: str, mac: bytes | None) -> Segment | None:
        if len(tcp) < 20:
            self.counters["tcp.malformed"] += 1
            return None
        sport, dport, seq, ack, offset, flags = _tcp_header.unpack_from(tcp)
        header_len = (offset >> 4) * 4
        if header_len < 20 or header_len > len(tcp):
            self.counters["tcp.malformed"] += 1
            return None
        return Segment(src, sport, dst, dport, seq, ack, flags, tcp[header_len:], mac)

    def _udp(self, udp: bytes, src: str, dst: str, mac: bytes | None) -> Segment | None:
        if len(udp) < 8:
            self.counters["udp.malformed"] += 1
            return None
        sport, dport = _udp_ports.unpack_from(udp)
        return Segment(src, sport, dst, dport, 0, 0, 0, udp[8:], mac, IPPROTO_UDP)
