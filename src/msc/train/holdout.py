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
from msc.model.calibrated import ProbabilityRules
from msc.model.spec import HeadSpec, build_logged_head
from msc.train.calibration import ece_interval, expected_calibration_error, log_loss, with_temperature
from msc.train.conformal import coverage_report
from msc.train.loop import frozen_backbone, predict_proba
from msc.train.metrics import bootstrap_intervals, classification_metrics, reported_metrics

HOLDOUT_COVERAGES = (0.8, 0.9)  # the label-set coverages metrics.json and the report show


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


def holdout_summary(labels: np.ndarray, raw: np.ndarray, rules: ProbabilityRules, temperature: float,
                    names: tuple[str, ...]) -> dict:
    """Scores of the served predictions of raw (n, C) holdout probabilities of the classes ``names``: the
    labels of ``rules``' decision rule, point estimates and 95 % bootstrap intervals; the expected calibration
    error of ``rules``' calibrated probabilities (``ece``, its interval), of the single fitted ``temperature``
    alone (``ece_temperature_only``) and of ``raw`` (``ece_uncalibrated``), and the log loss of the same three
    (``log_loss``, ``log_loss_temperature_only``, ``log_loss_uncalibrated``); and, when ``rules`` has label sets,
    what they reached at each of HOLDOUT_COVERAGES (``label_sets``: coverage_report by coverage)."""
    probs, predictions, _ = rules.predict(raw)
    tempered = with_temperature(raw, temperature)
    summary = {**reported_metrics(classification_metrics(labels, predictions, names)),
               **bootstrap_intervals(labels, predictions),
               "temperature": temperature, "calibration": rules.calibration.kind,
               "ece": expected_calibration_error(probs, labels), "ece_ci95": ece_interval(probs, labels),
               "ece_temperature_only": expected_calibration_error(tempered, labels),
               "ece_uncalibrated": expected_calibration_error(raw, labels),
               "log_loss": log_loss(probs, labels),
               "log_loss_temperature_only": log_loss(tempered, labels),
               "log_loss_uncalibrated": log_loss(raw, labels)}
    if rules.label_sets is not None:
        summary["label_sets"] = {str(coverage): coverage_report(rules.label_sets.apply(probs, coverage), labels, names)
                                 for coverage in HOLDOUT_COVERAGES}
    return summary
