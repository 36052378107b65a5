"""One analysis (or one learning) split by server address over worker processes or a Dask
cluster, merged into one database with the same alerts as one process (into one model).

Every worker reads every capture but goes on only with the connections of its servers (a
controller's traffic stays in one shard, so its reassembly, baseline, thresholds and folds are
whole). Rules that count per client across servers (a scan) cannot be decided by a shard:
each shard sends the events those rules match, and they are counted here, in time order.
"""

from __future__ import annotations

import concurrent.futures
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

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
from icsguard.capture.files import CaptureError, read_captures
from icsguard.detect import modelfile
from icsguard.detect.folding import Alert
from icsguard.detect.identity import Sighting
from icsguard.detect.rule_engine import RuleDetector
from icsguard.detect.rules import RuleSet, load_rules
from icsguard.detect.site import load_site
from icsguard.events import Event
from icsguard.output.inventory import Asset, Communication, Inventory
from icsguard.output.store import Store
from icsguard.pipeline import Pipeline
from icsguard.runstats import RunStats

# counters every shard sets alike, or whose largest value is the run's
LARGEST = frozenset({"rules.active", "rules.need_site_file", "baseline.pairs", "memory.held_peak_bytes"})


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


@dataclass
class ShardResult:
    stats: RunStats
    inventory: Inventory
    alerts: list[Alert]
    sightings: list[tuple[tuple[str, str, str], Sighting]]
    across: list[Event]                 # events matched by the rules that count across servers
    error: str | None
    drifts: list = field(default_factory=list)


def analyze_shard(job: ShardJob) -> ShardResult:
    """One shard's analysis, in a worker process (or on a Dask worker)."""
    local, across = _rules(tuple(job.rule_files), job.site).split_by_server()
    learned = modelfile.load_shared(job.model) if job.model else None
    stats, budget = RunStats(captures=list(job.captures)), Budget()
    detection = Detection(stats, budget, local, learned, job.muted, job.known, job.macs)
    matched: list[Event] = []
    error = None
    try:
        with long_run_collection():
            for event in Pipeline(stats, conversations=True, budget=budget,
                                  shard=(job.shard, job.shards)).run(read_captures(job.captures)):
                detection.feed(event)
                if across.rules and across.matching(event):
                    matched.append(event)
    except CaptureError as exc:
        error = str(exc)
    detection.flush()
    detection.count()
    alerts = [alert for each in detection.detectors for alert in each.folding.drain()]
    return ShardResult(stats, detection.inventory, alerts, detection.identity.take_changes(), matched, error,
                       detection.take_drifts())


# Rules loaded once per process and file version, as model files are (modelfile.load_shared);
# Dask's workers load their own.
def _rules(rule_files: tuple[str, ...], site: str | None) -> RuleSet:
    files = (*rule_files, *([site] if site else []))
    return _loaded_rules(rule_files, site, tuple(modelfile.file_version(p) for p in files))


@functools.lru_cache(maxsize=2)
def _loaded_rules(rule_files: tuple[str, ...], site: str | None, _versions: tuple) -> RuleSet:
    return load_rules(list(rule_files), load_site(site) if site else None)


