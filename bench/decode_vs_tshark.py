"""Benchmark: `icsguard decode` against `tshark` decoding the same fields.

Generates (once) a capture of real polling with the pcaps script — pymodbus for
Modbus, python-snap7 for S7, asyncua for OPC UA — then times both tools on it,
and on its first half to show that icsguard's memory does not grow with the
capture. Prints a Markdown table for the README.

    python -m bench.decode_vs_tshark [--proto modbus|s7|opcua] [--packets 200000] [--capture FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
# per protocol: the pcaps script's option, its output, tshark's filter and the fields both tools give
PROTOCOLS = {
    "modbus": ("--bench", "bench_modbus.pcap", "mbtcp",
               ["frame.number", "mbtcp.trans_id", "mbtcp.unit_id", "modbus.func_code", "modbus.reference_num",
                "modbus.word_cnt", "modbus.bit_cnt", "modbus.exception_code"]),
    "s7": ("--bench-s7", "bench_s7.pcap", "s7comm",
           ["frame.number", "s7comm.header.rosctr", "s7comm.header.pduref", "s7comm.param.func",
            "s7comm.param.itemcount", "s7comm.param.item.area", "s7comm.param.item.db",
            "s7comm.param.item.address.byte", "s7comm.param.item.address.bit", "s7comm.data.returncode",
            "s7comm.header.errcls", "s7comm.header.errcod"]),
    "opcua": ("--bench-opcua", "bench_opcua.pcap", "opcua",
              ["frame.number", "opcua.transport.type", "opcua.transport.scid", "opcua.security.rqid",
               "opcua.servicenodeid.numeric", "opcua.RequestHandle", "opcua.ServiceResult",
               "opcua.nodeid.nsindex", "opcua.nodeid.numeric", "opcua.nodeid.string"]),
}


def measure(command: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak resident MB and output lines of one command writing to a file."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        if status:
            sys.exit(f"{command[0]} failed with status {status}")
        out.seek(0)
        lines = sum(1 for _ in out)
    return elapsed, usage.ru_maxrss // 1024, lines


def count_packets(capture: Path) -> int:
    table = subprocess.run(["capinfos", "-M", "-c", "-T", str(capture)], capture_output=True, text=True, check=True)
    return int(table.stdout.splitlines()[-1].split("\t")[-1])


def first_half(capture: Path) -> Path:
    half = capture.with_name(capture.stem + "_half.pcap")
    if not half.exists():
        subprocess.run(["editcap", "-r", str(capture), str(half), f"1-{count_packets(capture) // 2}"], check=True)
    return half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto", choices=sorted(PROTOCOLS), default="modbus")
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--capture", type=Path, help="use this capture instead of generating one")
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()

    option, name, display_filter, fields = PROTOCOLS[args.proto]
    capture = args.capture
    if capture is None:
        OUT.mkdir(parents=True, exist_ok=True)
        capture = OUT / name
        if not capture.exists():
            subprocess.run([sys.executable, "-m", "pcaps.make_captures", option, str(args.packets),
                            "--out", str(OUT)], check=True, cwd=REPO)
    packets = count_packets(capture)

    def icsguard(path: Path) -> list[str]:
        return [sys.executable, "-m", "icsguard", "decode", str(path)]

    def tshark(path: Path) -> list[str]:
        return ["tshark", "-r", str(path), "-Y", display_filter, "-T", "fields"] + [a for f in fields for a in ("-e", f)]

    def best(command, path: Path) -> tuple[float, int, int]:
        return min(measure(command(path)) for _ in range(args.runs))

    ig_time, ig_mem, ig_lines = best(icsguard, capture)
    ts_time, ts_mem, ts_lines = best(tshark, capture)
    half = first_half(capture)
    _, ig_half_mem, _ = best(icsguard, half)

    print(f"capture: {capture.name}, {packets:,} packets; icsguard PDUs {ig_lines:,}, tshark {args.proto} frames {ts_lines:,}")
    print()
    print("| tool | seconds | packets/s | peak memory |")
    print("|---|---:|---:|---:|")
    print(f"| icsguard decode (JSONL) | {ig_time:.2f} | {packets / ig_time:,.0f} | {ig_mem} MB |")
    print(f"| tshark -T fields | {ts_time:.2f} | {packets / ts_time:,.0f} | {ts_mem} MB |")
    print()
    print(f"icsguard / tshark throughput: {ts_time / ig_time:.2f}x")
    print(f"icsguard peak memory: {ig_half_mem} MB on the first half, {ig_mem} MB on the whole capture")


if __name__ == "__main__":
    main()
