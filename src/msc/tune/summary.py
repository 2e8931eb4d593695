"""``results/metrics.json``, the tune stage's summary, and the small files DVC plots beside it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from msc.core.files import atomic_write_text
from msc.core.handoff import write_handoff
from msc.core.labels import probability_columns
from msc.features.cache import FeatureCache
from msc.track.summary import TuneSummary

RESULTS = Path("results")


def write_results(summary: TuneSummary, cache: FeatureCache, holdout_rows: np.ndarray, probs: np.ndarray,
                  curves: list[dict[str, float]]) -> None:
    """results/metrics.json, holdout_predictions.csv (DVC confusion plot), training_curves.csv."""
    write_handoff(RESULTS / "metrics.json", summary)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    names = cache.label_names
    writer.writerow(["guid", "actual", "predicted", *probability_columns(names)])
    for row, p in zip(holdout_rows, probs):
        writer.writerow([cache.guids[row], names[cache.labels[row]], names[int(p.argmax())], *(f"{x:.4f}" for x in p)])
    atomic_write_text(RESULTS / "holdout_predictions.csv", rows.getvalue())
    if curves:
        rows = io.StringIO()
        writer = csv.DictWriter(rows, fieldnames=list(curves[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(curves)
        atomic_write_text(RESULTS / "training_curves.csv", rows.getvalue())


def holdout_line(holdout: dict) -> str:
    """The holdout scores (``Registration.holdout``) with their 95 % bootstrap intervals and the calibration error."""
    def scored(name: str, key: str) -> str:
        low, high = holdout[f"{key}_ci95"]
        return f"{name} {holdout[key]:.4f} [{low:.4f}, {high:.4f}]"

    # A metrics.json written before issue 25 has no ece_ci95.
    ece_interval = "" if "ece_ci95" not in holdout else " [{:.4f}, {:.4f}]".format(*holdout["ece_ci95"])
    return (f"{scored('weighted F1', 'weighted_f1')}, {scored('accuracy', 'accuracy')} (95 % bootstrap intervals), "
            f"ECE {holdout['ece']:.4f}{ece_interval} at temperature {holdout['temperature']:.3f} "
            f"({holdout['ece_uncalibrated']:.4f} without)")
