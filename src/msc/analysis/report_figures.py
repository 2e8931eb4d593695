"""The report's figures: variants, training curves and reliability, saved as PNG atomically."""

from __future__ import annotations

import io
from pathlib import Path

from msc.core.files import atomic_write_bytes
from msc.track.figures import plt


def save_figure(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def variants_figure(rows: list[dict]):
    """Horizontal bars from 0: weighted F1 mean, ± std error bars where there are several seeds.

    Baselines (the probe, the zero-shot backbone, the Bayes rule) are hatched grey outlines, trained heads solid bars.
    """
    figure, axes = plt.subplots(figsize=(6.4, 0.38 * len(rows) + 1.4))
    for y, row in enumerate(rows):
        baseline = row["kind"] == "baseline"
        axes.barh(y, row["weighted_f1"], color="white" if baseline else "#4c72b0",
                  edgecolor="#7f7f7f" if baseline else "#4c72b0", hatch="//" if baseline else None)
        if row["weighted_f1_std"] is not None:  # a single run has no spread to draw
            axes.errorbar(row["weighted_f1"], y, xerr=row["weighted_f1_std"], color="black", capsize=3)
        axes.text(row["weighted_f1"] + (row["weighted_f1_std"] or 0.0) + 0.015, y, f"{row['weighted_f1']:.3f}",
                  va="center", fontsize=8)
    axes.set_yticks(range(len(rows)), [r["variant"] for r in rows])
    axes.invert_yaxis()
    axes.set_xlabel("holdout weighted F1 (bars: mean over seeds; whiskers: ± std)")
    axes.set_xlim(0.0, 1.0)
    axes.legend(handles=[plt.Rectangle((0, 0), 1, 1, color="#4c72b0", label="trained head"),
                         plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="#7f7f7f", hatch="//",
                                       label="baseline")], loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2,
              fontsize=8, frameon=False)  # above the bars, never over one
    figure.tight_layout()
    return figure


def curves_figure(histories: list[list[dict]], title: str):
    """Train/validation loss and validation weighted F1 per epoch, one line per seed."""
    figure, (loss_axes, f1_axes) = plt.subplots(1, 2, figsize=(8.4, 3.4))
    for seed, history in enumerate(histories):
        epochs = range(1, len(history) + 1)
        loss_axes.plot(epochs, [h["train_loss"] for h in history], color="#4c72b0", alpha=0.8,
                       label="train" if seed == 0 else None)
        loss_axes.plot(epochs, [h["val_loss"] for h in history], color="#dd8452", alpha=0.8,
                       label="validation" if seed == 0 else None)
        f1_axes.plot(epochs, [h["val_weighted_f1"] for h in history], color="#55a868", alpha=0.8)
    loss_axes.set(xlabel="epoch", ylabel="weighted cross-entropy", title="loss")
    loss_axes.legend()
    f1_axes.set(xlabel="epoch", ylabel="weighted F1", title="validation weighted F1")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


# Why the figure's T and ECE differ from results/metrics.json's (the registered model's).
RELIABILITY_NOTE = ("the ablation's head (first seed), temperature fitted on the validation split; the registered\n"
                    "model's own, fitted on out-of-fold train + validation rows, is in metrics.json (holdout.ece)")


def reliability_figure(calibration: dict, name: str):
    """Accuracy against mean confidence per bin of the top probability, before and after the
    temperature; the diagonal is perfect calibration. Marker area follows the bin's samples. The figure
    says whose temperature it is: the ablation's head's, fitted on validation, not the registered model's."""
    figure, axes = plt.subplots(figsize=(4.8, 5.0))
    axes.plot([0, 1], [0, 1], color="#7f7f7f", linestyle=":", label="perfectly calibrated")
    for key, colour, label in (("before", "#dd8452", f"T = 1, ECE {calibration['ece_uncalibrated']:.3f}"),
                               ("after", "#4c72b0", f"T = {calibration['temperature']:.2f}, ECE {calibration['ece']:.3f}")):
        bins = [b for b in calibration[key] if b["samples"]]
        axes.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], color=colour, marker="o",
                  label=label)
        axes.scatter([b["confidence"] for b in bins], [b["accuracy"] for b in bins], s=[4 + b["samples"] for b in bins],
                     color=colour, alpha=0.3)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean top probability in the bin", ylabel="accuracy in the bin",
             title=f"holdout reliability: {name}")
    axes.legend(loc="upper left", fontsize=8)
    figure.text(0.5, 0.01, RELIABILITY_NOTE, ha="center", va="bottom", fontsize=7, color="#555555", wrap=True)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return figure
