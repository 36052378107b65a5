"""The isolation forest kept as arrays: it scores exactly as scikit-learn does, survives the
model file, and is refused when a file's trees are not whole."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from icsguard.detect.features import FEATURES
from icsguard.detect.forest import Forest
from icsguard.detect.model import Model


@pytest.mark.parametrize("rows", [3, 12, 300, 3000])
def test_the_forest_scores_as_scikit_learn_does(rows):
    """Few training rows (a forest of tiny trees) and many (trees cut at depth 8), rows
    inside and far outside the training cloud, integer-valued features that tie."""
    rng = np.random.default_rng(rows)
    training = rng.normal(size=(rows, 5))
    training[:, 2] = np.round(training[:, 2])
    estimator = IsolationForest(n_estimators=100, random_state=0).fit(training)
    asked = np.vstack([training, rng.normal(scale=6, size=(200, 5))])
    forest = Forest.from_json(Forest.from_estimator(estimator).to_json(), 5)
    assert np.abs(forest.score_samples(asked) - estimator.score_samples(asked)).max() < 1e-12
    scores = forest.score_samples(asked)
    if rows > 3:                        # the far rows score as outliers
        assert scores[rows:].mean() < scores[:rows].mean() - 0.05


def _model_json() -> dict:
    rng = np.random.default_rng(0)
    model = Model(rows=[list(map(float, row)) for row in rng.uniform(1, 50, size=(40, len(FEATURES)))])
    model.fit()
    return model.to_json()


def test_a_model_file_keeps_the_forest_and_its_threshold():
    data = _model_json()
    assert len(data["forest"]["trees"]) == 100
    loaded = Model.from_json(data)
    assert loaded.ready and loaded.threshold == data["threshold"]
    assert isinstance(loaded._scorer, Forest)


@pytest.mark.parametrize("damage, message", [
    (lambda tree: tree["left"].__setitem__(0, 0), "back to an earlier node"),
    (lambda tree: tree["right"].__setitem__(0, 10 ** 6), "outside it"),
    (lambda tree: tree["feature"].__setitem__(0, 99), "outside it"),
    (lambda tree: tree["threshold"].pop(), "differing"),
    (lambda tree: tree["leaf"].__setitem__(1, "x"), "not a number"),
])
def test_a_forest_that_is_not_whole_is_refused(damage, message):
    data = _model_json()
    damage(data["forest"]["trees"][3])
    with pytest.raises((ValueError, TypeError), match=message):
        Model.from_json(data)


def test_a_shared_model_is_read_once_until_its_file_changes(tmp_path):
    """An analysis and its shards read one copy; a model file learned again is read again."""
    from icsguard.detect import modelfile
    path = str(tmp_path / "plant.icsg")
    learned = modelfile.LearnedModel()
    learned.model = Model.from_json(_model_json())
    modelfile.save(learned, path)
    first = modelfile.load_shared(path)
    assert first.model.ready and modelfile.load_shared(path) is first
    learned.packets = 123_456           # (a longer file: a change told even by a coarse clock)
    modelfile.save(learned, path)
    again = modelfile.load_shared(path)
    assert again is not first and again.packets == 123_456
