"""The error analysis: a kind for every holdout sample, right or wrong, and the misclassified ones."""

from __future__ import annotations

import numpy as np

from msc.config import DataConfig
from msc.core.labels import probability_columns
from msc.data.dataset import load_dataset
from msc.data.text import raw_post_text
from msc.features.cache import FeatureCache


def bad_case_columns(labels: tuple[str, ...]) -> tuple[str, ...]:
    """bad_cases.csv's columns, with one probability per label."""
    return ("guid", "kind", "true_label", "predicted_label", *probability_columns(labels), "text_only_prediction",
            "image_only_prediction", "attr_text", "attr_image", "image_path", "text")


# ambiguous_neutral: a label set with a "neutral" label only (the course's); other sets never have the kind.
ERROR_KINDS = ("low_quality_image", "modality_conflict", "ambiguous_neutral", "low_confidence", "confident_error")
SHARPNESS_DECILE = 10  # an image in the dataset's lowest 10 % of sharpness counts as low quality


def error_kind(true: int, predicted: int, confidence: float, text_only: int, image_only: int,
               low_confidence: float, low_quality: bool = False, neutral: int | None = None) -> str:
    """The first kind that applies, in ERROR_KINDS order, to one sample (the report also counts
    the kinds of the correctly classified samples, to compare each kind's share of the errors with
    its share of the holdout). ``neutral``: the class id of a label "neutral", if the set has one."""
    if low_quality:
        return "low_quality_image"  # small or blurry: see low_quality_rows
    if text_only != image_only:
        return "modality_conflict"  # the text-only and image-only heads disagree
    if neutral is not None and neutral in (true, predicted):
        return "ambiguous_neutral"
    if confidence < low_confidence:
        return "low_confidence"
    return "confident_error"


def low_quality_rows(cache: FeatureCache, rows: np.ndarray, min_short_side: int) -> np.ndarray:
    """(n,) bool: the image of each row is small (shorter side below ``min_short_side`` pixels) or
    blurry (sharpness in the lowest decile of every image in the cache), from featurize's manifest."""
    quality = cache.manifest.image_quality
    side, sharpness = np.array(quality["short_side"]), np.array(quality["sharpness"])
    measured = sharpness[sharpness >= 0]  # none when no post has an image (a text-only table)
    threshold = np.percentile(measured, SHARPNESS_DECILE) if len(measured) else -np.inf
    usable = side[rows] >= 0
    return usable & ((side[rows] < min_short_side) | (sharpness[rows] < threshold))


def sample_kinds(cache: FeatureCache, rows: np.ndarray, probs: np.ndarray, text_only: np.ndarray,
                 image_only: np.ndarray, low_quality: np.ndarray, low_confidence: float) -> list[str]:
    """``error_kind`` of every row, right or wrong; ``probs`` (n, C), the others (n,)."""
    names = cache.label_names
    neutral = names.index("neutral") if "neutral" in names else None
    return [error_kind(int(cache.labels[row]), int(probs[i].argmax()), float(probs[i].max()), int(text_only[i]),
                       int(image_only[i]), low_confidence, bool(low_quality[i]), neutral) for i, row in enumerate(rows)]


def bad_cases(cache: FeatureCache, rows: np.ndarray, probs: np.ndarray, kinds: list[str], text_only: np.ndarray,
              image_only: np.ndarray, data: DataConfig, attribution: dict) -> list[dict]:
    """Every misclassified holdout sample of ``probs`` (n, C), with its kind, text and image path.

    ``text_only`` and ``image_only`` (n,) are the unimodal heads' predictions on the same rows;
    ``attribution`` holds the head's per-row ``attr_text`` and ``attr_image`` (msc/analysis/attribution.py).
    """
    samples = {s.guid: s for s in load_dataset(data.source, require_test_files=False).labelled}
    names = cache.label_names
    cases = []
    for i, row in enumerate(rows):
        true, predicted = int(cache.labels[row]), int(probs[i].argmax())
        if true == predicted:
            continue
        sample = samples[cache.guids[row]]
        cases.append({
            "guid": sample.guid,
            "kind": kinds[i],
            "true_label": names[true],
            "predicted_label": names[predicted],
            **{column: round(float(p), 4) for column, p in zip(probability_columns(names), probs[i])},
            "text_only_prediction": names[int(text_only[i])],
            "image_only_prediction": names[int(image_only[i])],
            "attr_text": round(attribution["attr_text"][i], 4),
            "attr_image": round(attribution["attr_image"][i], 4),
            "image_path": "" if sample.image_path is None else str(sample.image_path),
            "text": " ".join((raw_post_text(sample, data.text_encoding) or "").split()),  # one line
        })
    return sorted(cases, key=lambda case: (ERROR_KINDS.index(case["kind"]), -top_probability(case, names)))


def top_probability(case: dict, names: tuple[str, ...]) -> float:
    """A bad case's top probability: the most confident errors of a kind come first."""
    return max(case[column] for column in probability_columns(names))
