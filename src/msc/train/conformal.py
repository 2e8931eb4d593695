"""Label sets with a coverage guarantee: split conformal prediction on the out-of-fold rows.

The nonconformity score of a row is 1 - p_label under the calibrated probabilities (LAC). Its sorted
out-of-fold scores, per class, are all a model needs to answer any coverage at prediction time
(msc.model.calibrated.LabelSets): a set holds every label whose score is at most the ceil((n + 1) x
coverage)-th smallest calibration score, which covers the true label with probability at least the
coverage for a row exchangeable with the calibration rows (marginal); class-conditional (Mondrian) takes
the quantile of the true class's scores alone, so that every class gets that coverage.

Why not a library at prediction time: crepes, MAPIE and TorchCP fit to scores and predict sets within
their own objects, which would make the served model depend on them and store pickles instead of a
few numbers in head.json, and the coverage is an inference parameter, so the thresholds are computed
then. The rule is the textbook one; tests/unit/train/test_conformal.py checks it against crepes'
ConformalClassifier (non-smoothed p-values), marginal and Mondrian, set for set.

The out-of-fold rows come from fold models, not the registered head itself: they are exchangeable with
new posts scored by a model like it, which is what the holdout check measures (coverage_report).
"""

from __future__ import annotations

import numpy as np

from msc.model.calibrated import LabelSets


def fit_label_sets(probs: np.ndarray, labels: np.ndarray) -> LabelSets:
    """The sorted scores 1 - p_label of (n, C) calibrated out-of-fold ``probs``, per true class of (n,) ``labels``."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    scores = 1.0 - probs[np.arange(len(labels)), labels]
    return LabelSets(scores=tuple(tuple(np.sort(scores[labels == c]).tolist()) for c in range(probs.shape[1])))


def coverage_report(members: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> dict:
    """How (n, C) boolean label sets ``members`` did on rows with (n,) true ``labels``: the share whose set
    holds the label (``coverage``), the mean set size and the share of empty sets, and per class (true
    label) its coverage and mean set size; a class with no row has null figures."""
    members, labels = np.asarray(members, dtype=bool), np.asarray(labels, dtype=np.int64)
    hit, size = members[np.arange(len(labels)), labels], members.sum(axis=1)
    per_class = {name: {"rows": int((labels == c).sum()),
                        "coverage": float(hit[labels == c].mean()) if (labels == c).any() else None,
                        "mean_set_size": float(size[labels == c].mean()) if (labels == c).any() else None}
                 for c, name in enumerate(names)}
    return {"coverage": float(hit.mean()), "mean_set_size": float(size.mean()),
            "empty_sets": float((size == 0).mean()), "per_class": per_class}
