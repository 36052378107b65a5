"""Whole runs: a capture set decoded, inventoried and stored, with what went wrong kept."""

from __future__ import annotations

import gc
import hashlib
import os
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from icsguard.budget import Budget
from icsguard.capture.files import CaptureError, Frame, read_capture, read_captures, rereadable
from icsguard.detect import site
from icsguard.detect.baseline import BaselineDetector
from icsguard.detect.features import Windows
from icsguard.detect.health import HealthDetector
from icsguard.detect.identity import IdentityDetector
from icsguard.detect.identity import facts as identity_facts
from icsguard.detect.model import ModelDetector
from icsguard.detect.modelfile import LearnedModel
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import Rule, RuleSet
from icsguard.detect.targets import Targets
from icsguard.events import CONVERSATIONS, Event
from icsguard.net.netstack import SUPPORTED_LINKS, UnsupportedLink
from icsguard.output.inventory import Inventory
from icsguard.output.recorder import RunRecorder
from icsguard.output.site_draft import draft_site
from icsguard.pipeline import Pipeline
from icsguard.runstats import RunStats

MAX_LEARNED_IDENTITIES = 100_000      # (host, protocol, attribute) kept in a model file
GC_YOUNG = 20_000                      # allocations between young garbage collections during a run

if TYPE_CHECKING:
    from icsguard.output.evidence import EvidenceRing
    from icsguard.output.store import Store


def check_captures(paths: list[str]) -> None:
    """Refuse, before any work is recorded, captures that cannot be read at all."""
    for path in filter(rereadable, paths):     # a pipe is checked as it is read
        first = next(iter(read_capture(path)), None)
        if first is not None and first.link_type not in SUPPORTED_LINKS:
            raise CaptureError(f"{path}: {UnsupportedLink(first.link_type)}")


def decode(paths: list[str], proto: str | None = None, stats: RunStats | None = None,
           conversations: bool = False, progress: Callable[[Frame], None] | None = None) -> Iterator[Event]:
    """Events of the captures in time order; raises CaptureError after the last good one.
    ``conversations`` adds the tcp/udp Events of conversations (asking for either protocol does too)."""
    check_captures(paths)
    pipeline = Pipeline(stats or RunStats(captures=list(paths)), conversations or proto in CONVERSATIONS)
    for event in pipeline.run(read_captures(paths), progress):
        if proto is None or event.proto == proto:
            yield event


def analyze(paths: list[str], store: Store, progress: Callable[[Frame], None] | None = None,
            rules: RuleSet | None = None, learned: LearnedModel | None = None,
            stop: threading.Event | None = None) -> tuple[int, str, str | None]:
    """Analyze capture files: see analyze_frames."""
    check_captures(paths)
    return analyze_frames(read_captures(paths), list(paths), store, "analyze", progress, rules, learned, stop)


@contextmanager
def long_run_collection() -> Iterator[None]:
    """Garbage collection set for a long run. What was loaded so far (Scapy, the rules, the
    model) lives for the run: it is frozen, so that full collections need not walk it again and
    again (pauses of 100 ms became 30). And each event makes a few containers that reference
    counting frees: a young collection every 700 of them cost 4% of an analysis, so one every
    GC_YOUNG is enough to catch the rare cycle."""
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, *thresholds[1:])
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


