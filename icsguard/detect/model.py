"""The statistical model: a scikit-learn novelty detector over the windows of features.

Trained on windows of traffic believed normal. A window inside the learned range of every
feature is normal; one far beyond a feature's range (Z_ALONE spreads) is anomalous; in
between, the estimator decides, with the threshold below which only ``false_alarm_rate``
of the training windows score. Estimators alone cannot say how far beyond the learned
extremes a flood is (an isolation forest scores it like the most unusual training
window), and with few training windows their threshold is the lowest training score:
the ranges keep both honest. No fitted object is ever saved: the model file keeps the
training rows, the settings and the threshold, and an isolation forest's trees as arrays
(scored without scikit-learn, see forest.py); another estimator is fitted again
(deterministically) the first time a window needs it. So a model file is data only, and an
analysis whose windows all stay within their ranges never loads scikit-learn. Each alert
names the features furthest outside their learned ranges.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

from icsguard.budget import Budget
from icsguard.detect.baseline import Baseline
from icsguard.detect.features import FEATURE_TEXT, FEATURES, WINDOW_SECONDS, Row, Windows
from icsguard.detect.folding import Alert, Finding, Folding
from icsguard.detect.forest import Forest
from icsguard.detect.rules import signature_id
from icsguard.detect.targets import Targets
from icsguard.events import Event

ESTIMATORS = ("isolation_forest", "local_outlier_factor", "one_class_svm", "elliptic_envelope")
MAX_TRAINING_ROWS = 20_000       # beyond, a fixed-seed sample of them
MIN_TRAINING_ROWS = 10           # fewer windows than this: no model, the baseline alone
FALSE_ALARM_RATE = 0.001
EXPLAINED = 3                    # features named in an alert
LOGGED = ("pdus", "bytes", "requests", "distinct_functions", "distinct_targets", "interarrival_mean",
          "interarrival_std")
_LOGGED_COLUMNS = [FEATURES.index(name) for name in LOGGED]
# The least spread a feature is given, whatever the training showed: a factor of two for
# counts and times (on their log scale), a tenth for shares. A feature that never moved in
# training would otherwise make the slightest change look like a thousand spreads.
SPREAD_FLOORS = {name: (math.log(2) if name in LOGGED else 0.1) for name in FEATURES}
Z_WITH_MODEL = 2.0               # spreads beyond the learned range before the estimator is asked
Z_ALONE = 6.0                    # spreads beyond the learned range that are anomalous in any case
FINDING = Finding("ml.anomalous_window", "Model: traffic between two hosts unlike any learned window",
                  "medium", "ml", ("T0814", "T0855"), signature_id("ml.anomalous_window"))
BRIEFLY_WATCHED = replace(FINDING, severity="low")     # between hosts the baseline watched only briefly


def _estimator(name: str):
    from sklearn.covariance import EllipticEnvelope
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor
    from sklearn.svm import OneClassSVM
    return {
        "isolation_forest": lambda: IsolationForest(n_estimators=100, random_state=0),
        "local_outlier_factor": lambda: LocalOutlierFactor(n_neighbors=20, novelty=True),
        "one_class_svm": lambda: OneClassSVM(nu=0.01, gamma="scale"),
        "elliptic_envelope": lambda: EllipticEnvelope(random_state=0, support_fraction=0.9),
    }[name]()


@dataclass
class Model:
    estimator: str = "isolation_forest"
    window_seconds: float = WINDOW_SECONDS
    false_alarm_rate: float = FALSE_ALARM_RATE
    rows: list[list[float]] = field(default_factory=list)     # training windows, FEATURES order
    threshold: float | None = None
    _scorer: Any = field(default=None, repr=False)      # a Forest, or a fitted scikit-learn estimator
    _center: Any = field(default=None, repr=False)      # per feature, on the shaped scale
    _spread: Any = field(default=None, repr=False)
    _low: Any = field(default=None, repr=False)
    _high: Any = field(default=None, repr=False)
    _raw_low: Any = field(default=None, repr=False)     # learned ranges as the user reads them
    _raw_high: Any = field(default=None, repr=False)

    @property
    def ready(self) -> bool:
        return self.threshold is not None

    def add(self, rows: list[Row]) -> None:
        self.rows.extend(list(row.values) for row in rows)

    def fit(self) -> None:
        """Fit the estimator on the training windows, calibrate its threshold, and keep each
        feature's learned range and spread."""
        import numpy as np
        self.rows.sort()            # the same windows fit the same model, in whatever order they came
        if len(self.rows) > MAX_TRAINING_ROWS:
            self.rows = random.Random(0).sample(self.rows, MAX_TRAINING_ROWS)
        self.threshold, self._scorer = None, None
        if not self._learn_ranges():
            return
        matrix = self._fit_scorer()
        self.threshold = float(np.quantile(self._scorer.score_samples(matrix), self.false_alarm_rate))

    def _fit_scorer(self):
        """Fit the estimator on the training windows (an isolation forest kept as a Forest);
        returns the windows as it saw them."""
        import numpy as np
        matrix = self._standard(_shape_array(np.array(self.rows, dtype=float)))
        estimator = _estimator(self.estimator)
        estimator.fit(matrix)
        self._scorer = Forest.from_estimator(estimator) if self.estimator == "isolation_forest" else estimator
        return matrix

    def _learn_ranges(self) -> bool:
        """Each feature's learned range, centre and spread; False with too few windows for a model."""
        import numpy as np
        if len(self.rows) < MIN_TRAINING_ROWS:
            return False
        raw = np.array(self.rows, dtype=float)
        shaped = _shape_array(raw)
        self._low, self._high = shaped.min(axis=0), shaped.max(axis=0)
        self._raw_low, self._raw_high = raw.min(axis=0), raw.max(axis=0)
        spread = np.quantile(shaped, 0.75, axis=0) - np.quantile(shaped, 0.25, axis=0)
        self._spread = np.maximum(spread, [SPREAD_FLOORS[name] for name in FEATURES])
        self._center = np.median(shaped, axis=0)
        return True

    def _standard(self, shaped):
        return (shaped - self._center) / self._spread

    def score(self, rows: list[Row]) -> list[tuple[Row, float, str]]:
        """The anomalous rows, each with its score and why: a row beyond the learned range
        of some feature by Z_ALONE spreads, or by Z_WITH_MODEL spreads where the estimator
        also scores it below the threshold. Rows inside every learned range are normal."""
        import numpy as np
        if not self.ready or not rows:
            return []
        raw = np.array([row.values for row in rows], dtype=float)
        shaped = _shape_array(raw)
        beyond = (np.maximum(shaped - self._high, 0) - np.maximum(self._low - shaped, 0)) / self._spread
        reach = np.abs(beyond).max(axis=1)
        candidates = np.flatnonzero(reach >= Z_WITH_MODEL)
        if not len(candidates):
            return []
        if self._scorer is None:            # a model file without a forest: fitted the first time it is needed
            self._fit_scorer()
        scores = self._scorer.score_samples(self._standard(shaped[candidates]))
        found = []
        for index, score in zip(candidates, scores):
            if reach[index] >= Z_ALONE or score < self.threshold:
                found.append((rows[index], float(score), self._why(raw[index], beyond[index])))
        return found

    def _why(self, raw, beyond) -> str:
        """The features furthest outside their learned ranges, in plain words."""
        parts = []
        for index in sorted(range(len(FEATURES)), key=lambda i: -abs(beyond[i]))[:EXPLAINED]:
            if beyond[index] == 0:
                break
            parts.append(f"{FEATURE_TEXT[FEATURES[index]]} {raw[index]:.3g} (learned {self._raw_low[index]:.3g}.."
                         f"{self._raw_high[index]:.3g}, {beyond[index]:+.1f} spreads)")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        data = {"estimator": self.estimator, "window_seconds": self.window_seconds,
                "false_alarm_rate": self.false_alarm_rate, "features": list(FEATURES),
                "rows": self.rows, "threshold": self.threshold}
        if isinstance(self._scorer, Forest):
            data["forest"] = self._scorer.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Model:
        if list(data["features"]) != list(FEATURES):
            raise ValueError("its features differ from this icsguard's: learn again")
        if data["estimator"] not in ESTIMATORS:
            raise ValueError(f"unknown estimator {data['estimator']!r}")
        seconds, rate = float(data["window_seconds"]), float(data["false_alarm_rate"])
        if not 0 < seconds < math.inf:          # 0, a negative or NaN length would break the windows
            raise ValueError(f"window of {seconds!r} seconds")
        if not 0 < rate < 1:
            raise ValueError(f"false-alarm rate {rate!r} is not a share")
        model = cls(data["estimator"], seconds, rate, [[float(v) for v in row] for row in data["rows"]])
        threshold = data.get("threshold")
        if threshold is None or not model._learn_ranges():
            return model                        # too few windows: the baseline alone
        model.threshold = float(threshold)
        if not math.isfinite(model.threshold):
            raise ValueError(f"threshold {threshold!r}")
        if data.get("forest") is not None and model.estimator == "isolation_forest":
            model._scorer = Forest.from_json(data["forest"], len(FEATURES))
        return model


