"""Scoring a logged head on the holdout rows of the feature cache, and the holdout summary of
results/metrics.json.

A logged head is scored from its ``head.json`` and weights alone (msc/track/logged_model.py reads
them): the cache holds the backbone's features, so no backbone is loaded. A head with trainable top
layers (``train.top_layers`` k > 0) is the exception: its top blocks start as copies of the
backbone's, which it takes from the backbone that training loaded (``frozen_backbone``, once per
process).
"""

from __future__ import annotations

import numpy as np

from msc.features.cache import FeatureCache
from msc.model.spec import HeadSpec, build_logged_head
from msc.train.calibration import calibration_errors, with_temperature
from msc.train.loop import frozen_backbone, predict_proba
from msc.train.metrics import bootstrap_intervals, classification_metrics, reported_metrics


def cached_head(spec: HeadSpec, weights: dict, cache: FeatureCache):
    """The head that ``spec`` and ``weights`` describe, to score ``cache``'s features."""
    backbone = None
    if spec.train.get("top_layers", 0):
        settings = cache.manifest.preprocessing
        backbone = frozen_backbone(settings["model.backbone"], settings["model.revision"], settings.get("model.family"))
    return build_logged_head(spec, weights, backbone)


def holdout_scores(head, cache: FeatureCache, rows: np.ndarray) -> tuple[np.ndarray, dict]:
    """(n, C) probabilities of ``head`` on ``rows``, uncalibrated (a temperature never moves the
    argmax), and their classification_metrics."""
    probs = predict_proba(head, cache, rows)
    return probs, classification_metrics(cache.labels[rows], probs.argmax(1), cache.label_names)


def holdout_summary(labels: np.ndarray, probs: np.ndarray, temperature: float, names: tuple[str, ...]) -> dict:
    """Scores of calibrated ``probs`` (n, C) of the classes ``names``: point estimates, 95 % bootstrap
    intervals, and the expected calibration error with the temperature (and its interval) and without it."""
    predictions = probs.argmax(1)
    return {**reported_metrics(classification_metrics(labels, predictions, names)),
            **bootstrap_intervals(labels, predictions),
            **calibration_errors(with_temperature(probs, 1 / temperature), labels, temperature)}