class Detection:
    """The inventory and the detectors of one run (or one shard of it), and the counters they
    keep: the rules, what devices say of themselves, and with a learned model its baseline and
    anomaly model; a sensor adds its health and its evidence ring, whose counters join the run's."""

    def __init__(self, stats: RunStats, budget: Budget, rules: RuleSet | None, learned: LearnedModel | None,
                 muted: set, known: dict, macs: dict, health: HealthDetector | None = None,
                 evidence: EvidenceRing | None = None, elsewhere: tuple | None = None):
        """``elsewhere``: rules counted by someone else (see RuleDetector)."""
        self.stats, self.budget = stats, budget
        self.inventory = Inventory(budget)
        self.rules = RuleDetector(rules if rules is not None else RuleSet(), muted, budget, elsewhere)
        self.identity = IdentityDetector(known, macs, stats.hosts, muted, budget)
        self.detectors: list = [self.rules, self.identity]
        self.baseline: BaselineDetector | None = None
        if learned is not None:
            targets = Targets()
            self.baseline = BaselineDetector(learned.baseline, muted, targets, budget)
            self.detectors.append(self.baseline)
            if learned.model.ready:
                self.detectors.append(ModelDetector(learned.model, learned.baseline, muted, targets, budget))
            stats.counters["baseline.pairs"] = len(learned.baseline.pairs)
            if learned.baseline.observed is not None:
                stats.counters["baseline.watched_seconds"] = round(learned.baseline.observed)
                stats.counters["baseline.briefly_watched_pairs"] = len(learned.baseline.briefly_watched())
                stats.counters["baseline.watched_pairs"] = len(learned.baseline.watched)
        if health is not None:
            self.detectors.append(health)
        self.sources = [source for source in (health, evidence) if source is not None]
        self.feeds = [self.inventory.feed] + [each.feed for each in self.detectors]
        stats.counters["rules.active"] = len(self.rules.rules.rules)
        stats.counters["rules.need_site_file"] = len(self.rules.rules.inactive)

    def feed(self, event: Event) -> None:
        for feed in self.feeds:
            feed(event)

    def flush(self) -> None:
        for each in self.detectors:
            each.flush()

    def take_drifts(self) -> list:
        """Pace drifts the baseline noted since the last call (none without a model)."""
        return self.baseline.take_drifts() if self.baseline is not None else []

    def count(self) -> None:
        counters = self.stats.counters
        counters["memory.held_peak_bytes"] = self.budget.buffers.peak
        counters["memory.held_refused_bytes"] = self.budget.buffers.refused
        counters["inventory.dropped_assets"] = self.inventory.dropped_assets
        counters["rules.matches"] = self.rules.matches
        counters["rules.muted_matches"] = self.rules.suppressed
        for each in self.detectors[1:]:
            counters[f"{each.name}.findings"] = each.folding.raised
        for source in self.sources:
            for name, value in source.counters.items():     # (Counter.update would add them up)
                counters[name] = value