def _shape_array(raw):
    """Counts and times on a log scale: a flood is a hundred times the usual, not a hundred more."""
    import numpy as np
    shaped = raw.copy()
    shaped[:, _LOGGED_COLUMNS] = np.log1p(shaped[:, _LOGGED_COLUMNS])
    return shaped


class ModelDetector:
    """Scores windows as they close: ``feed(event) -> alerts``, ``flush() -> alerts``."""
    name = "ml"

    def __init__(self, model: Model, baseline: Baseline | None = None,
                 muted: set[tuple[str, str | None]] | None = None, targets: Targets | None = None,
                 budget: Budget | None = None):
        """``targets``: the run's, shared with the baseline detector."""
        self.model = model
        self.baseline = baseline
        self.folding = Folding(muted, budget)
        self.windows = Windows(model.window_seconds, baseline.covers if baseline is not None else None, targets)

    def feed(self, event: Event) -> list[Alert]:
        rows = self.windows.feed(event)
        return self._alerts(rows) if rows else []

    def flush(self) -> list[Alert]:
        return self._alerts(self.windows.flush()) + self.folding.flush()

    def _alerts(self, rows: list[Row]) -> list[Alert]:
        closed: list[Alert] = []
        for row, score, why in self.model.score(rows):
            end = row.start + self.model.window_seconds
            evidence = {"window_start": row.start, "window_end": end, "score": round(score, 4),
                        "threshold": round(self.model.threshold, 4), "why": why,
                        "features": dict(zip(FEATURES, row.values))}
            brief = self.baseline is not None and self.baseline.maturity((row.client, row.server, row.proto)) is not None
            closed += self.folding.add(BRIEFLY_WATCHED if brief else FINDING, end, row.proto, row.client, row.server,
                                       lambda: evidence, why)
        return closed
