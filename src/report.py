"""Stage ``report``: ``results/report.md``, the ablation's tables, ranking sentences and error
analysis, with matplotlib figures beside it, readable on GitHub as it is.

It reads only the ablation stage's outputs (``ablation.json`` and ``bad_cases.csv``) and trains
nothing, so a change to the wording re-runs this stage alone. The report and its figures are
added to the ablation's MLflow parent run.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from src import LABELS
from src.backbone import describe_backbone
from src.config import TrainConfig
from src.errors import UserError, cli
from src.io import atomic_write_bytes, atomic_write_text
from src.metrics import paired_bootstrap
from src.tracking import confusion_figure, plt, setup_mlflow

EXAMPLES_PER_KIND = 5
KIND_MEANING = {
    "low_quality_image": "the image is small (shorter side below {side} px) or among the dataset's blurriest 10 % "
                         "(variance of the Laplacian)",
    "modality_conflict": "the text-only and the image-only heads predict different labels",
    "ambiguous_neutral": "the true or the predicted label is neutral (and the unimodal heads agree)",
    "low_confidence": "the top probability is below {low}",
    "confident_error": "none of the above: a confident, consistent mistake",
}


@dataclass(frozen=True)
class ReportContext:
    """What the report must state so nobody mistakes what it was made with."""

    backbone: str
    data_root: str
    n_labelled: int
    n_train: int
    n_val: int
    n_holdout: int
    augment_views: int
    text_augment_views: int
    feature_fingerprint: str
    split_identity: str
    seeds: int
    train: TrainConfig  # the shared hyperparameters
    hyperparameter_source: str
    low_confidence: float
    low_quality_short_side: int
    git_commit: str


@dataclass(frozen=True)
class AnalysedHead:
    """The tuned configuration's head, whose errors the report analyses."""

    name: str
    scores: list[dict]  # holdout classification_metrics per seed, confusion included
    histories: list[list[dict]]  # per-epoch scalars per seed
    calibration: dict  # first seed: temperature fitted on validation, holdout ECE and reliability bins before/after
    holdout_kinds: dict[str, int]  # first seed: how many holdout samples, right or wrong, each kind applies to


def mean_std(row: dict, metric: str) -> str:
    std = row[f"{metric}_std"]
    return f"{row[metric]:.3f}" + ("" if std is None else f" ± {std:.3f}")


