"""What the shipped rule packs say about labelled public ICS captures: hits on attacks, noise on normal traffic.

    python -m bench.rules_on_public [--max-events N] [--skip-larger-than MB] [--per-file] [--site FILE] [CAPTURE ...]

Runs the shipped packs (no site file unless --site, so rules naming site groups stay inactive) over
every capture under ../shared/pcaps/public (or the given ones, relative to that folder
or absolute) and prints Markdown tables: for each attack capture the rule ids that fired
and whether the rule that should catch it did; for each normal capture its alerts, the
rules behind them and alerts per hour of traffic; then the evidence frames of every
alert on normal traffic, which is where a noisy rule shows. The roles come from each
dataset's SOURCE.txt and INDEX.md, written down in LABELS below.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from icsguard.analysis import decode
from icsguard.capture.files import CaptureError
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import load_rules
from icsguard.detect.site import load_site
from icsguard.events import COMMON_FIELDS, Event
from icsguard.runstats import RunStats

REPO = Path(__file__).resolve().parent.parent
PUBLIC = REPO.parent / "shared" / "pcaps" / "public"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


@dataclass(frozen=True)
class Label:
    role: str              # attack, test (rule-trigger / fuzz traffic) or normal
    kind: str              # what the capture holds, per its SOURCE.txt
    expect: tuple = ()     # rule ids that should fire on it with the shipped packs and no site file


# First match wins (regex searched in the path relative to the public folder). Anything
# unmatched is normal traffic. Attack = labelled malicious or described as attack-relevant.
LABELS: list[tuple[str, Label]] = [
    # 2017QUT_S7comm: unauthorised WriteVar jobs from 10.10.10.66 (labels: <run>.master.csv)
    (r"2017QUT_S7comm/attacks/.*_Flooding", Label("attack", "S7 WriteVar flood (DoS) from 10.10.10.66")),
    (r"2017QUT_S7comm/attacks/", Label("attack", "unauthorised S7 WriteVar process change from 10.10.10.66")),
    # Modbus_dataset (Lemay & Fernandez, per-frame labels in *_labeled.csv)
    (r"characterization_modbus", Label("attack", "Modbus register scan (3329 exception-2 replies)",
                                       ("modbus.points_list_scan",))),
    (r"send_a_fake_command", Label("attack", "rogue FC5 write from 192.168.1.101 (not the master)")),
    (r"CnC_uploading_exe", Label("attack", "C&C upload over TLS/SMB (no Modbus in the attack)")),
    (r"exploit_ms08_netapi", Label("attack", "MS08-067 over SMB (no Modbus in the attack)")),
    (r"moving_two_files", Label("attack", "lateral file transfer over SMB/TLS (no Modbus)")),
    (r"Modbus_dataset/covert/", Label("attack", "Modbus covert channel (whole capture)")),
    # S7comm-Plus-Anomaly-Detection: attack-relevant state/program changes over S7comm-plus
    (r"paket_stop|_stop_yeni|s71200_OnlineStopStart", Label("attack", "S7comm-plus PLC STOP (TIA Portal)")),
    (r"paket_start|offline_start_", Label("attack", "S7comm-plus PLC START (TIA Portal)")),
    (r"CompileDownload", Label("attack", "S7comm-plus program/config download")),
    (r"offline_download_yeni", Label("attack", "S7comm-plus program/config download",
                                     ("s7plus.program_download",))),
    # offline_alma_yeni holds only the last 3 s of an upload session (subscriptions and the
    # session deleted, LOGOUT): no upload PDU is in it
    (r"offline_alma_yeni", Label("attack", "end of an S7comm-plus upload session (teardown only)")),
    (r"_alma_yeni|yeni_online.*upload", Label("attack", "S7comm-plus program upload", ("s7plus.program_upload",))),
    # gymgit-s7-pcaps
    (r"gymgit-s7-pcaps/(snap7|step7)_s300_stop", Label("attack", "S7 PLC STOP (func 0x29)", ("s7.plc_stop",))),
    (r"gymgit-s7-pcaps/step7_s300_download|tia_s300_downloadOb1",
     Label("attack", "S7 block download", ("s7.program_download",))),
    (r"gymgit-s7-pcaps/tia_s300_downloadHwConfig",
     Label("attack", "S7 HW-config download incl. PLC STOP", ("s7.program_download", "s7.plc_stop"))),
    (r"gymgit-s7-pcaps/step7_s300_AuthPassword", Label("attack", "S7 password authentication",
                                                       ("s7.password_presented",))),
    (r"gymgit-s7-pcaps/step7_s300_copyRamToRom", Label("attack", "S7 PI copy RAM to ROM (_MODU)")),
    # ITI-ICS-Security-Tools
    (r"s7comm_downloading_block_db1", Label("attack", "S7 download of DB1", ("s7.program_download",))),
    # 'uploading' OB1 to the PLC, a download in Siemens' terms: the PC creates OB1 ('Main',
    # 2 KB) in a DLTransaction and the PLC sends only short answers
    (r"S7-1200-Uploading-OB1", Label("attack", "S7comm-plus download of OB1 to the PLC (TIA V12)",
                                     ("s7plus.program_download",))),
    (r"modbus_test_data_part1", Label("test", "QuickDraw Modbus rule-trigger data (FC8, FC17, exceptions 5/6/11)",
                                      ("modbus.device_identification", "modbus.server_busy"))),
    (r"modbus_test_data_part2", Label("test", "QuickDraw function-code sweep 0..127",
                                      ("modbus.function_code_scan", "generic.unknown_function"))),
    (r"libnodavedemo_bench", Label("test", "libnodave benchmark: 3000 reads + 2002 writes")),
    (r"s7comm_reading_setting_plc_time", Label("test", "S7 set PLC clock")),
    (r"ITI-ICS-Security-Tools/negative/|wrapup\.pcapng", Label("normal", "negative control (not a target protocol)")),
    # icsnpp-s7comm / nDPI
    (r"icsnpp-s7comm/traces/snap7", Label("attack", "snap7 'everything': upload, PI, PLC STOP, SZL",
                                          ("s7.plc_stop", "s7.program_upload"))),
    (r"icsnpp-s7comm/traces/s7ident", Label("test", "S7 identification: SZL reads + StartUpload",
                                            ("s7.program_upload",))),
    (r"nDPI/pcap/s7comm\.pcap", Label("attack", "S7 block download + SZL", ("s7.program_download",))),
    (r"nDPI/pcap/umas", Label("test", "Schneider UMAS (Modbus FC 90) engineering", ("generic.unknown_function",))),
    # EmreEkin
    # plc/plc1: the 'engineering sessions' download blocks (a DLTransaction creating them)
    (r"EmreEkin-ICS-Pcaps/s7plus/plc1?\.pcap", Label("attack", "S7comm-plus engineering session with a program download",
                                                      ("s7plus.program_download",))),
    (r"EmreEkin-ICS-Pcaps/modbus/crash", Label("attack", "single FC5 write that crashes the slave")),
    (r"EmreEkin-ICS-Pcaps/modbus/IllegalFunction", Label("test", "20 exception-1 (illegal function) replies",
                                                         ("modbus.function_code_scan",))),
    # zeek Modbus robustness traces
    (r"zeek/traces/modbus/fuzz-72", Label("test", "fuzzed Modbus: undefined FCs + exception 1",
                                          ("generic.unknown_function", "modbus.function_code_scan"))),
    (r"zeek/traces/modbus/fuzz-1011", Label("test", "fuzzed Modbus FC4, odd lengths")),
    (r"modbus-and-non-modbus-p502", Label("test", "non-Modbus protocols on port 502", ("modbus.not_modbus_on_502",))),
    (r"4SICS-GeekLounge", Label("test", "FC23 with MBAP length mismatch + exception 10", ("modbus.invalid_length",))),
    # OPC UA
    (r"plaintext_test", Label("attack", "OPC UA username/password over policy None",
                              ("opcua.password_in_clear", "opcua.security_policy_none"))),
    (r"anssi_attack", Label("attack", "2-packet 'attack' capture (essentially empty)")),
    (r"S7comm-Plus-Anomaly-Detection/Firdevse", Label("normal", "1 HTTP packet (irrelevant)")),
]


def label_of(relative: str) -> Label:
    for pattern, label in LABELS:
        if re.search(pattern, relative):
            return label
    return Label("normal", "normal operations / protocol sample")


@dataclass
class Result:
    relative: str
    label: Label
    packets: int = 0
    events: int = 0
    seconds: float = 0.0                     # capture time span
    alerts: Counter = field(default_factory=Counter)     # rule id -> alert records
    matches: Counter = field(default_factory=Counter)    # rule id -> matches folded into them
    evidence: dict = field(default_factory=lambda: defaultdict(list))   # rule id -> [(frame, why)]
    error: str | None = None
    truncated: bool = False


def as_event(record: dict) -> Event:
    """An alert's evidence back into an Event, to ask the rule why it matched."""
    common = [record.get(name) for name in COMMON_FIELDS]
    return Event(*common, {k: v for k, v in record.items() if k not in COMMON_FIELDS})


