"""Event-wise detection quality of the rules, the learned baseline and the model on labelled public captures.

    python -m bench.detect_eval [--datasets NAME,...] [--drift 0.5,1.5,3] [--reconnect 300] [--estimator NAME] [--details]

A baseline describes one network, so the public captures are grouped into networks
(NETWORKS below). For each network icsguard learns (``icsguard.analysis.learn``) from
normal traffic only, then every test capture of that network is run through the shipped
rules, the baseline and the model, one Event at a time, as ``analyze`` does. Events are
matched to the dataset's labels by capture and frame number:

* an event counts as detected by a detector when that detector raised a finding on it
  (the rules or the baseline on that very event; the model on every event summed into a
  (client, server, protocol, window) row it scored as anomalous);
* precision, recall and F1 are event-wise, per attack type, over the scored events of
  the captures that hold that attack (their normal events are the false positives);
* false alarms per hour are counted on held-out normal traffic only (never the training
  traffic): findings on normal events, folded the way icsguard folds alerts (one finding
  between the same two hosts, repeated within 10 minutes, is one alert), divided by the
  hours of that traffic;
* the benign-drift cases replay every held-out normal segment with its timestamps
  stretched by each ``--drift`` factor (the polling interval changes, nothing else), and
  with every client reconnecting every ``--reconnect`` seconds (its port changes), and
  count their false alarms the same way;
* false alarms are also split by how long the baseline that judged them was watched while
  learning (the target is for an hour or more), and the Lemay Modbus runs are scored as
  IMADICS reported them: the share of normal runs accepted without any alert.

Training, filtered or time-stretched traffic is written to temporary pcap files and
read back through the ordinary decoder, so what is learned and tested is exactly what
``icsguard learn`` / ``analyze`` would see. Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import csv
import re
import socket
import struct
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.frames import readdress, renumber
from bench.rules_on_public import PUBLIC, label_of
from icsguard.analysis import decode, learn
from icsguard.capture.files import CaptureError, Frame, read_capture
from icsguard.detect.baseline import MATURE_SECONDS, BaselineDetector
from icsguard.detect.folding import AGGREGATE_SECONDS
from icsguard.detect.model import ESTIMATORS, ModelDetector
from icsguard.detect.peers import peer
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import load_rules
from icsguard.detect.site import load_site
from icsguard.detect.targets import Targets
from icsguard.events import CONVERSATIONS
from icsguard.net.netstack import NetStack

DETECTORS = ("rules", "baseline", "model")
CONFIGS = ("rules", "baseline", "model", "combined")
BIT = {"rules": 1, "baseline": 2, "model": 4}
NORMAL = ""                      # label of a normal event; None: not scored; anything else: the attack type
MIN_PREFIX_FRAMES = 100          # a Modbus_dataset capture trains on its normal prefix only when it is this long
QUT_ATTACKER = "10.10.10.66"     # per 2017QUT_S7comm/SOURCE.txt and every <run>.master.csv
DETAIL_ROWS = 10                 # missed-event kinds listed per network with --details
MIN_RATE_HOURS = 0.05            # below this much held-out normal traffic a per-hour rate says nothing


# --- what is learned and what is tested -------------------------------------------

@dataclass
class Piece:
    """A capture, or part of it: frames first..last, or a share of its time span."""
    relative: str
    first: int = 1
    last: int | None = None
    share: tuple[float, float] | None = None     # (from, to) as shares of the capture's time span
    untrusted: tuple[str, ...] = ()              # hosts whose packets are left out (a known attacker)


@dataclass
class Test:
    """A capture run whole through the detectors; ``labels(event)`` says what each event is
    (NORMAL, an attack type, or None: not scored); only frames >= score_from, or events
    at or after the share ``score_share`` of the capture's span, are scored."""
    relative: str
    labels: Callable
    score_from: int = 1
    score_share: float | None = None


@dataclass
class Network:
    name: str
    dataset: str
    key: str                                     # short name for the tables
    train: list[Piece]
    tests: list[Test]
    note: str
    window: float | None = None                  # model window (None: icsguard's default)
    site: str | None = None                      # the site file an analyst would write, from the dataset's SOURCE.txt
    untrusted: tuple[str, ...] = ()              # known attackers: never learned from, even after their attack
    sessions: bool = False                       # held-out normal traffic is short engineering or HMI sessions
                                                 # (minutes each), not a continuous recording of a process


def modbus_labels(relative: str) -> dict[int, int]:
    stem = Path(relative).with_suffix("")
    with open(PUBLIC / f"{stem}_labeled.csv", newline="") as f:
        return {int(row[0]): int(row[1]) for row in csv.reader(f, delimiter=";") if row and row[0].strip()}


def frame_labeller(labels: dict[int, int], kind: str) -> Callable:
    return lambda event: kind if labels.get(event.frame) == 1 else NORMAL


def qut_labeller(relative: str) -> Callable:
    """2017QUT: <run>.master.csv lists the attacker's frames; the PLC's replies to the
    attacker are not listed, so they are left out of the scores rather than called normal."""
    listed: dict[int, str] = {}
    master_csv = PUBLIC / relative.replace(".master.pcap", ".master.csv")
    with open(master_csv, newline="") as f:
        for row in csv.reader(f):
            if row and row[0].strip().isdigit():
                listed[int(row[0])] = row[-1].strip()
    attackers = set()
    with open(master_csv) as f:
        for row_summary in f:
            found = re.search(r"(\d+\.\d+\.\d+\.\d+):\S+ >", row_summary)
            if found:
                attackers.add(found.group(1))

    def label(event):
        if event.frame in listed:
            return listed[event.frame]
        if event.dst in attackers or event.src in attackers:
            return None
        return NORMAL
    return label


