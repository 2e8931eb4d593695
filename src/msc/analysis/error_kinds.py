"""The error analysis: a kind for every holdout sample, right or wrong, and the misclassified ones."""

from __future__ import annotations

import numpy as np

from msc.config import DataConfig
from msc.core.labels import LABELS
from msc.data.dataset import load_dataset
from msc.data.text import decode_text
from msc.features.cache import FeatureCache

BAD_CASE_COLUMNS = ("guid", "kind", "true_label", "predicted_label", *(f"p_{label}" for label in LABELS),
                    "text_only_prediction", "image_only_prediction", "attr_text", "attr_image", "image_path", "text")
ERROR_KINDS = ("low_quality_image", "modality_conflict", "ambiguous_neutral", "low_confidence", "confident_error")
SHARPNESS_DECILE = 10  # an image in the dataset's lowest 10 % of sharpness counts as low quality


def error_kind(true: int, predicted: int, confidence: float, text_only: int, image_only: int,
               low_confidence: float, low_quality: bool = False) -> str:
    """The first kind that applies, in ERROR_KINDS order, to one sample (the report also counts
    the kinds of the correctly classified samples, to compare each kind's share of the errors with
    its share of the holdout)."""
    if low_quality:
        return "low_quality_image"  # small or blurry: see low_quality_rows
    if text_only != image_only:
        return "modality_conflict"  # the text-only and image-only heads disagree
    if LABELS.index("neutral") in (true, predicted):
        return "ambiguous_neutral"
    if confidence < low_confidence:
        return "low_confidence"
    return "confident_error"


def low_quality_rows(cache: FeatureCache, rows: np.ndarray, min_short_side: int) -> np.ndarray:
    """(n,) bool: the image of each row is small (shorter side below ``min_short_side`` pixels) or
    blurry (sharpness in the lowest decile of every image in the cache), from featurize's manifest."""
    quality = cache.manifest.image_quality
    side, sharpness = np.array(quality["short_side"]), np.array(quality["sharpness"])
    threshold = np.percentile(sharpness[sharpness >= 0], SHARPNESS_DECILE)
    usable = side[rows] >= 0
    return usable & ((side[rows] < min_short_side) | (sharpness[rows] < threshold))


def sample_kinds(cache: FeatureCache, rows: np.ndarray, probs: np.ndarray, text_only: np.ndarray,
                 image_only: np.ndarray, low_quality: np.ndarray, low_confidence: float) -> list[str]:
    """``error_kind`` of every row, right or wrong; ``probs`` (n, 3), the others (n,)."""
    return [error_kind(int(cache.labels[row]), int(probs[i].argmax()), float(probs[i].max()), int(text_only[i]),
                       int(image_only[i]), low_confidence, bool(low_quality[i])) for i, row in enumerate(rows)]


def bad_cases(cache: FeatureCache, rows: np.ndarray, probs: np.ndarray, kinds: list[str], text_only: np.ndarray,
              image_only: np.ndarray, data: DataConfig, attribution: dict) -> list[dict]:
    """Every misclassified holdout sample of ``probs`` (n, 3), with its kind, text and image path.

    ``text_only`` and ``image_only`` (n,) are the unimodal heads' predictions on the same rows;
    ``attribution`` holds the head's per-row ``attr_text`` and ``attr_image`` (msc/analysis/attribution.py).
    """
    samples = {s.guid: s for s in load_dataset(data.root, require_test_files=False).labelled}
    cases = []
    for i, row in enumerate(rows):
        true, predicted = int(cache.labels[row]), int(probs[i].argmax())
        if true == predicted:
            continue
        sample = samples[cache.guids[row]]
        cases.append({
            "guid": sample.guid,
            "kind": kinds[i],
            "true_label": LABELS[true],
            "predicted_label": LABELS[predicted],
            **{f"p_{label}": round(float(p), 4) for label, p in zip(LABELS, probs[i])},
            "text_only_prediction": LABELS[int(text_only[i])],
            "image_only_prediction": LABELS[int(image_only[i])],
            "attr_text": round(attribution["attr_text"][i], 4),
            "attr_image": round(attribution["attr_image"][i], 4),
            "image_path": str(sample.image_path),
            "text": " ".join(decode_text(sample.text_path.read_bytes(), data.text_encoding)[0].split()),  # one line
        })
    return sorted(cases, key=lambda case: (ERROR_KINDS.index(case["kind"]), -max(case[f"p_{x}"] for x in LABELS)))
