"""The report's words: tables, the ranking rule and its sentences, and the error-analysis section."""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from msc.analysis.results import AnalysedHead, ReportContext
from msc.train.metrics import paired_bootstrap

EXAMPLES_PER_KIND = 5
KIND_MEANING = {
    "low_quality_image": "the image is small (shorter side below {side} px) or among the dataset's blurriest 10 % "
                         "(variance of the Laplacian)",
    "modality_conflict": "the text-only and the image-only heads predict different labels",
    "ambiguous_neutral": "the true or the predicted label is neutral (and the unimodal heads agree)",
    "low_confidence": "the top probability is below {low}",
    "confident_error": "none of the above: a confident, consistent mistake",
}


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


def one_line(text: str, limit: int = 90) -> str:
    """Tweet text for a Markdown table cell: one line, pipes escaped, shortened."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_section(context: ReportContext, analysed: AnalysedHead, cases: list[dict]) -> list[str]:
    seeds = len(analysed.scores)
    calibration = analysed.calibration
    f1 = {label: np.array([s[f"f1_{label}"] for s in analysed.scores], dtype=float)  # nan: not measured
          for label in context.labels}
    per_class = [[label, str(sum(analysed.scores[0]["confusion"][i])),
                  f"{f1[label].mean():.3f}" + (f" ± {f1[label].std(ddof=1):.3f}" if seeds > 1 else "")]
                 for i, label in enumerate(context.labels)]
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
        "temperature, fitted on out-of-fold rows of train + validation instead (README, \"Calibrated probabilities\"; "
        "`results/metrics.json`: `holdout.ece`), since validation rows that chose the kept epoch flatter a head.",
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
