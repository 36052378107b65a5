"""A pcapng writer: one section, an interface per link type, frames with comments. Enough for
an evidence capture that Wireshark and tshark open with each frame's origin in its comment."""

from __future__ import annotations

import struct
from typing import BinaryIO

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER = 0x1A2B3C4D
OPT_END, OPT_COMMENT, SHB_USERAPPL = 0, 1, 4
SNAPLEN = 262144


def _options(options: list[tuple[int, bytes]]) -> bytes:
    out = b""
    for code, value in options:
        out += struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)
    return out + struct.pack("<HH", OPT_END, 0) if options else b""


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


class PcapNgWriter:
    def __init__(self, file: BinaryIO, comment: str, application: str):
        self.file = file
        self.interfaces: dict[int, int] = {}         # link type -> interface id
        body = struct.pack("<IHHq", BYTE_ORDER, 1, 0, -1) + _options(
            [(OPT_COMMENT, comment.encode()), (SHB_USERAPPL, application.encode())])
        file.write(_block(SHB, body))

    def write(self, ts: float, link_type: int, data: bytes, comment: str | None = None) -> None:
        interface = self.interfaces.get(link_type)
        if interface is None:
            interface = self.interfaces[link_type] = len(self.interfaces)
            self.file.write(_block(IDB, struct.pack("<HHI", link_type, 0, SNAPLEN)))     # microsecond stamps
        micros = round(ts * 1_000_000)
        body = struct.pack("<IIIII", interface, micros >> 32, micros & 0xFFFFFFFF, len(data), len(data))
        body += data + b"\0" * (-len(data) % 4)
        body += _options([(OPT_COMMENT, comment.encode())] if comment else [])
        self.file.write(_block(EPB, body))
