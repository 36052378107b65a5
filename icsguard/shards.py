"""One analysis (or one learning) split by server address over worker processes or a Dask
cluster, merged into one database with the same alerts as one process (into one model).

Every worker reads every capture but goes on only with the connections of its servers (a
controller's traffic stays in one shard, so its reassembly, baseline, thresholds and folds are
whole). The servers of the captures' first frames are placed in shards by their traffic before
the workers start; the others go by their address's hash. Rules that count per client across
servers (a scan) cannot be decided by a shard: each shard hands on the events those rules
match, and they are counted here, in time order, as far as every shard has read (so that they
wait in memory only while one shard is ahead).
Worker processes send what they found as they go, and the parent stores it as one process
would (at least once a second); Dask workers send it at the end.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from icsguard.analysis import (
    Detection,
    Learning,
    check_captures,
    finish_learning,
    known_identities,
    learning_model,
    long_run_collection,
)
from icsguard.budget import Budget
from icsguard.capture.files import CaptureError, Frame, read_captures
from icsguard.detect import modelfile
from icsguard.detect.folding import Alert
from icsguard.detect.identity import Sighting
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import RuleSet, load_rules
from icsguard.detect.site import load_site
from icsguard.events import Event
from icsguard.output.inventory import Asset, Communication, Inventory
from icsguard.output.recorder import COMMIT_SECONDS, RunRecorder
from icsguard.output.store import Store
from icsguard.pipeline import Pipeline, server_traffic
from icsguard.runstats import RunStats

# counters every shard sets alike, or whose largest value is the run's
LARGEST = frozenset({"rules.active", "rules.need_site_file", "baseline.pairs", "memory.held_peak_bytes"})
# how far behind what a shard read an event of it may still come (reassembly holds segments back)
REORDER_SECONDS = 60.0
POLL_SECONDS = 0.2             # the parent's wait for a shard's delta before it looks at the workers
# a worker's findings reach the store within a second: sent each half second, committed each half second
DELTA_SECONDS = COMMIT_SECONDS / 2
FORKING = multiprocessing.get_context("fork")
# frames read before the shards start, to place the busiest servers in different shards
PLACING_FRAMES = 20_000


@dataclass
class ShardJob:
    """What a worker needs, as plain data: paths, not loaded rules or models."""
    captures: list[str]
    shard: int
    shards: int
    rule_files: list[str]
    site: str | None
    model: str | None
    muted: set = field(default_factory=set)
    known: dict = field(default_factory=dict)
    macs: dict = field(default_factory=dict)
    placed: dict = field(default_factory=dict)


@dataclass
class ShardDelta:
    """What one shard found since its previous delta (a Dask worker's one delta: all of it): its
    counters so far, the communications and assets it changed (their totals in this shard), the
    alerts it raised or grew, identity sightings, pace drifts, and the events matched by the rules
    counted across servers; ``final``: the shard's last, ``stopped``: when its parent stopped it
    before the end of the captures."""
    shard: int
    stats: RunStats
    pairs: list[tuple[tuple, Communication]]
    assets: list[Asset]
    alerts: list[Alert]
    sightings: list[tuple[tuple[str, str, str], Sighting]]
    across: list[Event]
    drifts: list
    final: bool = False
    error: str | None = None
    stopped: bool = False


class _Stopped(Exception):
    """The parent asked a worker process to stop."""


# in a worker process: the queue to the parent that started it, for its deltas as it goes, and
# the event by which the parent asks it to stop
_parent: Any = None
_halt: Any = None


def _report_to(inbox: Any, halt: Any) -> None:
    """A worker process's start: a stop is its parent's to ask (Ctrl-C reaches the whole group)."""
    global _parent, _halt
    _parent, _halt = inbox, halt
    inbox.cancel_join_thread()   # (at its end a worker does not wait for a parent no longer reading)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_end_when_orphaned, args=(os.getppid(),), daemon=True).start()


def _end_when_orphaned(parent: int) -> None:
    """A worker whose parent was killed has nobody to report to: it ends at once."""
    while os.getppid() == parent:
        time.sleep(DELTA_SECONDS)
    os._exit(1)


def analyze_shard(job: ShardJob) -> ShardDelta | None:
    """One shard's analysis. In a worker process it sends its parent a delta every DELTA_SECONDS
    (pickled at once: the detectors go on changing what it holds), stops when the parent
    asks (and at once when the parent is gone) and returns nothing; on a Dask worker it returns
    one delta with everything."""
    rules = _rules(tuple(job.rule_files), job.site)
    learned = modelfile.load_shared(job.model) if job.model else None
    stats, budget = RunStats(captures=list(job.captures)), Budget()
    matched: list[Event] = []          # events of the rules counted across servers, for the parent
    detection = Detection(stats, budget, rules, learned, job.muted, job.known, job.macs,
                          elsewhere=(frozenset(rule.id for rule in rules.across_servers().rules), matched.append))

    def delta(final: bool = False, error: str | None = None, stopped: bool = False) -> ShardDelta:
        detection.count()
        pairs, assets = detection.inventory.take_changes({})       # (MACs: the parent sees every shard's)
        alerts = [alert for each in detection.detectors for alert in each.folding.drain()]
        found = ShardDelta(job.shard, stats, pairs, assets, alerts, detection.identity.take_changes(), list(matched),
                           detection.take_drifts(), final, error, stopped)
        matched.clear()
        return found
    parent = _parent
    due = time.monotonic() + DELTA_SECONDS
    frames = 0

    def report(_frame: Frame) -> None:
        """Told of every frame read, the shard's own or not (a shard with little of its own
        still says how far it read): a delta every DELTA_SECONDS, or the stop asked for."""
        nonlocal due, frames
        frames += 1
        if frames & 0xFF or time.monotonic() < due:
            return
        if _halt.is_set():
            raise _Stopped
        parent.put(pickle.dumps(delta()))
        due = time.monotonic() + DELTA_SECONDS
    error, stopped = None, False
    try:
        with long_run_collection():
            for event in Pipeline(stats, conversations=True, budget=budget, shard=(job.shard, job.shards),
                                  placed=job.placed).run(
                    read_captures(job.captures), report if parent is not None else None):
                detection.feed(event)
    except CaptureError as exc:
        error = str(exc)
    except _Stopped:
        stopped = True
    detection.flush()
    final = delta(True, error, stopped)
    if parent is None:
        return final
    parent.put(pickle.dumps(final))
    return None


# Rules loaded once per process and file version, as model files are (modelfile.load_shared):
# forked workers start with their parent's; Dask's workers load their own.
_loaded: dict[tuple, RuleSet] = {}


def _rules(rule_files: tuple[str, ...], site: str | None, loaded: RuleSet | None = None) -> RuleSet:
    """``loaded``: these files as the caller already loaded them (a command checks them first)."""
    files = (*rule_files, *([site] if site else []))
    key = (rule_files, site, tuple(modelfile.file_version(p) for p in files))
    found = _loaded.get(key)
    if found is None:
        found = loaded if loaded is not None else load_rules(list(rule_files), load_site(site) if site else None)
        _loaded.clear()
        _loaded[key] = found
    return found


def placed_servers(captures: list[str], shards: int) -> dict[str, int]:
    """The servers of the captures' first PLACING_FRAMES frames, each in a shard: the busiest
    first, each into the shard with the fewest frames so far, so that a few busy controllers are
    not hashed into one shard. Servers first seen later go by their address's hash."""
    totals = [0] * shards
    placed = {}
    traffic = server_traffic(itertools.islice(read_captures(captures), PLACING_FRAMES), Budget().entries("conversations"))
    for server, frames in traffic.most_common():
        shard = totals.index(min(totals))
        placed[server] = shard
        totals[shard] += frames
    return placed


