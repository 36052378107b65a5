"""Does detection stay cheap as rules pile up? `analyze` throughput with the shipped packs vs. 1,000 more rules.

    python -m bench.rules_bench [--capture FILE] [--repeat N] [--rules 1000] [--runs 3] [--seed 1]

Times, in process, what `icsguard analyze` does per capture: decode + RuleDetector.feed
for every event + flush (no database, whose cost does not depend on the rules). Best
of --runs, with the shipped packs and with the shipped packs plus --rules generated
rules written as YAML to a temporary folder: varied protocols, functions, fields and
operators, a share with thresholds or several alternatives and a share not tied to a
function (which the index cannot skip). Also times the RuleDetector alone over the
already-decoded events, where the rules' share of the cost shows undiluted. Target:
with 1,000 extra rules, end-to-end throughput within 20% of the shipped packs'.

Default capture: the public Modbus_dataset covert-channel capture (45k packets, ~15.6k
Modbus PDUs), read --repeat times (default 1); falls back to pcaps/modbus_polling.pcap
repeated 50 times when the public folder is absent.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from icsguard.analysis import decode
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import load_rules, shipped_rules

REPO = Path(__file__).resolve().parent.parent
PUBLIC = REPO.parent / "shared" / "pcaps" / "public"
DEFAULT = PUBLIC / "Modbus_dataset" / "covert" / "channel_4d_12s.pcap"
FALLBACK = REPO / "pcaps" / "modbus_polling.pcap"

FUNCTIONS = {
    "modbus": ["read_coils", "read_discrete_inputs", "read_holding_registers", "read_input_registers",
               "write_single_coil", "write_single_register", "write_multiple_coils", "write_multiple_registers",
               "mask_write_register", "read_write_multiple_registers", "diagnostics", "report_server_id",
               "read_device_identification", "read_fifo_queue", "read_file_record", "write_file_record"],
    "s7comm": ["read_var", "write_var", "setup_communication", "plc_control", "plc_stop", "start_upload",
               "upload", "end_upload", "request_download", "read_szl", "read_clock", "set_clock", "list_blocks",
               "get_block_info"],
    "s7comm-plus": ["get_multi_variables", "set_multi_variables", "set_variable", "create_object",
                    "delete_object", "explore", "invoke", "keep_alive"],
    "opcua": ["ReadRequest", "WriteRequest", "CallRequest", "BrowseRequest", "BrowseNextRequest",
              "CreateSessionRequest", "ActivateSessionRequest", "CreateSubscriptionRequest",
              "CreateMonitoredItemsRequest", "PublishRequest", "AddNodesRequest", "DeleteNodesRequest",
              "ServiceFault", "ReadResponse", "WriteResponse"],
    "cotp": ["connection_request", "connection_confirm"],
}
WEIGHTS = {"modbus": 4, "s7comm": 3, "s7comm-plus": 1, "opcua": 2, "cotp": 0.3}


def condition(rng: random.Random, proto: str) -> tuple[str, str]:
    """One field condition, as YAML text, plausible for the protocol."""
    ip = f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    common = [
        ("src", lambda: f"{{in: [{ip}, 10.9.9.{rng.randint(1, 254)}]}}"),
        ("dst", lambda: f"{{not_in: [{ip}]}}"),
        ("dport", lambda: f"{{not_in: [{rng.choice([502, 102, 4840])}, {rng.randint(1024, 65535)}]}}"),
        ("sport", lambda: f"{{lt: {rng.randint(1, 1024)}}}"),
    ]
    per_proto = {
        "modbus": [
            ("unit_id", lambda: str(rng.randint(0, 255))),
            ("unit_id", lambda: f"{{in: [{', '.join(str(rng.randint(0, 255)) for _ in range(3))}]}}"),
            ("address", lambda: f"{{range: [{(lo := rng.randint(0, 60000))}, {lo + rng.randint(1, 500)}]}}"),
            ("address", lambda: f"{{gte: {rng.randint(1000, 65000)}}}"),
            ("quantity", lambda: f"{{gt: {rng.randint(10, 2000)}}}"),
            ("values", lambda: f"{{contains: {rng.randint(0, 65535)}}}"),
            ("exception_code", lambda: f"{{in: [{rng.randint(1, 4)}, {rng.randint(5, 11)}]}}"),
            ("subfunction", lambda: str(rng.randint(0, 30))),
            ("transaction_id", lambda: f"{{exists: {rng.choice(['true', 'false'])}}}"),
        ],
        "s7comm": [
            ("items.area", lambda: f"{{in: [{rng.choice(['DB', 'Q', 'I', 'M'])}]}}"),
            ("items.db", lambda: f"{{in: [{rng.randint(1, 2000)}, {rng.randint(1, 2000)}]}}"),
            ("szl_id", lambda: f"{{equals: {rng.randint(0, 0xFFFF)}}}"),
            ("pi_service", lambda: f"{{regex: \"^_?{rng.choice(['INSE', 'DELE', 'GARB', 'MODU', 'P_PR'])}\"}}"),
            ("block_type", lambda: f"{{in: [OB, FC, FB, {rng.choice(['DB', 'SDB'])}]}}"),
            ("block_number", lambda: f"{{gt: {rng.randint(1, 5000)}}}"),
            ("error_class", lambda: f"{{not_equals: {rng.randint(0, 0x85)}}}"),
            ("rack", lambda: str(rng.randint(0, 3))),
        ],
        "s7comm-plus": [
            ("version", lambda: f"{{in: [{rng.randint(1, 3)}]}}"),
            ("opcode", lambda: str(rng.choice([0x31, 0x32, 0x33]))),
            ("session_id", lambda: f"{{gt: {rng.randint(100, 10**6)}}}"),
            ("addresses", lambda: f"{{contains: {rng.randint(1, 10**6)}}}"),
        ],
        "opcua": [
            ("security_policy", lambda: f"{{regex: \"#{rng.choice(['Basic128Rsa15', 'Basic256', 'None'])}$\"}}"),
            ("node_ids", lambda: f"{{contains: \"ns={rng.randint(0, 5)};i={rng.randint(1, 99999)}\"}}"),
            ("status_code", lambda: f"{{gte: {rng.choice([0x80000000, 0x80340000, 0x801F0000])}}}"),
            ("endpoint_url", lambda: f"{{regex: \"^opc.tcp://[^/]*:{rng.randint(4000, 60000)}\"}}"),
            ("user_name", lambda: f"{{in: [admin, root, user{rng.randint(1, 99)}]}}"),
            ("identity_token", lambda: rng.choice(["anonymous", "username", "certificate"])),
            ("message_type", lambda: f"{{in: [{rng.choice(['MSG', 'OPN', 'CLO', 'ERR'])}]}}"),
        ],
        "cotp": [
            ("src_tsap", lambda: f"{{not_in: [{rng.randint(0x100, 0x1FF)}]}}"),
            ("slot", lambda: f"{{gt: {rng.randint(1, 6)}}}"),
        ],
    }
    name, make = rng.choice(per_proto[proto] * 3 + common)
    return name, make()


def rule_yaml(rng: random.Random, index: int, unindexed: float = 0.25) -> str:
    proto = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    direction = rng.choice(["request", "request", "response", None])
    groups = []
    for _ in range(2 if rng.random() < 0.15 else 1):
        fields = {}
        if rng.random() >= unindexed:       # tied to functions: the index skips it for the rest
            if rng.random() < 0.75:
                fields["function"] = rng.choice(FUNCTIONS[proto])
            else:
                picks = rng.sample(FUNCTIONS[proto], k=min(3, len(FUNCTIONS[proto])))
                fields["function"] = f"{{in: [{', '.join(picks)}]}}"
        elif rng.random() < 0.5:            # a function pattern: tried on every event of the protocol
            fields["function"] = f"{{regex: \"^{rng.choice(FUNCTIONS[proto])[:4]}\"}}"
        # else no function at all: also tried on every event of the protocol
        for _ in range(rng.randint(1, 3)):
            name, spec = condition(rng, proto)
            fields.setdefault(name, spec)
        groups.append("{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}")
    lines = [f"- id: bench.{proto.replace('-', '')}.r{index:04d}",
             f"  title: Generated rule {index} for {proto}",
             f"  severity: {rng.choice(['low', 'medium', 'high', 'critical'])}",
             f"  proto: {proto}"]
    if direction:
        lines.append(f"  direction: {direction}")
    if len(groups) == 1:
        lines.append(f"  match: {groups[0]}")
    else:
        lines.append("  any:")
        lines += [f"    - {g}" for g in groups]
    if rng.random() < 0.2:
        by = rng.choice(["[src]", "[dst]", "[src, dst]"])
        lines.append(f"  threshold: {{count: {rng.randint(3, 50)}, seconds: {rng.choice([10, 60, 300])}, by: {by}}}")
    if rng.random() < 0.5:
        lines.append(f"  mitre: [T0{rng.randint(800, 890)}]")
    return "\n".join(lines) + "\n"


def write_rules(folder: Path, count: int, seed: int, unindexed: float = 0.25) -> None:
    """Generated rules in files of 100, beside copies of the shipped packs."""
    rng = random.Random(seed)
    for pack in shipped_rules():
        (folder / pack.name).write_text(pack.read_text())
    for start in range(0, count, 100):
        text = "\n".join(rule_yaml(rng, i, unindexed) for i in range(start, min(start + 100, count)))
        (folder / f"generated_{start // 100:02d}.yaml").write_text(text)


def best(runs: int, work) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", type=Path, default=None, help="capture to analyze (default: see above)")
    parser.add_argument("--repeat", type=int, default=None, help="read the capture this many times per run")
    parser.add_argument("--rules", type=int, default=1000, help="generated rules to add")
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--unindexed", type=float, default=0.25,
                        help="share of generated rules not tied to a function name (regex or none)")
    args = parser.parse_args()

    capture = args.capture or (DEFAULT if DEFAULT.exists() else FALLBACK)
    repeat = args.repeat or (1 if capture == DEFAULT else 50)
    if not capture.exists():
        sys.exit(f"no capture {capture}")
    paths = [str(capture)] * repeat
    events = list(decode(paths))
    with tempfile.TemporaryDirectory() as folder:
        write_rules(Path(folder), args.rules, args.seed, args.unindexed)
        rulesets = {"shipped packs": load_rules(), f"shipped + {args.rules} generated": load_rules([folder])}

    def analyze(rules) -> None:
        detector = RuleDetector(rules)
        for event in decode(paths):
            detector.feed(event)
        detector.flush()

    def detect(rules) -> None:
        detector = RuleDetector(rules)
        for event in events:
            detector.feed(event)
        detector.flush()

    shown = capture.relative_to(PUBLIC) if capture.is_relative_to(PUBLIC) else capture.relative_to(REPO) \
        if capture.is_relative_to(REPO) else capture.name
    print(f"Capture: {shown} ×{repeat}: {len(events):,} events; best of {args.runs}.\n")
    print("| rules | active | analyze (decode + detect) events/s | detector alone events/s | alerts |")
    print("|---|---:|---:|---:|---:|")
    rates = []
    for name, rules in rulesets.items():
        analyze_s = best(args.runs, lambda: analyze(rules))
        detect_s = best(args.runs, lambda: detect(rules))
        detector = RuleDetector(rules)
        alerts = sum(len(detector.feed(e)) for e in events) + len(detector.flush())
        rates.append((len(events) / analyze_s, len(events) / detect_s))
        print(f"| {name} | {len(rules.rules)} | {rates[-1][0]:,.0f} | {rates[-1][1]:,.0f} | {alerts} |")
    ratio, detect_ratio = rates[1][0] / rates[0][0], rates[1][1] / rates[0][1]
    print(f"\nThroughput ratio with {args.rules} generated rules: analyze {ratio:.2f} (target >= 0.80: "
          f"{'met' if ratio >= 0.8 else 'MISSED'}), detector alone {detect_ratio:.2f}.")


if __name__ == "__main__":
    main()