def run(path: Path, relative: str, rules, max_events: int | None) -> Result:
    result = Result(relative, label_of(relative))
    stats = RunStats(captures=[str(path)])
    detector = RuleDetector(rules)
    alerts = []
    try:
        for event in decode([str(path)], stats=stats):
            result.events += 1
            alerts += detector.feed(event)
            if max_events and result.events >= max_events:
                result.truncated = True
                break
    except CaptureError as exc:
        result.error = str(exc).replace(str(path), relative)
    alerts += detector.flush()
    result.packets = stats.packets
    if stats.first_ts is not None and stats.last_ts is not None:
        result.seconds = stats.last_ts - stats.first_ts
    for alert in alerts:
        result.alerts[alert.rule] += 1
        result.matches[alert.rule] += alert.count
        rule = rules.by_id(alert.rule)
        for record in alert.evidence:
            if len(result.evidence[alert.rule]) < 3:
                why = rule.why(as_event(record)) if rule else None
                result.evidence[alert.rule].append((record.get("frame"), "; ".join(why or [])))
    return result


def fired(result: Result) -> str:
    if result.error and not result.alerts:
        return f"error: {result.error[:60]}"
    text = ", ".join(f"{rule} ×{result.matches[rule]} ({result.alerts[rule]} alert{'s' * (result.alerts[rule] > 1)})"
                     for rule in sorted(result.alerts)) or "—"
    return text + (" (truncated)" if result.truncated else "")


