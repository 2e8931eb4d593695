"""Calibrated probabilities: one temperature fitted on the validation split, and how far
probabilities are from outcomes (the expected calibration error).

Temperature scaling divides the head's logits by T > 0 before the softmax. It never changes the
predicted label (the argmax), so it changes no accuracy or F1, only what the probabilities claim.
It is fitted on validation, never on the holdout, which reports it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

TEMPERATURE_RANGE = (0.05, 20.0)
ECE_BINS = 10


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """(n, 3) probabilities as if the logits had been divided by ``temperature``.

    log(p) differs from the logits by a constant per row, which the softmax ignores, so this needs
    only the probabilities. ``with_temperature(p, 1 / T)`` undoes ``with_temperature(p, T)``.
    """
    logits = np.log(np.clip(probs, 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the negative log-likelihood of ``labels`` (n,) under ``probs`` (n, 3) / T."""
    def nll(log_t: float) -> float:
        scaled = with_temperature(probs, float(np.exp(log_t)))
        return float(-np.log(np.clip(scaled[np.arange(len(labels)), labels], 1e-12, None)).mean())

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


def calibration_errors(raw_probs: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, float]:
    """``temperature`` and the expected calibration error of ``raw_probs`` (n, 3) with it (``ece``)
    and without it (``ece_uncalibrated``)."""
    return {"temperature": temperature,
            "ece": expected_calibration_error(with_temperature(raw_probs, temperature), labels),
            "ece_uncalibrated": expected_calibration_error(raw_probs, labels)}
