"""What registration fits the probability rules on and how it reports them (issue 32): one set of calibration
rows (out of fold, or the validation split, which wins when the fold models train unlike the head), and a
holdout summary of the served labels and probabilities."""

import re
from dataclasses import replace

import numpy as np
import pytest

from msc.core.labels import COURSE_LABELS
from msc.model.calibrated import CalibrationMap, DecisionRule, ProbabilityRules
from msc.train.calibration import expected_calibration_error, log_loss, with_temperature
from msc.train.calibration_maps import cross_validated_nll, fit_map, fit_rules
from msc.train.crossfit import CalibrationRows, Refit, calibration_rows, fold_models_unlike_the_head, out_of_fold_probabilities
from msc.train.holdout import holdout_summary
from msc.train.loop import predict_proba, train_head
from msc.train.metrics import classification_metrics


def test_calibration_rows_are_out_of_fold_or_say_they_are_not(config, cache, splits):
    train = replace(config.train, epochs=1)
    head = train_head(cache, splits.train, splits.val, train).head
    choice = calibration_rows(head, cache, splits, Refit(train, 1, 2, 0))
    pool, ranked = np.concatenate([splits.train, splits.val]), choice.ranked
    assert ranked.out_of_fold and np.array_equal(ranked.rows, pool) and np.array_equal(ranked.labels, cache.labels[pool])
    np.testing.assert_allclose(ranked.probs, out_of_fold_probabilities(cache, pool, train, 1, 2, 0), atol=1e-6)
    # The rules' rows are the out-of-fold ones unless a sentence says why the head's validation rows were taken.
    assert (choice.fitted is ranked) == (choice.sentence is None)
    for refit in (None, Refit(train, 1, 0, 0)):
        fallback = calibration_rows(head, cache, splits, refit)
        assert fallback.fitted is fallback.ranked and fallback.sentence is None
        assert not fallback.fitted.out_of_fold and np.array_equal(fallback.fitted.rows, splits.val)
        np.testing.assert_allclose(fallback.fitted.probs, predict_proba(head, cache, splits.val))


def test_fold_models_unlike_the_head_give_way_to_its_own_validation_rows():
    """The fold models push probability towards class 1 (as class weighting does). Over 20 draws of 150
    validation rows each: a head that does the same keeps their 3000 rows (at most one draw switches, by
    noise); a head that does not (the study chose a lucky draw of a configuration that trains unlike itself
    from other starts) is calibrated by its own rows in most draws, and the sentence gives both NLLs."""
    fold_probs, fold_labels = shifted_rows(3000, 0, shift=1.2)
    folds = CalibrationRows(np.arange(3000), fold_probs, fold_labels, True)

    folds_map = fit_map("vector", fold_probs, fold_labels)

    def sentences(shift: float) -> list[str | None]:
        return [fold_models_unlike_the_head(CalibrationRows(np.arange(150), *shifted_rows(150, seed, shift), False),
                                            folds, folds_map, 0) for seed in range(1, 21)]

    assert sum(s is not None for s in sentences(1.2)) <= 1
    unlike = sentences(-0.5)
    assert sum(s is not None for s in unlike) >= 15
    sentence = next(s for s in unlike if s)
    assert sentence.startswith("the probability rules are fitted on the candidate's 150 validation rows, not on 3000")
    own_nll, fold_nll = map(float, re.findall(r"mean NLL of ([\d.]+) \(cross-validated\) against ([\d.]+)", sentence)[0])
    assert own_nll < fold_nll


def test_validation_rows_without_a_class_never_replace_the_out_of_fold_rows():
    """A map fitted without a class pushes its probability towards 0, which rows without it reward: with class
    2 missing from the validation rows (or present once) the out-of-fold rows stay, however unlike the head
    the fold models are."""
    fold_probs, fold_labels = shifted_rows(3000, 0, shift=1.2)
    folds = CalibrationRows(np.arange(3000), fold_probs, fold_labels, True)
    probs, labels = shifted_rows(400, 1, shift=-1.0)
    for kept in (0, 1):
        rows = np.concatenate([np.flatnonzero(labels != 2), np.flatnonzero(labels == 2)[:kept]])
        own = CalibrationRows(rows, probs[rows], labels[rows], False)
        assert cross_validated_nll("vector", own.probs, own.labels, 0) is None
        assert fold_models_unlike_the_head(own, folds, fit_map("vector", fold_probs, fold_labels), 0) is None


def shifted_rows(n: int, seed: int, shift: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) probabilities pushed towards class 1 by ``shift`` in log space (as class weighting does) and
    labels drawn from the unshifted ones: what a vector map can undo and a temperature cannot."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, 3))
    truth = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in truth])
    shifted = np.exp(logits + [0, shift, 0])
    return shifted / shifted.sum(1, keepdims=True), labels


def test_the_holdout_summary_scores_the_served_labels_and_probabilities():
    oof, oof_labels = shifted_rows(3000, 0)
    raw, labels = shifted_rows(1500, 1)
    rules = fit_rules(oof, oof_labels, "val_weighted_f1")
    summary = holdout_summary(labels, raw, rules, 1.0, COURSE_LABELS)
    probs, predicted, _ = rules.predict(raw)
    assert summary["accuracy"] == pytest.approx(classification_metrics(labels, predicted, COURSE_LABELS)["accuracy"])
    assert summary["ece"] == pytest.approx(expected_calibration_error(probs, labels))
    assert summary["ece"] < summary["ece_temperature_only"] == pytest.approx(expected_calibration_error(raw, labels))
    # The rows' shift of the middle class is what the map undoes and one temperature (1.0 here) cannot.
    assert summary["log_loss"] == pytest.approx(log_loss(probs, labels))
    assert summary["log_loss"] < summary["log_loss_temperature_only"] == pytest.approx(summary["log_loss_uncalibrated"])
    assert summary["calibration"] == "vector" and set(summary["label_sets"]) == {"0.8", "0.9"}
    for asked, report in summary["label_sets"].items():
        assert abs(report["coverage"] - float(asked)) < 0.03  # exchangeable rows: the guarantee holds
        assert set(report["per_class"]) == set(COURSE_LABELS)


def test_a_summary_of_a_model_without_rules_is_its_temperature_and_argmax():
    raw, labels = shifted_rows(500, 2)
    summary = holdout_summary(labels, raw, ProbabilityRules(CalibrationMap(temperature=1.5)), 1.5, COURSE_LABELS)
    assert "label_sets" not in summary and summary["ece"] == summary["ece_temperature_only"]
    assert summary["ece"] == pytest.approx(expected_calibration_error(with_temperature(raw, 1.5), labels))
    assert summary["accuracy"] == pytest.approx((raw.argmax(1) == labels).mean())
    weighted = ProbabilityRules(CalibrationMap(temperature=1.5), DecisionRule(weights=(1.0, 0.2, 1.0)))
    assert holdout_summary(labels, raw, weighted, 1.5, COURSE_LABELS)["accuracy"] != summary["accuracy"]
