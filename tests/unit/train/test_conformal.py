"""Conformal label sets (msc/train/conformal.py, msc.model.calibrated.LabelSets), against crepes and the textbook."""

import json
import math

import numpy as np
import pytest
from crepes import ConformalClassifier

from msc.core.errors import UserError
from msc.model.calibrated import LabelSets, label_set_names, quantile_threshold, softmax
from msc.train.conformal import coverage_report, fit_label_sets


def calibrated_set(n: int, seed: int, prior=(0.6, 0.12, 0.28)):
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(size=(n, len(prior))) * 1.5 + np.log(prior))
    return probs, np.array([rng.choice(len(prior), p=p) for p in probs])


def test_the_threshold_is_the_textbook_quantile():
    scores = [0.1 * i for i in range(1, 10)]  # n = 9
    assert quantile_threshold(scores, 0.9) == pytest.approx(0.9)  # ceil(10 x 0.9) = 9th smallest
    assert quantile_threshold(scores, 0.5) == pytest.approx(0.5)  # ceil(5) = 5th
    assert quantile_threshold(scores, 0.95) == math.inf  # ceil(9.5) = 10 > n: every label
    assert quantile_threshold(scores, 1e-12) == pytest.approx(0.1)  # rank 0 is the smallest, never the largest
    with pytest.raises(UserError, match="coverage is 1.2"):
        LabelSets(scores=((0.1,), (0.2,))).thresholds(1.2)


@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_the_sets_are_crepes_sets_marginal_and_mondrian(coverage):
    probs, labels = calibrated_set(400, 0)
    new, _ = calibrated_set(200, 1)
    sets = fit_label_sets(probs, labels)
    # crepes keeps a label whose p-value (#{calibration scores >= its score} + 1) / (n + 1) is >= 1 - confidence;
    # the textbook quantile keeps it when > 1 - coverage: they differ only at equality, where (n + 1)(1 - coverage)
    # is a whole number (class 1's 64 rows at 0.8). Both are valid; the quantile's set is the smaller one.
    confidence = coverage - 1e-9
    alphas_cal, alphas_new = 1 - probs[np.arange(400), labels], 1 - new
    marginal = ConformalClassifier().fit(alphas_cal).predict_set(alphas_new, confidence=confidence, smoothing=False)
    assert (sets.apply(new, coverage) == marginal.astype(bool)).all()
    mondrian = ConformalClassifier().fit(alphas_cal, bins=labels)
    by_class = np.stack([mondrian.predict_set(alphas_new[:, [c]], bins=np.full(200, c), confidence=confidence,
                                              smoothing=False)[:, 0] for c in range(3)], axis=1)
    assert (sets.apply(new, coverage, class_conditional=True) == by_class.astype(bool)).all()


@pytest.mark.parametrize("seed,prior", [(2, (0.6, 0.12, 0.28)), (3, (0.57, 0.43)), (4, (0.33, 0.25, 0.18, 0.14, 0.10))])
@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_held_out_coverage_is_the_target(seed, prior, coverage):
    probs, labels = calibrated_set(3000, seed, prior)
    new, new_labels = calibrated_set(3000, seed + 100, prior)
    sets = LabelSets.from_dict(json.loads(json.dumps(fit_label_sets(probs, labels).to_dict())))
    report = coverage_report(sets.apply(new, coverage), new_labels, tuple("abcde"[: len(prior)]))
    assert abs(report["coverage"] - coverage) < 0.03
    mondrian = coverage_report(sets.apply(new, coverage, class_conditional=True), new_labels, tuple("abcde"[: len(prior)]))
    assert all(abs(c["coverage"] - coverage) < 0.06 for c in mondrian["per_class"].values())


def test_sets_read_as_label_names():
    members = np.array([[True, False, True], [False, False, False]])
    assert label_set_names(members, ("positive", "neutral", "negative")) == ["positive|negative", ""]