def qut_hmi_labeller(kind: str) -> Callable:
    """2017QUT HMI capture point: unlabelled, but a few hold the attacker's packets too;
    those (from 10.10.10.66) are the run's attack, replies to it are not scored."""
    def label(event):
        if event.src == QUT_ATTACKER:
            return kind
        return None if event.dst == QUT_ATTACKER else NORMAL
    return label


def capture_labeller(kind: str | None) -> Callable:
    """Whole-capture labels: every industrial request of an attack capture is the attack;
    the PLC's responses, keep-alives and notifications (what the attacker is answered) and
    the tcp/udp conversation events (mostly Windows background) are not scored."""
    if kind is None:
        return lambda event: NORMAL
    return lambda event: kind if event.direction == "request" and event.proto not in CONVERSATIONS else None


def whole(relative: str) -> Test:
    label = label_of(relative)
    return Test(relative, capture_labeller(label.kind if label.role == "attack" else None))


def time_split(relative: str, at: float = 0.5) -> tuple[Piece, Test]:
    return Piece(relative, share=(0.0, at)), Test(relative, capture_labeller(None), score_share=at)


def modbus_dataset() -> Network:
    captures = ["send_a_fake_command_modbus_6RTU_with_operate.pcap", "moving_two_files_modbus_6RTU.pcap",
                "CnC_uploading_exe_modbus_6RTU_with_operate.pcap", "exploit_ms08_netapi_modbus_6RTU_with_operate.pcap",
                "characterization_modbus_6RTU_with_operate.pcap"]
    train, tests = [], []
    for name in captures:
        relative = f"Modbus_dataset/{name}"
        labels = modbus_labels(relative)
        first_attack = min(frame for frame, value in labels.items() if value == 1)
        if first_attack - 1 >= MIN_PREFIX_FRAMES:
            train.append(Piece(relative, 1, first_attack - 1))
        kind = re.sub(r"_modbus_6RTU.*", "", name)
        tests.append(Test(relative, frame_labeller(labels, kind), score_from=first_attack))
    return Network(
        "Modbus_dataset: master 192.168.1.100 polling 6 RTUs", "Modbus_dataset", "Modbus_dataset", train, tests,
        "The copy holds no normal-only capture (the upstream ones are absent), so the baseline and model are "
        "trained on the label-0 frames before the first attack frame of each labelled capture that has at least "
        f"{MIN_PREFIX_FRAMES} of them (" + ", ".join(f"{Path(p.relative).stem} 1-{p.last}" for p in train)
        + "); everything from the first attack frame on is tested; held-out normal = the label-0 traffic after "
        "the last attack frame. The covert-channel capture (another network, no normal traffic of it) is not used.",
        site="roles: {scada: [192.168.1.100], plc: [192.168.1.101, 192.168.1.102, 192.168.1.103, 192.168.1.104, 192.168.1.105, 192.168.1.106]}")


def qut() -> Network:
    folder = PUBLIC / "2017QUT_S7comm" / "attacks"
    masters = sorted(folder.glob("*/*.master.pcap")) if folder.is_dir() else []
    hmis = sorted(folder.glob("*/*.hmi.pcap")) if folder.is_dir() else []
    runs_with_master = {p.parent.name for p in masters}
    # the HMI capture point of flooding runs without a master capture, earliest three: long, normal only
    trainable = [p for p in hmis if "_Flooding" in p.parent.name and p.parent.name not in runs_with_master]
    train_paths = trainable[:3]
    rel = lambda p: str(p.relative_to(PUBLIC))
    tests = [Test(rel(p), qut_labeller(rel(p))) for p in masters]
    tests += [Test(rel(p), qut_hmi_labeller(p.parent.name.split(".", 1)[1])) for p in hmis if p not in train_paths]
    return Network(
        "2017QUT_S7comm: HMI 10.10.10.20 polling PLC 10.10.10.10, attacker 10.10.10.66", "2017QUT_S7comm",
        "2017QUT_S7comm",
        [Piece(rel(p)) for p in train_paths], tests,
        "No normal-only capture of the whole network: trained on the HMI capture point (10.10.10.20 <-> PLC only) of "
        "the three earliest flooding runs that have no master capture (" + ", ".join(p.parent.name for p in train_paths)
        + "); tested on every master capture (labels: <run>.master.csv lists the attacker's frames; the PLC's "
        "replies to the attacker are not scored) and on the other HMI captures as held-out normal (a few HMI "
        "captures hold attacker packets too: those from 10.10.10.66 count as the run's attack).",
        site="roles: {plc: [10.10.10.10], hmi: [10.10.10.20]}", untrusted=(QUT_ATTACKER,))


def s7plus() -> Network:
    base = "S7comm-Plus-Anomaly-Detection"
    names = ["paket_start", "paket_stop", "s71200_OnlineStopStart", "s71200_Ofline_SWCompileDownload",
             "s71200_GoOfline_HWCompileDownload", "yeni/offline_alma_yeni", "yeni/offline_download_yeni",
             "yeni/offline_start_yenimisss", "yeni/offline_stop_yeni_yeni", "yeni/online_alma_yeni",
             "yeni/online_stop_yeni_yeni", "yeni/yeni_onlineken_upload", "yeni/yeni_onlineyapilmis_upload",
             "barkink1", "fst", "S71200_StartupGoOnline"]
    return Network(
        "S7comm-Plus-Anomaly-Detection: TIA Portal 192.168.55.5 and three S7-1200", base, "S7comm-Plus (S7-1200 lab)",
        [Piece(f"{base}/stabil_haberlesme.pcapng")], [whole(f"{base}/{n}.pcapng") for n in names],
        "Trained on stabil_haberlesme (the dataset's 'stable communication' capture, 60 s); the STOP/START, download "
        "and upload captures are attacks as whole captures (their industrial requests are the attack events; "
        "responses, keep-alives, notifications and tcp/udp conversation events are not scored), "
        "barkink1, fst and S71200_StartupGoOnline are held-out normal. Model windows of 10 s: the normal capture "
        "is too short for 60 s windows.", window=10.0, sessions=True,
        site="roles: {ews: [192.168.55.5], plc: [192.168.41.10, 192.168.42.10, 192.168.43.10]}")


