"""How far icsguard's Modbus/TCP decoding agrees with Wireshark's, capture by capture.

    python bench/tshark_agreement.py [--details] [CAPTURE ...]

Without captures it checks every capture under ../shared/pcaps/public that
tshark finds Modbus in, plus pcaps/*.pcap. Agreement is the share of agreeing
PDUs among all PDUs either tool reported. The compared tuple and the fairness
rules are in tests/tshark_oracle.py.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import tshark_oracle as oracle  # noqa: E402  (needs the path above)

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")
COLUMNS = ("capture", "tshark", "icsguard", "agree", "mismatch", "only tshark", "only icsguard", "agreement")


def has_modbus(path: Path) -> bool:
    """Does Wireshark, with its defaults, dissect any Modbus/TCP in this capture?"""
    command = [oracle.TSHARK, "-n", "-r", str(path), "-Y", "mbtcp", "-T", "fields", "-e", "frame.number"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as tshark:
        found = bool(tshark.stdout.readline())
        tshark.kill()   # one frame is enough
    return found


def captures() -> list[Path]:
    public = sorted(p for p in oracle.PUBLIC.rglob("*") if p.suffix in CAPTURE_SUFFIXES and has_modbus(p))
    return public + sorted(oracle.OWN.glob("modbus_*.pcap"))


def label(path: Path) -> str:
    """The capture's path below the public folder or the repository."""
    path = path.resolve()
    for root in (oracle.PUBLIC.resolve(), oracle.REPO):
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return path.name


def counts(result: oracle.Comparison) -> tuple[int, ...]:
    agree, mismatch = len(result.agreeing), len(result.mismatching)
    only_tshark, only_icsguard = len(result.only_tshark), len(result.only_icsguard)
    return (agree + mismatch + only_tshark, agree + mismatch + only_icsguard,
            agree, mismatch, only_tshark, only_icsguard)


def agreement(tshark: int, icsguard: int, agree: int, mismatch: int, only_tshark: int, only_icsguard: int) -> str:
    union = agree + mismatch + only_tshark + only_icsguard
    return f"{100.0 * agree / union if union else 100.0:.2f}%"


def print_details(result: oracle.Comparison) -> None:
    """Every differing PDU: Wireshark's tuple left, icsguard's right (as compared)."""
    lines = list(result.mismatching)
    lines += [(key, ws, None) for key, ws in result.only_tshark.items()]
    lines += [(key, None, ig) for key, ig in result.only_icsguard.items()]
    for (frame, index), ws, ig in sorted(lines, key=lambda line: line[0]):
        print(f"    frame {frame}#{index}: tshark {_show(ws)}  icsguard {_show(ig)}")


def _show(pdu: oracle.Pdu | None) -> str:
    if pdu is None:
        return "-"
    return ("rsp " if pdu.response else "req ") + str(tuple(pdu[:6]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--details", action="store_true", help="print each differing PDU")
    parser.add_argument("captures", nargs="*", type=Path, help="default: all captures with Modbus")
    args = parser.parse_args()
    if oracle.TSHARK is None:
        sys.exit("tshark is not installed")
    rows = []
    for path in args.captures or captures():
        result = oracle.crosscheck(path)
        rows.append((label(path), *counts(result)))
        if args.details and result.differing_frames:
            print(f"{label(path)}:")
            print_details(result)
    rows.append(("TOTAL", *(sum(column) for column in zip(*(r[1:] for r in rows)))))
    table = [COLUMNS] + [(*r, agreement(*r[1:])) for r in rows]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        print("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                        for i, (v, w) in enumerate(zip(line, widths))))


if __name__ == "__main__":
    main()
