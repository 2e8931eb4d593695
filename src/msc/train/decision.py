"""The label rule: argmax of calibrated probabilities times per-class decision weights.

Calibration (msc/train/calibration_maps.py) removes the shift towards rare classes that class-weighted
training put into the probabilities; the decision the study tuned for (train.select_metric, e.g. weighted
F1 or macro recall) may still want that shift. So the shift moves out of the probabilities into an explicit
rule: weights w (C,) fitted on the out-of-fold rows, and label = argmax_c p_c w_c (msc.model.calibrated.
DecisionRule). A post can then be labelled neutral with p_neutral below p_positive, and head.json says why.

The fit is coordinate ascent over a grid of log-weights, starting from 1 (the plain argmax) and moving only
on a strict improvement of the metric, the smallest move first: deterministic, never below the plain
argmax on the rows it is fitted on, and it keeps weights of 1 where they do no worse.
"""

from __future__ import annotations

import numpy as np

from msc.model.calibrated import DecisionRule
from msc.train.metrics import confusion_of, weighted_f1_of

LOG_WEIGHT_GRID = np.round(np.linspace(-1.5, 1.5, 31), 6)  # weights exp(-1.5) .. exp(1.5), steps of 0.1
ROUNDS = 3  # passes over the classes; later passes rarely move a weight


def score_of(confusion: np.ndarray, metric: str) -> float:
    """``metric`` (train.select_metric, with or without its val_ prefix) of a (C, C) confusion matrix (rows
    true), as msc.train.metrics.classification_metrics scores it: the macro scores average the classes that
    have a row, precision and F1 of a class never predicted are 0."""
    key = metric.removeprefix("val_")
    if key == "weighted_f1":
        return weighted_f1_of(confusion)
    support, predicted, hits = confusion.sum(1), confusion.sum(0), np.diag(confusion).astype(float)
    if key == "accuracy":
        return float(hits.sum() / max(support.sum(), 1))
    measured = support > 0
    precision = np.divide(hits, predicted, out=np.zeros(len(hits)), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(len(hits)), where=measured)
    per_class = {"macro_recall": recall, "macro_precision": precision,
                 "macro_f1": np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(hits)),
                                       where=precision + recall > 0)}
    if key not in per_class:
        raise ValueError(f"select metric {metric!r} is not one of accuracy, weighted_f1, {', '.join(per_class)}")
    return float(per_class[key][measured].mean())


def rule_score(probs: np.ndarray, labels: np.ndarray, log_weights: np.ndarray, metric: str) -> float:
    """``metric`` of the labels argmax(probs * exp(log_weights)) of (n, C) ``probs`` against (n,) ``labels``."""
    predicted = (probs * np.exp(log_weights)).argmax(axis=1)
    return score_of(confusion_of(labels, predicted, probs.shape[1]), metric)


def fit_decision_rule(probs: np.ndarray, labels: np.ndarray, metric: str) -> DecisionRule:
    """Per-class weights for (n, C) calibrated out-of-fold ``probs`` that maximise ``metric`` on their (n,)
    ``labels``; the first class's weight stays 1 (only ratios matter)."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
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
    return DecisionRule(weights=tuple(float(w) for w in np.exp(log_weights)), metric=metric)
