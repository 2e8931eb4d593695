"""Figures runs log and reports show, drawn headless with matplotlib."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files and MLflow, never to a window
import matplotlib.pyplot as plt  # noqa: E402


def confusion_figure(confusion: list[list[int]], title: str, labels: tuple[str, ...]):
    """A labelled confusion-matrix heat map: rows are true classes, columns predictions, in ``labels``' order."""
    scale = max(1.0, len(labels) / 3)  # room for every tick label of a larger label set
    figure, axes = plt.subplots(figsize=(4.2 * scale, 3.8 * scale))
    axes.imshow(confusion, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 3 else 0)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    peak = max(max(row) for row in confusion) or 1
    for i, row in enumerate(confusion):
        for j, count in enumerate(row):
            axes.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    figure.tight_layout()
    return figure


def log_confusion(confusion: list[list[int]], split: str, labels: tuple[str, ...]) -> None:
    """Log ``<split>_confusion.png`` and ``<split>_confusion.json`` into the active run."""
    import mlflow

    figure = confusion_figure(confusion, f"{split} confusion matrix", labels)
    mlflow.log_figure(figure, f"{split}_confusion.png")
    plt.close(figure)
    mlflow.log_dict({"labels": list(labels), "rows_true_columns_predicted": confusion}, f"{split}_confusion.json")
