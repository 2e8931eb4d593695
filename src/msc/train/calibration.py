"""Calibrated probabilities: one temperature, and how far probabilities are from outcomes (the
expected calibration error, with its bootstrap interval, and the log loss).

Temperature scaling divides the head's logits by T > 0 before the softmax. It never changes the
predicted label (the argmax), so it changes no accuracy or F1, only what the probabilities claim.
It is fitted on rows that chose no epoch (out-of-fold predictions, msc/train/crossfit.py), never on
the holdout, which reports it. Every function takes (n, C) probabilities, C the number of classes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from msc.core.errors import UserError
from msc.core.labels import probability_columns
from msc.model.calibrated import LOG_FLOOR
from msc.train.metrics import BOOTSTRAP_RESAMPLES, interval95

TEMPERATURE_RANGE = (0.05, 20.0)
ECE_BINS = 10


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """(n, C) probabilities as if the logits had been divided by ``temperature``.

    log(p) differs from the logits by a constant per row, which the softmax ignores, so this needs
    only the probabilities. ``with_temperature(p, 1 / T)`` undoes ``with_temperature(p, T)``.
    """
    logits = np.log(np.clip(probs, 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the negative log-likelihood of ``labels`` (n,) under ``probs`` (n, C) / T."""
    def nll(log_t: float) -> float:
        return log_loss(with_temperature(probs, float(np.exp(log_t))), labels)

    low, high = np.log(TEMPERATURE_RANGE)
    return float(np.exp(minimize_scalar(nll, bounds=(low, high), method="bounded").x))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width bin of the top probability: its sample count, mean confidence and accuracy."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)  # bin i: (edge i, edge i+1]
    return [{"low": float(edges[i]), "high": float(edges[i + 1]), "samples": int((which == i).sum()),
             "confidence": float(confidence[which == i].mean()) if (which == i).any() else None,
             "accuracy": float(correct[which == i].mean()) if (which == i).any() else None}
            for i in range(bins)]


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over the bins of (share of samples) x |accuracy - mean confidence|, on the top probability."""
    total = len(labels)
    return float(sum(b["samples"] / total * abs(b["accuracy"] - b["confidence"])
                     for b in reliability(probs, labels, bins) if b["samples"]))


def label_nll(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) negative log of the probability each row of (n, C) ``probs`` gives its true label (clipped at LOG_FLOOR)."""
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], LOG_FLOOR, 1.0))


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of ``labels``: a proper score of the probability given to each row's true
    class, the loss the calibration maps and the temperature minimise. The ECE bins the top probability alone,
    so it cannot see probability moved between the other classes (docs/calibrated-probabilities.md shows a
    holdout where the two disagree)."""
    return float(label_nll(probs, labels).mean())


def ece_interval(probs: np.ndarray, labels: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = 0) -> list[float]:
    """95 % percentile interval [low, high] of the expected calibration error of ``probs`` (n, C) over
    ``resamples`` seeded resamples of the rows (with replacement).

    A 10-bin ECE on a few hundred rows is noisy, and biased upwards: perfectly calibrated
    probabilities score above 0 (the offline sample's true posteriors score about 0.03-0.05 on 300
    rows, README). Two ECEs whose intervals overlap are not told apart by these rows. Resampling adds
    that noise once more, so for an ECE near 0 the whole interval can lie above the estimate."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    rows = np.stack([rng.integers(0, n, n) for _ in range(resamples)])  # (R, n): the same draws as one at a time
    confidence, correct = probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, ECE_BINS - 1)  # as reliability()
    # Per resample and bin, the sums of correctness and confidence: share x |accuracy - confidence| of a
    # bin is |sum correct - sum confidence| / n. One bincount over (resample, bin) keys, (R, bins).
    keys = (np.arange(resamples)[:, None] * ECE_BINS + which[rows]).ravel()
    gap = (np.bincount(keys, correct[rows].ravel(), resamples * ECE_BINS)
           - np.bincount(keys, confidence[rows].ravel(), resamples * ECE_BINS)).reshape(resamples, ECE_BINS)
    return interval95(np.abs(gap).sum(axis=1) / n)


def calibration_errors(raw_probs: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    """``temperature`` and the expected calibration error of ``raw_probs`` (n, C) with it (``ece``, and
    its 95 % bootstrap interval ``ece_ci95``) and without it (``ece_uncalibrated``)."""
    calibrated = with_temperature(raw_probs, temperature)
    return {"temperature": temperature,
            "ece": expected_calibration_error(calibrated, labels),
            "ece_ci95": ece_interval(calibrated, labels),
            "ece_uncalibrated": expected_calibration_error(raw_probs, labels)}


def score_against(predicted: pd.DataFrame, truth: dict[str, str], labels: tuple[str, ...], what: str) -> dict[str, float]:
    """Accuracy, expected calibration error (with its 95 % bootstrap interval, ``test_ece_ci95``) and log loss of
    ``predicted`` (id, label, p_<label> columns of ``labels``; with a ``label_set`` column, also the share of
    sets that hold the true label, ``test_coverage``, and their mean size) against ``truth`` (id -> label), on the ids it has;
    ``what`` names the truth in sentences."""
    scored = predicted[[post_id in truth for post_id in predicted["id"]]]
    unknown = sorted({truth[post_id] for post_id in scored["id"]} - set(labels))
    if unknown:
        raise UserError(f"{what} has the label {unknown[0]!r}, which the model does not predict ({', '.join(labels)})")
    actual = np.array([labels.index(truth[post_id]) for post_id in scored["id"]], dtype=np.int64)
    probs = scored[probability_columns(labels)].to_numpy()
    if not len(actual):
        raise UserError(f"{what} labels none of the predicted posts; it needs a label for the posts to score")
    # The accuracy of the labels as predicted (the decision rule's), not of the largest probability.
    accuracy = float((scored["label"].to_numpy() == np.array(labels)[actual]).mean())
    scores = {"test_accuracy": accuracy, "test_ece": expected_calibration_error(probs, actual),
              "test_ece_ci95": ece_interval(probs, actual), "test_log_loss": log_loss(probs, actual),
              "test_scored": float(len(actual))}
    if "label_set" in scored.columns:  # --coverage: how often the set held the true label, and its mean size
        sets = [s.split("|") if isinstance(s, str) and s else [] for s in scored["label_set"]]
        scores["test_coverage"] = float(np.mean([labels[y] in s for y, s in zip(actual, sets)]))
        scores["test_mean_set_size"] = float(np.mean([len(s) for s in sets]))
    return scores
