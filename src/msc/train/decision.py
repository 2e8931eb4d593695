"""The label rule: argmax of calibrated probabilities times per-class decision weights.

Calibration (msc/train/calibration_maps.py) removes the shift towards rare classes that class-weighted
training put into the probabilities; the decision the study tuned for (train.select_metric, e.g. weighted
F1 or macro recall) may still want that shift. So the shift moves out of the probabilities into an explicit
rule: weights w (C,) fitted on the out-of-fold rows, and label = argmax_c p_c w_c (msc.model.calibrated.
DecisionRule). A post can then be labelled neutral with p_neutral below p_positive, and head.json says why.

The fit is coordinate ascent over a grid of log-weights, starting from 1 (the plain argmax) and moving only
on a strict improvement of the metric, the smallest move first: deterministic, never below the plain
argmax on the rows it is fitted on, and it keeps weights of 1 where they do no worse. On the rows it is
fitted on any move looks like a gain; so the weights are kept only when they also gain out of sample:
refitted on CHECK_FOLDS - 1 stratified folds, each fold's rows labelled by the weights fitted without them
must score higher, over all rows, than the plain argmax does, by more than one bootstrap standard error of
that difference. Otherwise the rule is the plain argmax. Why: the study in docs/calibration.md saw weights
fitted on 850 out-of-fold rows move the test metric by -0.022 to +0.026 against the calibrated argmax (mean
+0.001), and on rows drawn from calibrated probabilities (tests/unit/train/test_decision.py) the check kept
the weights that buy macro recall in 17 of 20 sets and kept them for accuracy and weighted F1 in 3 of 20.
"""

from __future__ import annotations

import numpy as np

from msc.model.calibrated import DecisionRule
from msc.train.metrics import class_rates, confusion_of, weighted_f1_of

LOG_WEIGHT_GRID = np.round(np.linspace(-1.5, 1.5, 31), 6)  # weights exp(-1.5) .. exp(1.5), steps of 0.1
ROUNDS = 3  # passes over the classes; later passes rarely move a weight
CHECK_FOLDS = 5  # the out-of-sample check of the fitted weights (fit_decision_rule)
BOOTSTRAP = 200  # resamples for that check's standard error


def score_of(confusion: np.ndarray, metric: str) -> float:
    """``metric`` (train.select_metric, with or without its val_ prefix) of a (C, C) confusion matrix (rows
    true), as msc.train.metrics.classification_metrics scores it: the macro scores average the classes that
    have a row, precision and F1 of a class never predicted are 0."""
    key = metric.removeprefix("val_")
    if key == "weighted_f1":
        return weighted_f1_of(confusion)
    if key == "accuracy":
        return float(np.trace(confusion) / max(confusion.sum(), 1))
    support, precision, recall, f1 = class_rates(confusion)
    measured = support > 0
    per_class = {"macro_recall": recall, "macro_precision": precision, "macro_f1": f1}
    if key not in per_class:
        raise ValueError(f"select metric {metric!r} is not one of accuracy, weighted_f1, {', '.join(per_class)}")
    return float(per_class[key][measured].mean())


def rule_score(probs: np.ndarray, labels: np.ndarray, log_weights: np.ndarray, metric: str) -> float:
    """``metric`` of the labels argmax(probs * exp(log_weights)) of (n, C) ``probs`` against (n,) ``labels``."""
    predicted = (probs * np.exp(log_weights)).argmax(axis=1)
    return score_of(confusion_of(labels, predicted, probs.shape[1]), metric)


def fit_decision_rule(probs: np.ndarray, labels: np.ndarray, metric: str, seed: int = 0) -> DecisionRule:
    """Per-class weights for (n, C) calibrated ``probs`` that maximise ``metric`` on their (n,) ``labels`` and
    gain over the plain argmax out of sample too (``cross_validated_gain``, its folds drawn by ``seed``), else
    weights of 1; the first class's weight stays 1 (only ratios matter)."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    log_weights = ascend(probs, labels, metric)
    if np.any(log_weights != 0):
        gain, standard_error = cross_validated_gain(probs, labels, metric, seed)
        if gain <= standard_error:
            log_weights = np.zeros(probs.shape[1])
    return DecisionRule(weights=tuple(float(w) for w in np.exp(log_weights)), metric=metric)


def ascend(probs: np.ndarray, labels: np.ndarray, metric: str) -> np.ndarray:
    """(C,) log-weights by coordinate ascent from 0 (the module's docstring), on these rows alone."""
    log_weights = np.zeros(probs.shape[1])
    best = rule_score(probs, labels, log_weights, metric)
    by_size = LOG_WEIGHT_GRID[np.argsort(np.abs(LOG_WEIGHT_GRID), kind="stable")]  # 0, -0.1, 0.1, -0.2, ...
    for _ in range(ROUNDS):
        moved = False
        for c in range(1, probs.shape[1]):
            for value in by_size:
                trial = log_weights.copy()
                trial[c] = value
                score = rule_score(probs, labels, trial, metric)
                if score > best + 1e-12:
                    best, log_weights, moved = score, trial, True
        if not moved:
            break
    return log_weights


def cross_validated_gain(probs: np.ndarray, labels: np.ndarray, metric: str, seed: int) -> tuple[float, float]:
    """``metric`` over all rows of the labels that weights fitted on the other CHECK_FOLDS - 1 stratified folds
    give each fold's rows, less the plain argmax's, and that difference's standard error over BOOTSTRAP
    resamples of the rows (seeded by ``seed``); (0, 0) when a class has a single row, so that weights that
    cannot be checked out of sample give way to the plain argmax."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels, minlength=probs.shape[1])
    folds = min(CHECK_FOLDS, int(counts[counts > 0].min()))
    if folds < 2:
        return 0.0, 0.0
    refitted = np.empty(len(labels), dtype=np.int64)
    for fit_idx, left_idx in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(probs, labels):
        weights = np.exp(ascend(probs[fit_idx], labels[fit_idx], metric))
        refitted[left_idx] = (probs[left_idx] * weights).argmax(axis=1)
    plain, classes = probs.argmax(axis=1), probs.shape[1]

    def gain_on(rows: np.ndarray) -> float:
        return (score_of(confusion_of(labels[rows], refitted[rows], classes), metric)
                - score_of(confusion_of(labels[rows], plain[rows], classes), metric))

    rng = np.random.default_rng(seed)
    resampled = [gain_on(rng.integers(0, len(labels), len(labels))) for _ in range(BOOTSTRAP)]
    return gain_on(np.arange(len(labels))), float(np.std(resampled))
