"""Benign drift on the project's own plant: an hour learned, then an hour at the same pace, 1.5×
and 2× slower and 2× faster, each round of every controller a fresh connection (a reconnect).

    python -m bench.plant_drift [--controllers 2]

The plant is the project's real pymodbus, python-snap7 and asyncua captures played by each
controller every 10 s (``bench.frames.plant``); the drifted hours are played every 15, 20 and
5 s, on connections the learning never saw. Everything goes through ``learn`` and ``analyze``
with the shipped rules and a site file naming the client an HMI. Prints, per hour, the alerts
of each detector (posture findings once per rule and hosts, as the store keeps them) and the
pace drifts noted instead of alerted. The rules' alerts are the same at every pace: the plant's
OPC UA sessions are anonymous without security, and its S7 client writes outputs (the project's
capture of every S7 write); what drift may change is the baseline's and the model's.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

from bench.frames import plant
from icsguard.analysis import analyze, learn
from icsguard.detect.rules import load_rules, shipped_rules
from icsguard.detect.site import load_site
from icsguard.output.store import Store

LEARNED_EVERY = 10.0
HOUR = 3600.0
PACES = (("same pace", 1.0), ("1.5x slower", 1.5), ("2x slower", 2.0), ("2x faster", 0.5))
SITE = "roles: {hmi: [127.0.0.10]}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--controllers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        site_path = folder / "site.yaml"
        site_path.write_text(SITE)
        training = plant(args.controllers, folder / "learn.pcap", copies=int(HOUR / LEARNED_EVERY), every=LEARNED_EVERY)
        learned, _ = learn([str(training)], site_file=load_site(site_path))
        print(f"learned: {learned.packets:,} packets, {len(learned.baseline.pairs)} pairs, "
              f"watched {learned.baseline.observed / 60:.0f} min\n")
        rules = load_rules([str(p) for p in shipped_rules()], load_site(site_path))
        print("| hour | packets | rules (posture once) | baseline | model | pace drifts noted |")
        print("|---|---:|---|---:|---:|---:|")
        for name, factor in PACES:
            every = LEARNED_EVERY * factor
            capture = plant(args.controllers, folder / f"hour-{every:g}.pcap", copies=int(HOUR / every),
                            every=every, first_copy=10_000)
            store = Store(str(folder / f"hour-{every:g}.db"))
            run_id, _, _ = analyze([str(capture)], store, rules=rules, learned=learned)
            alerts = list(store.db.query("SELECT detector, rule FROM alerts"))
            by_detector = Counter(a["detector"] for a in alerts)
            rule_names = Counter(a["rule"] for a in alerts if a["detector"] == "rule")
            drifts = store.db.execute("SELECT count(*) FROM drifts WHERE run_id = ?", [run_id]).fetchone()[0]
            packets = store.run(run_id)["packets"]
            listed = ", ".join(f"{rule} {n}" for rule, n in sorted(rule_names.items())) or "none"
            print(f"| {name} | {packets:,} | {by_detector['rule']} ({listed}) | {by_detector['baseline']} "
                  f"| {by_detector['ml']} | {drifts} |")
            store.close()


if __name__ == "__main__":
    main()
