"""Benchmark: `icsguard analyze` on 1, 2 and N worker processes (and a local Dask cluster).

Times each setting several times, alternating them so that the machine's state favours none,
on the benchmark captures of bench.decode_vs_tshark (real pymodbus, python-snap7 and asyncua
polling, every repeat a fresh connection) or on the captures given, and prints a Markdown table:
the best time, its ratio to one worker, and the peak memory of the largest process.

    python -m bench.workers [--runs 3] [--dask] [--plant K] [CAPTURE ...]

``--plant K`` builds the capture instead: the project's Modbus, S7 and OPC UA captures (real
pymodbus, python-snap7 and asyncua peers) played by K controllers at addresses of their own,
each copy's client ports renumbered, so that the work can be shared (one server's traffic is
never split: a capture dominated by one server gains nothing from more workers).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.decode_vs_tshark import OUT, PROTOCOLS, measure
from bench.frames import plant


def benchmark_captures() -> list[Path]:
    """The decode benchmark's captures of the three protocols, made when missing."""
    found = []
    for option, name, _, _ in PROTOCOLS.values():
        path = OUT / name
        if not path.exists():
            subprocess.run([sys.executable, "-m", "pcaps.make_captures", option, "--out", str(OUT)], check=True)
        found.append(path)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dask", action="store_true", help="also a local Dask cluster of N workers")
    parser.add_argument("--plant", type=int, metavar="K", help="build a capture of K controllers instead")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory()
    captures = ([plant(args.plant, Path(scratch.name))] if args.plant else args.captures) or benchmark_captures()
    cores = os.cpu_count() or 1
    settings = [("1 worker", ["--workers", "1"]), ("2 workers", ["--workers", "2"])]
    if cores > 2:
        settings.append((f"{cores} workers", ["--workers", str(cores)]))
    if args.dask:
        settings.append((f"Dask, {max(cores, 2)} workers", ["--workers", str(max(cores, 2)), "--scheduler", "local"]))
    best: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            for label, options in settings:
                db = Path(folder) / f"{run}-{label.replace(' ', '_')}.db"
                seconds, peak_mb, _ = measure([sys.executable, "-m", "icsguard", "analyze", "--db", str(db),
                                               *map(str, captures), *options])
                if label not in best or seconds < best[label][0]:
                    best[label] = (seconds, peak_mb)
    one = best["1 worker"][0]
    print(f"{len(captures)} capture(s), {cores} cores, best of {args.runs} alternating runs\n")
    print("| setting | seconds | of one worker's time | peak MB (largest process) |")
    print("|---|---:|---:|---:|")
    for label, (seconds, peak_mb) in best.items():
        print(f"| {label} | {seconds:.2f} | {seconds / one:.2f} | {peak_mb} |")
    scratch.cleanup()


if __name__ == "__main__":
    main()
