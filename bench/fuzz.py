"""Mutation fuzzing of real PDUs through the whole of icsguard.

    python -m bench.fuzz [--proto modbus|s7|opcua|all] [--cases N] [--seed S] [--batch N]

The seeds are the PDUs of the project's own captures (pymodbus, python-snap7 and asyncua
talking). Each case is one fresh TCP connection, in valid Ethernet, IPv4 and TCP frames: the
first PDUs of a real conversation (so that sessions and channels are set up), then one PDU
mutated (bit flips, truncation, a length field set to 0, its maximum or a random value,
bytes inserted, two PDUs spliced, a slice repeated), then the PDU that really followed.

Everything runs: netstack, reassembly, framing and decoding, the rules, the learned baseline
and the model, the inventory, the store (committing as it goes), and every output: the
Events as JSON, the report for the terminal, as JSON and as Markdown, and the alerts as
records, EVE and CSV. A crash is any exception out of any of that; the case that caused it
is printed with the bytes of its PDU. Each case is timed from its first frame to its last
event's detection, apart from the store's once-a-second commits and the
garbage collector's pauses (the longest of each is printed too). The figures per protocol are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import random
import re
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from rich.console import Console

from bench.frames import handshake, tcp_frame
from icsguard.analysis import analyze_frames, learn
from icsguard.capture.files import Frame, read_capture
from icsguard.detect.modelfile import LearnedModel
from icsguard.detect.rules import load_rules
from icsguard.events import Event
from icsguard.net.netstack import NetStack
from icsguard.output import exports, report
from icsguard.output.store import Store
from icsguard.protocols import modbus, opcua, s7

REPO = Path(__file__).resolve().parent.parent
PCAPS = REPO / "pcaps"
ANALYZERS: dict[str, ModuleType] = {"modbus": modbus, "s7": s7, "opcua": opcua}
PREFIX = 4                  # real PDUs sent before the mutated one, at most
CLIENTS = 16                # addresses the cases come from
SLOW_MS = 100.0
MUTATIONS = ("bit_flips", "truncation", "length_zero", "length_max", "length_random", "insertion", "splice",
             "repeat")
# where each protocol keeps its lengths: (offset, size) of big- or little-endian fields
LENGTH_FIELDS = {
    "modbus": ((4, 2, "big"), (8, 1, "big"), (12, 1, "big")),             # MBAP length, byte counts
    "s7": ((2, 2, "big"), (4, 1, "big"), (13, 2, "big"), (15, 2, "big"),  # TPKT, COTP LI, S7 parameter and data
           (18, 1, "big"), (21, 2, "big")),                                # item count, first item's length
    "opcua": ((4, 4, "little"), (12, 4, "little"), (16, 4, "little"), (24, 4, "little"), (32, 4, "little")),
}


@dataclass
class Conversation:
    """One connection of a real capture: who spoke, and the PDUs in order."""
    pdus: list[tuple[bool, bytes]]            # (from the client, PDU)


@dataclass
class Result:
    proto: str
    cases: int = 0
    frames: int = 0
    events: int = 0
    malformed: int = 0
    caught: Counter = field(default_factory=Counter)     # why decoders raised (the stage's guard kept the PDUs)
    alerts: int = 0
    crashes: list[str] = field(default_factory=list)
    times_ms: list[float] = field(default_factory=list)
    mutations: dict[str, int] = field(default_factory=dict)
    commit_ms: float = 0.0             # the slowest once-a-second commit to the store
    collect_ms: float = 0.0            # the longest pause of the garbage collector
    seconds: float = 0.0

    @property
    def slow(self) -> int:
        return sum(t > SLOW_MS for t in self.times_ms)


def conversations(proto: str) -> list[Conversation]:
    """The connections of the project's captures of a protocol, cut into PDUs by its framing."""
    analyzer = ANALYZERS[proto]
    prefix = {"modbus": "modbus_", "s7": "s7_", "opcua": "opcua_"}[proto]
    found: dict[tuple, list[tuple[bool, bytes]]] = {}
    clients: dict[tuple, tuple] = {}
    for path in sorted(PCAPS.glob(f"{prefix}*.pcap")):
        stack = NetStack()
        for frame in read_capture(str(path)):
            seg = stack.decode(frame.ts, frame.link_type, frame.data)
            if seg is None or not seg.payload:
                continue
            ends = ((seg.src, seg.sport), (seg.dst, seg.dport))
            key = (path.name, *sorted(ends))
            client = clients.setdefault(key, ends[1] if seg.sport in analyzer.PORTS else ends[0])
            pdus = found.setdefault(key, [])
            for pdu in _cut(analyzer, seg.payload):
                if not pdus or pdus[-1] != ((seg.src, seg.sport) == client, pdu):
                    pdus.append(((seg.src, seg.sport) == client, pdu))
    return [Conversation(pdus) for pdus in found.values() if len(pdus) >= 2]