def gymgit() -> list[Network]:
    base = "gymgit-s7-pcaps"
    return [
        Network("gymgit-s7-pcaps: S7-300 134.249.61.182 (WinCC, STEP7)", base, "gymgit S7-300 (WinCC, STEP7)",
                [Piece(f"{base}/{n}.pcapng") for n in ("wincc_s300_setup-alarm-read", "wincc_s300_setup-alarm-read_2",
                                                       "step7_s300_readDiagData", "step7_s300_readVarTab")],
                [whole(f"{base}/{n}.pcapng") for n in ("step7_s300_download", "wincc_s300_setup-alarm-read-write",
                                                       "step7_s300_rwVarTab")],
                "Trained on the WinCC read and STEP7 diagnostics/variable-table captures of this PLC; STEP7 block "
                "download is the attack (whole capture: its requests); WinCC read-write and STEP7 rwVarTab are "
                "held-out normal. "
                "10 s model windows (captures under a minute).", window=10.0, sessions=True,
                site="roles: {plc: [134.249.61.182], hmi: [134.249.53.130], ews: [134.249.53.130, 134.249.62.202]}"),
        Network("gymgit-s7-pcaps: S7-300 134.217.61.211 (TIA Portal)", base, "gymgit S7-300 (TIA Portal)",
                [Piece(f"{base}/tia_s300_goOnline.pcapng")],
                [whole(f"{base}/{n}.pcapng") for n in ("tia_s300_downloadHwConfig", "tia_s300_downloadOb1",
                                                       "tia_s300_flashLed")],
                "Trained on TIA Portal going online; the HW-config and OB1 downloads are attacks (whole captures: "
                "their requests); "
                "flash-LED is held-out normal. 10 s model windows.", window=10.0, sessions=True,
                site="roles: {plc: [134.217.61.211], ews: [134.217.61.131]}"),
    ]


def normal_only() -> list[Network]:
    """Long normal captures without attacks, split in time: the first half trains, the second is held out."""
    networks = []
    for dataset, name, key, relatives in (
            ("gymgit-s7-pcaps", "gymgit-s7-pcaps: WinCC to S7-400 production (2.25 h)", "gymgit S7-400 production",
             ["gymgit-s7-pcaps/wincc_s400_production.pcapng"]),
            ("pcap-share", "pcap-share: Modbus polling (28 min)", "pcap-share Modbus", ["pcap-share/modbus.pcapng"]),
            ("ITI-ICS-Security-Tools", "ITI-ICS-Security-Tools: 192.168.0.x Modbus and S7 clients", "ITI 192.168.0.x",
             ["ITI-ICS-Security-Tools/modbus/modbus_test.pcap", "ITI-ICS-Security-Tools/modbus/modbus_test_2.pcap",
              "ITI-ICS-Security-Tools/s7/s7comm_clean.pcap"])):
        pieces, tests = zip(*(time_split(r) for r in relatives))
        networks.append(Network(name, dataset, key, list(pieces), list(tests),
                                "Normal only: each capture's first half of its time span trains, the second half is "
                                "held-out normal."))
    return networks


def networks() -> list[Network]:
    return [modbus_dataset(), qut(), s7plus(), *gymgit(), *normal_only()]


# --- captures in, through a temporary pcap when only part of one is wanted ------------

def frames_of(piece: Piece) -> list[Frame]:
    frames = list(read_capture(str(PUBLIC / piece.relative)))
    if piece.untrusted:
        stack = NetStack(Counter())
        untrusted = set(piece.untrusted)

        def trusted(frame: Frame) -> bool:
            segment = stack.decode(frame.ts, frame.link_type, frame.data)
            return segment is None or not {segment.src, segment.dst} & untrusted
        frames = [f for f in frames if trusted(f)]
    if piece.share is not None and frames:
        start, end = frames[0].ts, frames[-1].ts
        low, high = start + piece.share[0] * (end - start), start + piece.share[1] * (end - start)
        return [f for f in frames if low <= f.ts < high or (piece.share[1] >= 1.0 and f.ts == end)]
    return [f for f in frames if f.number >= piece.first and (piece.last is None or f.number <= piece.last)]