def markdown_table(header: list[str], body: list[list[str]], align: str = "") -> str:
    """A GitHub table; ``align`` has one letter per column, l or r (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " if a == "l" else " ---: " for a in align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def scores_table(rows: list[dict]) -> str:
    body = [[f"`{r['variant']}`", str(r["seeds"]), mean_std(r, "accuracy"), mean_std(r, "weighted_f1"),
             f"[{r['weighted_f1_ci_low']:.3f}, {r['weighted_f1_ci_high']:.3f}]", mean_std(r, "macro_f1"),
             "" if r["trainable_params"] is None else f"{r['trainable_params']:,}"] for r in rows]
    return markdown_table(["variant", "seeds", "accuracy", "weighted F1", "weighted F1 95 % CI", "macro F1",
                           "trainable params"], body)


Difference = Callable[[str, str], list[float]]  # (a, b) -> 95 % interval of weighted F1 a − b


def paired_differences(labels: np.ndarray, predictions: dict[str, list[np.ndarray]]) -> Difference:
    """Paired bootstrap intervals between variants, on the same resampled holdout rows."""
    @functools.lru_cache(maxsize=None)
    def difference(a: str, b: str) -> list[float]:
        return paired_bootstrap(labels, predictions[a], predictions[b])

    return difference


def separated(a: dict, b: dict, interval: list[float], metric: str = "weighted_f1") -> bool:
    """``a`` is ahead of ``b``: by at least the larger of their seed spreads (0 for a single run),
    and the 95 % paired bootstrap interval of a − b lies above 0."""
    gap = a[metric] - b[metric]
    return gap > 0 and gap >= max(a[f"{metric}_std"] or 0.0, b[f"{metric}_std"] or 0.0) and interval[0] > 0


def points(a: dict, b: dict, interval: list[float]) -> str:
    """``a − b: +4.1 points [+1.9, +6.3]`` in weighted F1 points."""
    gap = (a["weighted_f1"] - b["weighted_f1"]) * 100
    return (f"`{a['variant']}` − `{b['variant']}`: {gap:+.1f} points "
            f"[{interval[0] * 100:+.1f}, {interval[1] * 100:+.1f}]")


def summary_sentence(rows: list[dict], tuned: str, difference: Difference) -> str:
    """One sentence that reads the table: the tuned head against the probe and the unimodal heads."""
    by_name = {r["variant"]: r for r in rows}
    head = by_name[tuned]
    parts = []
    for name in ("logistic_probe", "text", "image"):
        if name not in by_name or name == tuned:
            continue
        other = by_name[name]
        if separated(head, other, difference(tuned, name)):
            verdict = "better than"
        elif separated(other, head, difference(name, tuned)):
            verdict = "worse than"
        else:
            verdict = "not separated from"
        parts.append(f"{verdict} the {name.replace('_', ' ')} head ({other['weighted_f1']:.3f})"
                     if name != "logistic_probe" else f"{verdict} the logistic probe ({other['weighted_f1']:.3f})")
    return (f"**In one sentence:** the tuned `{tuned}` head ({head['weighted_f1']:.3f} weighted F1) is "
            + "; ".join(parts) + ", by the rule below.")


def separation(rows: list[dict], difference: Difference, metric: str = "weighted_f1") -> str:
    """Name the best row, and rank another below it only where it is separated (``separated``):
    a gap of at least the seed spread, and a paired bootstrap interval that excludes 0."""
    ordered = sorted(rows, key=lambda r: -r[metric])
    best, others = ordered[0], ordered[1:]
    if not others:
        return ""
    behind = [r for r in others if separated(best, r, difference(best["variant"], r["variant"]))]
    tied = [r for r in others if r not in behind]
    listed = lambda group: "; ".join(points(best, r, difference(best["variant"], r["variant"])) for r in group)  # noqa: E731
    single = " One seed only: the spread between seeds is not measured." if best[f"{metric}_std"] is None else ""
    if not behind:
        return (f"No row is separated from `{best['variant']}` ({listed(tied)}): each difference is within the seed "
                f"spread or its 95 % paired bootstrap interval includes 0, so these rows are not ranked.{single}")
    text = f"`{best['variant']}` has the highest mean weighted F1 ({mean_std(best, metric)})."
    if tied:
        text += (f" Not separated from it (within the seed spread, or a 95 % interval that includes 0), so not "
                 f"ranked against it: {listed(tied)}.")
    return text + f" Below it: {listed(behind)}.{single}"


def save_figure(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def variants_figure(rows: list[dict]):
    """Horizontal bars from 0: weighted F1 mean, ± std error bars where there are several seeds.

    Baselines (the probe, the Bayes rule) are hatched grey outlines, trained heads solid bars.
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


def reliability_figure(calibration: dict, name: str):
    """Accuracy against mean confidence per bin of the top probability, before and after the
    temperature; the diagonal is perfect calibration. Marker area follows the bin's samples."""
    figure, axes = plt.subplots(figsize=(4.8, 4.6))
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
    figure.tight_layout()
    return figure