def _cut(analyzer: ModuleType, payload: bytes) -> list[bytes]:
    pdus, pos = [], 0
    while pos < len(payload):
        length = analyzer.pdu_length(payload, pos)
        if not isinstance(length, int) or length <= 0 or pos + length > len(payload):
            return pdus + [payload[pos:]]
        pdus.append(payload[pos:pos + length])
        pos += length
    return pdus


def mutate(proto: str, pdu: bytes, others: list[bytes], rng: random.Random) -> tuple[str, bytes]:
    """One mutation of a PDU: its name and the bytes."""
    kind = rng.choice(MUTATIONS)
    data = bytearray(pdu)
    if kind == "bit_flips":
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data) * 8)
            data[at // 8] ^= 1 << (at % 8)
    elif kind == "truncation":
        data = data[:rng.randrange(1, len(data))] if len(data) > 1 else data
    elif kind.startswith("length_"):
        fields = [f for f in LENGTH_FIELDS[proto] if f[0] + f[1] <= len(data)] or [(0, 1, "big")]
        if proto == "opcua" or rng.random() < 0.3:     # any 4 bytes may be a string's or an array's length
            fields.append((rng.randrange(max(len(data) - 3, 1)), 4, "little"))
        offset, size, order = rng.choice(fields)
        value = {"length_zero": 0, "length_max": (1 << (8 * size)) - 1,
                 "length_random": rng.getrandbits(8 * size)}[kind]
        data[offset:offset + size] = value.to_bytes(size, order)
    elif kind == "insertion":
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 16))
    elif kind == "splice":
        other = rng.choice(others)
        data = data[:rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1):]
    else:  # repeat
        start = rng.randrange(len(data))
        end = rng.randrange(start, min(len(data), start + 64) + 1)
        at = rng.randrange(len(data) + 1)
        data[at:at] = data[start:end]
    return kind, bytes(data)


class Cases:
    """The frames of every case, one connection each, timed: a case's time runs from its
    first frame until the pipeline asks for the next case's (its events detected)."""

    def __init__(self, proto: str, seeds: list[Conversation], rng: random.Random, count: int, result: Result):
        self.proto, self.seeds, self.rng, self.count, self.result = proto, seeds, rng, count, result
        self.others = [pdu for seed in seeds for _, pdu in seed.pdus]
        self.current: tuple[str, bytes] | None = None
        self.committing = 0.0        # seconds of the current case spent committing to the store,
        self.collecting = 0.0        # ... and in Python's garbage collector
        self.port = {"modbus": 502, "s7": 102, "opcua": 4840}[proto]

    def frames(self, first: int) -> Iterator[Frame]:
        ts, number = 1_800_000_000.0, 0
        started = None
        for case in range(first, first + self.count):
            seed = self.rng.choice(self.seeds)
            target = self.rng.randrange(len(seed.pdus))
            kind, mutated = mutate(self.proto, seed.pdus[target][1], self.others, self.rng)
            self.result.mutations[kind] = self.result.mutations.get(kind, 0) + 1
            self.current = (kind, mutated)
            pdus = seed.pdus[max(0, target - PREFIX):target] + [(seed.pdus[target][0], mutated)] \
                + seed.pdus[target + 1:target + 2]
            client = (f"10.0.0.{case % CLIENTS + 1}", 20000 + case % 40000)     # a fresh connection each
            server = ("10.255.0.1", self.port)
            seqs = {True: 1000, False: 5000}
            packets = handshake(client, server)
            for from_client, pdu in pdus:
                src, dst = (client, server) if from_client else (server, client)
                packets.append(tcp_frame(src, dst, seqs[from_client], seqs[not from_client], 0x18, pdu))
                seqs[from_client] += len(pdu)
            packets.append(tcp_frame(client, server, seqs[True], seqs[False], 0x11))
            now = time.perf_counter()
            if started is not None:
                self.result.times_ms.append((now - started - self.committing - self.collecting) * 1000)
            started, self.committing, self.collecting = now, 0.0, 0.0
            self.result.cases += 1
            for packet in packets:
                number += 1
                ts += 0.001
                yield Frame(ts, 1, packet, f"fuzz-{self.proto}", number)
        if started is not None:
            self.result.times_ms.append((time.perf_counter() - started) * 1000)


def trained() -> LearnedModel:
    """A baseline and model learned from the project's captures of all three protocols."""
    learned, _ = learn([str(p) for p in sorted(PCAPS.glob("*.pcap"))], window_seconds=5.0)
    return learned