def write_pcap(path: Path, frames: list[Frame], stretch: float = 1.0, reconnect: float | None = None) -> None:
    """A classic nanosecond pcap of the frames; ``stretch`` scales the time since the first
    frame (2.0: everything happens half as often); ``reconnect`` moves every client port
    each so many seconds, so that every client seems to reconnect that often. Frames of
    another link type than the first are left out (a classic pcap has one)."""
    link = frames[0].link_type if frames else 1
    start = frames[0].ts if frames else 0.0
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, link))
        for frame in frames:
            if frame.link_type != link:
                continue
            data = frame.data if reconnect is None else renumber(frame.data, int((frame.ts - start) // reconnect))
            ns = round((start + (frame.ts - start) * stretch) * 1e9)
            out.write(struct.pack("<IIII", ns // 1_000_000_000, ns % 1_000_000_000, len(data), len(data)))
            out.write(data)


class Scratch:
    """Temporary captures: training parts and stretched copies."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="detect_eval-")
        self.count = 0

    def capture(self, frames: list[Frame], stem: str, drift: Drift | None = None) -> str:
        self.count += 1
        path = Path(self.dir.name) / f"{self.count:03d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', stem)}.pcap"
        write_pcap(path, frames, drift.stretch if drift else 1.0, drift.reconnect if drift else None)
        return str(path)

    def piece(self, piece: Piece) -> str:
        if piece.share is None and piece.first == 1 and piece.last is None:
            return str(PUBLIC / piece.relative)
        return self.capture(frames_of(piece), Path(piece.relative).stem)


@dataclass(frozen=True)
class Drift:
    """A benign change of the held-out normal traffic: its polling slower or faster
    (``stretch``), every client reconnecting each ``reconnect`` seconds, or a second HMI doing
    what the busiest client does, from an address of its own, learned with `learn --update`
    (continuous recordings of Ethernet captures only)."""
    stretch: float = 1.0
    reconnect: float | None = None
    second_client: bool = False       # the busiest client's traffic again from a new address, learned later

    @property
    def label(self) -> str:
        if self.second_client:
            return "drift: a second HMI, learned later"
        if self.reconnect is not None:
            return f"drift: reconnects every {self.reconnect:g} s"
        return "as captured" if self.stretch == 1.0 else f"drift: timestamps ×{self.stretch:g}"


AS_CAPTURED = Drift()


# --- running one capture through the detectors ------------------------------------------

@dataclass
class Found:
    detector: str
    rule: str
    src: str
    dst: str                    # or what findings about several destinations fold on
    ts: float
    why: str
    events: list[int]           # the events it is about (empty: a silence)
    severity: str = "medium"


@dataclass
class Run:
    """One test capture after the detectors: per event its label and which detectors flagged it."""
    test: Test
    labels: list = field(default_factory=list)         # per event: NORMAL, attack type, or None
    scored: list = field(default_factory=list)         # per event: bool
    ts: list = field(default_factory=list)
    frames: list = field(default_factory=list)
    what: list = field(default_factory=list)           # per event: "proto function src>dst"
    flags: list = field(default_factory=list)          # per event: bit set of DETECTORS
    verbatim: list = field(default_factory=list)       # per event: the training traffic holds the same request
    found: list[Found] = field(default_factory=list)
    held: tuple[float, float] | None = None            # the held-out normal segment (time range)
    held_from_frame: int | None = None
    error: str | None = None
    rows: int = 0                                      # model windows scored
    anomalous: int = 0                                 # ... and found anomalous
    watched: float = 0.0                               # seconds the baseline that tested it watched

    def in_held(self, index: int) -> bool:
        return self.held is not None and self.scored[index] and self.labels[index] == NORMAL \
            and self.held[0] <= self.ts[index] <= self.held[1]


class Recorder:
    """Listens to a detector's Folding: every finding it raises, with who and why."""

    def __init__(self, folding) -> None:
        self.calls: list[tuple] = []
        original = folding.add

        def add(finding, ts, proto, src, dst, evidence, detail=None, subject=None):
            self.calls.append((finding.rule, src, subject or dst, ts, detail or finding.title, finding.severity))
            return original(finding, ts, proto, src, dst, evidence, detail, subject)
        folding.add = add

    def take(self) -> list[tuple]:
        calls, self.calls = self.calls, []
        return calls


def learned_verbatim(baseline, event) -> bool:
    """Whether the normal training traffic holds this very request: the same client, server,
    function and targets (the same service, for a conversation). No detector that learns
    from that traffic can tell such an event from normal on its own."""
    if event.direction != "request":
        return False
    if event.proto in CONVERSATIONS:
        return event.function in baseline.pairs.get((event.src, peer(event.src, event.dst), event.proto), ())
    return _TARGETS.channel(event) in baseline.channels


_TARGETS = Targets()


def run_test(path: str, test: Test, learned, rules) -> Run:
    run = Run(test, watched=learned.baseline.observed or 0.0)
    detector = RuleDetector(rules)
    baseline = BaselineDetector(learned.baseline)
    rule_calls, baseline_calls = Recorder(detector.folding), Recorder(baseline.folding)
    model = learned.model if learned.model.ready else None
    windows = ModelDetector(learned.model, learned.baseline).windows if model is not None else None
    members: dict[tuple, list[int]] = defaultdict(list)

    def score(rows) -> None:
        run.rows += len(rows)
        for row, _score, why in model.score(rows):
            run.anomalous += 1
            key = (row.client, row.server, row.proto, row.start)
            events = members.get(key, [])
            for index in events:
                run.flags[index] |= BIT["model"]
            brief = learned.baseline.maturity((row.client, row.server, row.proto)) is not None
            run.found.append(Found("model", "ml.anomalous_window", row.client, row.server,
                                   row.start + model.window_seconds, why, list(events), "low" if brief else "medium"))
        for row in rows:
            members.pop((row.client, row.server, row.proto, row.start), None)

    try:
        for index, event in enumerate(decode([path], conversations=True)):
            run.labels.append(test.labels(event))
            run.ts.append(event.ts)
            run.frames.append(event.frame)
            run.what.append(f"{event.proto} {event.function} {event.src}>{event.dst}")
            run.flags.append(0)
            run.verbatim.append(learned_verbatim(learned.baseline, event))
            detector.feed(event)
            for rule, src, dst, ts, why, severity in rule_calls.take():
                run.flags[index] |= BIT["rules"]
                run.found.append(Found("rules", rule, src, dst, ts, why, [index], severity))
            baseline.feed(event)
            for rule, src, dst, ts, why, severity in baseline_calls.take():
                silence = rule == "baseline.channel_silent"
                if not silence:
                    run.flags[index] |= BIT["baseline"]
                run.found.append(Found("baseline", rule, src, dst, ts, why, [] if silence else [index], severity))
            if windows is not None:
                rows = windows.feed(event)
                if rows:
                    score(rows)
                if event.proto not in CONVERSATIONS:
                    request = event.direction == "request"
                    key = (event.src, event.dst, event.proto) if request else (event.dst, event.src, event.proto)
                    if key in windows.open:
                        members[key + (windows.start,)].append(index)
    except CaptureError as exc:
        run.error = str(exc)
    detector.flush()
    baseline.flush()
    if windows is not None:
        score(windows.flush())

    # which events are scored, and the held-out normal segment: after the last attack event
    if run.ts:
        start, end = run.ts[0], run.ts[-1]
        after = start + test.score_share * (end - start) if test.score_share is not None else None
        run.scored = [label is not None and frame >= test.score_from and (after is None or ts >= after)
                      for label, frame, ts in zip(run.labels, run.frames, run.ts)]
        scored_ts = [ts for ts, s in zip(run.ts, run.scored) if s]
        attacks = [ts for ts, s, label in zip(run.ts, run.scored, run.labels) if s and label]
        if scored_ts:
            held_start = max(attacks) if attacks else min(scored_ts)
            if held_start < max(scored_ts) or not attacks:
                run.held = (held_start, max(scored_ts))
                candidates = [f for f, ts, s in zip(run.frames, run.ts, run.scored) if s and ts > held_start] \
                    if attacks else [f for f, s in zip(run.frames, run.scored) if s]
                run.held_from_frame = min(candidates) if candidates else None
    return run


# --- scores --------------------------------------------------------------------------------

def flagged(flags: int, config: str) -> bool:
    return bool(flags) if config == "combined" else bool(flags & BIT[config])


@dataclass
class Score:
    tp: int = 0
    fn: int = 0
    fp: int = 0
    captures: int = 0            # captures holding the attack
    alerted: int = 0             # ... in which at least one of its events was detected

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)


def attack_scores(runs: list[Run]) -> dict[str, dict[str, Score]]:
    """Per attack type and configuration: TP/FN over its attack events, FP over the normal
    events of the captures that hold it."""
    out: dict[str, dict[str, Score]] = {}
    for run in runs:
        kinds = {label for label, s in zip(run.labels, run.scored) if s and label}
        for kind in kinds:
            scores = out.setdefault(kind, {c: Score() for c in CONFIGS})
            hits = {c: False for c in CONFIGS}
            for label, s, flags in zip(run.labels, run.scored, run.flags):
                if not s or (label and label != kind):
                    continue
                for config in CONFIGS:
                    hit = flagged(flags, config)
                    if label:
                        if hit:
                            hits[config] = True
                            scores[config].tp += 1
                        else:
                            scores[config].fn += 1
                    elif hit:
                        scores[config].fp += 1
            for config in CONFIGS:
                scores[config].captures += 1
                scores[config].alerted += hits[config]
    return out


@dataclass
class Alarms:
    hours: float = 0.0
    segments: int = 0                                        # held-out normal segments (captures or parts)
    events: int = 0
    flagged: Counter = field(default_factory=Counter)        # config -> normal events flagged
    alerts: Counter = field(default_factory=Counter)         # config -> folded alerts
    low: Counter = field(default_factory=Counter)            # config -> ... of them of low severity
    whys: Counter = field(default_factory=Counter)           # (detector, rule, why shape) -> findings
    opened: list = field(default_factory=list)               # per alert: (capture, frame, detector, rule, why)
    examples: dict = field(default_factory=dict)             # (detector, rule, why shape) -> (capture, frame, why)


def shape(why: str) -> str:
    """A why with its numbers blurred, so repeats of one cause count together."""
    return re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", why)[:160]


def false_alarms(runs: list[Run]) -> Alarms:
    alarms = Alarms()
    for run in runs:
        if run.held is None:
            continue
        held = [i for i in range(len(run.ts)) if run.in_held(i)]
        if not held:
            continue
        alarms.hours += (run.held[1] - run.held[0]) / 3600
        alarms.segments += 1
        alarms.events += len(held)
        for i in held:
            for config in CONFIGS:
                if flagged(run.flags[i], config):
                    alarms.flagged[config] += 1
        last: dict[tuple, float] = {}
        for found in sorted(run.found, key=lambda f: f.ts):
            if found.events:
                if not all(run.in_held(i) for i in found.events):
                    continue
            elif not run.held[0] <= found.ts <= run.held[1]:
                continue
            key = (found.detector, found.rule, found.src, found.dst)
            previous = last.get(key)
            last[key] = found.ts
            cause = (found.detector, found.rule, shape(found.why))
            alarms.whys[cause] += 1
            if cause not in alarms.examples:
                frame = run.frames[found.events[0]] if found.events else None
                alarms.examples[cause] = (run.test.relative, frame, found.why)
            if previous is None or found.ts - previous > AGGREGATE_SECONDS:
                alarms.alerts[found.detector] += 1
                alarms.alerts["combined"] += 1
                if found.severity == "low":
                    alarms.low[found.detector] += 1
                    alarms.low["combined"] += 1
                frame = run.frames[found.events[0]] if found.events else None
                alarms.opened.append((run.test.relative, frame, found.detector, found.rule, found.why))
    return alarms


def cell(score: Score) -> str:
    def f(x):
        return "–" if x is None else f"{x:.2f}"
    return f"{f(score.precision)} / {f(score.recall)} / {f(score.f1)}"


def per_hour(alerts: int, hours: float) -> str:
    return f"{alerts} ({alerts / hours:.1f}/h)" if hours >= MIN_RATE_HOURS else f"{alerts}"


def second_client_runs(network: Network, runs: list[Run], learned_for: list, train_paths: list[str], args,
                       window: float | None, rules, scratch: Scratch) -> list[Run]:
    """The held-out normal traffic with the busiest training client's traffic played again by a
    second client, a new address, whose own training traffic was learned afterwards with
    `learn --update`: nothing of it should be news. Networks with a site file are left out:
    their roles would have to name the new HMI (the rules rightly flag a host they do not)."""
    if network.sessions or network.site:
        return []
    training = [f for path in train_paths for f in read_capture(path) if f.link_type == 1]
    busiest = Counter(e.src for e in decode(train_paths) if e.direction == "request").most_common(1)
    if not training or not busiest or ":" in busiest[0][0]:
        return []
    old = socket.inet_aton(busiest[0][0])
    new = old[:3] + bytes([(old[3] + 100) % 254 + 1])
    learned, _ = learn(train_paths, estimator=args.estimator, window_seconds=window)
    learned, _ = learn([scratch.capture([_readdressed(f, old, new) for f in training], "second-client-training")],
                       learned)
    changed = []
    for run in runs:
        if run.held is None:
            continue
        frames = [f for f in read_capture(str(PUBLIC / run.test.relative)) if f.link_type == 1]
        both = sorted(frames + [_readdressed(f, old, new) for f in frames], key=lambda f: f.ts)
        changed.append(run_test(scratch.capture(both, Path(run.test.relative).stem + "-two-clients"), run.test,
                                learned, rules))
    return changed


def _readdressed(frame: Frame, old: bytes, new: bytes) -> Frame:
    return Frame(frame.ts, frame.link_type, readdress(frame.data, old, new), frame.capture, frame.number)


def print_maturity(cases: list[Drift], all_runs, drift_runs) -> None:
    """False alarms split by how long the baseline that judged the traffic was watched: the
    target holds for baselines watched an hour or more; younger ones grade their news down."""
    print(f"* By how long the baseline was watched while learning (the target is for {MATURE_SECONDS / 3600:g} h "
          "or more; a younger baseline's new functions and targets are one low alert per pair):")
    for case in cases:
        source = all_runs if case is AS_CAPTURED else drift_runs[case]
        parts = []
        for mature in (True, False):
            alarms = Alarms()
            for _, runs in source:
                part = false_alarms([r for r in runs if (r.watched >= MATURE_SECONDS) == mature])
                alarms.hours += part.hours
                alarms.segments += part.segments
                alarms.alerts.update(part.alerts)
                alarms.low.update(part.low)
            if not alarms.segments:
                continue
            label = f"watched ≥ {MATURE_SECONDS / 3600:g} h" if mature else f"watched < {MATURE_SECONDS / 3600:g} h"
            alerts, low = alarms.alerts["combined"], alarms.low["combined"]
            rate = f" = {alerts / alarms.hours:.1f}/h" if alarms.hours >= MIN_RATE_HOURS else ""
            verdict = f" (**{'met' if alerts <= alarms.hours else 'not met'}**)" if mature else ""
            parts.append(f"{label}: {alerts} alerts ({low} low) in {alarms.hours:.2f} h{rate}, "
                         f"{alarms.segments} segments{verdict}")
        print(f"  * {case.label}: " + "; ".join(parts) + ".")


def print_anchor(cases: list[Drift], all_runs, drift_runs) -> None:
    """The figure IMADICS published on the same Lemay Modbus runs: the share of normal runs a
    detector accepts without any alert (55-93%, and 0% once the polling changed)."""
    shares = []
    for case in cases:
        source = all_runs if case is AS_CAPTURED else drift_runs[case]
        segments = accepted = 0
        for network, runs in source:
            if network.dataset != "Modbus_dataset":
                continue
            for run in runs:
                alarms = false_alarms([run])
                if alarms.segments:
                    segments += 1
                    accepted += alarms.alerts["combined"] == 0
        if segments:
            shares.append(f"{case.label} {accepted} of {segments}")
    if shares:
        print("* Anchor, IMADICS on the Lemay Modbus runs (Modbus_dataset): 55–93% of normal runs accepted, 0% after "
              "a polling change. icsguard, normal segments accepted without any alert: " + ", ".join(shares) + ".")


# --- main ----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None,
                        help="comma-separated dataset folder names (default: all of "
                             + ", ".join(sorted({n.dataset for n in networks()})) + ")")
    parser.add_argument("--drift", default="0.5,1.5,3",
                        help="time-stretch factors of the benign-drift cases (0.5: polling twice as fast; '' for none)")
    parser.add_argument("--reconnect", type=float, default=300.0,
                        help="also a case of every client reconnecting every so many seconds (0: none)")
    parser.add_argument("--no-second-client", dest="second_client", action="store_false",
                        help="leave out the case of a second HMI learned later")
    parser.add_argument("--estimator", default="isolation_forest", choices=ESTIMATORS)
    parser.add_argument("--window-seconds", type=float, default=None,
                        help="model window for every network (default: icsguard's, 10 s for the short lab captures)")
    parser.add_argument("--folds", type=int, default=3,
                        help="captures with held-out normal traffic are split into this many folds; each fold is "
                             "tested by what was learned from the training captures plus the held-out normal "
                             "traffic of the other folds (1: the training captures alone)")
    parser.add_argument("--no-site", action="store_true",
                        help="no site files: the rules that name a site's groups stay inactive")
    parser.add_argument("--details", action="store_true", help="also list missed attack events per attack type")
    args = parser.parse_args()
    if not PUBLIC.is_dir():
        sys.exit(f"no public captures at {PUBLIC}")

    wanted = {d.strip() for d in args.datasets.split(",")} if args.datasets else None
    chosen = [n for n in networks() if wanted is None or n.dataset in wanted]
    if not chosen:
        sys.exit("no network matches --datasets")
    drifts = [Drift(float(x)) for x in args.drift.split(",") if x.strip()] + \
        ([Drift(reconnect=args.reconnect)] if args.reconnect else []) + \
        ([Drift(second_client=True)] if args.second_client else [])
    scratch = Scratch()
    shipped = load_rules()
    started = time.perf_counter()

    print("## Detection on labelled public captures\n")
    print(f"Shipped rules ({len(shipped.rules)} active without a site file, "
          + ("no site files" if args.no_site else "more with the site file of each network that has one")
          + "), baseline and model "
          f"(`{args.estimator}`) learned per network from normal traffic only. Cells are event-wise "
          "**precision / recall / F1**; an event is detected when the detector raised a finding on it "
          "(the model: on every event of a window it scored anomalous).\n")

    all_runs: list[tuple[Network, list[Run]]] = []
    drift_runs: dict[Drift, list[tuple[Network, list[Run]]]] = defaultdict(list)
    notes = []
    for network in chosen:
        t0 = time.perf_counter()
        window = args.window_seconds if args.window_seconds is not None else network.window
        rules = shipped
        if network.site and not args.no_site:
            site_path = Path(scratch.dir.name) / f"site-{network.key.replace(' ', '_').replace('/', '_')}.yaml"
            site_path.write_text(network.site + "\n")
            rules = load_rules(site=load_site(site_path))
        train_paths = [scratch.piece(p) for p in network.train]
        learned, error = learn(train_paths, estimator=args.estimator, window_seconds=window)
        train_packets = learned.packets
        runs = [run_test(str(PUBLIC / test.relative), test, learned, rules) for test in network.tests]
        learned_for = [learned] * len(runs)
        held = [i for i, run in enumerate(runs) if run.held_from_frame is not None]
        folds = [held[k::args.folds] for k in range(min(args.folds, len(held)))] if len(held) > 1 < args.folds else []
        for fold in folds:
            # the held-out normal traffic of the other folds' captures trains too
            others = [Piece(runs[j].test.relative, first=runs[j].held_from_frame, untrusted=network.untrusted)
                      for j in held if j not in fold]
            learned_for_fold, fold_error = learn(train_paths + [scratch.piece(p) for p in others],
                                                 estimator=args.estimator, window_seconds=window)
            error = error or fold_error
            for i in fold:
                learned_for[i] = learned_for_fold
                runs[i] = run_test(str(PUBLIC / network.tests[i].relative), network.tests[i], learned_for_fold, rules)
        for drift in drifts:
            changed = []
            if drift.second_client:
                changed = second_client_runs(network, runs, learned_for, train_paths, args, window, rules, scratch)
            for run, learned_by in zip(runs, learned_for):
                if run.held is None or drift.second_client:
                    continue
                frames = list(read_capture(str(PUBLIC / run.test.relative)))
                path = scratch.capture(frames, Path(run.test.relative).stem, drift)
                changed.append(run_test(path, run.test, learned_by, rules))
            drift_runs[drift].append((network, changed))
        all_runs.append((network, runs))
        model_state = (f"model ready ({len(learned.model.rows)} training windows of "
                       f"{learned.model.window_seconds:g} s)" if learned.model.ready else
                       f"**model not ready**: {len(learned.model.rows)} training windows of "
                       f"{learned.model.window_seconds:g} s (fewer than needed), the model raises nothing")
        notes.append(f"* **{network.name}** — {network.note}"
                     + (f" Site file: `{network.site}`." if network.site and not args.no_site else "")
                     + (f" {len(folds)} folds." if folds else "")
                     + f" Learned from {train_packets:,} packets, "
                     f"{learned.baseline.events:,} events; {model_state}; "
                     f"{sum(r.rows for r in runs):,} test windows scored, {sum(r.anomalous for r in runs):,} "
                     "anomalous. "
                     f"{len(network.tests)} test captures, {time.perf_counter() - t0:.1f} s."
                     + (f" Learn error: {error}." if error else "")
                     + "".join(f" Error in {r.test.relative}: {r.error}." for r in runs if r.error))

    print("### Networks, training and test data\n")
    print("\n".join(notes))
    print()

    print("### Attack events: precision / recall / F1\n")
    print("| network | attack type | attack events | rules | baseline | model | combined | "
          "captures detected (rules/baseline/model/combined) |")
    print("|---|---|---:|---|---|---|---|---|")
    met_recall = True
    totals = {c: Score() for c in CONFIGS}
    for network, runs in all_runs:
        for kind, scores in sorted(attack_scores(runs).items()):
            events = scores["combined"].tp + scores["combined"].fn
            print(f"| {network.key} | {kind} | {events:,} | " + " | ".join(cell(scores[c]) for c in CONFIGS)
                  + f" | {'/'.join(str(scores[c].alerted) for c in CONFIGS)} of {scores['combined'].captures} |")
            met_recall &= scores["combined"].fn == 0
            for c in CONFIGS:
                totals[c].tp += scores[c].tp
                totals[c].fn += scores[c].fn
                totals[c].fp += scores[c].fp
                totals[c].captures += scores[c].captures
                totals[c].alerted += scores[c].alerted
    print(f"| **all** | | {totals['combined'].tp + totals['combined'].fn:,} | "
          + " | ".join(cell(totals[c]) for c in CONFIGS)
          + f" | {'/'.join(str(totals[c].alerted) for c in CONFIGS)} of {totals['combined'].captures} |\n")

    print("### False alarms on held-out normal traffic (alerts after folding, per hour)\n")
    print("| network | traffic | hours | normal events | rules | baseline | model | combined | "
          "normal events flagged (combined) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    cases = [AS_CAPTURED] + drifts
    grand = {case: Alarms() for case in cases}
    collected: dict[Drift, list[Alarms]] = defaultdict(list)
    for case in cases:
        source = all_runs if case is AS_CAPTURED else drift_runs[case]
        for network, runs in source:
            alarms = false_alarms(runs)
            collected[case].append(alarms)
            if not alarms.events:
                continue
            traffic = case.label
            print(f"| {network.key} | {traffic} | {alarms.hours:.3f} | {alarms.events:,} | "
                  + " | ".join(per_hour(alarms.alerts[c], alarms.hours) for c in CONFIGS)
                  + f" | {alarms.flagged['combined']:,} |")
            total = grand[case]
            total.hours += alarms.hours
            total.events += alarms.events
            total.alerts.update(alarms.alerts)
            total.low.update(alarms.low)
            total.flagged.update(alarms.flagged)
            total.whys.update(alarms.whys)
            for key, value in alarms.examples.items():
                total.examples.setdefault(key, value)
    for case in cases:
        total = grand[case]
        traffic = case.label
        print(f"| **all** | {traffic} | {total.hours:.3f} | {total.events:,} | "
              + " | ".join(per_hour(total.alerts[c], total.hours) for c in CONFIGS)
              + f" | {total.flagged['combined']:,} |")
    print()

    for case in cases:
        total = grand[case]
        if not total.whys:
            continue
        print(f"### Causes of false alarms on held-out normal traffic ({case.label})\n")
        print("| detector | finding | findings | example (capture, frame: why) |")
        print("|---|---|---:|---|")
        for (detector, rule, _), count in total.whys.most_common(15):
            capture, frame, why = total.examples[(detector, rule, _)]
            where = f"{Path(capture).name}#{frame}" if frame is not None else Path(capture).name
            print(f"| {detector} | {rule} | {count:,} | {where}: {why.replace('|', '¦')[:220]} |")
        print()

    if args.details:
        print("### Every false alarm on held-out normal traffic (as captured), with its first finding\n")
        print("| network | capture#frame | detector | finding | why |")
        print("|---|---|---|---|---|")
        for (network, _), alarms in zip(all_runs, collected[AS_CAPTURED]):
            for capture, frame, detector, rule, why in alarms.opened:
                where = Path(capture).name + (f"#{frame}" if frame is not None else "")
                print(f"| {network.key} | {where} | {detector} | {rule} | {why.replace('|', '¦')[:200]} |")
        print()
        print("### Attack events missed by every detector (most frequent kinds)\n")
        print("| network | attack type | missed | event (proto function src>dst) | example frame |")
        print("|---|---|---:|---|---|")
        for network, runs in all_runs:
            missed: dict[tuple, list] = defaultdict(list)
            for run in runs:
                for i, (label, s, flags) in enumerate(zip(run.labels, run.scored, run.flags)):
                    if s and label and not flags:
                        missed[(label, run.what[i])].append(f"{Path(run.test.relative).name}#{run.frames[i]}")
            ranked = sorted(missed.items(), key=lambda item: (-len(item[1]), item[0]))
            for (kind, what), where in ranked[:DETAIL_ROWS]:
                print(f"| {network.key} | {kind} | {len(where)} | {what} | {where[0]} |")
            if len(ranked) > DETAIL_ROWS:
                print(f"| {network.key} | … | {sum(len(w) for _, w in ranked[DETAIL_ROWS:])} | "
                      f"{len(ranked) - DETAIL_ROWS} more kinds | |")
        print()

    hours = grand[AS_CAPTURED].hours
    combined = grand[AS_CAPTURED].alerts["combined"]
    rate = combined / hours if hours else float("inf")
    print("### Target\n")
    print(f"* Every labelled attack event detected (combined recall 1.00 for every attack type): "
          f"**{'met' if met_recall else 'not met'}** — combined recall over all attack events "
          f"{totals['combined'].recall:.4f} ({totals['combined'].fn:,} of "
          f"{totals['combined'].tp + totals['combined'].fn:,} missed).")
    missed = verbatim = 0
    rest: Counter = Counter()
    for _, runs in all_runs:
        for run in runs:
            for i, (label, scored, flags, same) in enumerate(zip(run.labels, run.scored, run.flags, run.verbatim)):
                if scored and label and not flags:
                    missed += 1
                    verbatim += same
                    if not same:
                        rest[" ".join(run.what[i].split()[:2])] += 1
    if missed:
        print(f"* Of the {missed:,} attack events missed, {verbatim:,} repeat verbatim a request of the normal "
              "training traffic (same client, server, function and targets, or the same service); the other "
              f"{missed - verbatim:,} hold nothing the baseline had not learned, in new combinations: "
              + ", ".join(f"{what} {n:,}" for what, n in rest.most_common(4))
              + ". Whole-capture labels call every request of an engineering session an attack, including "
              "what it shares with normal sessions.")
    print(f"* Attack captures with at least one detected attack event: rules {totals['rules'].alerted}, baseline "
          f"{totals['baseline'].alerted}, model {totals['model'].alerted}, combined {totals['combined'].alerted} "
          f"of {totals['combined'].captures}.")
    print(f"* At most one false alarm per hour of held-out normal traffic (combined): "
          f"**{'met' if rate <= 1.0 else 'not met'}** — {combined} alerts in {hours:.2f} h = {rate:.1f}/h"
          + (" (less than an hour of held-out normal traffic: the rate is an estimate)" if hours < 1 else "") + ".")
    for sessions, what in ((False, "continuous recordings of a process"), (True, "short engineering and HMI sessions")):
        part = [alarms for (network, _), alarms in zip(all_runs, collected[AS_CAPTURED]) if network.sessions == sessions]
        part_hours = sum(alarms.hours for alarms in part)
        alerts, segments = sum(alarms.alerts["combined"] for alarms in part), sum(alarms.segments for alarms in part)
        if part_hours:
            print(f"  * on {what}: {alerts} alerts in {part_hours:.2f} h = {alerts / part_hours:.1f}/h "
                  f"({segments} segments, {alerts / segments:.1f} alerts each).")
    for case in drifts:
        total = grand[case]
        if total.hours:
            print(f"* Benign {case.label}: {total.alerts['combined']} alerts in {total.hours:.2f} h "
                  f"= {total.alerts['combined'] / total.hours:.1f}/h (rules {total.alerts['rules']}, baseline "
                  f"{total.alerts['baseline']}, model {total.alerts['model']}).")
    print_maturity(cases, all_runs, drift_runs)
    print_anchor(cases, all_runs, drift_runs)
    print("* Leave-one-attack-type-out: every detector here learns from normal traffic only and no threshold is "
          "tuned on attacks, so holding an attack type out of the learning changes nothing: the per-attack-type "
          "figures above are already the held-out ones.")
    print(f"\n{len(chosen)} networks in {time.perf_counter() - started:.1f} s.")


if __name__ == "__main__":
    main()
