"""Figures runs log and reports show, drawn headless with matplotlib."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files and MLflow, never to a window
import matplotlib.pyplot as plt  # noqa: E402

from msc.core.labels import LABELS  # noqa: E402


def confusion_figure(confusion: list[list[int]], title: str):
    """A labelled confusion-matrix heat map: rows are true classes, columns predictions."""
    figure, axes = plt.subplots(figsize=(4.2, 3.8))
    axes.imshow(confusion, cmap="Blues")
    axes.set_xticks(range(len(LABELS)), LABELS)
    axes.set_yticks(range(len(LABELS)), LABELS)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    peak = max(max(row) for row in confusion) or 1
    for i, row in enumerate(confusion):
        for j, count in enumerate(row):
            axes.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    figure.tight_layout()
    return figure


def log_confusion(confusion: list[list[int]], split: str) -> None:
    """Log ``<split>_confusion.png`` and ``<split>_confusion.json`` into the active run."""
    import mlflow

    figure = confusion_figure(confusion, f"{split} confusion matrix")
    mlflow.log_figure(figure, f"{split}_confusion.png")
    plt.close(figure)
    mlflow.log_dict({"labels": list(LABELS), "rows_true_columns_predicted": confusion}, f"{split}_confusion.json")
