"""``metrics.json``, the tune stage's summary, the small tables DVC plots beside it and the label issues;
the stage writes them into ``paths.results`` (``write_results``)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msc.core.files import atomic_write_text
from msc.core.handoff import write_handoff
from msc.core.labels import probability_columns
from msc.features.cache import FeatureCache
from msc.track.promotion import LABEL_ISSUES  # in paths.results too: the Production version's ranking
from msc.track.summary import TuneSummary
from msc.tune.registration import Registered


@dataclass(frozen=True)
class TuneOutcome:
    """What the tune stage reports: the summary and the two small tables DVC plots, as CSV text."""

    summary: TuneSummary
    holdout_predictions: str  # guid, actual, predicted, p_<label>...: the registered model on the holdout
    training_curves: str  # the best trial's per-epoch losses and scores; a header alone when its trial has none
    label_issues: str  # id, given_label, suggested_label, score, flagged: most likely wrong first


def tune_outcome(summary: TuneSummary, cache: FeatureCache, holdout_rows: np.ndarray, registered: Registered,
                 curves: list[dict[str, float]]) -> TuneOutcome:
    """The summary with holdout_predictions.csv (DVC confusion plot: the served labels and calibrated
    probabilities of ``registered``), training_curves.csv and label_issues.csv as text."""
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    names = cache.label_names
    writer.writerow(["guid", "actual", "predicted", *probability_columns(names)])
    for row, label, p in zip(holdout_rows, registered.predicted, registered.probs):
        writer.writerow([cache.guids[row], names[cache.labels[row]], names[int(label)], *(f"{x:.4f}" for x in p)])
    table = rows.getvalue()
    if not curves:  # a best trial run before curves were trial attributes: a header alone, so the file that
        # dvc.yaml declares exists and no older run's stays behind
        return TuneOutcome(summary, table, "epoch\n", registered.label_issues)
    rows = io.StringIO()
    writer = csv.DictWriter(rows, fieldnames=list(curves[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(curves)
    return TuneOutcome(summary, table, rows.getvalue(), registered.label_issues)


def write_results(folder: str | Path, outcome: TuneOutcome) -> Path:
    """``folder``/metrics.json, holdout_predictions.csv, training_curves.csv and label_issues.csv, each
    atomically; returns the metrics file's path."""
    folder = Path(folder)
    write_handoff(folder / "metrics.json", outcome.summary)
    atomic_write_text(folder / "holdout_predictions.csv", outcome.holdout_predictions)
    atomic_write_text(folder / "training_curves.csv", outcome.training_curves)
    atomic_write_text(folder / LABEL_ISSUES, outcome.label_issues)
    return folder / "metrics.json"


def holdout_line(holdout: dict) -> str:
    """The holdout scores (``Registration.holdout``) with their 95 % bootstrap intervals, the calibration error
    and the log loss."""
    def scored(name: str, key: str) -> str:
        low, high = holdout[f"{key}_ci95"]
        return f"{name} {holdout[key]:.4f} [{low:.4f}, {high:.4f}]"

    # A metrics.json written before issue 25 has no ece_ci95.
    ece_interval = "" if "ece_ci95" not in holdout else " [{:.4f}, {:.4f}]".format(*holdout["ece_ci95"])
    ece = f"ECE {holdout['ece']:.4f}{ece_interval}"
    if "calibration" in holdout:
        ece += (f" with its {holdout['calibration']} map ({holdout['ece_temperature_only']:.4f} with the temperature "
                f"{holdout['temperature']:.3f} alone, {holdout['ece_uncalibrated']:.4f} without)")
    else:  # a metrics.json written before issue 32: the temperature alone
        ece += f" at temperature {holdout['temperature']:.3f} ({holdout['ece_uncalibrated']:.4f} without)"
    ece += f", log loss {holdout['log_loss']:.4f} ({holdout['log_loss_uncalibrated']:.4f} without)"
    sets = holdout.get("label_sets", {}).get("0.9")
    covered = "" if sets is None else (f", label sets at 0.9 cover {sets['coverage']:.3f} (mean size "
                                       f"{sets['mean_set_size']:.2f})")
    return f"{scored('weighted F1', 'weighted_f1')}, {scored('accuracy', 'accuracy')} (95 % bootstrap intervals), {ece}{covered}"