def missed(result: Result) -> str:
    gone = [r for r in result.label.expect if r not in result.alerts]
    return ", ".join(gone) if gone else ("ok" if result.label.expect else "")


def per_hour(result: Result) -> str:
    total = sum(result.alerts.values())
    if not total:
        return "0"
    if result.seconds < 1:
        return "n/a (<1 s)"
    return f"{total * 3600 / result.seconds:,.0f}"


def qut_group(relative: str) -> str | None:
    """2017QUT runs grouped by attack and capture point: 140 near-identical rows say less than 30."""
    m = re.match(r"2017QUT_S7comm/attacks/\d+\.([^/]+)/\d+\.[^.]+\.(\w+)\.pcap$", relative)
    return f"2017QUT_S7comm/attacks/*.{m.group(1)}.{m.group(2)}.pcap" if m else None


def merge(results: list[Result]) -> list[tuple[Result, int, int]]:
    """(result, captures, captures that raised something) rows, 2017QUT runs folded together."""
    rows: dict[str, list[Result]] = {}
    for r in results:
        rows.setdefault(qut_group(r.relative) or r.relative, []).append(r)
    merged = []
    for key, group in rows.items():
        total = Result(key, group[0].label)
        for r in group:
            total.packets += r.packets
            total.events += r.events
            total.seconds += r.seconds
            total.alerts.update(r.alerts)
            total.matches.update(r.matches)
            total.truncated |= r.truncated
            total.error = total.error or r.error
            for rule, ev in r.evidence.items():
                total.evidence[rule] += [(f"{Path(r.relative).name}#{f}" if len(group) > 1 else f, w)
                                         for f, w in ev][:3 - len(total.evidence[rule])]
        merged.append((total, len(group), sum(1 for r in group if r.alerts)))
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="*", help="captures (default: every one under the public folder)")
    parser.add_argument("--max-events", type=int, default=None, help="stop each capture after this many events")
    parser.add_argument("--skip-larger-than", type=float, default=None, metavar="MB",
                        help="skip captures bigger than this many MiB")
    parser.add_argument("--per-file", action="store_true", help="one row per 2017QUT capture instead of per attack")
    parser.add_argument("--site", default=None, metavar="FILE",
                        help="a site file for every capture given (its ports and roles; site rules become active)")
    args = parser.parse_args()

    if args.captures:
        paths = [Path(c) if Path(c).is_absolute() else PUBLIC / c for c in args.captures]
    else:
        if not PUBLIC.is_dir():
            sys.exit(f"no public captures at {PUBLIC}")
        paths = sorted(p for p in PUBLIC.rglob("*") if p.suffix in CAPTURE_SUFFIXES)
    rules = load_rules(site=load_site(args.site) if args.site else None)
    started = time.perf_counter()
    results, skipped = [], []
    for path in paths:
        relative = str(path.relative_to(PUBLIC)) if path.is_relative_to(PUBLIC) else path.name
        if args.skip_larger_than and path.stat().st_size > args.skip_larger_than * 2**20:
            skipped.append(relative)
            continue
        results.append(run(path, relative, rules, args.max_events))
    elapsed = time.perf_counter() - started

    rows = [(r, 1, int(bool(r.alerts))) for r in results] if args.per_file else merge(results)
    print(f"Shipped packs: {len(rules.rules)} active rules, {len(rules.inactive)} inactive without a site file "
          f"({', '.join(sorted(rules.inactive))})" + (f"; site file {args.site}" if args.site else "") + ".\n")
    print(f"{len(results)} captures, {sum(r.packets for r in results):,} packets, "
          f"{sum(r.events for r in results):,} events in {elapsed:.1f} s"
          + (f"; skipped (too large): {', '.join(skipped)}" if skipped else "") + ".\n")

    for role, title in (("attack", "Attack captures"), ("test", "Rule-trigger / fuzz test captures")):
        print(f"### {title}\n")
        print("| capture | kind | captures (alerting) | events | rules fired: matches (alerts) | expected, missed |")
        print("|---|---|---:|---:|---|---|")
        for r, n, hit in rows:
            if r.label.role == role:
                print(f"| {r.relative} | {r.label.kind} | {n} ({hit}) | {r.events:,} | {fired(r)} | {missed(r)} |")
        print()

    print("### Normal captures\n")
    print("| capture | kind | packets | events | hours | alerts (matches) | rules | alerts/hour |")
    print("|---|---|---:|---:|---:|---:|---|---:|")
    normal = [(r, n, hit) for r, n, hit in rows if r.label.role == "normal"]
    for r, _n, _hit in normal:
        print(f"| {r.relative} | {r.label.kind} | {r.packets:,} | {r.events:,} | {r.seconds / 3600:.3f} | "
              f"{sum(r.alerts.values())} ({sum(r.matches.values())}) | {fired(r)} | {per_hour(r)} |")
    hours = sum(r.seconds for r, _, _ in normal) / 3600
    total = sum(sum(r.alerts.values()) for r, _, _ in normal)
    print(f"| **all normal** | | {sum(r.packets for r, _, _ in normal):,} | {sum(r.events for r, _, _ in normal):,} "
          f"| {hours:.2f} | {total} | | {total / hours if hours else 0:,.1f} |\n")

    print("### Evidence of alerts on normal captures (first frames, and why the rule matched)\n")
    print("| rule | capture | frames | why |")
    print("|---|---|---|---|")
    for r, _, _ in normal:
        for rule in sorted(r.evidence):
            frames = ", ".join(str(f) for f, _ in r.evidence[rule])
            print(f"| {rule} | {r.relative} | {frames} | {r.evidence[rule][0][1].replace('|', '¦')} |")


if __name__ == "__main__":
    main()