def run_shards(work: Callable[[Any], Any], jobs: list, scheduler: str | None) -> list:
    """``work`` on each job, on worker processes, or on a Dask cluster (``local``: one started
    here for the run)."""
    if scheduler is None:
        with long_run_collection(), _forked_workers(len(jobs)) as pool:
            return list(pool.map(work, jobs))
    from dask.distributed import Client, LocalCluster
    if scheduler == "local":
        with LocalCluster(n_workers=len(jobs), threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            return client.gather(client.map(work, jobs, pure=False))
    with Client(scheduler) as client:
        return client.gather(client.map(work, jobs, pure=False))


def _forked_workers(count: int, initializer: Callable | None = None,
                    initargs: tuple = ()) -> concurrent.futures.ProcessPoolExecutor:
    """Worker processes forked from this one, which start with what it loaded (Scapy, the rules,
    the model); run them inside long_run_collection, so that they need not copy its heap."""
    return concurrent.futures.ProcessPoolExecutor(count, mp_context=FORKING, initializer=initializer,
                                                  initargs=initargs)


@dataclass
class LearnJob:
    captures: list[str]
    shard: int
    shards: int
    site: str | None
    window_seconds: float
    placed: dict


def learn_shard(job: LearnJob) -> tuple[modelfile.LearnedModel, RunStats, str | None]:
    """What one shard learned: its servers' baseline, windows and identities."""
    site = load_site(job.site) if job.site else None
    learned = learning_model(None, window_seconds=job.window_seconds)
    stats = RunStats(captures=list(job.captures))
    pipeline = Pipeline(stats, conversations=True, shard=(job.shard, job.shards), placed=job.placed)
    error = Learning(learned, site).learn(pipeline.run(read_captures(job.captures)))
    return learned, stats, error


def learn_sharded(captures: list[str], learned: modelfile.LearnedModel | None, site: str | None, workers: int,
                  scheduler: str | None = None, estimator: str | None = None, false_alarm_rate: float | None = None,
                  window_seconds: float | None = None) -> tuple[modelfile.LearnedModel, str | None]:
    """Learn over ``workers`` shards, as ``analysis.learn`` does in one process: each shard's
    baseline, windows and identities are merged, then the model is fitted on all the windows.
    A shard's windows are those one process cuts, but for the first and the last a capture's
    traffic only partly covers: a shard scales those by its own servers' first and last event
    (one process by any server's), and the baseline's total watch by its own events' gaps."""
    check_captures(captures)
    learned = learning_model(learned, estimator, false_alarm_rate, window_seconds)
    placed = placed_servers(captures, workers)
    jobs = [LearnJob(list(captures), n, workers, site, learned.model.window_seconds, placed) for n in range(workers)]
    results = run_shards(learn_shard, jobs, scheduler)
    for shard, _, _ in results:
        learned.baseline.merge(shard.baseline)
        learned.model.rows += shard.model.rows
        for key, values in shard.identities.items():
            learned.identities.setdefault(key, set()).update(values)
    finish_learning(learned, captures, results[0][1])           # (every shard counts every packet)
    return learned, next((error for _, _, error in results if error), None)


def analyze_sharded(captures: list[str], store: Store, workers: int, rule_files: list[str], site: str | None,
                    model: str | None, scheduler: str | None = None, stop: threading.Event | None = None,
                    rules: RuleSet | None = None) -> tuple[int, str, str | None]:
    """Analyse over ``workers`` shards and store one run, as ``analysis.analyze`` does: worker
    processes' findings are committed as they come, at least once a second, and ``stop`` ends
    them within a second with what they found (``interrupted``); a Dask cluster's findings come
    at the end (and a stop waits for them). ``rules``: the rule files as the caller already
    loaded them, which the workers then start with."""
    check_captures(captures)
    known, macs = known_identities(store, modelfile.load_shared(model) if model else None)
    muted = store.mutes()
    placed = placed_servers(captures, workers)
    jobs = [ShardJob(list(captures), n, workers, list(rule_files), site, model, muted, known, macs, placed)
            for n in range(workers)]
    rules = _rules(tuple(rule_files), site, rules)
    run_id = store.start_run("analyze", list(captures), [rule.id for rule in rules.rules])
    joined = Joined(captures, workers, RuleDetector(rules.across_servers(), muted), len(rules.rules))
    recorder = RunRecorder(store, run_id, joined.stats, joined.inventory, [joined], joined.count, DELTA_SECONDS,
                           identity=joined, drifts=joined.take_drifts)
    try:
        for delta in _deltas(jobs, scheduler, stop or threading.Event()):
            if delta is not None:
                joined.add(delta)
            recorder.tick()
    except BaseException as exc:         # what the shards sent is kept; the run says how it ended, and why
        stopped = isinstance(exc, KeyboardInterrupt)
        joined.stats.error = None if stopped else f"the workers did not finish: {exc}"
        recorder.commit("interrupted" if stopped else "failed")
        raise
    joined.across.flush()
    status, error = ("failed", joined.errors[0]) if joined.errors else \
        ("interrupted" if joined.stopped else "finished", None)
    recorder.commit(status)
    return run_id, status, error


def _deltas(jobs: list[ShardJob], scheduler: str | None, stop: threading.Event) -> Iterator[ShardDelta | None]:
    """The shards' deltas as they come, and None each POLL_SECONDS without one (the caller's
    chance to commit): from worker processes as they go, from a Dask cluster at the end."""
    if scheduler is not None:
        yield from run_shards(analyze_shard, jobs, scheduler)
        return
    inbox, halt = FORKING.Queue(), FORKING.Event()
    with long_run_collection(), _forked_workers(len(jobs), _report_to, (inbox, halt)) as pool:
        futures = [pool.submit(analyze_shard, job) for job in jobs]
        finished = 0
        try:
            while finished < len(jobs):
                if stop.is_set():
                    halt.set()
                try:
                    delta = pickle.loads(inbox.get(timeout=POLL_SECONDS))
                except queue.Empty:
                    delta = None
                if delta is None:
                    for future in futures:
                        if future.done():
                            future.result()         # (a worker that failed says why)
                else:
                    finished += delta.final
                yield delta
        finally:
            halt.set()          # (a second Ctrl-C, or a worker that failed: the others stop too)


class Joined:
    """The shards' deltas joined into one run's findings, as the parent's recorder commits them:
    packets as the first shard counted them (every shard reads them all), other counters added
    up, a communication's or an asset's totals summed over the shards that saw it (each shard
    kept within its own budget). The events of the rules that count across servers are counted
    here (``across``) in time order, as far as every shard has read: those of a shard ahead of
    the others wait, no more."""

    def __init__(self, captures: list[str], shards: int, across: RuleDetector, rules_active: int):
        self.shards, self.across, self.rules_active = shards, across, rules_active
        self.read_to: dict[int, float] = {}         # shard -> how far in capture time it has read
        self.waiting: list[Event] = []             # events for ``across`` no shard can precede now
        self.stats = RunStats(captures=list(captures))
        self.inventory = Inventory()
        self.inventory.max_pairs = self.inventory.max_assets = 1 << 62
        self.latest: dict[int, RunStats] = {}
        self.pairs: dict[int, dict[tuple, Communication]] = defaultdict(dict)      # shard -> its own totals
        self.assets: dict[int, dict[str, Asset]] = defaultdict(dict)
        self.alerts: list[Alert] = []
        self.sightings: list = []
        self.drifts: list = []
        self.errors: list[str] = []
        self.stopped = False                  # a shard stopped before the end of the captures

    def add(self, delta: ShardDelta) -> None:
        self.latest[delta.shard] = delta.stats
        for key, comm in delta.pairs:
            self.pairs[delta.shard][key] = comm
            self.inventory.pairs[key] = _joined_pair([shard[key] for shard in self.pairs.values() if key in shard])
            self.inventory.changed_pairs.add(key)
        for asset in delta.assets:
            self.assets[delta.shard][asset.ip] = asset
            self.inventory.assets[asset.ip] = _joined_asset([shard[asset.ip] for shard in self.assets.values()
                                                             if asset.ip in shard])
            self.inventory.changed_assets.add(asset.ip)
        self.alerts += delta.alerts
        self.sightings += delta.sightings
        self.drifts += delta.drifts
        self.read_to[delta.shard] = math.inf if delta.final else (delta.stats.last_ts or -math.inf) - REORDER_SECONDS
        if delta.across or self.waiting:
            self._count_across(delta.across)
        if delta.error:
            self.errors.append(delta.error)
        self.stopped = self.stopped or delta.stopped

    def _count_across(self, more: list[Event]) -> None:
        self.waiting += more
        now = min(self.read_to.get(shard, -math.inf) for shard in range(self.shards))
        self.waiting.sort(key=lambda event: event.ts)
        ready = 0
        while ready < len(self.waiting) and self.waiting[ready].ts <= now:
            self.across.feed(self.waiting[ready])
            ready += 1
        del self.waiting[:ready]

    def count(self) -> None:
        """The run's counters and packets from each shard's latest, and the matches counted here."""
        if not self.latest:
            return
        stats = self.stats
        first = self.latest[min(self.latest)]
        for name in ("packets", "bytes", "first_ts", "last_ts", "longest_silence"):
            setattr(stats, name, getattr(first, name))
        stats.counters.clear()
        for shard in self.latest.values():
            for name, value in shard.counters.items():
                stats.counters[name] = max(stats.counters[name], value) if name in LARGEST else \
                    stats.counters[name] + value
            stats.hosts.update(shard.hosts)
        stats.counters["rules.matches"] += self.across.matches
        stats.counters["rules.active"] = self.rules_active

    def drain(self) -> list[Alert]:
        """Alerts raised or grown since the last commit (the recorder's, as a detector's folding)."""
        alerts, self.alerts = self.alerts, []
        return alerts + self.across.folding.drain()

    def take_changes(self) -> list:
        """Identity sightings since the last commit (the recorder's, as the identity detector's)."""
        sightings, self.sightings = self.sightings, []
        return sightings

    def take_drifts(self) -> list:
        drifts, self.drifts = self.drifts, []
        return drifts


def _joined_pair(seen: list[Communication]) -> Communication:
    joined = replace(seen[0])
    for comm in seen[1:]:
        for name in ("requests", "responses", "exceptions", "malformed"):
            setattr(joined, name, getattr(joined, name) + getattr(comm, name))
        joined.first_seen, joined.last_seen = min(joined.first_seen, comm.first_seen), \
            max(joined.last_seen, comm.last_seen)
    return joined


def _joined_asset(seen: list[Asset]) -> Asset:
    joined = replace(seen[0], protocols=set(seen[0].protocols), served_ports=set(seen[0].served_ports))
    for asset in seen[1:]:
        joined.protocols |= asset.protocols
        joined.served_ports |= asset.served_ports
        for name in ("serves", "writes", "engineering", "requests"):
            setattr(joined, name, getattr(joined, name) + getattr(asset, name))
        joined.controller_identity = joined.controller_identity or asset.controller_identity
        joined.first_seen, joined.last_seen = min(joined.first_seen, asset.first_seen), \
            max(joined.last_seen, asset.last_seen)
    return joined