def run_shards(work: Callable[[Any], Any], jobs: list, scheduler: str | None) -> list:
    """``work`` on each job, on worker processes, or on a Dask cluster (``local``: one started
    here for the run)."""
    if scheduler is None:
        with long_run_collection(), concurrent.futures.ProcessPoolExecutor(max_workers=len(jobs)) as pool:
            return list(pool.map(work, jobs))     # (the parent's heap frozen: forked workers need not copy it)
    from dask.distributed import Client, LocalCluster
    if scheduler == "local":
        with LocalCluster(n_workers=len(jobs), threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            return client.gather(client.map(work, jobs, pure=False))
    with Client(scheduler) as client:
        return client.gather(client.map(work, jobs, pure=False))


@dataclass
class LearnJob:
    captures: list[str]
    shard: int
    shards: int
    site: str | None
    window_seconds: float


def learn_shard(job: LearnJob) -> tuple[modelfile.LearnedModel, RunStats, str | None]:
    """What one shard learned: its servers' baseline, windows and identities."""
    site = load_site(job.site) if job.site else None
    learned = learning_model(None, window_seconds=job.window_seconds)
    stats = RunStats(captures=list(job.captures))
    pipeline = Pipeline(stats, conversations=True, shard=(job.shard, job.shards))
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
    jobs = [LearnJob(list(captures), n, workers, site, learned.model.window_seconds) for n in range(workers)]
    results = run_shards(learn_shard, jobs, scheduler)
    for shard, _, _ in results:
        learned.baseline.merge(shard.baseline)
        learned.model.rows += shard.model.rows
        for key, values in shard.identities.items():
            learned.identities.setdefault(key, set()).update(values)
    finish_learning(learned, captures, results[0][1])           # (every shard counts every packet)
    return learned, next((error for _, _, error in results if error), None)


def analyze_sharded(captures: list[str], store: Store, workers: int, rule_files: list[str], site: str | None,
                    model: str | None, scheduler: str | None = None) -> tuple[int, str, str | None]:
    """Analyse over ``workers`` shards and store one run, as ``analysis.analyze`` does."""
    check_captures(captures)
    known, macs = known_identities(store, modelfile.load_shared(model) if model else None)
    muted = store.mutes()
    jobs = [ShardJob(list(captures), n, workers, list(rule_files), site, model, muted, known, macs)
            for n in range(workers)]
    rules = _rules(tuple(rule_files), site)
    run_id = store.start_run("analyze", list(captures), [rule.id for rule in rules.rules])
    try:
        results = run_shards(analyze_shard, jobs, scheduler)
    except BaseException as exc:         # no shard's findings: the run says how it ended, and why
        failed = RunStats(captures=list(captures), error=f"the workers did not finish: {exc}")
        store.record(run_id, failed, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", [], [], [])
        raise
    stats, inventory, sightings = _merge(results)
    _, across = rules.split_by_server()
    counted = RuleDetector(across, muted)
    for event in sorted((e for r in results for e in r.across), key=lambda e: e.ts):
        counted.feed(event)
    counted.flush()
    alerts = [a for r in results for a in r.alerts] + counted.folding.drain()
    stats.counters["rules.active"] = len(rules.rules)
    stats.counters["rules.matches"] += counted.matches
    errors = [r.error for r in results if r.error]
    status, error = ("failed", errors[0]) if errors else ("finished", None)
    pairs, assets = inventory.take_changes(stats.hosts)
    store.record(run_id, stats, status, alerts, pairs, assets, sightings, [d for r in results for d in r.drifts])
    return run_id, status, error


def _merge(results: list[ShardResult]) -> tuple[RunStats, Inventory, list]:
    """The shards' findings as one run's: packets as the first shard counted them (every shard
    reads them all), the rest added up, communications and assets joined."""
    stats = results[0].stats
    inventory = Inventory()
    inventory.max_pairs = inventory.max_assets = 1 << 62       # each shard kept within its own budget
    sightings: dict[tuple, Sighting] = {}
    for n, result in enumerate(results):
        if n:
            for name, value in result.stats.counters.items():
                stats.counters[name] = max(stats.counters[name], value) if name in LARGEST else \
                    stats.counters[name] + value
            stats.hosts.update(result.stats.hosts)
        for key, comm in result.inventory.pairs.items():
            _join_pair(inventory.pairs, key, comm)
        for ip, asset in result.inventory.assets.items():
            _join_asset(inventory.assets, ip, asset)
        for key, seen in result.sightings:
            known = sightings.get(key)
            if known is None or seen.first_seen < known.first_seen:
                sightings[key] = Sighting(**{**seen.__dict__, "last_seen": max(seen.last_seen, known.last_seen)
                                             if known else seen.last_seen})
            else:
                known.last_seen = max(known.last_seen, seen.last_seen)
    inventory.changed_pairs = set(inventory.pairs)
    inventory.changed_assets = set(inventory.assets)
    return stats, inventory, list(sightings.items())


def _join_pair(pairs: dict[tuple, Communication], key: tuple, comm: Communication) -> None:
    known = pairs.get(key)
    if known is None:
        pairs[key] = comm
        return
    for name in ("requests", "responses", "exceptions", "malformed"):
        setattr(known, name, getattr(known, name) + getattr(comm, name))
    known.first_seen, known.last_seen = min(known.first_seen, comm.first_seen), max(known.last_seen, comm.last_seen)


def _join_asset(assets: dict[str, Asset], ip: str, asset: Asset) -> None:
    known = assets.get(ip)
    if known is None:
        assets[ip] = asset
        return
    known.protocols |= asset.protocols
    known.served_ports |= asset.served_ports
    for name in ("serves", "writes", "engineering", "requests"):
        setattr(known, name, getattr(known, name) + getattr(asset, name))
    known.controller_identity = known.controller_identity or asset.controller_identity
    known.first_seen, known.last_seen = min(known.first_seen, asset.first_seen), max(known.last_seen, asset.last_seen)

