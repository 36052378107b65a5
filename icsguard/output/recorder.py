"""A run written to the store as it goes, so that a crash or a kill loses at most a second.

Alerts are stored when first raised and updated as they fold; the run's counters, its
communications and its assets are written as they change; the run says how it ended.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from icsguard.detect.folding import Alert, Folding
from icsguard.detect.identity import IdentityDetector
from icsguard.output.inventory import Inventory
from icsguard.output.store import Store
from icsguard.runstats import RunStats

COMMIT_SECONDS = 1.0


class RunRecorder:
    def __init__(self, store: Store, run_id: int, stats: RunStats, inventory: Inventory,
                 foldings: Iterable[Folding], before_commit: Callable[[], None] | None = None,
                 interval: float = COMMIT_SECONDS, after_commit: Callable[[list[Alert]], None] | None = None,
                 identity: IdentityDetector | None = None, drifts: Callable[[], list] | None = None):
        """``before_commit`` brings the run's counters up to date (what the detectors found);
        ``after_commit`` is told of the alerts each commit stored for the first time;
        ``identity`` holds what devices said about themselves; ``drifts`` gives the pace
        drifts noted since it was last asked."""
        self.store = store
        self.run_id = run_id
        self.stats = stats
        self.inventory = inventory
        self.foldings = list(foldings)
        self.before_commit = before_commit
        self.after_commit = after_commit
        self.identity = identity
        self.drifts = drifts
        self.interval = interval
        self.due = time.monotonic() + interval
        self.commits = 0

    def tick(self, _frame: object = None) -> None:
        """Commit when a second has passed since the last commit; cheap otherwise (the
        pipeline may call it with each frame, as its progress)."""
        if time.monotonic() >= self.due:
            self.commit()

    def commit(self, status: str = "running") -> None:
        """Everything new since the last commit, in one transaction, with the run's status
        (``running`` until the end: finished, interrupted or failed)."""
        if self.before_commit is not None:
            self.before_commit()
        alerts = [alert for folding in self.foldings for alert in folding.drain()]
        pairs, assets = self.inventory.take_changes(self.stats.hosts)
        if self.inventory.dropped_pairs:
            self.stats.counters["inventory.dropped_pairs"] = self.inventory.dropped_pairs
        raised = [alert for alert in alerts if alert.id is None]
        identities = self.identity.take_changes() if self.identity is not None else []
        drifts = self.drifts() if self.drifts is not None else []
        self.store.record(self.run_id, self.stats, status, alerts, pairs, assets, identities, drifts)
        if self.after_commit is not None:
            self.after_commit(raised)
        self.commits += 1
        self.due = time.monotonic() + self.interval
