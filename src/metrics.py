"""Classification scores, named the same in every log, table and JSON file."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from src import LABELS

CLASS_IDS = list(range(len(LABELS)))


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy, macro precision/recall/F1, weighted F1, per-class F1 and the confusion matrix.

    ``confusion[i][j]`` counts samples of true class LABELS[i] predicted as LABELS[j].
    """
    precision, recall, macro_f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=CLASS_IDS, average="macro", zero_division=0
    )
    per_class = f1_score(y_true, y_pred, labels=CLASS_IDS, average=None, zero_division=0)
    scores = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "macro_f1": float(macro_f1),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=CLASS_IDS, average="weighted", zero_division=0)),
    }
    scores.update({f"f1_{label}": float(value) for label, value in zip(LABELS, per_class)})
    scores["confusion"] = confusion_matrix(y_true, y_pred, labels=CLASS_IDS).tolist()
    return scores


def scalar_metrics(scores: dict, prefix: str = "") -> dict[str, float]:
    """The numeric entries of ``scores`` (everything but the confusion matrix), prefixed."""
    return {f"{prefix}{key}": value for key, value in scores.items() if isinstance(value, (int, float))}
