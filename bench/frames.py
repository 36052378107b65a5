"""Ethernet, IPv4 and TCP frames made by hand or renumbered, for the benchmarks that build their traffic."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

ETHERNET = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"


def tcp_frame(src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int,
              payload: bytes = b"") -> bytes:
    """One TCP segment in IPv4 in Ethernet (checksums left at 0: icsguard does not check them)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0,
                     bytes(map(int, src[0].split("."))), bytes(map(int, dst[0].split("."))))
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    return ETHERNET + ip + tcp + payload


def handshake(client: tuple[str, int], server: tuple[str, int]) -> list[bytes]:
    """SYN, SYN-ACK, ACK: the client's first byte is sequence number 1000, the server's 5000."""
    return [tcp_frame(client, server, 999, 0, 0x02), tcp_frame(server, client, 4999, 1000, 0x12),
            tcp_frame(client, server, 1000, 5000, 0x10)]


def write_pcap(path: Path, frames: Iterable[bytes], start_us: int = 1_800_000_000_000_000, step_us: int = 10) -> None:
    """A classic microsecond pcap of Ethernet frames, ``step_us`` apart."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        ts = start_us
        for data in frames:
            ts += step_us
            out.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(data), len(data)))
            out.write(data)


SERVER_PORTS = {4840, 4843, 20000, 44818}      # well-known ports above 1023 that must stay


def renumber(data: bytes, copy: int) -> bytes:
    """An Ethernet/IPv4 TCP or UDP frame with its ephemeral (client) port moved by ``copy``,
    so each copy of a connection is a new connection to the reassembler, not a replay
    of sequence numbers it has already seen. Other frames are returned as they are."""
    if copy == 0 or len(data) < 34:
        return data
    offset = 14
    ethertype = int.from_bytes(data[12:14], "big")
    if ethertype == 0x8100 and len(data) >= 38:
        offset, ethertype = 18, int.from_bytes(data[16:18], "big")
    if ethertype != 0x0800 or data[offset + 9] not in (6, 17):
        return data
    ports = offset + (data[offset] & 0x0F) * 4
    if len(data) < ports + 4:
        return data
    out = bytearray(data)
    for at in (ports, ports + 2):
        port = int.from_bytes(data[at:at + 2], "big")
        if port >= 1024 and port not in SERVER_PORTS:
            out[at:at + 2] = (1024 + (port - 1024 + copy * 1009) % 64512).to_bytes(2, "big")
    return bytes(out)


def readdress(data: bytes, old: bytes, new: bytes) -> bytes:
    """An Ethernet/IPv4 frame with the address ``old`` (4 bytes) replaced by ``new`` as source or
    destination: the same traffic from another host. Checksums are left as they were."""
    if len(data) < 34 or data[12:14] != b"\x08\x00":
        return data
    out = bytearray(data)
    for at in (26, 30):
        if data[at:at + 4] == old:
            out[at:at + 4] = new
    return bytes(out)


PLANT = ["modbus_polling.pcap", "s7_reads_writes.pcap", "opcua_none_anonymous.pcap"]
PLANT_SERVER = bytes([127, 0, 0, 2])          # the one server of the project's captures


def plant(controllers: int, path: Path, copies: int = 20, every: float | None = None, first_copy: int = 0) -> Path:
    """The project's Modbus, S7 and OPC UA captures (real pymodbus, python-snap7 and asyncua
    peers) played by ``controllers`` controllers at addresses of their own, ``copies`` times
    each, a copy starting every ``every`` seconds (by default as soon as the last ended).
    Every copy's client ports are renumbered, so each is a fresh connection; ``first_copy``
    shifts the numbering, so that two plants made with different values share no connection."""
    from icsguard.capture.files import read_captures
    repo = Path(__file__).resolve().parent.parent
    if path.is_dir():
        path = path / f"plant-{controllers}.pcap"
    played = []                                 # (seconds into the copy, frame bytes), each capture from 0
    for name in PLANT:
        frames = [f for f in read_captures([str(repo / "pcaps" / name)]) if f.link_type == 1]
        played += [(f.ts - frames[0].ts, f.data) for f in frames]
    played.sort(key=lambda item: item[0])
    every = every or played[-1][0] + 1.0
    stagger = min(0.5, every / 2) / controllers   # controllers start one after another, not in step
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for copy in range(first_copy, first_copy + copies):
            copy_frames = []
            for n in range(controllers):
                server = bytes([10, 20, n // 250, 1 + n % 250])
                copy_frames += [(1_800_000_000 + copy * every + n * stagger + offset,
                                 readdress(renumber(data, copy * controllers + n + 1), PLANT_SERVER, server))
                                for offset, data in played]
            copy_frames.sort(key=lambda item: item[0])
            for ts, data in copy_frames:
                micros = round(ts * 1e6)
                out.write(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(data), len(data)))
                out.write(data)
    return path