def analyze_frames(frames: Iterable[Frame], captures: list[str], store: Store, command: str = "analyze",
                   progress: Callable[[Frame], None] | None = None, rules: RuleSet | None = None,
                   learned: LearnedModel | None = None, stop: threading.Event | None = None,
                   on_event: Callable[[Event], None] | None = None,
                   budget: Budget | None = None, health: HealthDetector | None = None,
                   on_commit: Callable[[int, list, dict], None] | None = None,
                   evidence: EvidenceRing | None = None) -> tuple[int, str, str | None]:
    """Run the pipeline over frames, through the rules (and the learned baseline and model,
    when given), recording as it goes (at least once a second); returns the run id, how it
    ended (``finished``; ``interrupted`` when ``stop`` was set; ``failed`` on a broken
    capture) and why it failed. What was decoded before a stop or an error is stored.
    ``on_event`` sees every Event after the detectors; ``budget``: the memory every stage
    shares (by default, for a process of 200 MB); ``health``: a live source's own alerts
    (packets dropped, a silent tap), told of every frame; ``on_commit`` is told, after each
    commit, of the run id, the alerts stored for the first time and the run's counters;
    ``evidence``: a sensor's packet ring, which writes each new alert's packets."""
    budget = budget or Budget()
    run_id = store.start_run(command, captures, [rule.id for rule in (rules.rules if rules is not None else [])])
    stats = RunStats(captures=captures)
    known, macs = known_identities(store, learned)
    detection = Detection(stats, budget, rules, learned, store.mutes(), known, macs, health, evidence)
    inventory, detectors = detection.inventory, detection.detectors
    count_findings = detection.count

    def after_commit(raised: list) -> None:
        if evidence is not None:
            evidence.raised(raised)
        if on_commit is not None:
            on_commit(run_id, raised, stats.counters)

    recorder = RunRecorder(store, run_id, stats, inventory, [each.folding for each in detectors], count_findings,
                           after_commit=after_commit, identity=detection.identity, drifts=detection.take_drifts)

    def on_frame(frame: Frame) -> None:          # (a live source sends heartbeats while the tap is idle)
        if progress is not None:
            progress(frame)
        if health is not None:
            health.observe(frame, stats.counters)
        if evidence is not None:
            evidence.tick()
        recorder.tick()
    status, error = "finished", None
    try:
        with long_run_collection():
            pipeline = Pipeline(stats, conversations=True, budget=budget,
                                on_segment=evidence.feed if evidence is not None else None)
            quiet = progress is None and health is None and evidence is None
            for event in pipeline.run(frames, recorder.tick if quiet else on_frame):
                detection.feed(event)
                if on_event is not None:
                    on_event(event)
                if stop is not None and stop.is_set():
                    break
    except CaptureError as exc:
        status, error = "failed", str(exc)
    except BaseException as exc:        # a bug or a second Ctrl-C: keep what was found, say how it ended
        recorder.commit("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise
    if stop is not None and stop.is_set():
        status = "interrupted"
    detection.flush()
    recorder.commit(status)
    if evidence is not None:
        evidence.tick(final=True)
        recorder.commit(status)          # the evidence counters
    return run_id, status, error


def known_identities(store: Store, learned: LearnedModel | None) -> tuple[dict, dict]:
    """What devices said of themselves before this run: in the database, and while learning."""
    known, macs = store.known_identities()
    for key, values in (learned.identities if learned is not None else {}).items():
        known.setdefault(key, set()).update(values)
    return known, macs


def capture_digest(path: str) -> str:
    """A capture's SHA-256: the same traffic under another name is still the same traffic."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def learn(paths: list[str], learned: LearnedModel | None = None, site_file: site.Site | None = None,
          estimator: str | None = None, false_alarm_rate: float | None = None,
          window_seconds: float | None = None,
          progress: Callable[[Frame], None] | None = None) -> tuple[LearnedModel, str | None]:
    """Learn the baseline and fit the model from traffic believed normal, or go on learning
    (``learned``: a model loaded from its file; the estimator and false-alarm rate given
    replace its own). Events inside the site's maintenance windows are not learned:
    maintenance is not normal operation. Returns the model and the error that stopped a
    capture early, if any (what came before it is learned)."""
    learned = learning_model(learned, estimator, false_alarm_rate, window_seconds)
    stats = RunStats(captures=list(paths))
    error = Learning(learned, site_file).learn(decode(paths, stats=stats, conversations=True, progress=progress))
    finish_learning(learned, paths, stats)
    return learned, error


def learning_model(learned: LearnedModel | None, estimator: str | None = None, false_alarm_rate: float | None = None,
                   window_seconds: float | None = None) -> LearnedModel:
    """The model to learn into: the one given (going on learning) or a new one, with the
    settings asked for."""
    if learned is None:
        learned = LearnedModel()
        if window_seconds is not None:
            learned.model.window_seconds = window_seconds
    if estimator is not None:
        learned.model.estimator = estimator
    if false_alarm_rate is not None:
        learned.model.false_alarm_rate = false_alarm_rate
    return learned


class Learning:
    """What learning keeps as events go by: the baseline, the model's windows of features, and
    what devices said of themselves (events inside the site's maintenance windows are not
    normal operation, and are left out)."""

    def __init__(self, learned: LearnedModel, site_file: site.Site | None = None):
        self.learned, self.site_file = learned, site_file
        # training windows have no never-seen targets by definition: the baseline is still being
        # learned, and counting its first sightings as new would make a scan look normal
        self.targets = Targets()
        self.windows = Windows(learned.model.window_seconds, targets=self.targets)

    def learn(self, events: Iterable[Event]) -> str | None:
        """Learn the events, then close the last windows; the error that ended the capture
        early, if any (what came before it is learned)."""
        error = None
        try:
            for event in events:
                self.feed(event)
        except CaptureError as exc:
            error = str(exc)
        self.learned.model.add(self.windows.flush())
        return error

    def feed(self, event: Event) -> None:
        if self.site_file is not None and self.site_file.in_maintenance(event.ts):
            return
        learned = self.learned
        learned.model.add(self.windows.feed(event))
        learned.baseline.learn(event, self.targets)
        for attribute, value in identity_facts(event):
            if len(learned.identities) < MAX_LEARNED_IDENTITIES:
                learned.identities.setdefault((event.src, event.proto, attribute), set()).add(value)


def finish_learning(learned: LearnedModel, paths: list[str], stats: RunStats) -> None:
    """Fit the model on every window learned, and say what the model was learned from."""
    learned.model.fit()
    learned.captures += [os.path.basename(p) for p in paths]
    learned.digests += [capture_digest(p) for p in paths if rereadable(p)]
    learned.packets += stats.packets
    if stats.first_ts is not None:
        learned.first_ts = min(stats.first_ts, learned.first_ts or stats.first_ts)
        learned.last_ts = max(stats.last_ts, learned.last_ts or stats.last_ts)


def draft_site_file(paths: list[str], progress: Callable[[Frame], None] | None = None) -> str:
    """A site file drafted from what the captures show."""
    inventory = Inventory()
    for event in decode(paths, progress=progress):
        inventory.feed(event)
    return draft_site(inventory)


def test_rule(rule: Rule, paths: list[str],
              progress: Callable[[Frame], None] | None = None) -> Iterator[tuple[Event, list[str]]]:
    """The events of the captures that a rule's conditions match, each with why."""
    for event in decode(paths, progress=progress):
        reasons = rule.why(event)
        if reasons is not None:
            yield event, reasons
