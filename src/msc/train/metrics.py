"""Classification scores, named the same in every log, table and JSON file."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, macro precision/recall/F1, weighted F1, per-class F1 (``f1_<label>``) and the
    confusion matrix, for class ids into ``labels``; sklearn's scores with zero_division=0, from one
    confusion matrix (sklearn's own functions took 8 ms a call, and training scores every epoch).

    ``confusion[i][j]`` counts samples of true class labels[i] predicted as labels[j]. A class with
    no sample in ``y_true`` is not measured: its F1 is None (not 0), the macro scores average the
    classes that were, and ``not_measured`` says which.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not len(y_true) or len(y_true) != len(y_pred):
        raise ValueError(f"cannot score {len(y_pred)} predictions of {len(y_true)} labels")
    for name, ids in (("labels", y_true), ("predictions", y_pred)):  # an id out of range would count in another cell
        if ids.dtype.kind not in "iu":
            raise ValueError(f"the {name} must be integer class ids into {list(labels)}; got {ids.dtype} values")
        if ids.min() < 0 or ids.max() >= len(labels):
            raise ValueError(f"the {name} must be class ids from 0 to {len(labels) - 1} (of {list(labels)}); got "
                             f"values from {ids.min()} to {ids.max()}")
    confusion = confusion_of(y_true, y_pred, len(labels))
    support, precision, recall, f1 = class_rates(confusion)
    measured = support > 0
    scores = {
        "accuracy": float(np.trace(confusion) / len(y_true)),
        "macro_precision": float(precision[measured].mean()),
        "macro_recall": float(recall[measured].mean()),
        "macro_f1": float(f1[measured].mean()),
        "weighted_f1": weighted_f1_of(confusion),
    }
    scores.update({f"f1_{label}": float(f1[i]) if measured[i] else None for i, label in enumerate(labels)})
    unmeasured = [label for label, was in zip(labels, measured) if not was]
    if unmeasured:
        scores["not_measured"] = (f"no {' or '.join(unmeasured)} sample in these rows: F1 of {', '.join(unmeasured)} "
                                  "is null, and the macro scores average the other classes")
    scores["confusion"] = confusion.tolist()
    return scores


def reported_metrics(scores: dict) -> dict:
    """The entries of ``scores`` a results file reports: the numbers, a null F1 of a class that was not
    measured, and the note saying so; not the confusion matrix."""
    return {key: value for key, value in scores.items() if key != "confusion"}


def scalar_metrics(scores: dict, prefix: str = "") -> dict[str, float]:
    """The numeric entries of ``scores`` (everything but the confusion matrix), prefixed."""
    return {f"{prefix}{key}": value for key, value in scores.items() if isinstance(value, (int, float))}


BOOTSTRAP_RESAMPLES = 1000


def class_rates(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per class of a (C, C) confusion matrix (rows true): support, precision, recall and F1, each (C,), as
    sklearn's with zero_division=0 (a class never predicted has precision 0, one with no row recall 0)."""
    support, predicted, hits = confusion.sum(1), confusion.sum(0), np.diag(confusion).astype(float)
    precision = np.divide(hits, predicted, out=np.zeros(len(hits)), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(len(hits)), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(hits)), where=precision + recall > 0)
    return support, precision, recall, f1


def weighted_f1_of(confusion: np.ndarray) -> float:
    """Weighted F1 from a (C, C) confusion matrix (rows: true), as sklearn's with zero_division=0."""
    support, _, _, f1 = class_rates(confusion)
    return float((f1 * support).sum() / max(support.sum(), 1))


def confusion_of(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """(C, C) confusion matrix of C = ``classes``, rows true, by one bincount (the bootstrap computes thousands)."""
    k = classes
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def classes_in(*class_ids: np.ndarray) -> int:
    """A class count that holds every id in ``class_ids``: enough for a confusion matrix whose weighted
    F1 and accuracy are the full label set's (a class with no row and no prediction adds nothing)."""
    return 1 + max((int(ids.max()) for ids in class_ids if len(ids)), default=0)


def interval95(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def bootstrap_intervals(y_true: np.ndarray, y_pred: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = 0) -> dict[str, list[float]]:
    """95 % percentile intervals of accuracy and weighted F1 over ``resamples`` seeded resamples of
    the rows (with replacement): ``accuracy_ci95`` and ``weighted_f1_ci95`` as [low, high]."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    classes = classes_in(y_true, y_pred)
    accuracy, weighted_f1 = np.empty(resamples), np.empty(resamples)
    for i in range(resamples):
        rows = rng.integers(0, n, n)
        confusion = confusion_of(y_true[rows], y_pred[rows], classes)
        accuracy[i], weighted_f1[i] = np.trace(confusion) / n, weighted_f1_of(confusion)
    return {"accuracy_ci95": interval95(accuracy), "weighted_f1_ci95": interval95(weighted_f1)}


def paired_bootstrap(y_true: np.ndarray, predictions: list[np.ndarray], baseline: list[np.ndarray] | None = None,
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, metric: str = "weighted_f1") -> list[float]:
    """95 % interval of the weighted F1 (or the ``accuracy``) of ``predictions``, averaged over its seeds
    (one (n,) array each), minus that of ``baseline`` when given, both on the same resampled rows: a
    paired comparison, which sees through the noise the two share."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    classes = classes_in(y_true, *predictions, *(baseline or []))
    score = weighted_f1_of if metric == "weighted_f1" else lambda confusion: np.trace(confusion) / confusion.sum()

    def mean_f1(runs: list[np.ndarray], rows: np.ndarray) -> float:
        return float(np.mean([score(confusion_of(y_true[rows], run[rows], classes)) for run in runs]))

    values = np.empty(resamples)
    for i in range(resamples):
        rows = rng.integers(0, n, n)
        values[i] = mean_f1(predictions, rows) - (mean_f1(baseline, rows) if baseline is not None else 0.0)
    return interval95(values)