def run(proto: str, cases: int, seed: int = 1, batch: int = 5000, learned: LearnedModel | None = None,
        progress: Callable[[Result], None] | None = None) -> Result:
    """Fuzz one protocol; each batch is a fresh run into a fresh database, then every output."""
    rng = random.Random(seed)
    seeds = conversations(proto)
    learned = learned or trained()
    rules = load_rules()
    result = Result(proto)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for first in range(0, cases, batch):
            source = Cases(proto, seeds, rng, min(batch, cases - first), result)
            collecting = _GarbageTimer(source, result)
            gc.callbacks.append(collecting)
            try:
                _batch(source, first, Path(folder) / f"run{first}.db", rules, learned, result)
            except Exception:
                kind, pdu = source.current or ("?", b"")
                result.crashes.append(f"case {result.cases}, {kind}, PDU {pdu.hex()}:\n{traceback.format_exc()}")
            finally:
                gc.callbacks.remove(collecting)
            if progress is not None:
                progress(result)
    result.seconds = time.perf_counter() - started
    return result


class _GarbageTimer:
    """Pauses of the garbage collector, timed apart from the cases they fall in."""

    def __init__(self, source: Cases, result: Result):
        self.source, self.result, self.started = source, result, 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        took = time.perf_counter() - self.started
        self.source.collecting += took
        self.result.collect_ms = max(self.result.collect_ms, took * 1000)


class TimedStore(Store):
    """The store, its once-a-second commits timed apart from the PDUs' decoding and detection."""

    def __init__(self, path: str, source: Cases, result: Result):
        super().__init__(path)
        self.source, self.result = source, result

    def record(self, *args, **kwargs) -> None:
        started = time.perf_counter()
        super().record(*args, **kwargs)
        took = time.perf_counter() - started
        self.source.committing += took
        self.result.commit_ms = max(self.result.commit_ms, took * 1000)


def _batch(source: Cases, first: int, db: Path, rules, learned: LearnedModel, result: Result) -> None:
    """One run, as analyze makes it, then every output of it."""
    store = TimedStore(str(db), source, result)
    sink = io.StringIO()

    def seen(event: Event) -> None:
        sink.write(event.to_json())
        result.events += 1
        reason = event.fields.get("malformed")
        if reason is not None:
            result.malformed += 1
            if reason.startswith("undecodable"):
                result.caught[re.sub(r"(?<![A-Za-z])\d+", "N", reason)[:120]] += 1
        if sink.tell() > 1 << 22:
            sink.seek(0)
            sink.truncate()

    run_id, status, error = analyze_frames(source.frames(first), [f"fuzz-{source.proto}"], store, "fuzz",
                                           rules=rules, learned=learned, on_event=seen)
    assert status == "finished", error
    data = report.gather(store, run_id)
    result.frames += data["run"]["packets"]
    report.render_terminal(data, Console(file=io.StringIO(), width=120))
    report.render_json(data)
    report.render_markdown(data)
    rows = list(store.alerts(run_id=run_id))
    result.alerts += len(rows)
    writer = csv.DictWriter(io.StringIO(), fieldnames=exports.ALERT_FIELDS)
    for row in rows:
        writer.writerow(exports.record(row))
        exports.eve(row)
    store.close()


def table(results: list[Result]) -> str:
    lines = ["| protocol | cases (mutated PDUs) | frames | events | malformed | decoder exceptions kept | alerts "
             "| crashes | slowest case | 99th percentile | cases over 100 ms | slowest commit | longest GC pause | cases/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        times = sorted(r.times_ms) or [0.0]
        lines.append(f"| {r.proto} | {r.cases:,} | {r.frames:,} | {r.events:,} | {r.malformed:,} | "
                     f"{sum(r.caught.values()):,} | "
                     f"{r.alerts:,} | {len(r.crashes)} | {times[-1]:.1f} ms | {times[int(len(times) * 0.99)]:.2f} ms "
                     f"| {r.slow} | {r.commit_ms:.0f} ms | {r.collect_ms:.0f} ms | {r.cases / max(r.seconds, 1e-9):,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto", choices=[*ANALYZERS, "all"], default="all")
    parser.add_argument("--cases", type=int, default=20_000, help="mutated PDUs per protocol")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=5000, help="cases per run and database")
    args = parser.parse_args()
    learned = trained()
    results = []
    for proto in (ANALYZERS if args.proto == "all" else [args.proto]):
        def progress(r: Result) -> None:
            print(f"{r.proto}: {r.cases:,} cases, {len(r.crashes)} crashes, {r.slow} over {SLOW_MS:.0f} ms",
                  flush=True)
        results.append(run(proto, args.cases, args.seed, args.batch, learned, progress))
    print()
    print(table(results))
    for r in results:
        print(f"\n{r.proto} mutations: " + ", ".join(f"{k} {v:,}" for k, v in sorted(r.mutations.items())))
        for reason, count in r.caught.most_common(5):
            print(f"{r.proto} decoder exception kept {count:,} times: {reason}")
        for crash in r.crashes[:5]:
            print(f"\n{r.proto} CRASH {crash}")


if __name__ == "__main__":
    main()
