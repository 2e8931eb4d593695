"""The explicit label rule (msc/train/decision.py, msc.model.calibrated.DecisionRule)."""

import json

import numpy as np
import pytest

from msc.model.calibrated import DecisionRule, softmax
from msc.train.decision import fit_decision_rule, score_of
from msc.train.metrics import classification_metrics, confusion_of

METRICS = ["val_weighted_f1", "val_macro_f1", "val_accuracy", "val_macro_recall", "val_macro_precision"]


def calibrated_set(n: int, seed: int):
    """Calibrated probabilities (n, 3) of a 70/10/20 prior and labels drawn from them."""
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(size=(n, 3)) * 1.5 + np.log([0.7, 0.1, 0.2]))
    return probs, np.array([rng.choice(3, p=p) for p in probs])


@pytest.mark.parametrize("metric", METRICS)
def test_the_score_of_a_confusion_matrix_is_classification_metrics(metric):
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    y_pred[y_pred == 2] = 0  # a class never predicted: its precision and F1 are 0
    expected = classification_metrics(y_true, y_pred, ("a", "b", "c"))[metric.removeprefix("val_")]
    assert score_of(confusion_of(y_true, y_pred, 3), metric) == pytest.approx(expected)


def test_weights_of_one_are_the_argmax():
    probs, _ = calibrated_set(300, 2)
    assert (DecisionRule(weights=(1.0, 1.0, 1.0)).apply(probs) == probs.argmax(1)).all()


@pytest.mark.parametrize("metric", METRICS)
def test_fitted_weights_never_lower_the_metric_and_the_fit_is_deterministic(metric):
    probs, labels = calibrated_set(600, 3)
    rule = fit_decision_rule(probs, labels, metric)
    plain = score_of(confusion_of(labels, probs.argmax(1), 3), metric)
    assert score_of(confusion_of(labels, rule.apply(probs), 3), metric) >= plain
    assert rule == fit_decision_rule(probs, labels, metric) and rule.weights[0] == 1.0
    assert DecisionRule.from_dict(json.loads(json.dumps(rule.to_dict()))).apply(probs).tolist() == rule.apply(probs).tolist()


def test_macro_recall_buys_the_rare_class_with_a_weight_above_one():
    probs, labels = calibrated_set(2000, 4)
    rule = fit_decision_rule(probs, labels, "val_macro_recall")
    assert rule.weights[1] > 1.5  # the 10 % class: argmax of calibrated probabilities rarely picks it
    labelled = rule.apply(probs)
    assert score_of(confusion_of(labels, labelled, 3), "macro_recall") > \
        score_of(confusion_of(labels, probs.argmax(1), 3), "macro_recall") + 0.05
    # and the rule is why a post can be labelled 1 with p_1 below another class's probability
    assert ((labelled == 1) & (probs.argmax(1) != 1)).any()


@pytest.mark.parametrize(("metric", "kept_at_least", "kept_at_most"),
                         [("val_accuracy", 0, 4), ("val_weighted_f1", 0, 4), ("val_macro_recall", 15, 20)])
def test_weights_are_kept_only_where_they_gain_out_of_sample(metric, kept_at_least, kept_at_most):
    """On 20 sets of 850 rows drawn from calibrated probabilities, the weights fitted on the rows alone move
    almost every time. For accuracy the plain argmax of calibrated probabilities is already the best rule, so
    the check drops nearly all of those moves; macro recall gains from a weight on the rare class, and keeps
    it nearly always."""
    kept = 0
    for seed in range(20):
        probs, labels = calibrated_set(850, 100 + seed)
        kept += fit_decision_rule(probs, labels, metric).weights != (1.0, 1.0, 1.0)
    assert kept_at_least <= kept <= kept_at_most
