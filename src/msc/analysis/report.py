"""``results/report.md``: the ablation's tables, ranking sentences and error analysis, with figures
beside it, readable on GitHub as it is. Made from the ablation stage's outputs alone; trains nothing."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

from msc.analysis.report_attribution import attribution_section
from msc.analysis.report_figures import curves_figure, reliability_figure, save_figure, variants_figure
from msc.analysis.report_text import Difference, error_section, paired_differences, scores_table, separation, summary_sentence
from msc.analysis.results import AblationResults, AnalysedHead, ReportContext, read_results
from msc.core.errors import UserError
from msc.core.files import atomic_write_text
from msc.model.describe import describe_backbone, random_weights
from msc.track.figures import confusion_figure


def write_figures(figures: Path, rows: list[dict], analysed: AnalysedHead, labels: tuple[str, ...]) -> None:
    save_figure(variants_figure([r for r in rows if r["kind"] in ("unimodal", "fusion", "baseline")]),
                figures / "variants.png")
    save_figure(confusion_figure(analysed.scores[0]["confusion"], f"holdout: {analysed.name}", labels),
                figures / "confusion.png")
    save_figure(curves_figure(analysed.histories, f"{analysed.name}, {len(analysed.histories)} seeds"),
                figures / "training_curves.png")
    save_figure(reliability_figure(analysed.calibration, analysed.name), figures / "reliability.png")


def header_lines(context: ReportContext) -> list[str]:
    """The title and what every number below was made with."""
    train = context.train
    shared = {k: v for k, v in asdict(train).items() if k not in ("fusion", "seed", "epochs", "patience", "batch_size")}
    return [
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
    ]


def zero_shot_caveat(backbone: str) -> str:
    """What the zero-shot row can mean with this backbone."""
    if random_weights(backbone):
        return (" With this random-weight backbone it lands near chance, as it must: its text tower has learnt "
                "no meaning for the prompts' words.")
    return ""


def write_report(path: Path, figures: Path, context: ReportContext, rows: list[dict], analysed: AnalysedHead,
                 cases: list[dict], difference: Difference, attribution: dict, registered: list[str]) -> Path:
    """Write the figures into ``figures/`` and the report to ``path``, with the ``registered`` model's section
    (msc/analysis/report_calibration.py) before the error analysis; returns the figures folder."""
    write_figures(figures, rows, analysed, tuple(context.labels))
    train = context.train
    by_kind = {kind: [r for r in rows if r["kind"] == kind] for kind in ("unimodal", "fusion", "augmentation", "baseline")}
    lines = header_lines(context) + [
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
        pair = [r for r in rows if r["variant"] == train.fusion and r["kind"] != "baseline"] + by_kind["augmentation"]
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
              "validation; deterministic, so one run. `zero_shot`: no training; the backbone's text tower embeds "
              "each class's prompts (`ablation.zero_shot_prompts`), and the image's and the tweet's embeddings "
              "are compared with them, the two softmax scores averaged." + zero_shot_caveat(context.backbone)
              + " `bayes:*` (synthetic sample only): the Bayes-optimal rule given the generating cues, the "
              "ceiling on these rows.", "",
              scores_table(by_kind["baseline"]), ""]
    lines += registered
    lines += error_section(context, analysed, cases)
    lines += attribution_section(attribution, analysed.name, cases, figures, tuple(context.labels))
    atomic_write_text(path, "\n".join(lines))
    return figures


def read_ablation(folder: Path) -> tuple[AblationResults, ReportContext, AnalysedHead, list[dict], Difference]:
    """The ablation stage's outputs: its result file, context, analysed head, bad cases, and the
    paired comparisons between its rows. Refuses CSVs from another run than the result file."""
    results, context, analysed = read_results(folder)
    for name, digest in (("bad_cases.csv", results.bad_cases_sha256), ("ablation.csv", results.ablation_sha256)):
        path = folder / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            state = "missing" if not path.is_file() else "from another ablation run than ablation.json"
            raise UserError(f"'{path}' is {state} (an ablation run was interrupted, or a file was copied in): run "
                            "`python -m src.ablation` (or `dvc repro ablation`) again")
    cases_path = folder / "bad_cases.csv"
    with cases_path.open(newline="") as handle:
        cases = [{k: float(v) if k.startswith("p_") else v for k, v in row.items()} for row in csv.DictReader(handle)]
    difference = paired_differences(np.array(results.holdout_labels),
                                    {name: [np.array(p) for p in runs] for name, runs in results.predictions.items()})
    return results, context, analysed, cases, difference
