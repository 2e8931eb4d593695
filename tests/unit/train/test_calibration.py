import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.metrics import log_loss as sklearn_log_loss

from msc.core.labels import COURSE_LABELS
from msc.train.calibration import (
    calibration_errors,
    ece_interval,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    reliability,
    with_temperature,
)
from msc.train.metrics import bootstrap_intervals, classification_metrics, weighted_f1_of


def softmax(logits):
    exp = np.exp(logits - logits.max(1, keepdims=True))
    return exp / exp.sum(1, keepdims=True)


def test_temperature_keeps_the_label_and_undoes_itself():
    probs = softmax(np.random.default_rng(0).normal(size=(50, 3)) * 3)
    hot = with_temperature(probs, 0.5)
    assert (hot.argmax(1) == probs.argmax(1)).all() and (hot.max(1) >= probs.max(1) - 1e-9).all()
    assert np.allclose(with_temperature(hot, 2.0), probs, atol=1e-9)


def test_the_fitted_temperature_recovers_an_overconfident_model():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4000, 3)) * 4
    labels = np.array([rng.choice(3, p=p) for p in softmax(logits / 2.5)])  # outcomes follow logits / 2.5
    temperature = fit_temperature(softmax(logits), labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    raw, fitted = softmax(logits), with_temperature(softmax(logits), temperature)
    assert expected_calibration_error(fitted, labels) < expected_calibration_error(raw, labels) / 2


def test_ece_of_ten_bins_on_the_top_probability():
    probs = np.array([[0.9, 0.05, 0.05]] * 10 + [[0.5, 0.3, 0.2]] * 10)
    labels = np.array([0] * 9 + [1] + [0] * 5 + [2] * 5)  # 90 % right at 0.9, 50 % right at 0.5
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)
    labels[:10] = [1] * 9 + [0]  # now 10 % right at 0.9: off by 0.8 for half the samples
    assert expected_calibration_error(probs, labels) == pytest.approx(0.4)
    bins = reliability(probs, labels)
    assert len(bins) == 10 and sum(b["samples"] for b in bins) == 20


def test_the_log_loss_scores_the_mass_the_ece_cannot_see():
    """Two models with the same top probabilities, so the same ECE (0: 90 % right at 0.9); the second gives the
    rare class 2 a fifth of what the first does, and class 2 is the true label of the post both get wrong."""
    labels = np.array([0] * 9 + [2])
    spread, starved = np.array([[0.9, 0.05, 0.05]] * 10), np.array([[0.9, 0.09, 0.01]] * 10)
    assert expected_calibration_error(spread, labels) == expected_calibration_error(starved, labels) == pytest.approx(0)
    assert log_loss(spread, labels) == pytest.approx(-(9 * np.log(0.9) + np.log(0.05)) / 10)
    assert log_loss(starved, labels) - log_loss(spread, labels) == pytest.approx(np.log(5) / 10)
    probs = softmax(np.random.default_rng(3).normal(size=(200, 4)) * 2)
    outcomes = np.random.default_rng(4).integers(0, 4, 200)
    assert log_loss(probs, outcomes) == pytest.approx(sklearn_log_loss(outcomes, probs, labels=range(4)))


def test_bootstrap_intervals_contain_the_estimate_and_are_seeded():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 3, 600)
    y_pred = np.where(rng.random(600) < 0.7, y_true, rng.integers(0, 3, 600))
    scores = classification_metrics(y_true, y_pred, COURSE_LABELS)
    intervals = bootstrap_intervals(y_true, y_pred)
    for metric in ("accuracy", "weighted_f1"):
        low, high = intervals[f"{metric}_ci95"]
        assert low < scores[metric] < high and high - low < 0.15
    assert bootstrap_intervals(y_true, y_pred) == intervals