def one_line(text: str, limit: int = 90) -> str:
    """Tweet text for a Markdown table cell: one line, pipes escaped, shortened."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_section(context: ReportContext, analysed: AnalysedHead, cases: list[dict]) -> list[str]:
    seeds = len(analysed.scores)
    calibration = analysed.calibration
    per_class = [[label, str(sum(analysed.scores[0]["confusion"][i])),
                  f"{np.mean([s[f'f1_{label}'] for s in analysed.scores]):.3f}"
                  + (f" ± {np.std([s[f'f1_{label}'] for s in analysed.scores], ddof=1):.3f}" if seeds > 1 else "")]
                 for i, label in enumerate(LABELS)]
    counts = {kind: sum(c["kind"] == kind for c in cases) for kind in KIND_MEANING}
    lines = [
        f"## Error analysis: `{analysed.name}`, seed {context.train.seed}",
        "",
        "The tuned configuration's head, first seed. Its holdout confusion matrix (rows: true label) and "
        "training curves (every seed):",
        "",
        "![holdout confusion matrix](figures/confusion.png)",
        "",
        "![training curves](figures/training_curves.png)",
        "",
        "The training loss can sit above the validation loss: it is the mean over the epoch's batches, "
        "computed in training mode, with dropout, modality dropout and a randomly sampled augmented view per "
        "image, while the validation loss is computed after the epoch in evaluation mode on clean views.",
        "",
        f"**Calibration.** A temperature fitted on the validation split (T = {calibration['temperature']:.3f}) "
        f"moves the holdout's expected calibration error (10 equal-width bins of the top probability) from "
        f"{calibration['ece_uncalibrated']:.3f} to {calibration['ece']:.3f}. The registered model carries its own "
        "temperature, fitted the same way (`results/metrics.json`: `holdout.ece`).",
        "",
        "![reliability diagram, before and after the temperature](figures/reliability.png)",
        "",
        f"Per-class F1 on the holdout (mean ± std over {seeds} seeds; support from the holdout):",
        "",
        markdown_table(["class", "holdout samples", "F1"], per_class),
        "",
        f"{len(cases)} of {context.n_holdout} holdout samples are misclassified. Each gets the first kind that "
        "applies, in this order:",
        "",
        markdown_table(["kind", "errors", "share of errors", "share of all holdout samples", "meaning"],
                       [[f"`{k}`", str(counts[k]), f"{counts[k] / max(len(cases), 1):.0%}",
                         f"{analysed.holdout_kinds[k] / max(context.n_holdout, 1):.0%}",
                         m.format(low=context.low_confidence, side=context.low_quality_short_side)]
                        for k, m in KIND_MEANING.items()], "lrrrl"),
        "",
        "A kind whose share of the errors is well above its share of all holdout samples (where the same "
        "rules are applied to every sample, right or wrong) is over-represented among the errors.",
        "",
    ]
    for kind in KIND_MEANING:
        examples = [c for c in cases if c["kind"] == kind][:EXAMPLES_PER_KIND]
        if not examples:
            continue
        lines += [f"### `{kind}`: the most confident {len(examples)}", "",
                  markdown_table(["guid", "true", "predicted", "p(predicted)", "text only", "image only", "text"],
                                 [[c["guid"], c["true_label"], c["predicted_label"],
                                   f"{c['p_' + c['predicted_label']]:.2f}", c["text_only_prediction"],
                                   c["image_only_prediction"], one_line(c["text"])] for c in examples],
                                 "lllrlll"), ""]
    lines += ["Every misclassified sample, with its image path and probabilities: [bad_cases.csv](bad_cases.csv).", ""]
    return lines


def write_report(path: Path, figures: Path, context: ReportContext, rows: list[dict], analysed: AnalysedHead,
                 cases: list[dict], difference: Difference) -> Path:
    """Write the figures into ``figures/`` and the report to ``path``; returns the figures folder."""
    trained = [r for r in rows if r["kind"] != "baseline"]
    save_figure(variants_figure([r for r in rows if r["kind"] in ("unimodal", "fusion", "baseline")]),
                figures / "variants.png")
    save_figure(confusion_figure(analysed.scores[0]["confusion"], f"holdout: {analysed.name}"),
                figures / "confusion.png")
    save_figure(curves_figure(analysed.histories, f"{analysed.name}, {len(analysed.histories)} seeds"),
                figures / "training_curves.png")
    save_figure(reliability_figure(analysed.calibration, analysed.name), figures / "reliability.png")
    train = context.train
    shared = {k: v for k, v in asdict(train).items() if k not in ("fusion", "seed", "epochs", "patience", "batch_size")}
    by_kind = {kind: [r for r in rows if r["kind"] == kind] for kind in ("unimodal", "fusion", "augmentation", "baseline")}
    lines = [
        "# Ablation, fusion comparison and error analysis",
        "",
        f"- **Backbone:** {describe_backbone(context.backbone)}.",
        f"- **Data:** `{context.data_root}`, {context.n_labelled} labelled samples split into {context.n_train} "
        f"train, {context.n_val} validation and {context.n_holdout} holdout. Every number below is on the "
        f"untouched holdout (split `{context.split_identity}`). Feature cache `{context.feature_fingerprint[:12]}`, "
        f"{context.augment_views} augmented "
        "views per labelled image.",
        f"- **Hyperparameters, the same for every trained row:** from {context.hyperparameter_source}: "
        + ", ".join(f"`{k}` {v:.4g}" if isinstance(v, float) else f"`{k}` {v}" for k, v in shared.items())
        + ". Only the fusion type changes between rows (and `use_augmented_views` in the augmentation table).",
        f"- **Budget, the same for every trained row:** at most {train.epochs} epochs, early stopping after "
        f"{train.patience} epochs without a better validation weighted F1, batch size {train.batch_size}.",
        f"- **Seeds:** mean ± sample standard deviation over {context.seeds} seeds ({train.seed} to "
        f"{train.seed + context.seeds - 1}); a seed changes the initialisation, batch order, sampled views and "
        "modality dropout, never the splits. Two rows whose means differ by less than the larger of their "
        "standard deviations are reported as not separated, not ranked.",
        "- **Speed** is measured by `python -m src.benchmark` on an idle machine (BENCHMARKS.md), not here: "
        "timings taken between trainings on a shared machine are noise.",
        f"- **Made by:** `python -m src.ablation` at commit `{context.git_commit[:12]}`, then `python -m src.report`.",
        "",
        summary_sentence(rows, train.fusion, difference),
        "",
        "## Modality ablation",
        "",
        scores_table(by_kind["unimodal"] + by_kind["fusion"]),
        "",
        separation(by_kind["unimodal"] + by_kind["fusion"], difference),
        "",
        "## Fusion comparison",
        "",
        scores_table(sorted(by_kind["fusion"], key=lambda r: -r["weighted_f1"])),
        "",
        separation(by_kind["fusion"], difference),
        "",
        "![holdout weighted F1 of every row](figures/variants.png)",
        "",
        "## Augmentation",
        "",
    ]
    if by_kind["augmentation"]:
        pair = [r for r in trained if r["variant"] == train.fusion] + by_kind["augmentation"]
        lines += [f"`{train.fusion}` trained on the cache's augmented views ({context.augment_views} per image, "
                  f"{context.text_augment_views} per labelled text; one of each sampled per epoch) against the same "
                  "head without them (`:no_views`: clean images, `:no_text_views`: clean texts; `:views` and "
                  "`:text_views` where the tuned head had them off):", "",
                  scores_table(pair), "", separation(pair, difference), ""]
    else:
        lines += ["The cache holds no augmented views (`features.augment_views` and `features.text_augment_views` "
                  "are 0): set them above 0 and re-run `dvc repro` to compare.", ""]
    lines += ["## Baselines", "",
              "`logistic_probe`: logistic regression on the concatenated pooled embeddings, C chosen on "
              "validation; deterministic, so one run. `bayes:*` (synthetic sample only): the Bayes-optimal rule "
              "given the generating cues, the ceiling on these rows.", "",
              scores_table(by_kind["baseline"]), ""]
    lines += error_section(context, analysed, cases)
    atomic_write_text(path, "\n".join(lines))
    return figures


def read_ablation(folder: Path) -> tuple[ReportContext, list[dict], AnalysedHead, list[dict], str, Difference]:
    """The ablation stage's outputs: context, rows, analysed head, bad cases, its MLflow run id, and
    the paired comparisons between its rows."""
    details_path, cases_path = folder / "ablation.json", folder / "bad_cases.csv"
    if not details_path.is_file() or not cases_path.is_file():
        raise UserError(f"no ablation results in '{folder}/' (ablation.json and bad_cases.csv): run "
                        "`python -m src.ablation` (or `dvc repro ablation`) first")
    details = json.loads(details_path.read_text())
    missing = {"rows", "analysed", "holdout_labels", "predictions", "holdout_kinds"} - set(details) or (
        {"calibration"} - set(details["analysed"]))
    if missing:
        raise UserError(f"'{details_path}' was written by an older version of the ablation stage (it lacks "
                        f"{', '.join(sorted(missing))}): run `python -m src.ablation` (or `dvc repro ablation`) again")
    context = ReportContext(**{**details["context"], "train": TrainConfig(**details["context"]["train"])})
    analysed = AnalysedHead(details["analysed"]["variant"], details["analysed"]["scores"],
                            details["analysed"]["histories"], details["analysed"]["calibration"],
                            details["holdout_kinds"])
    with cases_path.open(newline="") as handle:
        cases = [{k: float(v) if k.startswith("p_") else v for k, v in row.items()} for row in csv.DictReader(handle)]
    difference = paired_differences(np.array(details["holdout_labels"]),
                                    {name: [np.array(p) for p in runs] for name, runs in details["predictions"].items()})
    return context, details["rows"], analysed, cases, details["mlflow_run_id"], difference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write results/report.md from the ablation stage's outputs.")
    parser.add_argument("--results", type=Path, default=Path("results"), help="the ablation's output folder, where "
                        "report.md and figures/ go (default: %(default)s)")
    args = parser.parse_args(argv)
    context, rows, analysed, cases, run_id, difference = read_ablation(args.results)
    report = args.results / "report.md"
    figures = write_report(report, args.results / "figures", context, rows, analysed, cases, difference)
    from mlflow import MlflowClient

    setup_mlflow()
    client = MlflowClient()
    client.log_artifact(run_id, str(report))
    client.log_artifacts(run_id, str(figures), artifact_path="figures")
    print(f"wrote {report} and {figures}/, and added them to MLflow run {run_id} (ablation)")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
