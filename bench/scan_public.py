"""Which checks of the default scan policy fail on which public datasets.

    python -m bench.scan_public [--skip-larger-than MB]

Analyses every capture under ../shared/pcaps/public one dataset (top folder) at a time into a
throw-away database, scans it with the shipped policy and no site file (so the checks that need
one are NOT_ASSESSED), and prints a Markdown table: per dataset, its captures and packets, the
checks that FAILed, and how many passed and could not be assessed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from icsguard.analysis import analyze
from icsguard.capture.files import CaptureError
from icsguard.detect.rules import load_rules, shipped_rules
from icsguard.output import scan as scanner
from icsguard.output.policy import load_policy
from icsguard.output.store import Store

REPO = Path(__file__).resolve().parent.parent
PUBLIC = REPO.parent / "shared" / "pcaps" / "public"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


def datasets(limit_mb: float) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(PUBLIC.rglob("*")):
        if path.suffix in CAPTURE_SUFFIXES and path.is_file() and path.stat().st_size <= limit_mb * 1e6:
            found.setdefault(path.relative_to(PUBLIC).parts[0], []).append(path)
    return found


def scan_dataset(captures: list[Path]) -> tuple[dict, int]:
    """The scan of one dataset, and its packets; captures that cannot be read are left out."""
    policy, rules = load_policy(None, frozenset(scanner.CHECKS)), load_rules(shipped_rules())
    with tempfile.TemporaryDirectory() as folder:
        store = Store(str(Path(folder) / "scan.db"))
        runs, packets = [], 0
        for capture in captures:
            try:
                run_id, _status, _error = analyze([str(capture)], store, rules=rules)
            except CaptureError:
                continue
            runs.append(run_id)
            packets += store.run(run_id)["packets"] or 0
        report = scanner.scan(store, policy, None, runs, "bench")
        store.close()
    return report, packets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-larger-than", type=float, default=50.0, metavar="MB")
    args = parser.parse_args()
    began = time.monotonic()
    print("| dataset | captures | packets | FAIL | PASS | NOT_ASSESSED |")
    print("|---|---:|---:|---|---:|---:|")
    for name, captures in datasets(args.skip_larger_than).items():
        report, packets = scan_dataset(captures)
        failed = [c for c in report["checks"] if c["status"] == "FAIL"]
        fails = "<br>".join(f"`{c['id']}` ({', '.join(c['iec62443'])})" for c in failed) or "-"
        print(f"| {name} | {len(captures)} | {packets:,} | {fails} | {report['summary']['PASS']} | "
              f"{report['summary']['NOT_ASSESSED']} |", flush=True)
    print(f"\n{time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
