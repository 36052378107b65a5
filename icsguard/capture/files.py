"""Packet sources: capture files read as a stream of frames.

A source never parses protocols; it only yields what was on the wire with its
time, link type and position in the capture (Wireshark's frame number).
"""

from __future__ import annotations

import gzip
import heapq
import os
import struct
import sys
from typing import BinaryIO, Iterable, Iterator, NamedTuple

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
PCAPNG_BODY = {1: 8, 2: 20, 3: 4, 6: 20}     # the fixed part of each kind of block read here
MAX_RECORD = 256 * 1024  # larger than any real snap length; guards against lying lengths


class CaptureError(Exception):
    """A capture file that cannot be read; the message is one line for the user."""


class Frame(NamedTuple):
    ts: float
    link_type: int
    data: bytes
    capture: str
    number: int


STDIN = "-"                # the capture read from standard input


def open_capture(path: str) -> BinaryIO:
    """Open a capture, transparently decompressing gzip. Files, pipes and standard input
    alike: the format is told by peeking, never by seeking back."""
    try:
        raw = open(sys.stdin.fileno(), "rb", closefd=False) if path == STDIN else open(path, "rb")
    except OSError as exc:
        raise CaptureError(f"{path}: cannot open: {exc.strerror}") from None
    if raw.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw


def capture_name(path: str) -> str:
    """What events say they came from: the file's name, or ``stdin``."""
    return "stdin" if path == STDIN else os.path.basename(path)


def rereadable(path: str) -> bool:
    """Whether a capture can be read twice (a file; not a pipe or standard input)."""
    return path != STDIN and os.path.isfile(path)


def read_capture(path: str) -> Iterator[Frame]:
    """Stream the frames of one pcap or pcapng file (optionally gzip'd)."""
    name = capture_name(path)
    with open_capture(path) as f:
        try:
            magic = f.read(4)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise CaptureError(f"{path}: cannot read: {exc}") from None
        if not magic:
            raise CaptureError(f"{path}: file is empty")
        try:
            if magic in PCAP_MAGICS:
                yield from _read_pcap(f, magic, path, name)
            elif magic == PCAPNG_SHB:
                yield from _read_pcapng(f, path, name)
            else:
                raise CaptureError(f"{path}: not a pcap or pcapng capture")
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise CaptureError(f"{path}: cannot read: {exc}") from None


def _read_exact(f: BinaryIO, size: int, path: str, what: str) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise CaptureError(f"{path}: capture is truncated in the middle of {what}")
    return data


def _read_pcap(f: BinaryIO, magic: bytes, path: str, name: str) -> Iterator[Frame]:
    endian, resolution = PCAP_MAGICS[magic]
    header = _read_exact(f, 20, path, "the file header")
    link_type = struct.unpack(endian + "HHiIII", header)[5] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    read = f.read
    make = tuple.__new__      # a Frame without its constructor's extra call: the hottest loop there is
    number = 0
    while True:
        head = read(16)
        if not head:
            return
        number += 1
        if len(head) < 16:
            raise CaptureError(f"{path}: capture is truncated in the middle of packet {number}")
        sec, frac, caplen, _wirelen = record.unpack(head)
        if caplen > MAX_RECORD:
            raise CaptureError(f"{path}: packet {number} claims {caplen} bytes; the file is corrupt")
        data = read(caplen)
        if len(data) < caplen:
            raise CaptureError(f"{path}: capture is truncated in the middle of packet {number}")
        yield make(Frame, (sec + frac * resolution, link_type, data, name, number))


def _read_pcapng(f: BinaryIO, path: str, name: str) -> Iterator[Frame]:
    """pcapng: section headers set the byte order, interfaces set link type and time unit."""
    endian = "<"
    interfaces: list[tuple[int, float]] = []
    number = 0
    block_type = 0x0A0D0D0A
    first = True
    while True:
        if first:
            first = False
        else:
            head = f.read(4)
            if not head:
                return
            if len(head) < 4:
                raise CaptureError(f"{path}: capture is truncated in the middle of a block")
            block_type = struct.unpack(endian + "I", head)[0]
        if block_type == 0x0A0D0D0A:
            length_bytes = _read_exact(f, 8, path, "a section header")
            bom = length_bytes[4:8]
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else ""
            if not endian:
                raise CaptureError(f"{path}: bad pcapng byte-order mark")
            length = struct.unpack(endian + "I", length_bytes[:4])[0]
            if length < 28 or length > MAX_RECORD:
                raise CaptureError(f"{path}: corrupt pcapng section header")
            _read_exact(f, length - 12, path, "a section header")
            interfaces = []
            continue
        length = struct.unpack(endian + "I", _read_exact(f, 4, path, "a block"))[0]
        if length < 12 or length > MAX_RECORD or length % 4:
            raise CaptureError(f"{path}: corrupt pcapng block length {length}")
        body = _read_exact(f, length - 8, path, "a block")[:-4]
        if len(body) < PCAPNG_BODY.get(block_type, 0):
            raise CaptureError(f"{path}: corrupt pcapng block: type {block_type} of {length} bytes")
        if block_type == 1:  # interface description
            link_type = struct.unpack(endian + "H", body[:2])[0]
            interfaces.append((link_type, _ts_resolution(body[8:], endian)))
        elif block_type in (6, 2):  # enhanced packet, obsolete packet
            number += 1
            if block_type == 6:
                iface, hi, lo, caplen = struct.unpack(endian + "IIII", body[:16])
            else:
                iface, _drops, hi, lo, caplen = struct.unpack(endian + "HHIII", body[:16])
            if iface >= len(interfaces):
                raise CaptureError(f"{path}: packet {number} refers to an undeclared interface")
            link_type, resolution = interfaces[iface]
            yield Frame(((hi << 32) | lo) * resolution, link_type, body[20:20 + caplen], name, number)
        elif block_type == 3:  # simple packet: first interface, no timestamp
            number += 1
            if not interfaces:
                raise CaptureError(f"{path}: packet {number} refers to an undeclared interface")
            caplen = struct.unpack(endian + "I", body[:4])[0]
            yield Frame(0.0, interfaces[0][0], body[4:4 + caplen], name, number)


def _ts_resolution(options: bytes, endian: str) -> float:
    """The if_tsresol option (code 9): a power of ten, or of two when the top bit is set."""
    pos = 0
    while pos + 4 <= len(options):
        code, size = struct.unpack(endian + "HH", options[pos:pos + 4])
        if code == 0:
            break
        if code == 9 and size >= 1:
            value = options[pos + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0 ** -value
        pos += 4 + ((size + 3) & ~3)
    return 1e-6


def read_captures(paths: Iterable[str]) -> Iterator[Frame]:
    """Several captures merged into one stream in timestamp order."""
    streams = [read_capture(p) for p in paths]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda frame: frame.ts)
