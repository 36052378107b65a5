"""Whole runs: a capture set decoded, inventoried and stored, with what went wrong kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

from icsguard import site
from icsguard.detection import Detector
from icsguard.events import Event
from icsguard.inventory import Inventory
from icsguard.netstack import SUPPORTED_LINKS, UnsupportedLink
from icsguard.pipeline import Pipeline, RunStats
from icsguard.rules import Rule, RuleSet
from icsguard.sources import CaptureError, Frame, read_capture, read_captures

if TYPE_CHECKING:
    from icsguard.store import Store


def check_captures(paths: list[str]) -> None:
    """Refuse, before any work is recorded, captures that cannot be read at all."""
    for path in paths:
        first = next(iter(read_capture(path)), None)
        if first is not None and first.link_type not in SUPPORTED_LINKS:
            raise CaptureError(f"{path}: {UnsupportedLink(first.link_type)}")


def decode(paths: list[str], proto: str | None = None, stats: RunStats | None = None) -> Iterator[Event]:
    """Events of the captures in time order; raises CaptureError after the last good one."""
    check_captures(paths)
    pipeline = Pipeline(stats or RunStats(captures=list(paths)))
    for event in pipeline.run(read_captures(paths)):
        if proto is None or event.proto == proto:
            yield event


def analyze(paths: list[str], store: Store, progress: Callable[[Frame], None] | None = None,
            rules: RuleSet | None = None) -> tuple[int, str | None]:
    """Run the pipeline over the captures, through the rules, and record it; returns the run
    id and the error that stopped it early, if any. What was decoded before an error is
    stored all the same."""
    check_captures(paths)
    run_id = store.start_run("analyze", list(paths))
    stats = RunStats(captures=list(paths))
    inventory = Inventory()
    detector = Detector(rules if rules is not None else RuleSet(), store.mutes())
    error = None
    try:
        for event in Pipeline(stats).run(read_captures(paths), progress):
            inventory.feed(event)
            closed = detector.feed(event)
            if closed:
                store.add_alerts(run_id, closed)
    except CaptureError as exc:
        error = str(exc)
    store.add_alerts(run_id, detector.flush())
    stats.counters["rules.active"] = len(detector.rules.rules)
    stats.counters["rules.need_site_file"] = len(detector.rules.inactive)
    stats.counters["rules.matches"] = detector.matches
    stats.counters["rules.muted_matches"] = detector.suppressed
    inventory.attach_macs(stats.hosts)
    store.finish_run(run_id, stats, inventory)
    return run_id, error


def draft_site(paths: list[str]) -> str:
    """A site file drafted from what the captures show."""
    inventory = Inventory()
    for event in decode(paths):
        inventory.feed(event)
    return site.draft_site(inventory)


def test_rule(rule: Rule, paths: list[str]) -> Iterator[tuple[Event, list[str]]]:
    """The events of the captures that a rule's conditions match, each with why."""
    for event in decode(paths):
        reasons = rule.why(event)
        if reasons is not None:
            yield event, reasons
