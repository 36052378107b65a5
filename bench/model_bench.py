"""What the learned baseline and model cost: learn time per million packets, and the
throughput of analysis with a model relative to analysis with the rules alone.

    python -m bench.model_bench [--runs N] [--copies K] [--workloads NAME,...] [--estimator NAME]

The public normal captures last minutes, too short for 60-second windows to train a
model, so each workload's captures are replayed ``--copies`` times back to back (a
temporary pcap, each copy shifted in time after the previous one): the same traffic,
K times as long. For each workload it times, best of N runs, all in process:

* decode alone (``icsguard.analysis.decode`` with conversations, as analyze reads);
* learn (``icsguard.analysis.learn``: decode, baseline, windows and the model's fit),
  and the fit alone, reported per million packets learned;
* analysis without a model: decode + the shipped rules (``RuleDetector``);
* analysis with a model: decode + ``RuleDetector`` + ``BaselineDetector`` + ``ModelDetector``
  (what ``icsguard analyze --model`` runs), with the model learned in the step above.

The target is analysis with a model at no less than 70% of the throughput without one;
the two analyses alternate, and the ratio reported is the median of the N rounds' ratios
(this machine's speed drifts by tens of percent within a minute).
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.frames import renumber
from bench.rules_on_public import PUBLIC, REPO
from icsguard.analysis import decode, learn
from icsguard.capture.files import read_captures
from icsguard.detect.baseline import BaselineDetector
from icsguard.detect.model import ESTIMATORS, ModelDetector
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import load_rules
from icsguard.runstats import RunStats

TARGET = 0.70
QUT = "2017QUT_S7comm/attacks"

# name -> (what it is, captures learned from, captures analysed or None: the learned ones),
# relative to the public folder; learned captures (and analysed ones when None) are replayed --copies times
WORKLOADS = {
    "covert": ("Modbus_dataset covert channel (one pair, 45k packets, 9 min per copy), learned and analysed",
               ["Modbus_dataset/covert/channel_4d_12s.pcap"], None),
    "plant": ("ct-samples Plant1 Modbus + S7comm (38 pairs, 38k packets, 85 s per copy), learned and analysed",
              ["ct-samples/modbus/Plant1_ModbusTCP.pcap", "ct-samples/s7/Plant1_S7comm.pcap"], None),
    "flood": (("2017QUT: learned from three HMI captures (25 min per copy), analysing two S7 write floods "
               "once (nearly every event a finding)"),
              [(f"{QUT}/20161215185758.ConveyorBeltGateChangeDirection_Flooding/"
                "20161215185758.ConveyorBeltGateChangeDirection_Flooding.hmi.pcap"),
               f"{QUT}/20161215192146.ConveyorBeltOn_Flooding/20161215192146.ConveyorBeltOn_Flooding.hmi.pcap",
               f"{QUT}/20161215193421.WaterTankOnAuto_Flooding/20161215193421.WaterTankOnAuto_Flooding.hmi.pcap"],
              [f"{QUT}/20161215190548.WaterTankOnManu_Flooding/20161215190548.WaterTankOnManu_Flooding.master.pcap",
               (f"{QUT}/20161215191717.ChangeUpperThreshold_Flooding/"
                "20161215191717.ChangeUpperThreshold_Flooding.master.pcap")]),
}


def replay(paths: list[str], copies: int, folder: str, name: str) -> str:
    """The captures merged in time order and replayed ``copies`` times back to back, as
    one nanosecond pcap (frames of another link type than the first are left out); each
    copy's client ports are renumbered (see renumber)."""
    frames = list(read_captures(paths))
    if not frames:
        return paths[0]
    span = frames[-1].ts - frames[0].ts + 1.0
    link = frames[0].link_type
    path = str(Path(folder) / f"{name}-x{copies}.pcap")
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, link))
        for copy in range(copies):
            for frame in frames:
                if frame.link_type != link:
                    continue
                ns = round((frame.ts + copy * span) * 1e9)
                data = renumber(frame.data, copy) if link == 1 else frame.data
                out.write(struct.pack("<IIII", ns // 1_000_000_000, ns % 1_000_000_000, len(data), len(data)))
                out.write(data)
    return path


def best(runs: int, work) -> tuple[float, object]:
    """The shortest of ``runs`` timings of work(), with the last result."""
    fastest, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest, result


def decode_only(paths: list[str]) -> tuple[int, int]:
    stats = RunStats(captures=list(paths))
    events = sum(1 for _ in decode(paths, stats=stats, conversations=True))
    return stats.packets, events


def analyse(paths: list[str], rules, learned=None) -> tuple[int, int, int]:
    """Each capture as its own run, as analyze would do; (packets, events, alerts)."""
    packets = events = alerts = 0
    for path in paths:
        stats = RunStats(captures=[path])
        detectors: list = [RuleDetector(rules)]
        if learned is not None:
            detectors.append(BaselineDetector(learned.baseline))
            if learned.model.ready:
                detectors.append(ModelDetector(learned.model, learned.baseline))
        for event in decode([path], stats=stats, conversations=True):
            events += 1
            for detector in detectors:
                alerts += len(detector.feed(event))
        for detector in detectors:
            alerts += len(detector.flush())
        packets += stats.packets
    return packets, events, alerts


def measure(name: str, args, rules, scratch: str) -> tuple[list, list, list]:
    """One workload's (learn rows, analysis rows, notes)."""
    what, learn_from, analysed = WORKLOADS[name]
    learn_paths = [str(PUBLIC / p) for p in learn_from]
    analyse_paths = [str(PUBLIC / p) for p in analysed] if analysed else []
    missing = [p for p in learn_paths + analyse_paths if not Path(p).is_file()]
    if missing:
        return [], [], [f"* {name}: skipped, missing {', '.join(Path(p).name for p in missing)}"]
    notes = []
    learn_paths = [replay(learn_paths, args.copies, scratch, name)]
    analyse_paths = analyse_paths or learn_paths
    t_decode, (packets, events) = best(args.runs, lambda paths=learn_paths: decode_only(paths))
    t_learn, (learned, error) = best(args.runs, lambda paths=learn_paths: learn(paths, estimator=args.estimator))
    rows = list(learned.model.rows)

    def refit(model=learned.model, rows=rows):
        model.rows = list(rows)
        model.fit()
    t_fit, _ = best(args.runs, refit)
    per_million = 1e6 / packets if packets else float("nan")
    learn_row = (name, packets, events, len(rows), learned.model.ready, t_decode, t_learn, t_fit,
                 t_learn * per_million, (t_learn - t_decode) * per_million, learned.model.window_seconds)
    if error:
        notes.append(f"* {name}: learning stopped early: {error}")

    # alternate the two analyses so that drift in the machine's speed hits both alike; the
    # ratio is the median of each round's, which that drift disturbs least
    t_rules = t_model = float("inf")
    ratios = []
    for _ in range(args.runs):
        t1, (a_packets, a_events, rule_alerts) = best(1, lambda paths=analyse_paths: analyse(paths, rules))
        t2, (_, _, all_alerts) = best(1, lambda paths=analyse_paths, model=learned: analyse(paths, rules, model))
        t_rules, t_model = min(t_rules, t1), min(t_model, t2)
        ratios.append(t1 / t2)
    analyse_row = (name, what, a_packets, a_events, rule_alerts, all_alerts, t_rules, t_model,
                   statistics.median(ratios), min(ratios), max(ratios))
    return [learn_row], [analyse_row], notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5,
                        help="timed runs of each step; the best counts (the median ratio of the analyses)")
    parser.add_argument("--copies", type=int, default=4, help="times each workload's traffic is replayed")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, of: {', '.join(WORKLOADS)}")
    parser.add_argument("--estimator", default="isolation_forest", choices=ESTIMATORS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)    # one workload, for the parent
    args = parser.parse_args()
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        sys.exit(f"unknown workload(s): {', '.join(unknown)}")
    started = time.perf_counter()

    learn_rows, analyse_rows, notes = [], [], []
    if len(names) == 1:
        with tempfile.TemporaryDirectory(prefix="model_bench-") as scratch:
            learn_rows, analyse_rows, notes = measure(names[0], args, load_rules(), scratch)
        if args.json:
            print(json.dumps([learn_rows, analyse_rows, notes]))
            return
    else:
        # each workload in a process of its own, as each analyze runs: what one leaves in
        # memory (caches, the collector's long-lived objects) must not slow the next
        for name in names:
            done = subprocess.run([sys.executable, "-m", "bench.model_bench", "--workloads", name,
                                   "--runs", str(args.runs), "--copies", str(args.copies),
                                   "--estimator", args.estimator, "--json"],
                                  capture_output=True, text=True, check=True, cwd=REPO)
            more_learn, more_analyse, more_notes = json.loads(done.stdout)
            learn_rows += more_learn
            analyse_rows += more_analyse
            notes += more_notes

    print("## Cost of the learned baseline and model\n")
    print(f"Best of {args.runs} runs each (the relative throughput: the median of {args.runs} alternating rounds), "
          f"each workload in a process of its own, estimator `{args.estimator}`, model windows of "
          f"{learn_rows[0][-1]:g} s; learned traffic replayed {args.copies} times.\n" if learn_rows else "")
    print("### Learning\n")
    print("| workload | packets | events | training windows | model ready | decode s | learn s | fit s | "
          "learn s per million packets | of which beyond decoding |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for name, packets, events, windows, ready, t_decode, t_learn, t_fit, per_m, beyond, _ in learn_rows:
        print(f"| {name} | {packets:,} | {events:,} | {windows:,} | {'yes' if ready else 'no'} | {t_decode:.2f} | "
              f"{t_learn:.2f} | {t_fit:.3f} | {per_m:.1f} | {beyond:.1f} |")
    print()
    print("### Analysis throughput with a model relative to the rules alone\n")
    print("| workload | packets | events | alerts: rules / with model | rules alone: s, packets/s | "
          "with model: s, packets/s | relative throughput: median of rounds (range) | target ≥ 70% |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, _what, packets, events, rule_alerts, all_alerts, t_rules, t_model, relative, low, high in analyse_rows:
        print(f"| {name} | {packets:,} | {events:,} | {rule_alerts:,} / {all_alerts:,} | "
              f"{t_rules:.2f}, {packets / t_rules:,.0f} | {t_model:.2f}, {packets / t_model:,.0f} | "
              f"{relative:.0%} ({low:.0%}–{high:.0%}) | {'met' if relative >= TARGET else '**not met**'} |")
    print()
    for name, what, *_ in analyse_rows:
        print(f"* {name}: {what}")
    for note in notes:
        print(note)
    print(f"\nTotal {time.perf_counter() - started:.1f} s.")


if __name__ == "__main__":
    main()
