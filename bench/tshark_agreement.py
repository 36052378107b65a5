"""How far icsguard's Modbus/TCP, S7comm or OPC UA decoding agrees with Wireshark's, capture by capture.

    python -m bench.tshark_agreement [--proto modbus|s7|opcua|all] [--details] [CAPTURE ...]

Without captures it checks every capture under ../shared/pcaps/public that
tshark finds the protocol in (for OPC UA also on the other server ports that
tests/support/tshark_opcua_oracle.py lists), plus pcaps/modbus_*.pcap, pcaps/s7_*.pcap
or pcaps/opcua_*.pcap. Agreement is the share of agreeing PDUs (OPC UA messages)
among all that either tool reported. The compared tuples and the fairness rules
are in tests/support/tshark_oracle.py (Modbus), tests/support/tshark_s7_oracle.py (S7comm) and
tests/support/tshark_opcua_oracle.py (OPC UA).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, NamedTuple

from tests.support import tshark_opcua_oracle as opcua_oracle
from tests.support import tshark_oracle as oracle
from tests.support import tshark_s7_oracle as s7_oracle

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")
COLUMNS = ("capture", "tshark", "icsguard", "agree", "mismatch", "only tshark", "only icsguard", "agreement")


class Protocol(NamedTuple):
    crosscheck: Callable[[Path], oracle.Comparison]
    display_filter: str     # what tshark finds the protocol by
    own: str                # this project's captures of it, under pcaps/
    options: Callable[[Path], tuple[str, ...]] = lambda path: ()   # tshark options the oracle uses for a capture


PROTOCOLS = {"modbus": Protocol(oracle.crosscheck, "mbtcp", "modbus_*.pcap"),
             "s7": Protocol(s7_oracle.crosscheck, "s7comm", "s7_*.pcap"),
             "opcua": Protocol(opcua_oracle.crosscheck, "opcua", "opcua_*.pcap", opcua_oracle.decode_as)}


def has(path: Path, display_filter: str, *options: str) -> bool:
    """Does Wireshark, with its defaults and these options, dissect any of the protocol in this capture?"""
    command = [oracle.TSHARK, "-n", "-r", str(path), *options, "-Y", display_filter,
               "-T", "fields", "-e", "frame.number"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as tshark:
        found = bool(tshark.stdout.readline())
        tshark.kill()   # one frame is enough
    return found


def captures(protocol: Protocol) -> list[Path]:
    public = sorted(p for p in oracle.PUBLIC.rglob("*") if p.suffix in CAPTURE_SUFFIXES)
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        found = pool.map(lambda p: has(p, protocol.display_filter, *protocol.options(p)), public)
        public = [p for p, yes in zip(public, found) if yes]
    return public + sorted(oracle.OWN.glob(protocol.own))


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


def _show(pdu) -> str:
    return "-" if pdu is None else pdu.show()


def report(protocol: Protocol, paths: list[Path], details: bool) -> None:
    """The agreement table, after the differing PDUs when asked for."""
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:   # each check mostly waits on subprocesses
        results = list(pool.map(protocol.crosscheck, paths))
    rows = []
    for path, result in zip(paths, results):
        rows.append((label(path), *counts(result)))
        if details and result.differing_frames:
            print(f"{label(path)}:")
            print_details(result)
    rows.append(("TOTAL", *(sum(column) for column in zip(*(r[1:] for r in rows)))))
    table = [COLUMNS] + [(*r, agreement(*r[1:])) for r in rows]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        print("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                        for i, (v, w) in enumerate(zip(line, widths))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proto", choices=(*PROTOCOLS, "all"), default="modbus", help="default: modbus")
    parser.add_argument("--details", action="store_true", help="print each differing PDU")
    parser.add_argument("captures", nargs="*", type=Path, help="default: all captures with the protocol")
    args = parser.parse_args()
    if oracle.TSHARK is None:
        sys.exit("tshark is not installed")
    for name in PROTOCOLS if args.proto == "all" else [args.proto]:
        if args.proto == "all":
            print(f"== {name}")
        report(PROTOCOLS[name], args.captures or captures(PROTOCOLS[name]), args.details)


if __name__ == "__main__":
    main()
