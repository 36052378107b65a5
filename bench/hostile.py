"""Hostile traffic against icsguard's memory: captures an attacker could make, and the peak
memory and time of `icsguard analyze` on each.

    python -m bench.hostile [--out DIR] [--only NAME,...] [--scale 1.0]

The captures (written once into --out, default bench/out/hostile):
- syn_flood: 1,000,000 TCP SYNs to port 502, each from another source address and port;
- half_mbap: 100,000 connections that each send half an MBAP header, then nothing;
- opcua_huge_chunks: 2,000 OPC UA connections, each announcing a 4 GB message (half of them)
  or 16 MiB chunks, and sending 64 KiB of it;
- out_of_order: a 50 MB Modbus stream whose segments come in reverse order within each
  window, with a hole every 64 segments.
--scale shrinks them all (0.1: a tenth) for a quick look. The target is at most 200 MB
of peak memory for each, and every analyze finishing.
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.frames import handshake, tcp_frame, write_pcap

REPO = Path(__file__).resolve().parent.parent
TARGET_MB = 200
SERVER = "10.0.0.2"


def _ip(n: int) -> str:
    return f"{10 + (n >> 24 & 0x7F)}.{n >> 16 & 0xFF}.{n >> 8 & 0xFF}.{n & 0xFF or 1}"


def syn_flood(scale: float) -> Iterator[bytes]:
    for n in range(int(1_000_000 * scale)):
        yield tcp_frame((_ip(n + 1000), 1024 + n % 60000), (SERVER, 502), n * 7919, 0, 0x02)


def half_mbap(scale: float) -> Iterator[bytes]:
    for n in range(int(100_000 * scale)):
        client = (_ip(n + 1000), 1024 + n % 60000)
        yield from handshake(client, (SERVER, 502))
        yield tcp_frame(client, (SERVER, 502), 1000, 5000, 0x18, struct.pack("!HH", n & 0xFFFF, 0)[:3])


def opcua_huge_chunks(scale: float) -> Iterator[bytes]:
    body = bytes(1400)
    for n in range(int(2000 * scale)):
        client, server = (_ip(n + 1000), 1024 + n % 60000), (SERVER, 4840)
        yield from handshake(client, server)
        size = 0xFFFFFFFF if n % 2 else 16 << 20
        seq = 1000
        header = b"MSGC" + struct.pack("<I", size) + struct.pack("<IIII", 1, 1, n, n)
        for i in range(47):                   # 64 KiB of the announced message
            payload = (header if i == 0 else b"") + body
            yield tcp_frame(client, server, seq, 5000, 0x10, payload)
            seq += len(payload)


def out_of_order(scale: float) -> Iterator[bytes]:
    client, server = ("10.0.0.10", 40000), (SERVER, 502)
    yield from handshake(client, server)
    request = struct.pack("!HHHBBHH", 1, 0, 6, 1, 3, 0, 10)
    segments, seq = [], 1000
    for _ in range(int(50_000_000 * scale) // 1400):
        payload = (request * 117)[:1400]
        segments.append((seq, payload))
        seq += len(payload)
    rng = random.Random(1)
    for start in range(0, len(segments), 64):
        window = segments[start:start + 64]
        del window[rng.randrange(len(window))]            # a hole
        for seg_seq, payload in reversed(window):
            yield tcp_frame(client, server, seg_seq, 5000, 0x10, payload)


CAPTURES: dict[str, Callable[[float], Iterator[bytes]]] = {
    "syn_flood": syn_flood, "half_mbap": half_mbap, "opcua_huge_chunks": opcua_huge_chunks,
    "out_of_order": out_of_order}


def measure(capture: Path) -> tuple[float, float, int, str]:
    """Peak memory (MB) and seconds of `icsguard analyze` on a capture, its exit status and last line."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "icsguard", "analyze", "--db", f"{folder}/h.db",
                                    str(capture)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        errors = process.stderr.read().strip().splitlines()
        process.stderr.close()
    return usage.ru_maxrss / 1024, seconds, os.waitstatus_to_exitcode(status), errors[-1] if errors else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "hostile")
    parser.add_argument("--only", default=",".join(CAPTURES))
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"| capture | packets | size | peak memory | time | exit | within {TARGET_MB} MB |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name in args.only.split(","):
        path = args.out / f"{name}{'' if args.scale == 1 else f'_x{args.scale:g}'}.pcap"
        if not path.exists():
            write_pcap(path, CAPTURES[name](args.scale))
        packets = sum(1 for _ in _records(path))
        peak, seconds, code, last = measure(path)
        print(f"| {name} | {packets:,} | {path.stat().st_size / 1e6:,.0f} MB | {peak:,.0f} MB | {seconds:,.1f} s "
              f"| {code} | {'yes' if peak <= TARGET_MB and code == 0 else 'NO'} |" + (f" {last}" if code else ""),
              flush=True)


def _records(path: Path) -> Iterator[int]:
    with open(path, "rb") as f:
        f.read(24)
        while header := f.read(16):
            length = struct.unpack("<I", header[8:12])[0]
            f.seek(length, 1)
            yield length


if __name__ == "__main__":
    main()
