"""Benchmark: full detection against tshark's decoding, memory as the capture grows, and workers.

Builds a mixed capture of real Modbus, S7 and OPC UA polling (the project's pymodbus,
python-snap7 and asyncua captures, played by 24 controllers, every copy a fresh connection
with client ports of its own, so that tshark sees no retransmission), and a training capture
of the same plant whose connections it never shares, from which a model is learned. Then, in
alternating rounds, times tshark extracting the fields icsguard decodes, `icsguard decode`,
`analyze`, `analyze --model` and `analyze --model --workers N` for each N asked (the
scaling curve); prints each one's best time, its ratio to tshark's and its peak memory; and,
with ``--scale K``, the peak memory of both analyses on a capture K times larger.

    python -m bench.analyze_vs_tshark [--packets 250000] [--runs 3] [--scale 10] [--workers 2,3,4] [--dask]
"""

from __future__ import annotations

import argparse
import compileall
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.decode_vs_tshark import OUT, PROTOCOLS, count_packets, measure
from bench.frames import plant

CONTROLLERS = 24
FRAMES_PER_COPY = 640          # one controller's Modbus, S7 and OPC UA connections, once
EVERY = 10.0                   # seconds between a controller's polling rounds
TRAINING_COPIES = 8
FIRST_TRAINING_COPY = 20_000   # far from the analysed copies: no port in common


def mixed_capture(packets: int) -> Path:
    """The plant capture of about ``packets`` packets, made once."""
    path = OUT / f"mixed_{packets}.pcap"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        copies = -(-packets // (CONTROLLERS * FRAMES_PER_COPY))
        plant(CONTROLLERS, path, copies=copies, every=EVERY)
    return path


def learned_model(folder: Path) -> Path:
    training = plant(CONTROLLERS, folder / "training.pcap", copies=TRAINING_COPIES, every=EVERY,
                     first_copy=FIRST_TRAINING_COPY)
    model = folder / "model.json.gz"
    subprocess.run([sys.executable, "-m", "icsguard", "learn", str(training), "--model", str(model)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return model


def tshark_command(capture: Path) -> list[str]:
    """tshark extracting the fields of all three protocols, as bench.decode_vs_tshark does for one."""
    filters = " or ".join(display for _, _, display, _ in PROTOCOLS.values())
    fields = list(dict.fromkeys(field for *_, names in PROTOCOLS.values() for field in names))
    return ["tshark", "-r", str(capture), "-Y", filters, "-T", "fields"] + [a for f in fields for a in ("-e", f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=250_000)
    parser.add_argument("--runs", type=int, default=3, help="best of this many alternating rounds")
    parser.add_argument("--scale", type=int, default=0, metavar="K", help="also peak memory on a capture K times larger")
    parser.add_argument("--workers", default="2", help="worker counts to time, comma-separated (the scaling curve)")
    parser.add_argument("--dask", action="store_true", help="also a local Dask cluster of 2 workers")
    args = parser.parse_args()
    capture = mixed_capture(args.packets)
    for package in ("icsguard", "parsers"):     # timed as installed: no module compiled at each start
        compileall.compile_dir(Path(__file__).resolve().parent.parent / package, quiet=1)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        model = learned_model(scratch)

        def icsguard(*words: str, db: bool = True) -> list[str]:
            store = ["--db", str(scratch / "run.db")] if db else []
            return [sys.executable, "-m", "icsguard", *words, *store]

        settings = {
            "tshark -T fields": tshark_command(capture),
            "icsguard decode": icsguard("decode", str(capture), db=False),
            "icsguard analyze": icsguard("analyze", str(capture)),
            "icsguard analyze --model": icsguard("analyze", str(capture), "--model", str(model)),
        }
        for workers in (int(n) for n in args.workers.split(",") if n.strip()):
            settings[f"analyze --model --workers {workers}"] = icsguard("analyze", str(capture), "--model", str(model),
                                                                         "--workers", str(workers))
        if args.dask:
            settings["analyze --model, Dask of 2"] = icsguard("analyze", str(capture), "--model", str(model),
                                                              "--workers", "2", "--scheduler", "local")
        best: dict[str, tuple[float, int]] = {}
        for _ in range(args.runs):
            for label, command in settings.items():
                (scratch / "run.db").unlink(missing_ok=True)
                seconds, peak_mb, _ = measure(command)
                if label not in best or seconds < best[label][0]:
                    best[label] = (seconds, max(peak_mb, best.get(label, (0, 0))[1]))
        larger = {}
        if args.scale:
            big = mixed_capture(args.packets * args.scale)
            for label in ("icsguard analyze", "icsguard analyze --model"):
                (scratch / "run.db").unlink(missing_ok=True)
                larger[label] = measure([big if word == str(capture) else word for word in settings[label]])[1]
    tshark = best["tshark -T fields"][0]
    one = best["icsguard analyze --model"][0]
    print(f"capture: {capture.name}, {count_packets(capture):,} packets of Modbus, S7 and OPC UA polling, "
          f"{CONTROLLERS} controllers; {cores} cores; best of {args.runs} alternating rounds\n")
    print("| command | seconds | of tshark's time | peak MB |" + (f" peak MB, {args.scale}x capture |" if larger else ""))
    print("|---|---:|---:|---:|" + ("---:|" if larger else ""))
    for label, (seconds, peak_mb) in best.items():
        extra = f" {larger[label]} |" if label in larger else (" |" if larger else "")
        print(f"| {label} | {seconds:.2f} | {seconds / tshark:.2f} | {peak_mb} |{extra}")
    print()
    for label, (seconds, _) in best.items():
        if "--workers" in label or "Dask" in label:
            print(f"{label}: {seconds / one:.2f} of one process's time")


if __name__ == "__main__":
    main()