def test_the_scores_from_one_confusion_matrix_are_sklearns():
    """classification_metrics computes from one confusion matrix what sklearn's functions give, classes with
    no row (not measured: left out of the macro scores) and classes never predicted included."""
    rng = np.random.default_rng(3)
    for case in range(60):
        classes, rows = int(rng.integers(2, 6)), int(rng.integers(1, 60))
        y_true, y_pred = rng.integers(0, classes, rows), rng.integers(0, classes, rows)
        if case % 3 == 0:
            y_true[y_true == classes - 1] = 0  # a class with no row
        if case % 5 == 0:
            y_pred[y_pred == 1] = 0  # a class never predicted
        ids, labels = list(range(classes)), [f"class{i}" for i in range(classes)]
        measured = [i for i in ids if (y_true == i).any()]
        precision, recall, macro_f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=measured,
                                                                         average="macro", zero_division=0)
        per_class = f1_score(y_true, y_pred, labels=ids, average=None, zero_division=0)
        scores = classification_metrics(y_true, y_pred, labels)
        assert scores["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
        assert [scores[k] for k in ("macro_precision", "macro_recall", "macro_f1")] == pytest.approx(
            [precision, recall, macro_f1])
        weighted = f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)
        assert scores["weighted_f1"] == pytest.approx(weighted)
        assert weighted_f1_of(np.array(scores["confusion"])) == pytest.approx(weighted)
        assert [scores[f"f1_{label}"] for label in labels] == [
            pytest.approx(per_class[i]) if i in measured else None for i in ids]
        assert scores["confusion"] == confusion_matrix(y_true, y_pred, labels=ids).tolist()
        assert ("not_measured" in scores) == (len(measured) < classes)
    with pytest.raises(ValueError, match="cannot score 0 predictions"):
        classification_metrics(np.array([], int), np.array([], int), labels)
    for y_true, y_pred in (([0, 1, 2], [3, 1, 2]), ([0, -1, 2], [0, 1, 2])):
        with pytest.raises(ValueError, match="must be class ids from 0 to 2"):  # never counted in another cell
            classification_metrics(np.array(y_true), np.array(y_pred), COURSE_LABELS)
    for y_pred in ([0.0, 1.0, 2.9], ["positive", "neutral", "negative"]):
        with pytest.raises(ValueError, match="must be integer class ids"):
            classification_metrics(np.array([0, 1, 2]), np.array(y_pred), COURSE_LABELS)


@pytest.mark.parametrize("classes", [2, 5])
def test_temperature_and_ece_take_any_number_of_classes(classes):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3000, classes)) * 3
    labels = np.array([rng.choice(classes, p=p) for p in softmax(logits / 2.0)])  # outcomes follow logits / 2
    assert fit_temperature(softmax(logits), labels) == pytest.approx(2.0, rel=0.1)
    errors = calibration_errors(softmax(logits), labels, fit_temperature(softmax(logits), labels))
    assert errors["ece"] < 0.03 < errors["ece_uncalibrated"]
    low, high = errors["ece_ci95"]
    # Resampling adds noise, which a 10-bin ECE reads as miscalibration: near 0 the whole interval can
    # lie above the estimate (here about 0.003, the interval about [0.005, 0.02]); it is not below it.
    assert 0 <= low < high and errors["ece"] < high


def test_the_ece_interval_covers_the_estimate_is_seeded_and_narrows_with_rows():
    rng = np.random.default_rng(5)
    probs = softmax(rng.normal(size=(2000, 3)) * 2)
    labels = np.array([rng.choice(3, p=p) for p in probs])  # calibrated by construction
    widths = []
    for n in (200, 2000):
        low, high = ece_interval(probs[:n], labels[:n])
        assert low <= expected_calibration_error(probs[:n], labels[:n]) <= high
        assert ece_interval(probs[:n], labels[:n]) == [low, high]
        widths.append(high - low)
    assert widths[1] < widths[0] / 2
    # Calibrated probabilities score above 0 on a few hundred rows: the 10-bin ECE's own noise.
    assert expected_calibration_error(probs[:300], labels[:300]) > 0.01


def test_scores_against_the_truth_count_the_label_sets_that_hold_it():
    import pandas as pd

    from msc.train.calibration import score_against

    predicted = pd.DataFrame({"id": ["1", "2", "3", "4"], "label": ["positive", "positive", "negative", "positive"],
                              "p_positive": [0.6, 0.3, 0.1, 0.5], "p_neutral": [0.2, 0.4, 0.2, 0.3],
                              "p_negative": [0.2, 0.3, 0.7, 0.2],
                              "label_set": ["positive", "neutral|negative", "", "positive|neutral|negative"]})
    truth = {"1": "positive", "2": "positive", "3": "negative", "4": "neutral"}
    scores = score_against(predicted, truth, ("positive", "neutral", "negative"), "truth")
    assert scores["test_coverage"] == 0.5 and scores["test_mean_set_size"] == 1.5  # an empty set holds nothing
    assert scores["test_accuracy"] == 0.75  # of the labels as given (row 2's is not its largest probability's: 0.5)
    # The probability of each post's true class, the one a --true-labels file and an --input table's labels share.
    assert scores["test_log_loss"] == pytest.approx(-np.log([0.6, 0.3, 0.7, 0.3]).mean())
    assert "test_coverage" not in score_against(predicted.drop(columns="label_set"), truth,
                                                ("positive", "neutral", "negative"), "truth")
