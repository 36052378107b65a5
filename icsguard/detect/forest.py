"""A fitted isolation forest kept as numbers and scored with NumPy alone.

scikit-learn fits the forest when a model is learned. Importing it (and SciPy with it) costs
a second and a half and 100 MB before the first packet, more than the analysis of a large
capture, so the fitted trees are written into the model file as plain arrays, which analysis
walks itself. The scores equal scikit-learn's ``score_samples`` (the tests compare them).
A model file is data: every array is checked before use, and a child always comes after its
parent, so no file can make a walk loop.
"""

from __future__ import annotations

import math
from typing import Any

TREE_KEYS = ("feature", "threshold", "left", "right", "leaf")
MAX_TREES = 1_000
MAX_NODES = 1 << 16                  # per tree: 2 x 4,096 training rows at most, and some room


def average_path(samples: float) -> float:
    """The average depth at which a search in a tree grown on ``samples`` rows fails: the part
    of a path a leaf with that many training rows would still have had to go."""
    if samples <= 1:
        return 0.0
    if samples == 2:
        return 1.0
    return 2.0 * (math.log(samples - 1.0) + 0.5772156649015329) - 2.0 * (samples - 1.0) / samples


class Forest:
    """Trees in arrays: per node its split ``feature`` (-1 at a leaf) and ``threshold``, its
    ``left`` and ``right`` children, and at a leaf the path length a row ending there scores
    (its depth plus the average path of the training rows it held)."""

    def __init__(self, trees: list[dict[str, list]], max_samples: int, features: int):
        import numpy as np
        self.max_samples, self.features = max_samples, features
        self.trees = [{key: np.asarray(tree[key], dtype=float if key in ("threshold", "leaf") else np.int64)
                       for key in TREE_KEYS} for tree in trees]

    @classmethod
    def from_estimator(cls, estimator) -> Forest:
        """The trees of a fitted scikit-learn IsolationForest."""
        trees = []
        for fitted in estimator.estimators_:
            tree = fitted.tree_
            depths = tree.compute_node_depths() - 1          # the root at depth 0
            leaf = tree.children_left == -1
            trees.append({"feature": [int(f) if not is_leaf else -1 for f, is_leaf in zip(tree.feature, leaf)],
                          "threshold": [float(t) if not is_leaf else 0.0 for t, is_leaf in zip(tree.threshold, leaf)],
                          "left": [int(c) for c in tree.children_left], "right": [int(c) for c in tree.children_right],
                          "leaf": [float(d) + average_path(n) if is_leaf else 0.0
                                   for d, n, is_leaf in zip(depths, tree.n_node_samples, leaf)]})
        return cls(trees, int(estimator._max_samples), int(estimator.n_features_in_))

    def score_samples(self, matrix) -> Any:
        """scikit-learn's score: minus 2 to the minus mean path length over the average path of
        a tree's training sample; the lower, the more anomalous. Rows are compared as float32,
        as scikit-learn's trees compare them."""
        import numpy as np
        rows = np.asarray(matrix, dtype=np.float32).astype(float)
        total = np.zeros(len(rows))
        for tree in self.trees:
            feature, threshold, left, right = tree["feature"], tree["threshold"], tree["left"], tree["right"]
            node = np.zeros(len(rows), dtype=np.int64)
            inside = np.flatnonzero(feature[node] >= 0)
            while len(inside):
                at = node[inside]
                goes_left = rows[inside, feature[at]] <= threshold[at]
                node[inside] = np.where(goes_left, left[at], right[at])
                inside = inside[feature[node[inside]] >= 0]
            total += tree["leaf"][node]
        scale = len(self.trees) * average_path(self.max_samples)
        return -np.power(2.0, -total / scale) if scale else -np.ones(len(rows))

    def to_json(self) -> dict[str, Any]:
        return {"max_samples": self.max_samples, "features": self.features,
                "trees": [{key: tree[key].tolist() for key in TREE_KEYS} for tree in self.trees]}

    @classmethod
    def from_json(cls, data: dict[str, Any], features: int) -> Forest:
        """A forest read from a model file, refused (ValueError) unless every tree is whole."""
        max_samples, trees = int(data["max_samples"]), data["trees"]
        if int(data["features"]) != features:
            raise ValueError(f"forest over {data['features']} features, not {features}")
        if not 1 <= max_samples <= MAX_NODES or not isinstance(trees, list) or not 1 <= len(trees) <= MAX_TREES:
            raise ValueError("forest of an impossible size")
        for tree in trees:
            _check_tree(tree, features)
        return cls(trees, max_samples, features)


def _check_tree(tree: dict[str, list], features: int) -> None:
    columns = [tree[key] for key in TREE_KEYS]
    size = len(columns[0])
    if not 1 <= size <= MAX_NODES or any(not isinstance(c, list) or len(c) != size for c in columns):
        raise ValueError("forest tree arrays of differing or impossible lengths")
    for node, (feature, threshold, left, right, leaf) in enumerate(zip(*columns)):
        if not (isinstance(feature, int) and isinstance(left, int) and isinstance(right, int)):
            raise ValueError("forest tree with a non-integer index")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in (threshold, leaf)):
            raise ValueError("forest tree with a value that is not a number")
        if feature == -1:
            continue
        if not 0 <= feature < features or not node < left < size or not node < right < size:
            raise ValueError("forest tree whose node points outside it or back to an earlier node")
